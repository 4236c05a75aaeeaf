"""The whole sam-refine stage, files on disk to committed rows, at several worker counts.

A synthetic workspace on disk (the demo's generator: PNG patches, 5+ boxes per image, tiny
boxes and OBB polygons) is ingested once; each arm copies that catalog and runs the real
`run_refine` on it, so every arm pays for image decoding, prompts, crops, signals, RLE,
routing and the catalog writes. Side by side in one run:

  grabcut   the embedded default backend with `refine.workers` 0 (all in this process, the
            old path) and 2..N; the masks and routes must be identical (catalog fingerprints).
  proxy     (--cpu-proxy) a stand-in for a GPU SAM: a model backend that returns precomputed
            box masks (4 jittered copies, 3 alternatives), measured as SAM measures them on
            the device, after sleeping for the measured device time per view of each padded
            encoder batch (default 17.6 ms: vit_b at encoder batch 8 on an H200). The stand-in
            alone does 1000/17.6 = 56.8 views/s; the stage rate over that rate says whether the
            host side (decode, prompts, crops, signals, RLE, writes) keeps up.
            Target: ratio >= 0.8 on 2 cores.

    python benchmarks/bench_refine_pipeline.py [--scenes 24] [--workers 0 2] [--cpu-proxy] [--proxy-ms 17.6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from risbench_builder.catalog import Catalog
from risbench_builder.segment.base import MeasuredMask, View
from risbench_builder.segment.box import BoxSegmenter
from risbench_builder.segment.signals import measure
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine
from risbench_builder.workspace import Workspace, init_workspace


class ProxySam:
    """A model backend (not ``host_only``: it runs in the main process, like SAM) standing in for
    SAM on a GPU. Its answers are made ahead (``record`` pass: box masks, 3 alternatives, the
    jittered boxes' masks, measured as the device would measure them); a timed pass sleeps for
    the device time of each fixed encoder batch (padded like SamSegmenter's) and hands them back."""

    name = "proxy-sam"
    model_sha256 = "0" * 64
    precision = "proxy"

    def __init__(self, seconds_per_view: float, encoder_batch: int = 8):
        self.seconds_per_view, self.encoder_batch = seconds_per_view, encoder_batch
        self.box = BoxSegmenter()
        self.answers: dict[tuple[str, bytes], list[MeasuredMask]] = {}
        self.recording = True
        self.views = 0

    def _answer(self, view: View, boxes: np.ndarray, jitter: np.ndarray) -> list[MeasuredMask]:
        key = (view.key, np.asarray(boxes, np.float64).tobytes())
        if self.recording:
            outs = self.box.segment(view, boxes, jitter)
            for out in outs:
                out.iou_pred, out.stability = 0.9, 0.95
                out.multimask = np.stack([out.mask] * 3)
            self.answers[key] = [measure(out) for out in outs]
        return self.answers[key]

    def segment_views(self, items, measure: bool = True) -> list[list[MeasuredMask]]:
        batches = -(-len(items) // self.encoder_batch)
        if not self.recording:
            time.sleep(batches * self.encoder_batch * self.seconds_per_view)
        self.views += len(items)
        return [self._answer(*item[:3]) for item in items]


def workspace(root: Path, scenes: int) -> Workspace:
    spec = root / "pipeline.yaml"
    spec.write_text(yaml.safe_dump({
        "synthetic": {"out": "sources", "seed": 3, "scenes": scenes, "patches_per_scene": 2},
        "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
        "refine": {"segmenter": "grabcut", "jitter_k": 4, "batch_images": 8}}))
    ws = init_workspace(root / "base", spec)
    run_ingest(ws, ws.load(), progress=False)
    add_boxes(ws, per_image=6)
    return ws


def add_boxes(ws: Workspace, per_image: int, seed: int = 0) -> None:
    """Top every image up to ``per_image`` boxes: shifted copies of its own boxes and polygons,
    every third one tiny (under refine.tiny_box, so it gets a context crop)."""
    rng = np.random.default_rng(seed)
    with Catalog(ws.catalog_path) as cat:
        rows = cat.conn.execute("SELECT t.image_id, t.box_xyxy, t.polygon, i.width, i.height FROM triplets t "
                                "JOIN images i USING (image_id) ORDER BY t.triplet_id").fetchall()
        by_image: dict[str, list] = {}
        for image_id, box, polygon, w, h in rows:
            by_image.setdefault(image_id, []).append((json.loads(box), json.loads(polygon) if polygon else None, w, h))
        new = []
        for image_id, items in sorted(by_image.items()):
            for k in range(max(0, per_image - len(items))):
                box, polygon, w, h = items[k % len(items)]
                dx, dy = rng.uniform(-40, 40, 2)
                if k % 3 == 2:                       # tiny
                    cx, cy = (box[0] + box[2]) / 2 + dx, (box[1] + box[3]) / 2 + dy
                    box, polygon = [cx - 6, cy - 5, cx + 6, cy + 5], None
                else:
                    box = [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy]
                    polygon = [[x + dx, y + dy] for x, y in polygon] if polygon else None
                box = [min(max(v, 0), lim) for v, lim in zip(box, (w, h, w, h))]
                tid = f"bench-{image_id}-{k}"
                new.append((tid, image_id, "bench", tid, "ship", "a ship", json.dumps(box),
                            json.dumps(polygon) if polygon else None, "{}", None))
        with cat.transaction():
            cat.add("triplets", new)


def arm(base: Workspace, name: str, workers: int, segmenter=None) -> tuple[float, int, str]:
    """Seconds, images and the proposals fingerprint of one run on a fresh copy of the catalog."""
    dest = base.path.parent / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    shutil.copy(base.pipeline_path, dest / "pipeline.yaml")
    with Catalog(base.catalog_path) as cat:
        cat.copy_to(dest / "catalog.sqlite")
    ws = Workspace(dest)
    spec = yaml.safe_load(ws.pipeline_path.read_text())
    spec["synthetic"]["out"] = str(base.path / "sources")
    spec["sources"][0]["root"] = str(base.path / "sources" / "vrsbench")
    spec["refine"]["workers"] = workers
    ws.pipeline_path.write_text(yaml.safe_dump(spec))
    cfg = ws.load()
    started = time.perf_counter()
    report = run_refine(ws, cfg, progress=False, segmenter=segmenter)
    seconds = time.perf_counter() - started
    with Catalog(ws.catalog_path) as cat:
        return seconds, report.images, cat.fingerprint(["proposals", "rejects"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=24, help="synthetic scenes (2 patches each)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--cpu-proxy", action="store_true", help="also run the GPU stand-in arms")
    ap.add_argument("--proxy-ms", type=float, default=17.6, help="device time per view (ms)")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    root = Path(tempfile.mkdtemp(prefix="bench_refine_pipeline_"))
    try:
        base = workspace(root, args.scenes)
        with Catalog(base.catalog_path) as cat:
            print(f"workspace: {cat.count('images')} images, {cat.count('triplets')} triplets")
        times, prints = {}, set()
        for w in args.workers:
            seconds, images, fp = arm(base, f"grabcut-w{w}", w)
            times[w] = seconds
            prints.add(fp)
            print(f"grabcut workers={w}: {seconds:.2f} s, {images / seconds:.2f} img/s")
        first = args.workers[0]
        for w in args.workers[1:]:
            print(f"grabcut speed-up workers={w} / workers={first}: {times[first] / times[w]:.2f}x")
        print(f"grabcut identical catalogs across worker counts: {len(prints) == 1}")
        if args.cpu_proxy:
            proxy = ProxySam(args.proxy_ms / 1000)
            arm(base, "proxy-record", 0, proxy)           # the answers, made ahead (not timed)
            proxy.recording = False
            for w in args.workers:
                proxy.views = 0
                seconds, images, _ = arm(base, f"proxy-w{w}", w, proxy)
                stand_in = 1000 / args.proxy_ms
                stage = proxy.views / seconds
                print(f"proxy workers={w}: {seconds:.2f} s, {images / seconds:.2f} img/s, {stage:.1f} views/s "
                      f"(stand-in alone {stand_in:.1f} views/s) ratio={stage / stand_in:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
