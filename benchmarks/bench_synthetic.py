"""The synthetic VRSBench writer (the demo's sources, the smoke test's export) in-process against
its process pool, side by side in one run, and whether the two trees are byte-identical.

Every patch has its own seeded generator, so the pool may render them in any process; the files
must not change. ``risbench demo --scenes 250`` (the README's train path) renders 500 patches.

    python benchmarks/bench_synthetic.py [--scenes 250] [--workers N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from risbench_builder.config import SyntheticConfig  # noqa: E402
from risbench_builder.parallel import default_workers  # noqa: E402
from risbench_builder.synthetic import write_vrsbench  # noqa: E402


def digest(root: Path) -> str:
    """One hash over every file's relative path and bytes."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=250)
    ap.add_argument("--patches-per-scene", type=int, default=2)
    ap.add_argument("--workers", type=int, default=default_workers())
    args = ap.parse_args()
    cfg = SyntheticConfig(seed=11, scenes=args.scenes, patches_per_scene=args.patches_per_scene)
    patches = args.scenes * args.patches_per_scene
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}: "
          f"{patches} patches of 512x512")
    seconds, digests = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (0, args.workers):
            out = Path(tmp) / f"w{workers}"
            t = time.perf_counter()
            write_vrsbench(out / "vrsbench", cfg, out / "vrsbench_truth", workers=workers)
            seconds[workers] = time.perf_counter() - t
            digests[workers] = digest(out)
            print(f"workers={workers}: {seconds[workers]:.1f} s, {patches / seconds[workers]:.1f} patches/s")
    print(f"identical files: {digests[0] == digests[args.workers]}; "
          f"ratio={seconds[0] / seconds[args.workers]:.2f} (workers={args.workers} over in-process)")


if __name__ == "__main__":
    main()
