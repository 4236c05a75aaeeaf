"""The CroBIM smoke validation (``risbench train --smoke``, shipped ``smoke`` config) on several
synthetic demo-like exports: how much the aligned-vs-shuffled gap depends on the export, and
what a misaligned copy (masks rotated by one triplet) gives. One row per export; both arms always
run. Results go to BENCHMARKS.md (CroBIM, smoke validation). About 11 minutes per export and arm
pair on one CPU core at the shipped 500 steps (run two invocations side by side on 2 cores).

    python benchmarks/bench_smoke_exports.py [--seeds 11 12 13] [--scenes 250] [--misaligned] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risbench_builder.crobim.config import load_config  # noqa: E402
from risbench_builder.crobim.smoke import smoke  # noqa: E402
from tests.crobim.exports import make_hf_export, write_misaligned  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13], help="synthetic generator seeds")
    ap.add_argument("--scenes", type=int, default=250, help="scenes per export (2 patches each)")
    ap.add_argument("--steps", type=int, default=None, help="override smoke.steps (quick trials)")
    ap.add_argument("--misaligned", action="store_true", help="also score each export's misaligned copy")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*random init")
    cfg = load_config("smoke")
    if args.steps:
        cfg.smoke.steps = args.steps
    print(f"smoke config: referents >= {100 * cfg.smoke.min_mask_fraction:g} %, up to {cfg.smoke.train_samples} "
          f"train triplets, {cfg.smoke.steps} steps, verdict gap >= {cfg.smoke.min_gap}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'export':<22}{'train':>6}{'val multi':>10}{'fit':>7}{'aligned':>9}{'shuffled':>9}{'gap':>8}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            base = Path(tmp) / f"s{seed}"
            exports = [(f"seed {seed}", make_hf_export(base, scenes=args.scenes, patches_per_scene=2, seed=seed))]
            if args.misaligned:
                exports.append((f"seed {seed} misaligned", write_misaligned(base)))
            for name, path in exports:
                r = smoke(path, cfg, device="cpu", always_control=True, log=lambda _m: None)
                a, c = r["runs"]["aligned"], r["runs"]["shuffled"]
                print(f"{name:<22}{r['train_samples']:>6}{r['val_multi_samples']:>10}{a['train_mIoU']:>7.3f}"
                      f"{a['val_multi_mIoU']:>9.3f}{c['val_multi_mIoU']:>9.3f}{r['gap']:>8.3f}  {r['verdict']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
