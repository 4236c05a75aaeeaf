"""What every box-prompted segmenter takes and returns.

The stage hands a segmenter one *view* at a time (a whole image, or a zoomed context crop for
tiny objects) with all of that view's boxes and their jittered copies, so a segmenter that
has an image encoder can run it once per view. Quality signals and routing are computed from
:class:`MaskOutput` elsewhere (``signals.py``), the same way for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class View:
    """An RGB uint8 (H, W, 3) array plus what identifies it for caching."""

    image: np.ndarray
    key: str                      # image sha256, plus the crop window for crops
    polygons: list[np.ndarray | None] = field(default_factory=list)  # per box, (4, 2) in view pixels or None


@dataclass
class MaskOutput:
    """One box's result. Masks are bool (H, W) in view pixels."""

    mask: np.ndarray
    iou_pred: float | None = None          # model's own quality estimate (clipped to [0, 1])
    stability: float | None = None         # SAM stability score at offset 1.0 on logits
    multimask: np.ndarray | None = None    # (3, H, W) bool alternatives, for disagreement
    jitter_masks: list[np.ndarray] = field(default_factory=list)  # masks from the K jittered boxes


class Segmenter(Protocol):
    name: str                  # "sam:vit_b", "grabcut", "box"
    model_sha256: str          # checksum of the weights ("" for weight-free backends)

    def segment(self, view: View, boxes: np.ndarray, jitter: np.ndarray) -> list[MaskOutput]:
        """``boxes`` (N, 4) xyxy and ``jitter`` (N, K, 4) xyxy in view pixels, clipped; one output per box."""
