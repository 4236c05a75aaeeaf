"""`risbench report` on a RISBench-sized workspace: first run, rerun, size on disk, page load.

Builds (or reuses) a synthetic workspace of 52,472 triplets on 29,614 images (VRSBench's real
counts) straight into the catalog: every image is one rendered 512x512 synthetic scene
hard-linked under each name, masks are seeded ellipses and rectangles inside their boxes
(RLE through ``masks.encode``), signals are seeded random numbers routed by the default
thresholds, and a share of the triplets get reviews, consensus, final rows and rejects, so
every gallery has content. Then it times the first report (every thumbnail rendered), a
rerun (nothing to render), the report's size on disk and the index page's load time in
headless Chromium (load event, and the first gallery page with its thumbnails shown).

    python benchmarks/bench_report.py [--workspace DIR] [--triplets 52472] [--images 29614]

Targets: rerun <= 10 % of the first run; index.html under 5 MB; loads in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.config import RouteConfig
from risbench_builder.qa.browser import Browser, find_chromium
from risbench_builder.qa.overlay import load_image
from risbench_builder.qa.report import ReportOptions, write_report
from risbench_builder.segment.routing import route
from risbench_builder.synthetic import DRAWABLE_CLASSES, render_scene
from risbench_builder.workspace import Workspace

TARGET_RERUN, TARGET_INDEX_MB, TARGET_LOAD_S = 0.10, 5.0, 2.0
SIZE = 512
WORDS = ("the", "large", "small", "white", "gray", "left", "right", "top", "bottom", "near", "road", "next", "to")


def build_workspace(root: Path, n_triplets: int, n_images: int, seed: int = 0) -> Workspace:
    """Catalog rows written directly (no ingest or refine): fast, seeded, RISBench-sized."""
    rng = np.random.default_rng(seed)
    ws = Workspace(root)
    for sub in (root / "images", ws.reports):
        sub.mkdir(parents=True, exist_ok=True)
    ws.pipeline_path.write_text("name: bench-report\nsources:\n  - {kind: vrsbench, root: images}\n")
    master = root / "images" / "00000.png"
    ok, buf = cv2.imencode(".png", cv2.cvtColor(render_scene(np.random.default_rng(seed)).image, cv2.COLOR_RGB2BGR))
    master.write_bytes(buf.tobytes())
    paths = [master] + [root / "images" / f"{i:05d}.png" for i in range(1, n_images)]
    for p in paths[1:]:
        os.link(master, p)
    per_image = np.ones(n_images, np.int64) + np.bincount(rng.integers(0, n_images, n_triplets - n_images),
                                                          minlength=n_images)
    cfg = RouteConfig()
    with Catalog(ws.catalog_path) as cat:
        run = cat.start_run("bench")
        with cat.transaction():
            cat.insert("images", ("image_id", "path", "source", "scene_id", "width", "height", "sha256"),
                       [(f"img{i:05d}", str(p), "bench", f"scene{i // 2:05d}", SIZE, SIZE, f"{i:064x}")
                        for i, p in enumerate(paths)])
        t = 0
        for start in range(0, n_images, 2000):
            trip, prop, rev, cons, fin, rej = [], [], [], [], [], []
            for i in range(start, min(start + 2000, n_images)):
                for _ in range(per_image[i]):
                    tid = f"t{t:07d}"
                    t += 1
                    side = float(np.exp(rng.uniform(np.log(10), np.log(220))))
                    w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
                    x1, y1 = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
                    box = [round(x1, 1), round(y1, 1), round(min(x1 + w, SIZE), 1), round(min(y1 + h, SIZE), 1)]
                    m = np.zeros((SIZE, SIZE), np.uint8)
                    if rng.random() < 0.5:
                        cv2.ellipse(m, (int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)),
                                    (max(1, int(w * 0.45)), max(1, int(h * 0.45))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
                    else:
                        m[int(box[1] + 0.1 * h): int(box[3] - 0.1 * h) + 1, int(box[0] + 0.1 * w): int(box[2] - 0.1 * w) + 1] = 1
                    rle = masks.dumps(masks.encode(m))
                    signals = {"area": float(m.sum()), "area_ratio": round(float(m.sum()) / (w * h), 4),
                               "box_iou": round(float(rng.beta(8, 2)), 4), "components": float(rng.choice([1, 1, 1, 2])),
                               "jitter_agreement": round(float(rng.beta(9, 1.5)), 4),
                               "iou_pred": round(float(rng.beta(9, 1.2)), 4), "stability": round(float(rng.beta(12, 1)), 4)}
                    decision = route(signals, cfg)
                    category = DRAWABLE_CLASSES[int(rng.integers(len(DRAWABLE_CLASSES)))]
                    expr = " ".join(rng.choice(WORDS, int(rng.integers(4, 12)))) + f" {category}"
                    trip.append((tid, f"img{i:05d}", "bench", f"bench#{tid}", category, expr, json.dumps(box), None,
                                 json.dumps({"obj_id": t}), "train" if rng.random() < 0.7 else "val"))
                    prop.append((tid, "grabcut", "", rle, json.dumps(signals), decision, run))
                    r = rng.random()
                    if decision == "review" and r < 0.05:
                        for a, name in enumerate(("alice", "bob", "carol")):
                            shifted = np.roll(m, int(rng.integers(-4, 5)), axis=a % 2)
                            rev.append((tid, f"task-{tid}", name, masks.dumps(masks.encode(shifted)),
                                        "accept", None, run))
                        cons.append((tid, rle, round(float(rng.beta(8, 2)), 4), "consensus", run))
                    if r < 0.01:
                        rej.append((tid, "too_few_words" if r < 0.007 else "geometry_contradiction", "bench"))
                    elif decision == "accept" or r < 0.05:
                        fin.append((tid, str(rng.choice(["train", "val", "test"], p=[0.7, 0.1, 0.2])),
                                    "auto" if decision == "accept" else "consensus"))
            with cat.transaction():
                cat.insert("triplets", ("triplet_id", "image_id", "source", "source_ref", "category", "expression",
                                        "box_xyxy", "polygon", "attributes_json", "origin_split"), trip)
                cat.insert("proposals", ("triplet_id", "segmenter", "model_sha256", "rle", "scores_json", "route",
                                         "run_id"), prop)
                cat.insert("reviews", ("triplet_id", "task_id", "annotator", "rle", "verdict", "corrected_expression",
                                       "run_id"), rev)
                cat.insert("consensus", ("triplet_id", "rle", "agreement", "decision", "run_id"), cons)
                cat.insert("final", ("triplet_id", "split", "mask_origin"), fin)
                cat.add_rejects("finalize", rej, run)
        with cat.transaction():
            cat.add_rejects("ingest", [(f"bench:Annotations/{i:05d}.json#obj9", "missing_image", "no such file")
                                       for i in range(300)], run)
        cat.finish_run(run, {"triplets": t})
    return ws


def decode_floor(ws: Workspace, workers: int, sample: int = 400) -> float:
    """Seconds to decode every image once on ``workers`` cores (from a sample): the I/O floor."""
    with Catalog(ws.catalog_path) as cat:
        paths = [r[0] for r in cat.conn.execute("SELECT path FROM images ORDER BY image_id")]
    step = max(1, len(paths) // sample)
    chosen = paths[::step]
    t = time.perf_counter()
    for p in chosen:
        load_image(p, SIZE, SIZE)
    return (time.perf_counter() - t) / len(chosen) * len(paths) / workers


def cpu() -> float:
    """CPU seconds of this process and its finished children (the thumbnail workers)."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def du(path: Path) -> tuple[int, int]:
    """Bytes (allocated blocks, as `du` counts them) and files below ``path``."""
    total = files = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            total += st.st_blocks * 512
            files += 1
    return total, files


def page_load(index: Path) -> dict[str, float]:
    """Seconds to the load event and to the first gallery page shown with its thumbnails; and a sort."""
    with Browser(find_chromium()) as b:
        b.open("about:blank")
        t0 = time.perf_counter()
        b.call("Page.navigate", {"url": index.as_uri()})
        b.wait_for("document.readyState === 'complete'")
        loaded = time.perf_counter() - t0
        b.wait_for("window.RB && RB.ready > 0 && [...document.querySelectorAll('#grid img')]"
                   ".filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete)")
        ready = time.perf_counter() - t0
        before = b.eval("RB.ready")
        t1 = time.perf_counter()
        b.eval("(() => { const s = document.getElementById('sort'); s.value = 'jitter_agreement'; "
               "s.dispatchEvent(new Event('change')); })()")
        b.wait_for(f"RB.ready > {before}")
        sort = time.perf_counter() - t1
        t2 = time.perf_counter()
        b.eval("document.querySelector('#grid .thumb').click()")
        b.wait_for("RB.detailOpen && [...document.querySelectorAll('#stage img')].every(i => i.complete)")
        detail = time.perf_counter() - t2
        view = b.eval("RB.view.length")
    return {"load_event_s": loaded, "first_page_s": ready, "sort_s": sort, "detail_s": detail, "sorted_items": view}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, help="where to build/reuse the workspace (default: a temp dir)")
    ap.add_argument("--triplets", type=int, default=52_472)
    ap.add_argument("--images", type=int, default=29_614)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    tmp = None
    root = args.workspace or Path(tmp := tempfile.mkdtemp(prefix="bench-report-")) / "ws"
    try:
        if (root / "catalog.sqlite").exists():
            ws = Workspace(root)
            shutil.rmtree(ws.reports, ignore_errors=True)
            ws.reports.mkdir()
            print(f"reusing {root} (reports cleared)")
        else:
            t = time.perf_counter()
            ws = build_workspace(root, args.triplets, args.images)
            print(f"built {args.triplets:,} triplets on {args.images:,} images in {time.perf_counter() - t:.1f} s")
        opts = ReportOptions(workers=args.workers, progress=sys.stderr.isatty())
        workers = args.workers or min(2, os.cpu_count() or 1)
        c0 = cpu()
        first = write_report(ws, opts)
        c1 = cpu()
        rerun = write_report(ws, opts)
        c2 = cpu()
        floor = decode_floor(ws, workers)
        size, files = du(ws.reports)
        index_mb = first.bytes_index / 1e6
        items_mb = (ws.reports / "data" / "items.js").stat().st_size / 1e6
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
              f"load average {os.getloadavg()[0]:.2f} (other work on the machine slows every number)")
        print(f"first report : {first.seconds:7.2f} s  ({first.thumbs.rendered:,} thumbnails rendered, "
              f"{first.thumbs.rendered / first.thumbs.seconds:,.0f}/s in {first.thumbs.seconds:.1f} s; "
              f"{c1 - c0:.0f} CPU-s on {workers} workers)")
        print(f"decode floor : {floor:7.2f} s  (decoding each of the images once on {workers} cores); "
              f"first report / floor = {first.seconds / floor:.2f}")
        print(f"rerun        : {rerun.seconds:7.2f} s  ({rerun.thumbs.rendered} rendered, {rerun.thumbs.reused:,} reused, "
              f"{c2 - c1:.1f} CPU-s)  ratio {rerun.seconds / first.seconds:.3f} (target <= {TARGET_RERUN})")
        print(f"report size  : {size / 1e6:7.1f} MB on disk in {files:,} files")
        print(f"index.html   : {index_mb:7.3f} MB (target < {TARGET_INDEX_MB}); items.js {items_mb:.2f} MB loaded with it")
        ok = rerun.seconds <= TARGET_RERUN * first.seconds and index_mb < TARGET_INDEX_MB
        if find_chromium():
            load = page_load(ws.reports / "index.html")
            print(f"page load    : load event {load['load_event_s']:.2f} s, first gallery page with thumbnails "
                  f"{load['first_page_s']:.2f} s (target < {TARGET_LOAD_S}); sort {load['sorted_items']:,} items "
                  f"{load['sort_s']:.2f} s; open detail {load['detail_s']:.2f} s")
            ok &= load["first_page_s"] < TARGET_LOAD_S
        else:
            print("page load    : skipped (no chromium: apt-get install -y chromium)")
        print("targets met" if ok else "TARGETS MISSED")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
