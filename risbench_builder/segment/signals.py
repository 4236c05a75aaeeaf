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
from .base import MaskOutput, MeasuredMask

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


def _iou(overlap: int, a_count: int, b_count: int) -> float:
    """IoU of two masks from their pixel counts and their overlap."""
    union = a_count + b_count - overlap
    return overlap / union if union else 0.0


def _overlap(crop: np.ndarray, window: tuple[slice, slice] | None, other: np.ndarray) -> int:
    """Pixels set in both a mask (its tight-box ``crop`` at ``window``) and a whole-frame ``other``."""
    return 0 if window is None else int(np.count_nonzero(np.logical_and(crop, other[window])))


def measure(out: MaskOutput) -> MeasuredMask:
    """``out`` reduced to what :func:`signals_from` and the catalog's RLE need (on the host, numpy).

    Counts come from whole-frame ``count_nonzero``; overlaps from the first mask's tight-box crop,
    outside which it has no pixels: the same integers as intersecting whole frames, a fraction of
    the work for an object much smaller than its view.
    """
    mask = _as_bool(out.mask)
    height, width = mask.shape
    window = mask_window(mask)
    crop = mask[window] if window is not None else np.zeros((0, 0), bool)
    x0, y0 = (window[1].start, window[0].start) if window is not None else (0, 0)
    measured = MeasuredMask(height, width, int(x0), int(y0), crop, out.iou_pred, out.stability)
    for j in out.jitter_masks:
        j = _as_bool(j)
        measured.jitter_counts.append(int(np.count_nonzero(j)))
        measured.jitter_overlaps.append(_overlap(crop, window, j))
    if out.multimask is not None and len(out.multimask) > 1:
        alts = [_as_bool(m) for m in out.multimask]
        measured.multimask_counts = [int(np.count_nonzero(m)) for m in alts]
        windows = [mask_window(m) for m in alts[:-1]]       # the first of each pair is never the last
        measured.multimask_overlaps = [_overlap(alts[i][windows[i]], windows[i], alts[j]) if windows[i] else 0
                                       for i, j in combinations(range(len(alts)), 2)]
    return measured


def signals_from(m: MeasuredMask, prompt_box: Sequence[float], polygon: np.ndarray | None) -> dict[str, float]:
    """All signals for one measured mask against its prompt box (and OBB polygon when the source
    has one): the formulas every backend's masks go through, wherever they were measured."""
    count = m.area
    area = float(count)
    signals: dict[str, float] = {"area": area}
    if m.iou_pred is not None:
        signals["iou_pred"] = float(np.clip(m.iou_pred, 0.0, 1.0))
    if m.stability is not None:
        signals["stability"] = float(m.stability)
    box = m.box
    signals["box_iou"] = box_iou(box, prompt_box) if box else 0.0
    if m.jitter_counts:
        signals["jitter_agreement"] = float(np.mean([_iou(o, count, c)
                                                     for c, o in zip(m.jitter_counts, m.jitter_overlaps)]))
    if len(m.multimask_counts) > 1:
        counts = m.multimask_counts
        pairs = [_iou(o, counts[i], counts[j])
                 for (i, j), o in zip(combinations(range(len(counts)), 2), m.multimask_overlaps)]
        signals["multimask_disagreement"] = 1.0 - float(np.mean(pairs))
    signals["components"] = float(_components(m.crop) if count else 0)
    prompt_area = box_area(prompt_box)
    signals["area_ratio"] = area / prompt_area if prompt_area > 0 else 0.0
    if polygon is not None:
        filled = rasterize_polygon(polygon, m.height, m.width)
        signals["polygon_iou"] = _iou(_overlap(m.crop, m.window, filled), count, int(np.count_nonzero(filled)))
    return {k: round(v, 6) for k, v in signals.items()}


def compute_signals(out: MaskOutput, prompt_box: Sequence[float], polygon: np.ndarray | None) -> dict[str, float]:
    """All signals for one mask against its prompt box (and OBB polygon when the source has one)."""
    return signals_from(measure(out), prompt_box, polygon)
