"""Quality signals per mask, the same for every backend (SAM paper, segment-anything ``amg.py``, SAM-U).

Each signal is a float where higher means "more likely fine", except the ones named
``*_disagreement``, ``components`` and ``area_ratio``, whose good range the router knows.
Signals a backend cannot give (GrabCut has no predicted IoU) are simply absent.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import cv2
import numpy as np

from ..masks import box_area, box_iou, rasterize_polygon
from .base import MaskOutput

SPECK_FRACTION = 0.05   # components holding less of the mask than this are specks, not parts


def _as_bool(mask: np.ndarray) -> np.ndarray:
    """``mask`` as a bool array, without a copy when it is one already."""
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask.astype(bool)


def mask_window(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Row and column slices of a mask's tight box (its nonzero pixels), None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[r0:r1].any(axis=0))
    return slice(r0, r1), slice(int(cols[0]), int(cols[-1]) + 1)


def window_box(window: tuple[slice, slice] | None) -> tuple[float, float, float, float] | None:
    """The pixel-edge xyxy box of a :func:`mask_window`."""
    if window is None:
        return None
    rows, cols = window
    return float(cols.start), float(rows.start), float(cols.stop), float(rows.stop)


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Pixel-edge xyxy box of a bool mask, None when empty."""
    return window_box(mask_window(mask))


def _components(crop: np.ndarray, min_fraction: float = SPECK_FRACTION) -> int:
    """``component_count`` of a mask from any crop that holds all of it (its tight box)."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas >= min_fraction * areas.sum()).sum())


def component_count(mask: np.ndarray, min_fraction: float = SPECK_FRACTION) -> int:
    """Connected components (8-connectivity) holding at least ``min_fraction`` of the mask.

    Labelled inside the mask's tight box: nothing outside it can join or split a component.
    """
    window = mask_window(mask)
    return 0 if window is None else _components(mask[window], min_fraction)


def _iou(a: np.ndarray, a_count: int, a_window: tuple[slice, slice] | None, b: np.ndarray, b_count: int) -> float:
    """``mask_iou(a, b)`` of bool masks from their pixel counts and the intersection inside a's tight box."""
    inter = 0 if a_window is None else int(np.count_nonzero(np.logical_and(a[a_window], b[a_window])))
    union = a_count + b_count - inter
    return inter / union if union else 0.0


def compute_signals(out: MaskOutput, prompt_box: Sequence[float], polygon: np.ndarray | None) -> dict[str, float]:
    """All signals for one mask against its prompt box (and OBB polygon when the source has one).

    Counts come from whole-frame ``count_nonzero``; everything else (components, intersections)
    from the mask's tight-box crop, outside which it has no pixels: same numbers as labelling and
    intersecting whole frames, a fraction of the work for an object much smaller than its view.
    """
    mask = _as_bool(out.mask)
    window = mask_window(mask)
    count = 0 if window is None else int(np.count_nonzero(mask[window]))
    area = float(count)
    signals: dict[str, float] = {"area": area}
    if out.iou_pred is not None:
        signals["iou_pred"] = float(np.clip(out.iou_pred, 0.0, 1.0))
    if out.stability is not None:
        signals["stability"] = float(out.stability)
    box = window_box(window)
    signals["box_iou"] = box_iou(box, prompt_box) if box else 0.0
    if out.jitter_masks:
        jitter = [_as_bool(j) for j in out.jitter_masks]
        signals["jitter_agreement"] = float(np.mean([_iou(mask, count, window, j, int(np.count_nonzero(j)))
                                                     for j in jitter]))
    if out.multimask is not None and len(out.multimask) > 1:
        alts = [_as_bool(m) for m in out.multimask]
        counts = [int(np.count_nonzero(m)) for m in alts]
        windows = [mask_window(m) for m in alts[:-1]]       # the first of each pair is never the last
        pairs = [_iou(alts[i], counts[i], windows[i], alts[j], counts[j])
                 for i, j in combinations(range(len(alts)), 2)]
        signals["multimask_disagreement"] = 1.0 - float(np.mean(pairs))
    signals["components"] = float(0 if window is None else _components(mask[window]))
    prompt_area = box_area(prompt_box)
    signals["area_ratio"] = area / prompt_area if prompt_area > 0 else 0.0
    if polygon is not None:
        filled = rasterize_polygon(polygon, *mask.shape)
        signals["polygon_iou"] = _iou(mask, count, window, filled, int(np.count_nonzero(filled)))
    return {k: round(v, 6) for k, v in signals.items()}
