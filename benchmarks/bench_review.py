"""Review round trip against a real local Label Studio: push 1,000 tasks, pull 3,000 annotations.

Starts a throwaway Label Studio from .venv-labelstudio (127.0.0.1, free port, temporary data
dir), writes a catalog of 1,000 ``route = review`` proposals over 100 images (512x512, one to
three blobs per mask), then times

- ``push``: one project, batched import of 1,000 tasks, each with its brush prediction;
- ``pull``: 3,000 annotations from three simulated annotators, converted to COCO RLE,
  stored, and the consensus of 1,000 tasks (the annotations are set up beforehand, not timed:
  by default imported together with copies of the pushed tasks into a mirror project the
  workspace then pulls, because one POST per annotation costs ~0.3 s on this server;
  ``--annotate api`` posts them one by one on the pushed tasks instead),

and prints tasks/s for both next to the targets (push >= 50, pull + consensus >= 100), with
the consensus step alone for majority vote and STAPLE side by side. The pull runs ``--repeat``
times from a copy of the same catalog state (the median counts; later runs find the
adjudication tasks already there).

    python benchmarks/bench_review.py [--tasks 1000] [--annotators 3] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.review import LabelStudio, pull, push
from risbench_builder.review.consensus import Vote, decide
from risbench_builder.review.localserver import LocalLabelStudio
from risbench_builder.review.sync import load_state, save_state
from risbench_builder.review.tasks import LABEL_CONFIG, brush_result, resource_text
from risbench_builder.workspace import Workspace

TARGET_PUSH, TARGET_PULL = 50.0, 100.0
SIZE = 512
TOKEN_ENV = "RISBENCH_BENCH_LS_TOKEN"


def blob_mask(rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    cx, cy = rng.integers(60, SIZE - 60, 2)
    for _ in range(rng.integers(1, 4)):
        axes = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
        centre = (int(cx + rng.integers(-20, 20)), int(cy + rng.integers(-20, 20)))
        cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m


def build_workspace(root: Path, url: str, n_tasks: int, n_images: int, seed: int = 0) -> tuple[Workspace, dict]:
    ws = Workspace(root / "ws")
    (ws.path / "images").mkdir(parents=True)
    pipeline = {"name": "bench", "sources": [],
                "review": {"url": url, "token_env": TOKEN_ENV, "document_root": str(root),
                           "annotators_per_task": 3, "batch_size": 250, "page_size": 100}}
    ws.pipeline_path.write_text(yaml.safe_dump(pipeline))
    rng = np.random.default_rng(seed)
    truth: dict[str, np.ndarray] = {}
    with Catalog(ws.catalog_path) as cat, cat.transaction():
        for i in range(n_images):
            path = ws.path / "images" / f"img{i:04d}.png"
            Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(path, compress_level=1)
            cat.conn.execute("INSERT INTO images (image_id, path, source, scene_id, width, height) "
                             "VALUES (?, ?, 'bench', ?, ?, ?)",
                             (f"img{i}", str(path), f"scene{i}", SIZE, SIZE))
        for t in range(n_tasks):
            tid = f"t{t:05d}"
            m = blob_mask(rng)
            truth[tid] = m
            x1, y1, x2, y2 = masks.bbox_xyxy(masks.encode(m))
            cat.conn.execute("INSERT INTO triplets(triplet_id, image_id, source, source_ref, category, expression, "
                             "box_xyxy) VALUES (?, ?, 'bench', ?, 'ship', 'the ship in the middle', ?)",
                             (tid, f"img{t % n_images}", tid, json.dumps([x1, y1, x2, y2])))
            cat.conn.execute("INSERT INTO proposals (triplet_id, segmenter, model_sha256, rle, scores_json, route, "
                             "run_id) VALUES (?, 'grabcut', '', ?, ?, 'review', 'bench')",
                             (tid, masks.dumps(masks.encode(m)),
                              json.dumps({"box_iou": float(rng.uniform(0.3, 0.9)), "area": float(m.sum())})))
    return ws, truth


def simulated_results(tid: str, m: np.ndarray, n_annotators: int) -> list[list[dict]]:
    """What the annotators answer: the proposal accepted, a mask one pixel larger, one pixel
    smaller (corrected), and about 3 % reject-mask verdicts."""
    kernel = np.ones((3, 3), np.uint8)
    variants = [m, cv2.dilate(m, kernel), cv2.erode(m, kernel)]
    out = []
    for k in range(n_annotators):
        rejects = (int(tid[1:]) * n_annotators + k) % 37 == 0
        verdict = "reject-mask" if rejects else ("accept" if k == 0 else "corrected")
        result = [{"from_name": "verdict", "to_name": "image", "type": "choices", "value": {"choices": [verdict]}}]
        if verdict != "reject-mask":
            result.append(brush_result(masks.encode(variants[k % 3]), SIZE, SIZE, f"{tid}-{k}"))
        out.append(result)
    return out


def annotate_via_api(ls: LabelStudio, tasks: dict[str, int], truth: dict[str, np.ndarray], users: list[int],
                     workers: int) -> None:
    """One POST per annotation, as people's browsers do (about 0.3 s each on this server)."""
    def work(item: tuple[str, int]) -> None:
        tid, task = item
        for uid, result in zip(users, simulated_results(tid, truth[tid], len(users))):
            ls.create_annotation(task, result, completed_by=uid)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, tasks.items()))


def annotate_via_import(ws: Workspace, ls: LabelStudio, truth: dict[str, np.ndarray], users: list[int]) -> int:
    """The same annotations imported with copies of the pushed tasks into a mirror project,
    which the workspace then pulls from: the tasks pages pull reads are the same, and the
    setup takes seconds instead of a quarter of an hour."""
    state = load_state(ws)
    pid = int(state["project_id"])
    mirror = ls.create_project("bench review mirror", resource_text(LABEL_CONFIG), maximum_annotations=len(users))
    tasks = [t for _, page in ls.task_pages(pid, annotations=False, page_size=1000) for t in page]
    payload = [{"data": t["data"], "annotations": [{"result": r, "completed_by": u} for u, r in zip(
        users, simulated_results(t["data"]["triplet_id"], truth[t["data"]["triplet_id"]], len(users)))]}
        for t in tasks]
    ids = []
    for start in range(0, len(payload), 250):
        ids += ls.import_tasks(mirror["id"], payload[start:start + 250])
    for local in ls.local_storages(pid):
        ls.create_local_storage(mirror["id"], local["path"], "risbench images")
    state["project_id"] = mirror["id"]
    state["tasks"] = {t["data"]["triplet_id"]: i for t, i in zip(tasks, ids)}
    save_state(ws, state)
    return mirror["id"]


def consensus_only(truth: dict[str, np.ndarray], method: str, n: int = 300) -> float:
    """Seconds per task for the consensus step alone (three 512x512 masks)."""
    kernel = np.ones((3, 3), np.uint8)
    items = list(truth.values())[:n]
    t0 = time.perf_counter()
    for m in items:
        votes = [Vote("a", "accept", m), Vote("b", "corrected", cv2.dilate(m, kernel)),
                 Vote("c", "corrected", cv2.erode(m, kernel))]
        decide(votes, m, method=method, min_agreement=0.75)
    return (time.perf_counter() - t0) / len(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--annotators", type=int, default=3)
    ap.add_argument("--annotate", choices=("import", "api"), default="import",
                    help="how the simulated annotations reach the server (api: one POST each, ~15 min)")
    ap.add_argument("--workers", type=int, default=4, help="api: threads that create the annotations")
    ap.add_argument("--repeat", type=int, default=3, help="pulls of the same catalog state (median reported)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary server data and workspace")
    ap.add_argument("--venv", type=Path, default=Path(__file__).resolve().parents[1] / ".venv-labelstudio")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench_review_"))
    root = base / "root"
    root.mkdir()
    t0 = time.perf_counter()
    server = LocalLabelStudio(args.venv, base / "ls-data", root, template=args.venv / "risbench-test-template")
    server.start()
    print(f"label studio {server.url} up in {time.perf_counter() - t0:.1f} s (data {server.data_dir})")
    os.environ[TOKEN_ENV] = server.token
    try:
        ws, truth = build_workspace(root, server.url, args.tasks, args.images)
        pushed = push(ws)
        assert pushed.imported == args.tasks, pushed.as_dict()
        push_rate = pushed.imported / pushed.seconds
        ls = LabelStudio(server.url, server.token)
        users = [ls.create_user(f"bench{k}-{os.getpid()}@example.com") for k in range(args.annotators)]
        n_ann = args.tasks * args.annotators
        t1 = time.perf_counter()
        if args.annotate == "api":
            annotate_via_api(ls, load_state(ws)["tasks"], truth, users, args.workers)
        else:
            annotate_via_import(ws, ls, truth, users)
        print(f"setup: {n_ann} annotations ({args.annotate}) in {time.perf_counter() - t1:.1f} s")
        snapshot = base / "catalog-before-pull.sqlite"
        with Catalog(ws.catalog_path) as cat:
            cat.copy_to(snapshot)
        pulls = []
        for attempt in range(args.repeat):                 # the same pull from the same catalog state
            if attempt:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{ws.catalog_path}{suffix}").unlink(missing_ok=True)
                shutil.copyfile(snapshot, ws.catalog_path)
            pulled = pull(ws)
            assert pulled.reviews_new == n_ann and sum(pulled.decisions.values()) == args.tasks, pulled.as_dict()
            pulls.append(pulled.seconds)
        pull_seconds = statistics.median(pulls)
        pull_rate = args.tasks / pull_seconds
        majority, staple_s = consensus_only(truth, "majority"), consensus_only(truth, "staple")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"label-studio 1.23 (SQLite, runserver)")
    print(f"{'step':<34}{'tasks':>7}{'seconds':>10}{'tasks/s':>10}{'target':>9}")
    print(f"{'push (batched import, 250/request)':<34}{pushed.imported:>7}{pushed.seconds:>10.2f}"
          f"{push_rate:>10.1f}{'>= 50':>9}  {'OK' if push_rate >= TARGET_PUSH else 'BELOW TARGET'}")
    print(f"{'pull ' + str(n_ann) + ' annotations + consensus':<34}{args.tasks:>7}{pull_seconds:>10.2f}"
          f"{pull_rate:>10.1f}{'>= 100':>9}  {'OK' if pull_rate >= TARGET_PULL else 'BELOW TARGET'}"
          f"  (median of {len(pulls)}: {', '.join(f'{t:.2f}' for t in pulls)} s)")
    print(f"consensus step alone, 3 masks of {SIZE}x{SIZE}: majority {majority * 1e3:.1f} ms/task, "
          f"STAPLE {staple_s * 1e3:.1f} ms/task ({staple_s / majority:.1f}x)")
    print(f"decisions: {dict(pulled.decisions)}")


if __name__ == "__main__":
    main()
