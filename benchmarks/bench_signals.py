"""Quality signals per mask (``segment/signals.py``): whole-frame reference vs tight-box crops.

sam-refine computes the signals of every box on its view's full frame. Realistic inputs: 800x800
frames, one object of 20-200 px per mask (a rotated rectangle or an ellipse, sometimes with a
detached speck), its 4 jitter masks and 3 multimask alternatives (shifted / grown / shrunk copies,
one of them a part of the object), the OBB polygon of the object (often slightly off) and the
axis-aligned prompt box. Side by side in one run, on the same inputs:

  reference   the whole-frame implementation as it was (``_reference_compute_signals``, copied
              verbatim into tests/segment/test_signals.py): bool sums, IoUs and connected
              components over the full 800x800 frame
  crops       ``compute_signals``: pixel counts, then intersections and components inside the
              mask's tight box

Rounds alternate (reference, crops, reference, ...) so load drift hits both; each prints the
per-mask time, and the summary the median per-mask time of each and reference / crops. Every
dict is compared first: the script stops if one differs.

    python benchmarks/bench_signals.py [--masks 200] [--rounds 7] [--size 800] [--seed 0]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from risbench_builder.segment.base import MaskOutput  # noqa: E402
from risbench_builder.segment.signals import compute_signals  # noqa: E402
from tests.segment.test_signals import _reference_compute_signals  # noqa: E402


def shape_mask(size: int, cx: float, cy: float, w: float, h: float, angle: float, ellipse: bool) -> np.ndarray:
    """A filled rotated rectangle or ellipse on a size x size frame (clipped at the border)."""
    m = np.zeros((size, size), np.uint8)
    if ellipse:
        cv2.ellipse(m, ((cx, cy), (w, h), angle), 1, -1)
    else:
        cv2.fillPoly(m, [np.round(cv2.boxPoints(((cx, cy), (w, h), angle))).astype(np.int32)], 1)
    return m.astype(bool)


def make_case(rng: np.random.Generator, size: int) -> tuple[MaskOutput, tuple[float, ...], np.ndarray]:
    """One SAM-like output for an object of 20-200 px, with its prompt box and OBB polygon."""
    w, h = rng.uniform(20, 200, 2)
    cx, cy = rng.uniform(0, size, 2)                      # some objects are cut by the frame
    angle, ellipse = float(rng.uniform(0, 180)), bool(rng.random() < 0.5)

    def jittered(scale: float) -> np.ndarray:
        dx, dy = rng.normal(0, 0.05, 2) * (w, h)
        sw, sh = rng.normal(scale, 0.05, 2)
        return shape_mask(size, cx + dx, cy + dy, w * sw, h * sh, angle + rng.normal(0, 3), ellipse)

    mask = jittered(1.0)
    if rng.random() < 0.3:                                # a detached speck or fragment
        x, y = (int(v) for v in rng.integers(0, size, 2))
        mask[y : y + int(rng.integers(1, 8)), x : x + int(rng.integers(1, 8))] = True
    jitter = [jittered(1.0) for _ in range(4)]
    multimask = np.stack([jittered(0.5), jittered(1.0), jittered(1.3)])
    polygon = cv2.boxPoints(((cx + rng.normal(0, 2), cy + rng.normal(0, 2)), (w, h), angle)).astype(np.float64)
    xs, ys = polygon[:, 0], polygon[:, 1]
    box = (max(0.0, xs.min()), max(0.0, ys.min()), min(size, xs.max()), min(size, ys.max()))
    out = MaskOutput(mask=mask, iou_pred=float(rng.uniform(0.5, 1.0)), stability=float(rng.uniform(0.5, 1.0)),
                     multimask=multimask, jitter_masks=jitter)
    return out, box, polygon


def per_mask_ms(fn, cases) -> float:
    t0 = time.perf_counter()
    for out, box, polygon in cases:
        fn(out, box, polygon)
    return (time.perf_counter() - t0) / len(cases) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--masks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    cases = [make_case(rng, args.size) for _ in range(args.masks)]
    for i, (out, box, polygon) in enumerate(cases):
        want, got = _reference_compute_signals(out, box, polygon), compute_signals(out, box, polygon)
        if got != want:
            sys.exit(f"case {i}: crops {got} != reference {want}")
    areas = [int(out.mask.sum()) for out, _, _ in cases]
    print(f"{platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}, "
          f"opencv {cv2.__version__}, {platform.machine()}")
    print(f"{args.masks} masks on {args.size}x{args.size} frames (median area {int(np.median(areas))} px), "
          f"4 jitter + 3 multimask + polygon each; all {args.masks} dicts identical")

    ref, new = [], []
    for r in range(args.rounds):
        ref.append(per_mask_ms(_reference_compute_signals, cases))
        new.append(per_mask_ms(compute_signals, cases))
        print(f"round {r + 1}: reference {ref[-1]:.3f} ms/mask, crops {new[-1]:.3f} ms/mask, "
              f"ratio {ref[-1] / new[-1]:.2f}")
    mr, mn = statistics.median(ref), statistics.median(new)
    print(f"median: reference {mr:.3f} ms/mask, crops {mn:.3f} ms/mask, reference / crops {mr / mn:.2f}x")


if __name__ == "__main__":
    main()
