"""The sam-refine stage: every ingested box becomes a mask, a set of quality signals and a route.

Work is grouped by image so a segmenter with an image encoder runs it once per image (tiny
boxes get their own zoomed context crop). Images are taken in a stable order, optionally only
this rank's shard (stable hash of the image id), and every ``batch_images`` images are
committed in one transaction: a killed run resumes with the images that have no proposals
yet, and because jitter is seeded per triplet and every backend is deterministic, it ends with
exactly the masks an uninterrupted run produces.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import masks
from ..catalog import Catalog
from ..config import PipelineConfig, RefineConfig
from ..parallel import default_workers, make_pool, ordered_map
from ..readmodel import REFERRED, current_proposal_set
from ..review.sample import current_round
from ..segment.base import MaskOutput, MeasuredMask, Segmenter, View
from ..segment.registry import make_segmenter
from ..segment.routing import route
from ..segment.signals import measure, signals_from
from ..segment.views import context_window, jitter_boxes, load_rgb
from ..workspace import Workspace

STAGE = "sam-refine"
DEGENERATE_BOX = "degenerate_box"
UNREADABLE_IMAGE = "unreadable_image"


# ----------------------------------------------------------------------------- sharding
@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """``"i/n"``, else torchrun's RANK / WORLD_SIZE, else the whole dataset."""
        if text:
            try:
                i, n = (int(v) for v in text.split("/"))
            except ValueError:
                raise ValueError(f"--shard expects i/n such as 0/4, got {text!r}") from None
        else:
            i, n = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if not 0 <= i < n:
            raise ValueError(f"shard index {i} is outside 0..{n - 1}")
        return cls(i, n)

    def owns(self, image_id: str) -> bool:
        return self.count == 1 or int(hashlib.sha256(image_id.encode()).hexdigest()[:12], 16) % self.count == self.index


@contextmanager
def distributed(part: Shard) -> Iterator[None]:
    """Under torchrun, join the process group (gloo on CPU, nccl on GPUs) so ranks can wait for
    each other at the end; the work split itself needs no communication."""
    if part.count == 1 or "MASTER_ADDR" not in os.environ:
        yield
        return
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, rank=part.index, world_size=part.count)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- prompts
def _paste(out: MaskOutput | MeasuredMask, window: tuple[int, int, int, int], height: int,
           width: int) -> MaskOutput | MeasuredMask:
    x0, y0, x1, y1 = window
    if isinstance(out, MeasuredMask):
        return out.placed(x0, y0, height, width)

    def place(m: np.ndarray) -> np.ndarray:
        full = np.zeros(m.shape[:-2] + (height, width), bool)
        full[..., y0:y1, x0:x1] = m
        return full

    return MaskOutput(mask=place(out.mask), iou_pred=out.iou_pred, stability=out.stability,
                      multimask=None if out.multimask is None else place(out.multimask),
                      jitter_masks=[place(m) for m in out.jitter_masks])


@dataclass
class _Prompt:
    triplet_id: str
    box: np.ndarray
    polygon: np.ndarray | None
    jitter: np.ndarray


@dataclass
class RefineReport:
    run_id: str
    segmenter: str
    model_sha256: str
    shard: str
    seconds: float = 0.0
    images: int = 0
    proposals: int = 0
    crops: int = 0
    routes: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    rerouted: int = 0
    image_ids: list[str] = field(default_factory=list)
    adapter_sha256: str = ""
    workers: int = 0                       # host processes (0: all in the main process)
    encoder_batch: int | None = None       # views per encoder call (model backends)
    precision: str | None = None           # the model's compute precision (fp32, bf16, ...)
    round: int = 1                         # data-engine round (README "Rounds")
    round_routes: dict[str, int] = field(default_factory=dict)
    carried: int = 0                       # decided proposals copied into a new model's set

    def as_dict(self) -> dict[str, Any]:
        adapter = {"adapter_sha256": self.adapter_sha256} if self.adapter_sha256 else {}
        return {"run_id": self.run_id, "segmenter": self.segmenter, "model_sha256": self.model_sha256, **adapter,
                "shard": self.shard, "seconds": round(self.seconds, 3), "images": self.images,
                "proposals": self.proposals, "crops": self.crops, "routes": dict(self.routes),
                "rejected": dict(self.rejected), "rerouted": self.rerouted,
                "pipeline": {"workers": self.workers, "encoder_batch": self.encoder_batch,
                             "precision": self.precision},
                "round": self.round, "round_routes": self.round_routes, "carried": self.carried}


@dataclass
class ViewJob:
    """One encoder view of an image (the whole image, or a tiny box's context crop) with the
    prompts it answers; ``window`` places its masks back into the image (None: the whole image)."""

    view: View
    boxes: np.ndarray
    jitter: np.ndarray
    prompt_index: list[int]
    window: tuple[int, int, int, int] | None = None
    resized: np.ndarray | None = None      # the encoder's host-side input (``host_transform``), when made ahead


def image_views(image: np.ndarray, image_key: str, prompts: list[_Prompt], cfg: RefineConfig) -> list[ViewJob]:
    """The views one image needs: the whole image for every box of normal size, and a zoomed
    context crop for each tiny box."""
    h, w = image.shape[:2]
    size = [max(p.box[2] - p.box[0], p.box[3] - p.box[1]) for p in prompts]
    tiny = [i for i, s in enumerate(size) if s < cfg.tiny_box]
    whole = [i for i in range(len(prompts)) if size[i] >= cfg.tiny_box]
    jobs = []
    if whole:
        jobs.append(ViewJob(View(image, image_key, [prompts[i].polygon for i in whole]),
                            np.stack([prompts[i].box for i in whole]), np.stack([prompts[i].jitter for i in whole]),
                            whole))
    for i in tiny:
        p = prompts[i]
        side = max(cfg.context_min, int(4 * size[i]))
        x0, y0, x1, y1 = window = context_window(p.box, side, w, h)
        offset = np.array([x0, y0, x0, y0], float)
        view = View(np.ascontiguousarray(image[y0:y1, x0:x1]), f"{image_key}@{x0},{y0},{x1},{y1}",
                    [None if p.polygon is None else p.polygon - [x0, y0]])
        jobs.append(ViewJob(view, (p.box - offset)[None], (p.jitter - offset)[None], [i], window))
    return jobs


def place_outputs(jobs: list[ViewJob], results: list[list[Any]], n_prompts: int, height: int,
                  width: int) -> list[Any]:
    """Each prompt's output in image pixels, in prompt order (crops pasted back)."""
    outputs: list[Any] = [None] * n_prompts
    for job, outs in zip(jobs, results):
        for i, out in zip(job.prompt_index, outs):
            outputs[i] = out if job.window is None else _paste(out, job.window, height, width)
    return outputs


def segment_image(seg: Segmenter, image: np.ndarray, image_key: str, prompts: list[_Prompt],
                  cfg: RefineConfig) -> tuple[list[MaskOutput], int]:
    """Masks for all prompts of one image, in prompt order; also how many crops were used."""
    jobs = image_views(image, image_key, prompts, cfg)
    results = [seg.segment(j.view, j.boxes, j.jitter) for j in jobs]
    return place_outputs(jobs, results, len(prompts), *image.shape[:2]), sum(j.window is not None for j in jobs)


def reroute(catalog: Catalog, seg_name: str, model_sha: str, cfg: RefineConfig,
            only: set[str] | None = None, round_no: int | None = None) -> int:
    """Apply the current thresholds to proposals already made (of ``only`` when given): no masks
    are recomputed. In a round, every proposal it re-decides is marked with the round."""
    rows = catalog.conn.execute("SELECT triplet_id, scores_json, route FROM proposals WHERE segmenter=? AND "
                                "model_sha256=?", (seg_name, model_sha)).fetchall()
    rows = [r for r in rows if only is None or r[0] in only]
    changes = [(new, tid, seg_name, model_sha) for tid, scores, old in rows
               if (new := route(json.loads(scores), cfg.route)) != old]
    with catalog.transaction():
        if changes:
            catalog.conn.executemany("UPDATE proposals SET route=? WHERE triplet_id=? AND segmenter=? AND "
                                     "model_sha256=?", changes)
        if round_no is not None:
            catalog.conn.executemany("UPDATE proposals SET round=? WHERE triplet_id=? AND segmenter=? AND "
                                     "model_sha256=?", [(round_no, tid, seg_name, model_sha) for tid, _, _ in rows])
    return len(changes)


def undecided(catalog: Catalog) -> set[str]:
    """Triplets still waiting for people: routed to review in the current set, no consensus, not
    rejected by review. A data-engine round works on these only."""
    current = current_proposal_set(catalog)
    if current is None:
        return set()
    return {tid for (tid,) in catalog.conn.execute(
        "SELECT p.triplet_id FROM proposals p WHERE p.segmenter=? AND p.model_sha256=? AND p.route='review' "
        "AND NOT EXISTS (SELECT 1 FROM consensus c WHERE c.triplet_id = p.triplet_id) "
        "AND NOT EXISTS (SELECT 1 FROM rejects r WHERE r.stage='review' AND r.ref = p.triplet_id)", current)}


def _carry_decided(catalog: Catalog, previous: tuple[str, str], seg_name: str, model_sha: str,
                   waiting: set[str]) -> int:
    """A round with a new model copies the decided triplets' proposals into the new set (same mask,
    route and round), so the new set is complete and becomes the current one without losing them."""
    rows = [r for r in catalog.conn.execute(
        "SELECT triplet_id, rle, scores_json, route, run_id, round FROM proposals WHERE segmenter=? AND "
        "model_sha256=?", previous) if r[0] not in waiting]
    with catalog.transaction():
        before = catalog.conn.total_changes
        catalog.conn.executemany(
            "INSERT OR IGNORE INTO proposals (triplet_id, segmenter, model_sha256, rle, scores_json, route, run_id, "
            "round) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(tid, seg_name, model_sha, *rest) for tid, *rest in rows])
        return catalog.conn.total_changes - before


def _round_routes(catalog: Catalog, seg_name: str, model_sha: str, round_no: int) -> dict[str, int]:
    """Routes of the proposals this round decided (round 1: every proposal of the set)."""
    return dict(catalog.conn.execute(
        "SELECT route, COUNT(*) FROM proposals WHERE segmenter=? AND model_sha256=? AND COALESCE(round, 1)=? "
        "GROUP BY route ORDER BY route", (seg_name, model_sha, round_no)).fetchall())


def shard_catalog_path(ws: Workspace, part: Shard) -> Path:
    return ws.shards / f"catalog-{part.index}of{part.count}.sqlite"


def run_refine(ws: Workspace, cfg: PipelineConfig, *, force: bool = False, shard: str | None = None,
               shard_catalog: bool = False, progress: bool = True,
               segmenter: Segmenter | None = None, run_stage: str = STAGE,
               round_no: int | None = None) -> RefineReport:
    """Propose a mask for every triplet of this shard that has none from this segmenter yet.

    On one node all ranks write the workspace catalog (WAL). With ``shard_catalog`` (several
    nodes, no shared SQLite) a rank works on its own copy under ``W/shards/``, which
    ``risbench catalog merge`` joins back.

    ``run_stage`` names the run in the catalog: ``audit`` makes fresh masks under its own name, so
    they sit beside the imported ones without becoming the current proposal set.

    ``round_no`` > 1 is a data-engine round (README "Rounds"): only the triplets still waiting for
    review are re-decided, with the pipeline's current thresholds and model (a recalibrated router,
    a newly trained adapter); everything people or the router already decided stays as it is.
    """
    part = Shard.parse(shard)
    with distributed(part):
        return _run_refine(ws, cfg, part, force, shard_catalog, progress, segmenter, run_stage, round_no)


def _local_device(cfg: RefineConfig) -> str | None:
    """One GPU per rank on a node: LOCAL_RANK picks it unless the pipeline names a device."""
    if cfg.device is None and "LOCAL_RANK" in os.environ:
        from ..devices import pick_device

        device = pick_device(None, int(os.environ["LOCAL_RANK"]))
        return str(device) if device.type == "cuda" else None
    return None


def _run_refine(ws: Workspace, cfg: PipelineConfig, part: Shard, force: bool, shard_catalog: bool,
                progress: bool, segmenter: Segmenter | None, run_stage: str = STAGE,
                round_no: int | None = None) -> RefineReport:
    rcfg = cfg.refine
    seg = segmenter or make_segmenter(rcfg, ws, _local_device(rcfg))
    started = time.perf_counter()
    catalog_path = ws.catalog_path
    if shard_catalog:
        catalog_path = shard_catalog_path(ws, part)
        if not catalog_path.exists():
            with Catalog(ws.catalog_path, create=False) as main:
                main.copy_to(catalog_path)
    with Catalog(catalog_path, create=False) as catalog:
        if force:
            with catalog.transaction():
                catalog.conn.execute("DELETE FROM proposals WHERE segmenter=? AND model_sha256=?",
                                     (seg.name, seg.model_sha256))
                catalog.conn.execute("DELETE FROM rejects WHERE stage=?", (STAGE,))
        run_id = catalog.start_run(run_stage, cfg.sha256())
        report = RefineReport(run_id, seg.name, seg.model_sha256, f"{part.index}/{part.count}",
                              adapter_sha256=str(getattr(seg, "adapter_sha256", "") or ""))
        waiting: set[str] | None = None
        if round_no is None and not force and (latest := current_round(catalog)) > 1:
            round_no = latest               # a plain rerun after `--round N` goes on with round N, not round 1
        if round_no is not None and round_no > 1:
            waiting = undecided(catalog)
            previous = current_proposal_set(catalog)
            if previous is not None and previous != (seg.name, seg.model_sha256):
                report.carried = _carry_decided(catalog, previous, seg.name, seg.model_sha256, waiting)
        report.round = round_no or 1
        report.rerouted = reroute(catalog, seg.name, seg.model_sha256, rcfg, waiting, round_no)
        todo = [r for r in catalog.conn.execute(
            "SELECT DISTINCT i.image_id, i.path, i.sha256, i.width, i.height FROM images i "
            f"JOIN triplets t ON t.image_id = i.image_id WHERE {REFERRED} AND NOT EXISTS (SELECT 1 FROM proposals p "
            "WHERE p.triplet_id = t.triplet_id AND p.segmenter=? AND p.model_sha256=?) "
            "AND NOT EXISTS (SELECT 1 FROM rejects r WHERE r.stage=? AND r.ref = t.triplet_id) "
            "ORDER BY i.image_id", (seg.name, seg.model_sha256, STAGE)).fetchall() if part.owns(r[0])]
        jobs = (_job(catalog, seg, image_id, path, sha) for image_id, path, sha, _, _ in todo)
        workers = rcfg.workers if rcfg.workers is not None else default_workers()
        report.workers = workers if workers > 1 else 0
        report.encoder_batch = rcfg.encoder_batch if not getattr(seg, "host_only", False) else None
        report.precision = str(getattr(seg, "precision", "") or "") or None
        columns = (TextColumn(f"[bold]{STAGE}[/] {seg.name}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("images"), TimeRemainingColumn())
        host_seg = seg if getattr(seg, "host_only", False) else None
        transform = getattr(seg, "host_transform", None) if host_seg is None else None
        pool = make_pool(workers, initializer=_init_worker,
                         initargs=(host_seg, rcfg, run_id, transform)) if workers > 1 else None
        failed = True
        try:
            with _Writer(catalog_path, rcfg.batch_images, run_id, report) as writer, \
                    Progress(*columns, disable=not progress) as bar:
                task = bar.add_task("", total=len(todo))
                for result in _results(seg, rcfg, run_id, jobs, pool, workers, transform):
                    writer.put(result)
                    bar.advance(task)
            failed = False
        finally:
            if pool is not None:
                pool.terminate()
            flush = getattr(seg, "flush", None)     # cache entries written in the background
            if flush is not None:
                try:
                    flush()
                except Exception:
                    if not failed:   # else the stage's own error is the one to report (this is its context)
                        raise
        if round_no is not None:
            with catalog.transaction():
                catalog.conn.execute("UPDATE proposals SET round=? WHERE run_id=? AND segmenter=? AND model_sha256=?",
                                     (round_no, run_id, seg.name, seg.model_sha256))
        report.round_routes = _round_routes(catalog, seg.name, seg.model_sha256, report.round)
        report.seconds = time.perf_counter() - started
        suffix = "" if part.count == 1 else f"-shard{part.index}of{part.count}"
        ws.reports.mkdir(parents=True, exist_ok=True)
        (ws.reports / f"{'refine' if run_stage == STAGE else run_stage + '-fresh'}{suffix}.json").write_text(
            json.dumps({**report.as_dict(), "image_ids": report.image_ids}, indent=2) + "\n")
        catalog.finish_run(run_id, report.as_dict())
    return report


# ----------------------------------------------------------------------------- the pipeline
@dataclass
class ImageJob:
    """What one image needs, read from the catalog by the main process (workers never open it)."""

    image_id: str
    path: str
    sha: str | None
    triplets: list[tuple[str, str, str | None]]      # (triplet_id, box_xyxy JSON, polygon JSON)


@dataclass
class _Prepared:
    job: ImageJob
    image: np.ndarray | None
    key: str
    prompts: list[_Prompt]
    rejects: list[tuple[str, str, str]]
    views: list[ViewJob] | None = None     # made ahead for a model backend (in the workers)


@dataclass
class ImageResult:
    """One image's proposal rows and rejects, committed together."""

    image_id: str
    rows: list[tuple]
    rejects: list[tuple[str, str, str]]
    routes: Counter = field(default_factory=Counter)
    crops: int = 0
    segmented: bool = False


def _job(catalog: Catalog, seg: Segmenter, image_id: str, path: str, sha: str | None) -> ImageJob:
    rows = catalog.conn.execute(
        f"SELECT triplet_id, box_xyxy, polygon FROM triplets t WHERE image_id=? AND {REFERRED} AND NOT EXISTS "
        "(SELECT 1 FROM proposals p WHERE p.triplet_id = t.triplet_id AND p.segmenter=? AND p.model_sha256=?) "
        "ORDER BY triplet_id", (image_id, seg.name, seg.model_sha256)).fetchall()
    return ImageJob(image_id, path, sha, rows)


def prepare(job: ImageJob, cfg: RefineConfig, views: bool = False, transform: Any = None) -> _Prepared:
    """Decode the image and make its prompts (clipped box, seeded jitter, polygon); an image that
    cannot be read, or a box under a pixel, becomes rejects with reasons.

    With ``views``, also the encoder views (whole image, tiny-box crops), each with its
    ``transform.apply_image`` input when a ``transform`` (a model's ``host_transform``) is given:
    the CPU-bound pixel work a model backend would otherwise do on the device's thread."""
    try:
        image = load_rgb(job.path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a reject, not a crash
        detail = f"{job.path}: {type(exc).__name__}: {exc}"[:300]
        return _Prepared(job, None, "", [], [(tid, UNREADABLE_IMAGE, detail) for tid, _, _ in job.triplets])
    h, w = image.shape[:2]
    prompts: list[_Prompt] = []
    rejects: list[tuple[str, str, str]] = []
    for tid, box_json, poly_json in job.triplets:
        box = np.array(masks.clip_box(json.loads(box_json), w, h), float)
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            rejects.append((tid, DEGENERATE_BOX, f"box {json.loads(box_json)} is under 1 px wide or high in {w}x{h}"))
            continue
        rng = np.random.default_rng(int(hashlib.sha256(f"{cfg.seed}:{tid}".encode()).hexdigest()[:12], 16))
        polygon = np.array(json.loads(poly_json), float) if poly_json else None
        prompts.append(_Prompt(tid, box, polygon, jitter_boxes(box, cfg.jitter_k, cfg.jitter_scale, rng, w, h)))
    key = (job.sha or hashlib.sha256(Path(job.path).read_bytes()).hexdigest()) if prompts else ""
    prep = _Prepared(job, image, key, prompts, rejects)
    if views:
        prep.views = image_views(image, key, prompts, cfg) if prompts else []
        for view_job in prep.views if transform is not None else []:
            view_job.resized = transform.apply_image(view_job.view.image)
    return prep


def finish(prep: _Prepared, outputs: list[MaskOutput] | list[MeasuredMask], crops: int, seg_name: str,
           model_sha: str, cfg: RefineConfig, run_id: str) -> ImageResult:
    """Signals, route and COCO RLE of each mask (measured here unless the backend measured it):
    the rows the writer commits."""
    result = ImageResult(prep.job.image_id, [], prep.rejects, crops=crops, segmented=bool(prep.prompts))
    for p, out in zip(prep.prompts, outputs):
        m = out if isinstance(out, MeasuredMask) else measure(out)
        signals = signals_from(m, p.box, p.polygon)
        decision = route(signals, cfg.route)
        rle = masks.encode_window(m.crop, m.x0, m.y0, m.height, m.width)
        result.rows.append((p.triplet_id, seg_name, model_sha, masks.dumps(rle),
                            json.dumps(signals, sort_keys=True), decision, run_id))
        result.routes[decision] += 1
    return result


def refine_on_host(seg: Segmenter, prep: _Prepared, cfg: RefineConfig, run_id: str) -> ImageResult:
    """The whole of one image with a CPU backend: segment, then finish."""
    if not prep.prompts:
        return finish(prep, [], 0, seg.name, seg.model_sha256, cfg, run_id)
    outputs, crops = segment_image(seg, prep.image, prep.key, prep.prompts, cfg)  # type: ignore[arg-type]
    return finish(prep, outputs, crops, seg.name, seg.model_sha256, cfg, run_id)


_WORKER: dict[str, Any] = {}


def _init_worker(seg: Segmenter | None, cfg: RefineConfig, run_id: str, transform: Any = None) -> None:
    _WORKER.update(seg=seg, cfg=cfg, run_id=run_id, transform=transform)


def _worker_prepare(job: ImageJob) -> _Prepared:
    return prepare(job, _WORKER["cfg"], views=True, transform=_WORKER["transform"])


def _worker_refine(job: ImageJob) -> ImageResult:
    return refine_on_host(_WORKER["seg"], prepare(job, _WORKER["cfg"]), _WORKER["cfg"], _WORKER["run_id"])


def _results(seg: Segmenter, cfg: RefineConfig, run_id: str, jobs: Iterator[ImageJob], pool: Any,
             workers: int, transform: Any = None) -> Iterator[ImageResult | Callable[[], ImageResult]]:
    """Every image's result (or what makes it), in job order whatever the pool. A CPU backend
    (``host_only``) runs whole in the workers; a model backend runs here (:class:`ViewStream`),
    its images decoded, prompted, cropped and resized in the workers ahead of it, its masks
    measured on its device, and the small measurements turned into signals, routes and RLE by
    the writer's thread. ``transform``: the model's ``host_transform`` (the pool's workers got it
    at start-up; without a pool it is applied here)."""
    ahead = 2 * workers + 2                     # images decoded ahead of the model: memory stays flat
    if getattr(seg, "host_only", False):
        if pool is None:
            yield from (refine_on_host(seg, prepare(job, cfg), cfg, run_id) for job in jobs)
        else:
            yield from ordered_map(_worker_refine, jobs, pool, ahead)
        return
    prepared = (ordered_map(_worker_prepare, jobs, pool, ahead) if pool is not None
                else (prepare(job, cfg, views=True, transform=transform) for job in jobs))
    for prep, outputs, crops in ViewStream(seg, cfg.encoder_batch).run(prepared):
        # finished on the writer's thread: this one goes straight back to feeding the model
        yield partial(finish, prep, outputs, crops, seg.name, seg.model_sha256, cfg, run_id)


class ViewStream:
    """The views of a stream of images sent to a model in whole encoder batches.

    Images bring different numbers of views (one whole image, plus a context crop per tiny box),
    so grouping by image would pad a short encoder batch in every group. Here views queue up
    across images and go out as soon as ``encoder_batch`` of them wait (a batching backend,
    ``segment_views``, measures the masks where it made them); only the stream's last batch is
    padded. An image comes out, in input order, once all its views are back.
    """

    def __init__(self, seg: Segmenter, encoder_batch: int):
        self.seg = seg
        self.batched = getattr(seg, "segment_views", None)
        self.unit = encoder_batch if self.batched is not None else 1
        self.waiting: deque[tuple[_Prepared, list[Any]]] = deque()   # images not yet handed on
        self.queued: list[tuple[list[Any], int, ViewJob]] = []      # views not yet sent: (slots, index, view)

    def run(self, prepared: Iterable[_Prepared]) -> Iterator[tuple[_Prepared, list[Any], int]]:
        for prep in prepared:
            views = prep.views or []
            slots: list[Any] = [None] * len(views)
            self.waiting.append((prep, slots))
            self.queued.extend((slots, i, view) for i, view in enumerate(views))
            if len(self.queued) >= self.unit:
                self._send(len(self.queued) // self.unit * self.unit)
            yield from self._done()
        self._send(len(self.queued))
        yield from self._done()

    def _send(self, n: int) -> None:
        if n == 0:
            return
        batch, self.queued = self.queued[:n], self.queued[n:]
        if self.batched is not None:
            results = self.batched([(j.view, j.boxes, j.jitter, j.resized) for _, _, j in batch], measure=True)
        else:
            results = [self.seg.segment(j.view, j.boxes, j.jitter) for _, _, j in batch]
        for (slots, i, _), result in zip(batch, results):
            slots[i] = result

    def _done(self) -> Iterator[tuple[_Prepared, list[Any], int]]:
        while self.waiting and all(r is not None for r in self.waiting[0][1]):
            prep, results = self.waiting.popleft()
            views = prep.views or []
            outputs = place_outputs(views, results, len(prep.prompts), *prep.image.shape[:2]) if views else []
            crops = sum(j.window is not None for j in views)
            prep.image = prep.views = None      # the pixels are done with; only the measurements go on
            yield prep, outputs, crops


class _Writer:
    """Commits results in the order given, ``batch`` images per transaction, on its own thread and
    catalog connection so the segmenter never waits for SQLite (nor, for a model backend, for
    the signals and RLE, which it makes here). A killed run leaves whole batches."""

    def __init__(self, catalog_path: Path, batch: int, run_id: str, report: RefineReport):
        self.catalog_path, self.batch, self.run_id, self.report = catalog_path, batch, run_id, report
        self.queue: queue.Queue = queue.Queue(maxsize=4 * batch)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="refine-writer", daemon=True)

    def __enter__(self) -> "_Writer":
        self.thread.start()
        return self

    def put(self, result: ImageResult | Callable[[], ImageResult]) -> None:
        """Queue a result, or a callable that makes it on the writer's thread."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(result, timeout=0.5)
                return
            except queue.Full:
                continue

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.queue.put(None)                # flush what is pending (also after an error upstream)
        self.thread.join()
        if self.error is not None and exc_type is None:
            raise self.error

    def _run(self) -> None:
        try:
            with Catalog(self.catalog_path, create=False) as catalog:
                pending: list[ImageResult] = []
                while True:
                    item = self.queue.get()
                    if item is not None:
                        pending.append(item if isinstance(item, ImageResult) else item())
                    if pending and (item is None or len(pending) >= self.batch):
                        self._commit(catalog, pending)
                        pending = []
                    if item is None:
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
            while True:                  # unblock the producer until it sees the error
                if self.queue.get() is None:
                    return

    def _commit(self, catalog: Catalog, results: list[ImageResult]) -> None:
        with catalog.transaction():
            catalog.add("proposals", [row for r in results for row in r.rows])
            catalog.add_rejects(STAGE, [rej for r in results for rej in r.rejects], self.run_id)
        report = self.report
        for r in results:
            report.image_ids.append(r.image_id)
            report.images += r.segmented
            report.proposals += len(r.rows)
            report.crops += r.crops
            report.routes.update(r.routes)
            report.rejected.update(reason for _, reason, _ in r.rejects)
