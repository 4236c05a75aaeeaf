"""Ingest and audit of an RRSIS-D-sized imported dataset, side by side in one process.

Writes (or reuses) a synthetic REFER tree in RRSIS-D's layout and size (17,402 refs, one ref and
one sentence per image, ref_id == ann_id == image_id == sent_id, splits 12,181 / 1,740 / 3,481)::

    <root>/tree/rrsisd/refs(unc).p                 pickle protocol 4
    <root>/tree/rrsisd/instances.json              images / annotations / categories (DIOR, ids from 0)
    <root>/tree/images/rrsisd/JPEGImages/NNNNN.jpg 800x800 JPEG (a few 800x801)

then runs ``risbench build --stage ingest`` (``stages.run_plan``) and ``run_audit(fresh=False)``
on it and prints the tree generation time, each phase's time, triplets/s and peak RSS, the
audit's counts per defect kind and, for every planted defect kind, how many planted triplets
the audit found.

Deviations from the real data, to keep generation fast: the pixels come from a handful of
placeholder JPEGs (they do not show the objects; nothing here looks at pixels), but every file
gets a JPEG comment segment with its image id, so every image has distinct bytes (audit groups
triplets by sha256: shared bytes would be "the same image in two splits"). Masks are one
random ellipse or star-shaped polygon per image, rasterised with cv2 and encoded with
pycocotools; the box is its tight box grown by a few pixels. Planted (each ~0.4 % of images):
800x801 images with 800x800 masks and entries, empty masks, missing and undecodable
segmentations, boxes that cut the mask, boxes elsewhere, masks in three pieces, a position word
that contradicts the mask, and images whose bytes repeat in another split.

Peak RSS is per phase: freed memory is handed back (``gc.collect``, glibc ``malloc_trim``), then
the kernel's high-water mark (``VmHWM``, what ``getrusage`` returns as ``ru_maxrss``) is reset
through ``/proc/self/clear_refs`` before each phase and read after it; the RSS a phase starts
from (what earlier phases left) is printed beside it.

    python benchmarks/bench_audit.py [--root DIR] [--triplets 17402] [--seed 0] [--keep] [--profile N]
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import json
import os
import pickle
import platform
import pstats
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil

from risbench_builder import masks
from risbench_builder.stages import run_plan
from risbench_builder.stages.audit import run_audit
from risbench_builder.workspace import Workspace

NAME = "rrsisd"
SIZE = 800
RRSISD = {"train": 12_181, "val": 1_740, "test": 3_481}             # 17,402 refs
# DIOR class names as RRSIS-D spells them, ids from 0, and how a sentence names each
DIOR = ("Expressway-Service-area", "Expressway-toll-station", "airplane", "airport", "baseballfield",
        "basketballcourt", "bridge", "chimney", "dam", "golffield", "groundtrackfield", "harbor", "overpass",
        "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill")
SPOKEN = {"Expressway-Service-area": "expressway service area", "Expressway-toll-station": "expressway toll station",
          "baseballfield": "baseball field", "basketballcourt": "basketball court", "golffield": "golf field",
          "groundtrackfield": "ground track field", "storagetank": "storage tank", "tenniscourt": "tennis court",
          "trainstation": "train station"}
ADJECTIVES = ("white", "gray", "large", "small", "dark", "bright", "long", "round", "blue", "green")
# planted defect kind -> share of the images (the audit kind it should raise has the same name)
PLANTED = {"size_mismatch": 0.006, "empty_mask": 0.004, "missing_mask": 0.003, "undecodable_mask": 0.003,
           "mask_outside_box": 0.005, "mask_box_disagreement": 0.004, "many_components": 0.004,
           "position_contradiction": 0.005, "split_leak_image": 0.003}
GARBAGE_COUNTS = "garbage~~not an RLE"       # '~' is outside the RLE alphabet


# ------------------------------------------------------------------ the tree
def _placeholders(rng: np.random.Generator, count: int, height: int) -> list[bytes]:
    """Distinct textured JPEGs (about 200 kB each at quality 90)."""
    out = []
    for _ in range(count):
        low = rng.integers(40, 200, (height // 16 + 1, SIZE // 16 + 1, 3), dtype=np.uint8)
        img = cv2.resize(low, (SIZE, height), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 24, img.shape, dtype=np.uint8))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(buf.tobytes())
    return out


def _with_comment(jpeg: bytes, text: str) -> bytes:
    """``jpeg`` with a COM segment right after SOI: other bytes, same pixels."""
    payload = text.encode("ascii")
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def _shape(rng: np.random.Generator, cx: float, cy: float, r: float, out: np.ndarray) -> None:
    """A filled ellipse or star-shaped polygon of radius ~``r`` around (cx, cy), drawn into ``out``."""
    if rng.random() < 0.6:
        axes = (max(2, int(r)), max(2, int(r * rng.uniform(0.5, 1.0))))
        cv2.ellipse(out, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        k = int(rng.integers(5, 10))
        angles = (np.arange(k) + rng.uniform(-0.3, 0.3, k)) * 2 * np.pi / k
        radii = r * rng.uniform(0.6, 1.0, k)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(out, [np.round(pts).astype(np.int32)], 1)


def _tight(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _grown(rng: np.random.Generator, box: tuple[int, int, int, int]) -> list[int]:
    """The tight box, each side moved out by up to 5 % of the box (at least a pixel).

    A clean box: on objects of a few dozen pixels a box a pixel inside the mask already puts
    20 % of it outside (``mask_outside_box``), and two pixels out on each side bring the IoU of
    a 3-pixel-high object under 0.5 (``mask_box_disagreement``)."""
    x1, y1, x2, y2 = box
    gx, gy = max(1, int(0.05 * (x2 - x1))), max(1, int(0.05 * (y2 - y1)))
    d = [int(rng.integers(0, g + 1)) for g in (gx, gy, gx, gy)]
    return [max(0, x1 - d[0]), max(0, y1 - d[1]), min(SIZE, x2 + d[2]), min(SIZE, y2 + d[3])]


def _third(v: float) -> int:
    return -1 if v < 1 / 3 else (1 if v > 2 / 3 else 0)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]          # a str, not numpy's (the pickle takes builtins only)


def _sentence(rng: np.random.Generator, cls: str, centroid: tuple[float, float], flip: bool) -> str:
    """An RRSIS-D-like sentence; its position words agree with ``centroid`` unless ``flip``."""
    noun, adj = SPOKEN.get(cls, cls), ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
    hx, vy = _third(centroid[0] / SIZE), _third(centroid[1] / SIZE)
    if flip:                              # the object sits in an outer third; the word names the other one
        hx, vy = -hx, -vy
    h, v = {-1: "left", 1: "right"}.get(hx), {-1: "top", 1: "bottom"}.get(vy)
    if not flip and rng.random() < 0.3:   # no position word at all
        return _pick(rng, [f"the {adj} {noun}", f"a {adj} {noun}", f"the {noun} that is {adj}"]).capitalize()
    if h and v:
        text = _pick(rng, [f"the {noun} in the {v}-{h} corner of the image", f"the {adj} {noun} at the {v} {h}"])
    elif h:
        text = _pick(rng, [f"the {noun} on the {h} of the image", f"the {adj} {noun} on the {h} side"])
    elif v:
        text = _pick(rng, [f"the {noun} at the {v} of the image", f"the {adj} {noun} at the {v}"])
    else:
        text = _pick(rng, [f"the {noun} in the center of the image", f"the {adj} {noun} in the middle"])
    return text.capitalize() if rng.random() < 0.5 else text


def _splits(n: int, rng: np.random.Generator) -> list[str]:
    """RRSIS-D's split shares, scaled to ``n`` and shuffled."""
    total = sum(RRSISD.values())
    val = round(n * RRSISD["val"] / total)
    test = round(n * RRSISD["test"] / total)
    out = ["train"] * (n - val - test) + ["val"] * val + ["test"] * test
    rng.shuffle(out)
    return out


def _plant(n: int, splits: list[str], rng: np.random.Generator) -> dict[int, str]:
    """Image index -> planted defect kind (at least 2 of each kind; disjoint)."""
    order = rng.permutation(n).tolist()
    out: dict[int, str] = {}
    for kind, share in PLANTED.items():
        want = max(2, round(share * n))
        if kind == "split_leak_image":     # a non-train image that repeats a train image's bytes
            picked = [i for i in order if i not in out and splits[i] != "train"][:want]
        else:
            picked = [i for i in order if i not in out][:want]
        for i in picked:
            out[i] = kind
    return out


def write_tree(tree: Path, n: int, seed: int) -> dict[str, list[str]]:
    """Write the tree; return {planted kind: [file_name, ...]} (a leak names both images)."""
    rng = np.random.default_rng(seed)
    image_dir = tree / "images" / NAME / "JPEGImages"
    image_dir.mkdir(parents=True, exist_ok=True)
    (tree / NAME).mkdir(parents=True, exist_ok=True)
    bases = {SIZE: _placeholders(rng, 8, SIZE), SIZE + 1: _placeholders(rng, 2, SIZE + 1)}
    splits = _splits(n, rng)
    planted = _plant(n, splits, rng)
    train = [i for i in range(n) if splits[i] == "train" and i not in planted]
    leak_source = {i: train[int(rng.integers(len(train)))] for i, k in planted.items() if k == "split_leak_image"}
    names = {i: f"{i + 1:05d}.jpg" for i in range(n)}
    found: dict[str, list[str]] = defaultdict(list)
    images, annotations, refs = [], [], []
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for i in range(n):
        kind = planted.get(i)
        image_id = i + 1
        height = SIZE + 1 if kind == "size_mismatch" else SIZE
        if kind == "split_leak_image":
            j = leak_source[i]
            base = bases[SIZE][j % len(bases[SIZE])]
            data = _with_comment(base, f"risbench bench image {j + 1}")     # image j's very bytes
            found[kind].append(names[j])
        else:
            base = bases[height][i % len(bases[height])]
            data = _with_comment(base, f"risbench bench image {image_id}")
        (image_dir / names[i]).write_bytes(data)

        cls = DIOR[int(rng.integers(len(DIOR)))]
        mask[:] = 0
        if kind == "position_contradiction":      # an ellipse well inside one outer third
            r = float(rng.uniform(10, 50))
            side = int(rng.integers(4))
            cx, cy = (rng.uniform(0.1, 0.22) if side == 0 else rng.uniform(0.78, 0.9)) * SIZE, 0.5 * SIZE
            if side >= 2:
                cx, cy = 0.5 * SIZE, (rng.uniform(0.1, 0.22) if side == 2 else rng.uniform(0.78, 0.9)) * SIZE
            cv2.ellipse(mask, (int(cx), int(cy)), (int(r), int(r * 0.7)), 0.0, 0, 360, 1, -1)
        elif kind == "many_components":          # three separate blobs
            r = float(rng.uniform(15, 40))
            x0, y0 = rng.uniform(60, SIZE - 360), rng.uniform(60, SIZE - 200)
            for k in range(3):
                cv2.circle(mask, (int(x0 + 120 * k), int(y0 + 40 * (k % 2))), int(r), 1, -1)
        elif kind == "mask_box_disagreement":    # object in the top-left quarter, box in the bottom-right
            r = float(rng.uniform(15, 90))
            _shape(rng, rng.uniform(r, 0.45 * SIZE - r / 2), rng.uniform(r, 0.45 * SIZE - r / 2), r, mask)
        else:
            r = float(np.exp(rng.uniform(np.log(8), np.log(220))))
            _shape(rng, rng.uniform(r, SIZE - r), rng.uniform(r, SIZE - r), r, mask)
        tight = _tight(mask)
        ys, xs = np.nonzero(mask)
        centroid = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
        bbox = _grown(rng, tight)
        area = int(xs.size)
        if kind == "mask_outside_box":           # the box ends where 60 % of the mask's pixels lie left of it
            cut = int(np.searchsorted(np.cumsum(mask.sum(axis=0)), 0.6 * area))
            bbox = [tight[0], tight[1], max(tight[0] + 1, cut), tight[3]]
        elif kind == "mask_box_disagreement":
            bbox = [min(SIZE - 2, v + SIZE // 2) for v in tight]
        segmentation: list[Any] = [masks.encode(mask)]
        if kind == "empty_mask":
            segmentation, area = [masks.encode(np.zeros((SIZE, SIZE), np.uint8))], 0
        elif kind == "missing_mask":
            segmentation, area = [], 0
        elif kind == "undecodable_mask":
            segmentation = [{"size": [SIZE, SIZE], "counts": GARBAGE_COUNTS}]
        if kind is not None:
            found[kind].append(names[i])
        raw = _sentence(rng, cls, centroid, flip=kind == "position_contradiction")
        tokens = re.findall(r"\w+", raw.lower())
        cid = DIOR.index(cls)
        images.append({"id": image_id, "file_name": names[i], "height": SIZE, "width": SIZE})
        annotations.append({"id": image_id, "image_id": image_id, "category_id": cid, "categories_id": cid,
                            "bbox": bbox, "area": area, "iscrowd": 0, "segmentation": segmentation})
        refs.append({"ref_id": image_id, "ann_id": image_id, "image_id": image_id, "category_id": cid,
                     "split": splits[i], "file_name": names[i], "sent_ids": [image_id],
                     "sentences": [{"sent_id": image_id, "raw": raw, "sent": " ".join(tokens), "tokens": tokens}]})
    (tree / NAME / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": annotations,
         "categories": [{"id": k, "name": name} for k, name in enumerate(DIOR)]}))
    (tree / NAME / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=4))
    return dict(found)


# ------------------------------------------------------------------ measuring
def reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # Linux: KiB


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def release() -> None:
    """Hand freed memory back to the OS, so that a phase's RSS at start is what it inherits."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):          # not glibc
        pass


def phase(label: str, fn: Any, rows: list[tuple], resets: bool, profile: int = 0) -> Any:
    """Run ``fn`` as one measured phase; with ``profile`` print its top functions by own time."""
    release()
    if resets:
        reset_peak()
    prof = cProfile.Profile() if profile else None
    start_rss, t0 = rss_mb(), time.perf_counter()
    out = prof.runcall(fn) if prof else fn()
    rows.append((label, time.perf_counter() - t0, start_rss, peak_mb(), rss_mb()))
    if prof:
        print(f"--- {label}: top {profile} functions by own time (cProfile; times include its overhead)")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(profile)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="where to write/reuse the tree and the workspace (default: a temp dir)")
    ap.add_argument("--triplets", type=int, default=sum(RRSISD.values()), help="refs = images = triplets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (a --root is always kept)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="cProfile ingest and audit; print each one's top N functions (slows both down)")
    args = ap.parse_args()
    if args.triplets < 100:
        ap.error("--triplets must be at least 100 (every planted kind needs a few images)")

    base = args.root or Path(tempfile.mkdtemp(prefix="bench_audit_"))
    base.mkdir(parents=True, exist_ok=True)
    tree, planted_json = base / "tree", base / "planted.json"
    resets = reset_peak()
    load_at_start = os.getloadavg()[0]
    phases: list[tuple] = []
    stamp = {"triplets": args.triplets, "seed": args.seed}
    saved = json.loads(planted_json.read_text()) if planted_json.is_file() else {}
    if saved.get("stamp") == stamp and (tree / NAME / "refs(unc).p").is_file():
        planted = saved["planted"]
        print(f"tree: {tree} (reused)")
    else:
        shutil.rmtree(tree, ignore_errors=True)
        planted = phase("tree generation", lambda: write_tree(tree, args.triplets, args.seed), phases, resets)
        planted_json.write_text(json.dumps({"stamp": stamp, "planted": planted}))
        print(f"tree: {tree}")

    ws = Workspace((base / f"ws-{int(time.time())}").resolve())
    ws.path.mkdir()
    ws.pipeline_path.write_text(json.dumps({"name": "bench-audit",
                                            "sources": [{"kind": "refer", "name": NAME, "root": str(tree)}]}))
    ingest = phase("ingest", lambda: run_plan(ws, "ingest", None, progress=False)["ingest"], phases, resets,
                   args.profile)
    if not ingest.accepted:
        sys.exit(f"ingest kept no triplet: {dict(ingest.rejected)} (see {ws.reports / 'rejects.csv'})")
    cfg = ws.load()
    audit = phase("audit", lambda: run_audit(ws, cfg, fresh=False, progress=False), phases, resets,
                  args.profile)

    n = audit.triplets
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"triplets: {ingest.accepted:,} ingested ({sum(ingest.rejected.values()):,} rejected: "
          f"{dict(ingest.rejected) or '-'}), {n:,} audited")
    print(f"peak RSS: {'per phase (VmHWM reset before each)' if resets else 'since process start (reset refused)'}"
          f", from getrusage ru_maxrss; RSS from psutil")
    print(f"{'phase':<16} {'time':>9} {'triplets/s':>11} {'RSS at start':>13} {'peak RSS':>9} {'RSS at end':>11}")
    done = {"ingest": ingest.accepted, "audit": n}
    for label, seconds, start, peak, end in phases:
        rate = f"{done[label] / seconds:,.0f}" if label in done else "-"
        print(f"{label:<16} {seconds:>8.1f}s {rate:>11} {start:>10.0f} MB {peak:>6.0f} MB {end:>8.0f} MB")
    print(f"stage-reported seconds: ingest {ingest.seconds:.1f} s, audit {audit.seconds:.1f} s")

    counts = {k: v for k, v in audit.counts.items() if v}
    print(f"flagged: {len(audit.flagged):,} triplets; routes {audit.routes}")
    by_file: dict[str, set[str]] = defaultdict(set)
    for entry in audit.flagged:
        by_file[entry["file_name"]].update(r["kind"] for r in entry["reasons"])
    planted_files = {f for files in planted.values() for f in files}
    unplanted = Counter(k for f, kinds in by_file.items() if f not in planted_files for k in kinds)
    print(f"{'defect kind':<24} {'audit count':>11} {'planted':>8} {'found':>6}  flagged on unplanted images")
    all_found = True
    for kind in sorted(set(counts) | set(planted)):
        files = planted.get(kind, [])
        hit = sum(kind in by_file.get(f, ()) for f in files)
        all_found &= hit == len(files)
        print(f"{kind:<24} {counts.get(kind, 0):>11,} {len(files) or '-':>8} {hit if files else '-':>6}  "
              f"{unplanted.get(kind, 0)}")
    print(f"every planted defect kind found in every planted image: {'yes' if all_found else 'NO'}")
    if args.root is None and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
        print(f"removed {base} (pass --keep or --root to keep it)")


if __name__ == "__main__":
    main()
