"""Ingest throughput and memory on a RISBench-sized VRSBench tree.

Writes (or reuses) a synthetic tree of 29,614 annotation files holding 52,472 referred objects
(VRSBench's real counts) whose images are one 512x512 placeholder PNG hard-linked under every
name, then runs `risbench build --stage ingest` in a child process and reports triplets/s and
the child's peak RSS. Side by side in the same run it times the two JSON parsers on the same
files, which is why the reader tries strict JSON before json5.

    python benchmarks/bench_ingest.py [--root DIR] [--files 29614] [--objects 52472]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import json5

sys.path.insert(0, str(Path(__file__).resolve().parent))
from placeholders import write_vrsbench_placeholders  # noqa: E402  # same folder

from risbench_builder.catalog import Catalog  # noqa: E402

TARGET_RATE, TARGET_RSS_MB = 2000.0, 500.0


def parse_ratio(files: list[Path]) -> tuple[float, float]:
    """Seconds to parse ``files`` with json and with json5."""
    raw = [f.read_bytes() for f in files]
    t0 = time.perf_counter()
    for b in raw:
        json.loads(b)
    t1 = time.perf_counter()
    for b in raw:
        json5.loads(b.decode())
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="where to write/reuse the tree (default: a temp dir)")
    ap.add_argument("--files", type=int, default=29_614)
    ap.add_argument("--objects", type=int, default=52_472)
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()

    base = args.root or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    tree = base / "vrsbench"
    t0 = time.perf_counter()
    if not (tree / "Annotations_train").is_dir():
        write_vrsbench_placeholders(tree, n_files=args.files, objects_total=args.objects, seed=0)
    print(f"tree: {tree} ({time.perf_counter() - t0:.1f} s to prepare)")

    ws = base / f"ws-{int(time.time())}"
    ws.mkdir()
    (ws / "pipeline.yaml").write_text(json.dumps({
        "sources": [{"kind": "vrsbench", "root": str(tree)}], "ingest": {"batch_size": args.batch_size}}))
    cmd = [sys.executable, "-m", "risbench_builder", "build", "-w", str(ws), "--stage", "ingest", "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    with Catalog(ws / "catalog.sqlite") as cat:
        triplets = cat.count("triplets")
        report = json.loads((ws / "reports" / "ingest.json").read_text())
    stage_rate = triplets / report["seconds"]

    sample = sorted((tree / "Annotations_train").glob("*.json"))[:2000]
    t_json, t_json5 = parse_ratio(sample)

    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"triplets ingested        : {triplets} from {report['units']} files")
    print(f"stage time               : {report['seconds']:.1f} s  ->  {stage_rate:,.0f} triplets/s "
          f"(target >= {TARGET_RATE:,.0f}: {stage_rate / TARGET_RATE:.2f}x)")
    print(f"process wall time        : {wall:.1f} s  ->  {triplets / wall:,.0f} triplets/s incl. start-up")
    print(f"peak RSS of the process  : {peak_mb:.0f} MB (target < {TARGET_RSS_MB:.0f} MB: "
          f"{peak_mb / TARGET_RSS_MB:.2f}x of the budget)")
    print(f"parse {len(sample)} files  : json {t_json * 1e3:.0f} ms, json5 {t_json5 * 1e3:.0f} ms "
          f"-> json5 / json = {t_json5 / t_json:.1f}x")


if __name__ == "__main__":
    main()
