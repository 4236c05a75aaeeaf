"""Finalize -> stats -> export -> check on a RISBench-scale catalog, against the PNG I/O floor.

Builds (untimed) a catalog with RISBench's counts written directly as rows: 29,614 images of
512x512 (512 distinct aerial-like placeholder PNGs of realistic size, ~450 kB like a VRSBench
patch, hard-linked in turn under every name, so neighbouring images differ as real ones do and
the hf export's per-row-group image dictionary cannot fold them), 52,472 triplets (36,313 from VRSBench train, 16,159 from
its eval set, 1-5 per image, ~8 images per source scene) with templated expressions whose
position words match the mask, and an accepted `box` proposal per triplet whose mask is a
simple shape (an ellipse inside the box). Then, in this one process and in this order:

  floor     decode every mask's RLE and PNG-encode it once to a file (masks.write_png_mask),
            single process: the I/O floor every exporter of PNG masks pays. Measured before
            and after the pipeline (the shared VM's load drifts); the mean is the denominator.
  pipeline  run_finalize (filters, geometry check, risbench split protocol), run_stats (if the
            stage exists), run_export (hf, refer, native; a pool of 2 mask encoders), and
            `risbench check` of the three exports (a pool of 2 checkers).

Prints the wall time and CPU seconds of each step, pipeline / floor, and the peak RSS: of this
process (getrusage) and of the whole process tree, pool workers included (sampled with psutil
every 0.2 s). The finalize stage is the lead's `run_finalize`; the script stops if it is absent. Targets: pipeline / floor <= 3, peak RSS <= 2 GB. Needs ~30 GB of free disk for the
exports at the default size (the hf parquet embeds every image once per triplet).

    python benchmarks/bench_finalize.py [--root DIR] [--triplets 52472] [--images 29614] [--placeholders 512] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from risbench_builder import masks
from risbench_builder.catalog import Catalog, stable_id
from risbench_builder.sources.base import RISBENCH_CLASSES
from risbench_builder.workspace import Workspace

TARGET_RATIO, TARGET_RSS_MB = 3.0, 2048.0
SIZE = 512
TRAIN, EVAL = 36_313, 16_159
ADJECTIVES = ("large", "small", "white", "grey", "dark", "bright", "long", "square", "round", "red")
POSITION = [["top-left", "top", "top-right"], ["left", "center", "right"], ["bottom-left", "bottom", "bottom-right"]]
PHRASE = {"top-left": "in the top left corner", "top": "at the top", "top-right": "in the top right corner",
          "left": "on the left side", "center": "in the center", "right": "on the right side",
          "bottom-left": "in the bottom left corner", "bottom": "at the bottom",
          "bottom-right": "in the bottom right corner"}


# ----------------------------------------------------------------------------- the catalog
def placeholder_pngs(folder: Path, n: int) -> list[Path]:
    """``n`` distinct aerial-like 512x512 PNGs (one rendered scene, rolled and tinted per variant).

    Real patches all differ; if the placeholders were one file, the hf export's per-row-group
    image dictionary would store it once and the benchmark would skip most of hf's real I/O.
    """
    from risbench_builder.synthetic import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    base = render_scene(np.random.default_rng(0)).image
    rng = np.random.default_rng(1)
    paths = []
    for k in range(n):
        img = np.roll(base, (int(rng.integers(SIZE)), int(rng.integers(SIZE))), axis=(0, 1))
        img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, 3, dtype=np.int16), 0, 255).astype(np.uint8)
        path = folder / f"placeholder_{k:04d}.png"
        Image.fromarray(img).save(path, format="PNG")
        paths.append(path)
    return paths


def ellipse_rle(boxes: np.ndarray) -> list[str]:
    """COCO RLE counts of an ellipse inscribed in each box (polygons rasterised by pycocotools)."""
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rx, ry = (boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2
    xs = cx[:, None] + rx[:, None] * np.cos(t)[None]
    ys = cy[:, None] + ry[:, None] * np.sin(t)[None]
    polys = np.stack([xs, ys], axis=2).reshape(len(boxes), -1)
    rles = coco_mask.frPyObjects([p.tolist() for p in polys], SIZE, SIZE)
    return [r["counts"].decode("ascii") for r in rles]


def build_catalog(root: Path, n_images: int, n_triplets: int, n_placeholders: int = 512,
                  seed: int = 0) -> tuple[Workspace, dict]:
    rng = np.random.default_rng(seed)
    ws = Workspace(root / "ws")
    for d in (ws.path, ws.reports, ws.exports, root / "images"):
        d.mkdir(parents=True, exist_ok=True)
    ws.pipeline_path.write_text(json.dumps({
        "sources": [{"kind": "vrsbench", "root": str(root / "images")}],
        "refine": {"segmenter": "box"},
        "finalize": {"split": {"protocol": "risbench"}},
        "export": {"targets": ["hf", "refer", "native"]}}))
    masters = placeholder_pngs(root / "placeholders", n_placeholders)
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in masters]
    image_bytes = int(np.mean([p.stat().st_size for p in masters]))
    # scenes of ~8 patches; the eval scenes hold the 16,159 eval triplets
    n_scenes = max(1, n_images // 8)
    scene_of_image = np.sort(rng.integers(0, n_scenes, n_images))
    eval_share = EVAL / (TRAIN + EVAL)
    scene_eval = rng.random(n_scenes) < eval_share
    image_eval = scene_eval[scene_of_image]
    n_eval = round(n_triplets * eval_share)
    per_image = np.ones(n_images, np.int64)
    for mask_, total in ((image_eval, n_eval), (~image_eval, n_triplets - n_eval)):
        idx = np.flatnonzero(mask_)
        extra = total - len(idx)
        if extra < 0 or extra > 4 * len(idx):
            raise SystemExit("cannot place the triplets 1-5 per image; change --images")
        per_image[idx] += np.bincount(rng.permutation(np.repeat(np.arange(len(idx)), 4))[:extra], minlength=len(idx))
    images, triplets, proposals = [], [], []
    boxes_all: list[np.ndarray] = []
    k = 0
    for i in range(n_images):
        scene = int(scene_of_image[i])
        dota = scene % 10 < 7
        name = f"P{scene:04d}_{i % 10000:04d}.png" if dota else f"{scene:05d}_{i % 10000:04d}.png"
        path = root / "images" / name
        master = masters[i % n_placeholders]      # consecutive images differ, like real patches
        if not path.exists():
            try:
                os.link(master, path)
            except OSError:
                shutil.copyfile(master, path)
        split = "val" if image_eval[i] else "train"
        image_id = f"vrsbench:{name[:-4]}"
        scene_id = f"P{scene:04d}" if dota else f"{scene:05d}"
        images.append((image_id, str(path), "vrsbench", scene_id, SIZE, SIZE, None, shas[i % n_placeholders]))
        n = int(per_image[i])
        sides = np.clip(np.exp(rng.normal(3.8, 0.8, (n, 2))), 12, 300)
        x1 = rng.uniform(0, SIZE - sides[:, 0])
        y1 = rng.uniform(0, SIZE - sides[:, 1])
        boxes = np.round(np.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], axis=1))
        cats = rng.choice(len(RISBENCH_CLASSES), n)
        for j in range(n):
            box = boxes[j]
            cat = RISBENCH_CLASSES[cats[j]]
            unique = int((cats == cats[j]).sum()) == 1
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            pos = POSITION[min(2, int(cy * 3 // SIZE))][min(2, int(cx * 3 // SIZE))]
            adj = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
            expression = f"The {adj} {cat.replace('-', ' ')} {PHRASE[pos]} of the image."
            tid = stable_id("bench", k)
            attrs = {"is_unique": unique, "obj_position": pos, "obj_rel_position": "", "obj_size": "",
                     "obj_rel_size": "", "flag": False, "obj_id": j}
            triplets.append((tid, image_id, "vrsbench", f"vrsbench:Annotations_{split}/{name[:-4]}.json#obj{j}",
                             cat, expression, json.dumps([float(v) for v in box]), None,
                             json.dumps(attrs, sort_keys=True), split))
            boxes_all.append(box)
            k += 1
    counts = ellipse_rle(np.asarray(boxes_all))
    for (tid, *_), c in zip(triplets, counts):
        proposals.append((tid, "box", "", json.dumps({"size": [SIZE, SIZE], "counts": c}, separators=(",", ":")),
                          "{}", "accept", "bench"))
    with Catalog(ws.catalog_path) as cat:
        with cat.transaction():
            cat.insert("images", ("image_id", "path", "source", "scene_id", "width", "height", "gsd", "sha256"), images)
            cat.insert("triplets", ("triplet_id", "image_id", "source", "source_ref", "category", "expression",
                                    "box_xyxy", "polygon", "attributes_json", "origin_split"), triplets)
            cat.insert("proposals", ("triplet_id", "segmenter", "model_sha256", "rle", "scores_json", "route",
                                     "run_id"), proposals)
        run = cat.start_run("sam-refine")
        cat.finish_run(run, {"segmenter": "box", "model_sha256": ""})
    return ws, {"images": n_images, "triplets": len(triplets), "scenes": n_scenes, "image_bytes": image_bytes}


# ----------------------------------------------------------------------------- measuring
class TreeRSS:
    """Peak summed RSS of this process and all its descendants, and their CPU seconds, sampled in
    a thread (pool workers of a forkserver are grandchildren: getrusage does not see them)."""

    def __init__(self, every: float = 0.2):
        import psutil

        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self._cpu: dict[int, float] = {}
        self._cpu0 = sum(self.proc.cpu_times()[:2])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu(self) -> float:
        return sum(self._cpu.values()) - self._cpu0

    def sample(self) -> float:
        """CPU seconds so far (pool workers that ended count with their last sample)."""
        import psutil

        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                self._cpu[p.pid] = sum(p.cpu_times()[:2])
            except psutil.Error:
                pass
        return self.cpu

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                    self._cpu[p.pid] = sum(p.cpu_times()[:2])
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self) -> "TreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def floor_seconds(ws: Workspace, out: Path) -> tuple[float, float, int]:
    """Decode + PNG-encode every mask once, single process (the I/O floor): (wall, CPU, masks)."""
    out.mkdir(parents=True, exist_ok=True)
    with Catalog(ws.catalog_path) as cat:
        rows = cat.conn.execute("SELECT triplet_id, rle FROM proposals ORDER BY triplet_id").fetchall()
    t0, c0 = time.perf_counter(), time.process_time()
    for tid, rle in rows:
        masks.write_png_mask(out / f"{tid}.png", masks.decode(json.loads(rle)))
    return time.perf_counter() - t0, time.process_time() - c0, len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="working folder (default: a temp dir, removed at the end)")
    ap.add_argument("--triplets", type=int, default=TRAIN + EVAL)
    ap.add_argument("--images", type=int, default=29_614)
    ap.add_argument("--placeholders", type=int, default=512, help="distinct placeholder images, hard-linked")
    ap.add_argument("--keep", action="store_true", help="keep the workspace and exports")
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="bench_finalize_"))
    try:
        t0 = time.perf_counter()
        ws, info = build_catalog(root, args.images, args.triplets, args.placeholders)
        print(f"catalog: {info['triplets']:,} triplets on {info['images']:,} images, {info['scenes']:,} scenes; "
              f"{args.placeholders} distinct placeholder images of {info['image_bytes'] / 1e3:.0f} kB hard-linked "
              f"({time.perf_counter() - t0:.0f} s to build)", flush=True)
        floor_before, floor_cpu_before, n_masks = floor_seconds(ws, root / "floor")
        shutil.rmtree(root / "floor")
        print(f"floor (before): decode + PNG-encode {n_masks:,} masks once, single process: {floor_before:.1f} s "
              f"({floor_before / n_masks * 1e3:.2f} ms per mask)", flush=True)

        from risbench_builder.export.check import check_path
        from risbench_builder.stages.export import run_export

        cfg = ws.load()
        steps: dict[str, float] = {}
        cpu_at: dict[str, float] = {}
        with TreeRSS() as tree:
            start = time.perf_counter()
            try:
                from risbench_builder.stages.finalize import run_finalize
            except ImportError:
                run_finalize = None
            if run_finalize is None:
                raise SystemExit("no finalize stage in this version: write final rows directly instead")
            fin = run_finalize(ws, cfg, progress=False)
            steps["finalize (filter + geometry + split)"] = time.perf_counter() - start
            cpu_at["finalize (filter + geometry + split)"] = tree.sample()
            t = time.perf_counter()
            try:
                from risbench_builder.stages.stats import run_stats
            except ImportError:
                run_stats = None
            if run_stats is not None:
                run_stats(ws, cfg, force=True)
                steps["stats (tables + figures)"] = time.perf_counter() - t
                cpu_at["stats (tables + figures)"] = tree.sample()
            t = time.perf_counter()
            exp = run_export(ws, cfg, progress=False, force=True)
            steps["export (hf, refer, native)"] = time.perf_counter() - t
            cpu_at["export (hf, refer, native)"] = tree.sample()
            t = time.perf_counter()
            reports = check_path(ws.exports)
            steps["check (hf, refer, native)"] = time.perf_counter() - t
            cpu_at["check (hf, refer, native)"] = tree.sample()
            total = time.perf_counter() - start
        self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        floor_after, floor_cpu_after, _ = floor_seconds(ws, root / "floor")   # again after: the load drifts
        shutil.rmtree(root / "floor")
        floor = (floor_before + floor_after) / 2
        floor_cpu = (floor_cpu_before + floor_cpu_after) / 2
        print(f"floor (after) : {floor_after:.1f} s; floor used = mean {floor:.1f} s "
              f"({floor / n_masks * 1e3:.2f} ms per mask)")
        tree_mb = tree.peak / 2**20
        kept = sum(fin.kept.values())
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"finalize kept {kept:,} ({dict(fin.kept)}), rejected {sum(fin.rejected.values()):,} "
              f"{dict(fin.rejected)}, pending {sum(fin.pending.values()):,}")
        previous = 0.0
        for name, sec in steps.items():
            print(f"  {name:<38}: {sec:7.1f} s wall, {cpu_at[name] - previous:6.1f} s CPU (all processes)")
            previous = cpu_at[name]
        for t, d in exp.targets.items():
            print(f"  export {t:<6}: {d['counts']['triplets']:,} triplets, {d['files']:,} files, "
                  f"{d['bytes'] / 1e9:.2f} GB")
        for r in reports:
            print(f"  check {r.format:<6}: {'OK' if r.ok else 'FAILED ' + json.dumps(dict(r.kinds()))}")
        ratio = total / floor
        print(f"pipeline wall time       : {total:.1f} s for {kept:,} kept triplets")
        print(f"pipeline / floor         : {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x)")
        print(f"CPU seconds              : pipeline {tree.cpu:.0f} s in all processes, floor {floor_cpu:.0f} s -> "
              f"{tree.cpu / floor_cpu:.2f}x; pipeline wall / (CPU / 2 cores) = {total / (tree.cpu / 2):.2f} "
              "(above 1: waiting on disk or on other load)")
        with open("/proc/loadavg") as f:
            print(f"load average at the end  : {f.read().split()[:3]} (2 cores)")
        print(f"peak RSS, this process   : {self_mb:.0f} MB")
        print(f"peak RSS, process tree   : {tree_mb:.0f} MB incl. pool workers (target <= {TARGET_RSS_MB:.0f} MB)")
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
