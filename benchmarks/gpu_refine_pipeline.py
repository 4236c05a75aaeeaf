"""The whole sam-refine stage with a real SamSegmenter on one GPU, against the encoder-only rate.

One process, one call (run via gpu_all.sh, or alone). A synthetic workspace on disk (the
generator of ``bench_refine_pipeline.py``: 512x512 PNG patches, 6 boxes per image, one in three
tiny so it gets a context crop, K=4 jitter) is built and ingested once and shared by all models.
For each model (default vit_b, then vit_h; random weights, no download: same cost as the real
checkpoints) it prints, with ``torch.cuda.synchronize()`` around every timing:

  encoder-only  images/s of the segmenter's own encoder path at batch B (default 8): the
                workspace's images resized on the host beforehand (not timed), then per batch
                the pinned host staging, the copy to the device, normalising/padding and the
                bf16 image encoder (``SamSegmenter._input_batch`` + ``_encode``), after one
                warm-up batch. Also, for reference, the encoder alone on a batch already on
                the device (what ``gpu_refine.py`` calls "encoder bsB").
  stage         the real ``run_refine`` (files on disk to committed catalog rows: decode,
                prompts, crops and PIL resize in the workers, encoder, decoder, upsampling and
                mask measurements on the device, signals, RLE, routing,
                SQLite writes) on a fresh copy of the ingested catalog, ``refine.workers`` = the
                machine's cores up to 8, ``refine.encoder_batch`` = B. The segmenter is built
                and warmed up (encoder batch above, plus a whole warm-up stage on a one-scene
                workspace) before the timing, and passed in with ``segmenter=``.
  ratio         stage views/s over encoder-only views/s (a tiny box's context crop is a view
                of its own and costs one encoder row, like a whole image): 1.0 means the stage
                keeps up with the encoder; the host side (or padding of short batches) is
                what makes it lower.
  busy share    CUDA event pairs recorded around every ``segment_views`` / ``segment`` call,
                summed GPU-side elapsed time over the stage wall time. This is an UPPER BOUND
                of the time kernels ran: a span also holds the gaps inside a call where the GPU
                waits for the host (staging each encoder batch, the small copies of each
                view's measured masks). The same spans around the encoder calls
                alone give the encoder's share (close to its kernel time: the encoder is queued
                back to back). On a GPU host with ``nvidia-smi`` the mean of its
                ``utilization.gpu`` samples (every 100 ms, the share of time any kernel ran)
                over the stage is printed too.

For the first model only, and only if the budget allows, the same stage runs again with
``refine.workers: 0`` (everything in the main process, the old path) and the two catalogs'
proposals/rejects fingerprints are compared; then once more with the masks copied back whole
and measured on the host (``DenseBack``: the stage before the device measurement), and once
with each view's measurements brought back alone (``collect_views = 1``: the host waits for every
view's decoder before it queues the next, as before batched collection). ``--budget-s``
(counted from process start) is respected by estimating each step first: a step that would
overrun prints ``skipped (budget)``.
Without CUDA (and ``--device cuda``) it says so and exits 0.

    python benchmarks/gpu_refine_pipeline.py [--models vit_b vit_h] [--scenes 100] [--budget-s 140]
    python benchmarks/gpu_refine_pipeline.py --model tiny --device cpu --scenes 2   # CPU dry run
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # the budget counts from here (torch's import included)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parent), str(HERE)):  # the checkout's package, and bench_refine_pipeline beside us
    if _p not in sys.path:
        sys.path.insert(0, _p)


def elapsed() -> float:
    return time.perf_counter() - _T0


def say(text: str) -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------- timing shim
class GpuSpans:
    """Wraps ``segment_views``, ``segment`` and ``_encode`` of one segmenter *instance* (instance
    attributes shadow the methods; removed again on exit) and records, per call, host seconds and,
    on CUDA, a pair of timing events on the current stream. Also counts the views that had boxes."""

    NAMES = ("segment_views", "segment", "_encode")

    def __init__(self, seg, cuda: bool):
        self.seg, self.cuda = seg, cuda
        self.events: dict[str, list] = {n: [] for n in self.NAMES}
        self.host: dict[str, float] = {n: 0.0 for n in self.NAMES}
        self.views = 0

    def __enter__(self) -> "GpuSpans":
        for name in self.NAMES:
            setattr(self.seg, name, self._wrap(name, getattr(self.seg, name)))
        return self

    def __exit__(self, *exc) -> None:
        for name in self.NAMES:
            self.seg.__dict__.pop(name, None)

    def _wrap(self, name: str, fn):
        import numpy as np
        import torch

        def call(*args, **kwargs):
            if name == "segment_views":
                self.views += sum(1 for item in args[0] if np.asarray(item[1]).size)
            elif name == "segment":
                self.views += int(np.asarray(args[1]).size > 0)
            start = end = None
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.host[name] += time.perf_counter() - t
                if self.cuda:
                    end.record()
                    self.events[name].append((start, end))

        return call

    def gpu_seconds(self, names: tuple[str, ...]) -> float:
        import torch

        torch.cuda.synchronize()
        return sum(s.elapsed_time(e) for n in names for s, e in self.events[n]) / 1000.0


class DenseBack:
    """The same segmenter, but its masks come back whole and are measured on the host (what the
    stage did before the device measurement): the arm that shows what measuring on the device buys."""

    def __init__(self, seg):
        self.seg, self.name, self.model_sha256 = seg, seg.name, seg.model_sha256
        self.host_transform, self.precision, self.encoder_batch = seg.host_transform, seg.precision, seg.encoder_batch

    def segment_views(self, items, measure: bool = False):
        return self.seg.segment_views(items)            # dense MaskOutputs; the stage measures them

    def segment(self, view, boxes, jitter):
        return self.seg.segment(view, boxes, jitter)


class SmiSampler:
    """``nvidia-smi --query-gpu=utilization.gpu -lms 100`` in the background (a child process, not a
    thread: a Python thread would make the stage's pool use forkserver instead of fork)."""

    def __init__(self, folder: Path):
        self.path = folder / "smi.csv"
        self.proc = None

    def __enter__(self) -> "SmiSampler":
        exe = shutil.which("nvidia-smi")
        if exe is not None:
            self.out = open(self.path, "w")
            self.proc = subprocess.Popen([exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "100"], stdout=self.out, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.out.close()

    def summary(self) -> str:
        if self.proc is None:
            return "n/a (no nvidia-smi)"
        values = []
        for line in self.path.read_text().splitlines():
            try:
                values.append(float(line.strip()))
            except ValueError:
                pass
        if not values:
            return "n/a (no samples)"
        return f"mean {sum(values) / len(values):.0f}% over {len(values)} samples"


# ----------------------------------------------------------------------------- helpers
def set_encoder_batch(ws, batch: int) -> None:
    """``refine.encoder_batch`` in the workspace pipeline (``arm`` copies it into every arm)."""
    import yaml

    spec = yaml.safe_load(ws.pipeline_path.read_text())
    spec.setdefault("refine", {})["encoder_batch"] = batch
    ws.pipeline_path.write_text(yaml.safe_dump(spec))


def count_views(ws) -> tuple[int, int, int]:
    """Images, triplets and the encoder views the stage will make (one per image with a box of
    normal size, one per tiny box), read from the catalog as ``image_views`` decides them."""
    from risbench_builder import masks
    from risbench_builder.catalog import Catalog

    tiny = ws.load().refine.tiny_box
    whole, crops = set(), 0
    with Catalog(ws.catalog_path) as cat:
        images, triplets = cat.count("images"), cat.count("triplets")
        for image_id, box, w, h in cat.conn.execute(
                "SELECT t.image_id, t.box_xyxy, i.width, i.height FROM triplets t JOIN images i USING (image_id)"):
            x0, y0, x1, y1 = masks.clip_box(json.loads(box), w, h)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            if max(x1 - x0, y1 - y0) < tiny:
                crops += 1
            else:
                whole.add(image_id)
    return images, triplets, len(whole) + crops


def image_paths(ws, n: int) -> list[str]:
    from risbench_builder.catalog import Catalog

    with Catalog(ws.catalog_path) as cat:
        paths = [p for (p,) in cat.conn.execute("SELECT path FROM images ORDER BY image_id")]
    return [paths[i % len(paths)] for i in range(n)]


def encoder_rates(seg, base, n: int, batch: int, cuda: bool) -> tuple[float, float, int]:
    """(encoder path images/s on host-resized workspace images, encoder alone on a device batch
    images/s, images timed); one untimed warm-up batch first."""
    import torch

    from risbench_builder.segment.views import load_rgb

    n = max(batch, math.ceil(n / batch) * batch)
    resized = [seg.host_input(load_rgb(p)) for p in image_paths(base, n)]
    chunks = [resized[i:i + batch] for i in range(0, n, batch)]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        seg._encode(seg._input_batch(chunks[0], batch))          # warm-up
        sync()
        t = time.perf_counter()
        for chunk in chunks:
            seg._encode(seg._input_batch(chunk, batch))
        sync()
        path_rate = n / (time.perf_counter() - t)
        x = seg._input_batch(chunks[0], batch)
        seg._encode(x)
        sync()
        t = time.perf_counter()
        for _ in chunks:
            seg._encode(x)
        sync()
        device_rate = n / (time.perf_counter() - t)
    return path_rate, device_rate, n


def host_syncs(seg, items) -> int:
    """Host waits for the GPU in one measured ``segment_views`` call on ``items``, counted by
    ``torch.cuda.set_sync_debug_mode`` (its warnings: copies to pageable memory, ``.item()``,
    stream waits). Two per call is the design (``device_masks.collect``); one or more per view
    means the host waits for each view's decoder before it queues the next."""
    import warnings

    import torch

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            seg.segment_views(items, measure=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def call_and_encoder_ms(seg, items, cuda: bool, repeats: int = 3) -> tuple[float, float]:
    """Median wall ms of the measured ``segment_views`` call on ``items`` (one encoder batch) and of
    the encoder path alone on the same batch, each closed by a device sync: their difference is
    what decoding and measuring the batch's views adds to the encoder (GPU time and host gaps)."""
    import statistics

    import torch

    def timed(fn) -> float:
        runs = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            runs.append(1000 * (time.perf_counter() - t))
        return statistics.median(runs)

    def encoder_only() -> None:
        with torch.inference_mode():
            seg._encode(seg._input_batch([item[3] for item in items], seg.encoder_batch))

    return timed(lambda: seg.segment_views(items, measure=True)), timed(encoder_only)


def cache_round_trip(seg, root: Path) -> bool:
    """An embedding made on the segmenter's device through ``EmbeddingCache(background=True)``
    (copied to the host without waiting, written by its thread) reads back equal to a plain
    ``.cpu()``: from memory before the write, and from the file after ``flush``."""
    import torch

    from risbench_builder.segment.cache import EmbeddingCache

    cache = EmbeddingCache(root / "cache-check", background=True)
    emb = torch.randn(1, 256, 64, 64, device=seg.device) * 3
    want = emb.to("cpu", copy=True)
    cache.put("check", "sha", {"image_embeddings": emb})
    emb.add_(1.0)                     # queued after the copy: must not reach the stored entry
    early = cache.get("check", "sha")["image_embeddings"]
    cache.flush()
    late = cache.get("check", "sha")["image_embeddings"]
    return bool(torch.equal(early, want) and torch.equal(late, want))


def report_pipeline(base, name: str) -> dict:
    path = base.path.parent / name / "reports" / "refine.json"
    try:
        return json.loads(path.read_text()).get("pipeline", {})
    except (OSError, ValueError):
        return {}


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def side_arm(base, model: str, workers: int, seg, tag: str, name: str, what: str, ours: str,
             seconds: float, fingerprint: str, budget_s: float) -> None:
    """The stage once more with ``seg`` (a variant of the main arm's segmenter), if the budget
    allows: its time against the main arm's ``seconds`` and whether its catalog is the same."""
    from bench_refine_pipeline import arm

    estimate = 1.5 * seconds + 5
    if elapsed() + estimate > budget_s:
        say(f"[{model}] {name}: skipped (budget): estimated {estimate:.0f} s")
        return
    try:
        s, done, other = arm(base, f"{model}-{tag}", workers, seg)
        say(f"[{model}] stage workers={workers}, {what}: {s:.2f} s, {done / s:.2f} img/s; {ours} is "
            f"{s / seconds:.2f}x as fast; catalogs identical: {other == fingerprint}")
    except Exception as exc:  # noqa: BLE001 - report it and go on
        traceback.print_exc(file=sys.stdout)
        say(f"[{model}] {name}: failed ({type(exc).__name__}: {exc})")


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vit_b", "vit_h"])
    ap.add_argument("--model", help="one model (alias of --models NAME), e.g. tiny for the CPU dry run")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run: numbers meaningless)")
    ap.add_argument("--scenes", type=int, default=100, help="synthetic scenes, 2 images each")
    ap.add_argument("--batch", type=int, default=8, help="encoder batch (segmenter and refine.encoder_batch)")
    ap.add_argument("--images-for-encoder", type=int, default=64,
                    help="views timed for the encoder-only rate (rounded up to whole batches)")
    ap.add_argument("--workers", type=int, default=None, help="refine.workers of the main arm "
                    "(default: the machine's cores, at most 8)")
    ap.add_argument("--budget-s", type=float, default=140.0, help="wall-clock budget from process start")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads in this process (CPU dry run on a shared machine: 1)")
    args = ap.parse_args()
    models = [args.model] if args.model else args.models

    try:
        import torch

        from bench_refine_pipeline import arm, workspace
        from risbench_builder.parallel import default_workers
        from risbench_builder.segment.sam import SamSegmenter
    except ImportError as exc:
        say(f"gpu_refine_pipeline: cannot import what the stage needs: {exc}. Install the package's "
            "dependencies and the sam extra (pip install -e .[sam], or wheels in .whl/ via gpu_all.sh).")
        return 2

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        say("gpu_refine_pipeline: no CUDA device visible (torch.cuda.is_available() is False): nothing measured. "
            "Run it on a machine with an NVIDIA GPU, or with --device cpu --model tiny for a dry run.")
        return 0
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    say(f"machine: {device_name}, torch {torch.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} cpus ({default_workers(64)} usable)")
    workers = args.workers if args.workers is not None else default_workers()
    batch = args.batch

    root = Path(tempfile.mkdtemp(prefix="gpu_refine_pipeline_"))
    summaries: list[str] = []
    try:
        t = time.perf_counter()
        (root / "main").mkdir()
        (root / "warm").mkdir()
        base = workspace(root / "main", args.scenes)
        set_encoder_batch(base, batch)
        warm = workspace(root / "warm", 1)
        set_encoder_batch(warm, batch)
        images, triplets, views = count_views(base)
        say(f"workspace: {images} images, {triplets} triplets, {views} encoder views "
            f"(512x512 PNG, 6 boxes per image, K=4 jitter), built in {time.perf_counter() - t:.1f} s")
        say(f"setup: device {args.device}, encoder batch {batch}, refine.workers {workers}, "
            f"budget {args.budget_s:.0f} s")

        first = None   # (model, segmenter, workers-N seconds, fingerprint)
        host_bound = 0.0  # seconds of the last stage that ran (a floor for the next estimate)
        for model in models:
            if elapsed() + 20 > args.budget_s:
                say(f"[{model}] skipped (budget): {elapsed():.0f} s used of {args.budget_s:.0f}")
                summaries.append(f"model={model} encoder_b{batch}=skipped stage=skipped ratio=n/a busy=n/a "
                                 f"workers={workers}")
                continue
            try:
                t = time.perf_counter()
                seg = SamSegmenter(model, device=args.device, cache=None, encoder_batch=batch)
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                params = sum(p.numel() for p in seg.model.parameters()) / 1e6
                say(f"[{model}] built in {time.perf_counter() - t:.1f} s: {params:.1f} M params, "
                    f"precision {seg.precision}, random weights")

                enc, enc_device, timed_n = encoder_rates(seg, base, args.images_for_encoder, batch, cuda)
                say(f"[{model}] encoder-only b{batch}: {enc:.2f} img/s over {timed_n} views "
                    f"(host staging + copy + encoder; encoder alone on a device batch: {enc_device:.2f} img/s)")

                try:
                    from bench_decode_ops import items_for

                    items = items_for(seg, batch)                   # 512 px, 6 boxes x (1 + 4 jitter)
                    seg.segment_views(items, measure=True)          # warm: allocator and kernels
                    syncs = host_syncs(seg, items) if cuda else None
                    say(f"[{model}] host syncs in one measured segment_views call of {len(items)} views: "
                        f"{fmt(syncs, 'd')} (design: 2 per encoder batch)")
                    call_ms, encoder_ms = call_and_encoder_ms(seg, items, cuda)
                    say(f"[{model}] that call: {call_ms:.1f} ms, its encoder batch alone {encoder_ms:.1f} ms: "
                        f"decoding and measuring add {(call_ms - encoder_ms) / len(items):.2f} ms per view "
                        f"(6 boxes x 5 prompts, 512 px)")
                    say(f"[{model}] background embedding cache from {seg.device.type}: equal "
                        f"{cache_round_trip(seg, root)}")
                except Exception as exc:  # noqa: BLE001 - side measurements: the stage still runs
                    traceback.print_exc(file=sys.stdout)
                    say(f"[{model}] decode checks: failed ({type(exc).__name__}: {exc})")
                # warm-up stage: the same code paths (crops, chunk shapes, the pool) on 2 images
                arm(warm, f"{model}-warm", workers, seg)

                # the encoder's share of the stage, or the host side as the previous model's stage showed it
                estimate = max(views / enc * 1.3, host_bound) + 5
                if elapsed() + estimate > args.budget_s:
                    say(f"[{model}] stage workers={workers}: skipped (budget): estimated {estimate:.0f} s, "
                        f"{elapsed():.0f} s used of {args.budget_s:.0f}")
                    summaries.append(f"model={model} encoder_b{batch}={enc:.2f} stage=skipped ratio=n/a busy=n/a "
                                     f"workers={workers}")
                    continue
                calls0 = seg.encoder_calls
                start = ("none" if workers < 2 else "fork" if sys.platform == "linux" and threading.active_count() == 1
                         else "forkserver")  # as parallel.make_pool will choose
                with SmiSampler(root) as smi, GpuSpans(seg, cuda) as spans:
                    seconds, done, fingerprint = arm(base, f"{model}-w{workers}", workers, seg)
                host_bound = seconds
                pipe = report_pipeline(base, f"{model}-w{workers}")
                calls = seg.encoder_calls - calls0
                rows = calls * batch
                stage_views = spans.views
                img_s, views_s = done / seconds, stage_views / seconds
                ratio = views_s / enc
                peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
                say(f"[{model}] stage workers={pipe.get('workers', workers)} encoder_batch={pipe.get('encoder_batch')} "
                    f"precision={pipe.get('precision')} pool={start}: {seconds:.2f} s, {done} images, "
                    f"{img_s:.2f} img/s, {stage_views} views, {views_s:.2f} views/s; encoder calls {calls} "
                    f"({rows} rows, {100 * (1 - stage_views / rows) if rows else 0:.0f}% padding){peak}")
                say(f"[{model}] stage/encoder ratio={ratio:.3f} (stage views/s over encoder-only views/s)")
                host_share = spans.host["segment_views"] + spans.host["segment"]
                if cuda:
                    busy = spans.gpu_seconds(("segment_views", "segment")) / seconds
                    enc_share = spans.gpu_seconds(("_encode",)) / seconds
                    say(f"[{model}] busy share: {busy:.3f} (GPU spans of segment_views calls / stage wall, an upper "
                        f"bound of kernel time); encoder spans {enc_share:.3f}; host time in segment_views "
                        f"{host_share / seconds:.3f}; nvidia-smi utilization.gpu {smi.summary()}")
                    busy_text = f"{busy:.3f}"
                else:
                    say(f"[{model}] busy share: n/a (cpu); host time in segment_views {host_share / seconds:.3f}")
                    busy_text = "n/a"
                summaries.append(f"model={model} encoder_b{batch}={enc:.2f} stage={img_s:.2f} ratio={ratio:.3f} "
                                 f"busy={busy_text} workers={pipe.get('workers', workers)}")
                if first is None:
                    first = (model, seg, seconds, fingerprint)
                else:
                    del seg
                    if cuda:
                        torch.cuda.empty_cache()
            except Exception as exc:  # noqa: BLE001 - report it and go on with the next model
                traceback.print_exc(file=sys.stdout)
                say(f"[{model}] failed: {type(exc).__name__}: {exc}")
                seg = None  # noqa: F841 - frees the model (kept only as `first`)
                if cuda:
                    torch.cuda.empty_cache()
                summaries.append(f"model={model} encoder_b{batch}=failed stage=failed ratio=n/a busy=n/a "
                                 f"workers={workers}")

        # the old path (all in the main process) for the first model, last so it never crowds out a model
        if first is None:
            say("catalogs identical across worker counts: skipped (no stage ran)")
        else:
            model, seg, seconds, fingerprint = first
            estimate = 2.5 * seconds + 5
            if elapsed() + estimate > args.budget_s:
                say(f"[{model}] stage workers=0: skipped (budget): estimated {estimate:.0f} s, "
                    f"{elapsed():.0f} s used of {args.budget_s:.0f}")
                say("catalogs identical across worker counts: skipped (budget)")
            else:
                try:
                    with GpuSpans(seg, cuda) as spans:
                        s0, done0, fingerprint0 = arm(base, f"{model}-w0", 0, seg)
                    say(f"[{model}] stage workers=0: {s0:.2f} s, {done0} images, {done0 / s0:.2f} img/s, "
                        f"{spans.views / s0:.2f} views/s; workers={workers} / workers=0 speed-up {s0 / seconds:.2f}x")
                    say(f"catalogs identical across worker counts: {fingerprint0 == fingerprint} "
                        f"({model}, workers 0 and {workers})")
                except Exception as exc:  # noqa: BLE001
                    traceback.print_exc(file=sys.stdout)
                    say(f"catalogs identical across worker counts: failed ({type(exc).__name__}: {exc})")
            # the same stage with dense masks copied back and measured on the host (the stage before
            # device measurement), then with each view's measurements brought back alone (the host
            # waiting for every view, as before batched collection)
            side_arm(base, model, workers, DenseBack(seg), "dense", "dense copy-back arm",
                     "dense masks copied back and measured on the host", "device measurement", seconds,
                     fingerprint, args.budget_s)
            seg.collect_views = 1
            try:
                side_arm(base, model, workers, seg, "per-view", "per-view collect arm",
                         "measurements collected per view", "collecting per batch", seconds, fingerprint,
                         args.budget_s)
            finally:
                seg.collect_views = None
        for line in summaries:
            say(line)
        say(f"total {elapsed():.0f} s (budget {args.budget_s:.0f} s) on {device_name}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
