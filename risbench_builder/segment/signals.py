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

from ..masks import box_area, box_iou, mask_iou, rasterize_polygon
from .base import MaskOutput

def tight_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Pixel-edge xyxy box of a bool mask, None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def component_count(mask: np.ndarray, min_fraction: float = 0.05) -> int:
    """Connected components (8-connectivity) holding at least ``min_fraction`` of the mask."""
    if not mask.any():
        return 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas >= min_fraction * areas.sum()).sum())


def compute_signals(out: MaskOutput, prompt_box: Sequence[float], polygon: np.ndarray | None) -> dict[str, float]:
    """All signals for one mask against its prompt box (and OBB polygon when the source has one)."""
    mask = out.mask.astype(bool)
    area = float(mask.sum())
    signals: dict[str, float] = {"area": area}
    if out.iou_pred is not None:
        signals["iou_pred"] = float(np.clip(out.iou_pred, 0.0, 1.0))
    if out.stability is not None:
        signals["stability"] = float(out.stability)
    box = tight_box(mask)
    signals["box_iou"] = box_iou(box, prompt_box) if box else 0.0
    if out.jitter_masks:
        signals["jitter_agreement"] = float(np.mean([mask_iou(mask, j) for j in out.jitter_masks]))
    if out.multimask is not None and len(out.multimask) > 1:
        pairs = [mask_iou(a, b) for a, b in combinations(list(out.multimask), 2)]
        signals["multimask_disagreement"] = 1.0 - float(np.mean(pairs))
    signals["components"] = float(component_count(mask))
    prompt_area = box_area(prompt_box)
    signals["area_ratio"] = area / prompt_area if prompt_area > 0 else 0.0
    if polygon is not None:
        signals["polygon_iou"] = mask_iou(mask, rasterize_polygon(polygon, *mask.shape))
    return {k: round(v, 6) for k, v in signals.items()}
