"""What every box-prompted segmenter takes and returns.

The stage hands a segmenter one *view* at a time (a whole image, or a zoomed context crop for
tiny objects) with all of that view's boxes and their jittered copies, so a segmenter that
has an image encoder can run it once per view. Quality signals and routing are computed from
:class:`MaskOutput` elsewhere (``signals.py``), the same way for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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


@dataclass
class MeasuredMask:
    """One box's result reduced to what its signals and its catalog row need, measured where the
    masks were made (a model on a GPU hands back this instead of dense frames; ``signals.measure``
    makes it from a :class:`MaskOutput`).

    ``crop`` is the main mask inside its tight box, whose top-left pixel is ``(x0, y0)`` in a
    ``height`` x ``width`` frame; an empty mask has a 0x0 crop. The other masks are kept as
    pixel counts: each jittered mask's, and its overlap with the main mask; each multimask
    alternative's, and the overlap of every pair (in ``itertools.combinations`` order).
    """

    height: int
    width: int
    x0: int
    y0: int
    crop: np.ndarray
    iou_pred: float | None = None
    stability: float | None = None
    jitter_counts: list[int] = field(default_factory=list)
    jitter_overlaps: list[int] = field(default_factory=list)
    multimask_counts: list[int] = field(default_factory=list)
    multimask_overlaps: list[int] = field(default_factory=list)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.crop))

    @property
    def window(self) -> tuple[slice, slice] | None:
        """Where ``crop`` sits in the frame (row and column slices), None when the mask is empty."""
        if self.crop.size == 0:
            return None
        h, w = self.crop.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """The main mask's pixel-edge xyxy tight box, None when it is empty."""
        window = self.window
        if window is None:
            return None
        rows, cols = window
        return float(cols.start), float(rows.start), float(cols.stop), float(rows.stop)

    def placed(self, x0: int, y0: int, height: int, width: int) -> "MeasuredMask":
        """The same masks with this frame's top-left at ``(x0, y0)`` of a ``height`` x ``width``
        frame (a context crop pasted back into its image): only the position changes."""
        return replace(self, height=height, width=width, x0=self.x0 + x0 if self.crop.size else 0,
                       y0=self.y0 + y0 if self.crop.size else 0)


class Segmenter(Protocol):
    name: str                  # "sam:vit_b", "grabcut", "box"
    model_sha256: str          # checksum of the weights ("" for weight-free backends)

    def segment(self, view: View, boxes: np.ndarray, jitter: np.ndarray) -> list[MaskOutput]:
        """``boxes`` (N, 4) xyxy and ``jitter`` (N, K, 4) xyxy in view pixels, clipped; one output per box."""
