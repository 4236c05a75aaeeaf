"""The baseline and fallback: the prompt itself, rasterised (the OBB polygon when there is one)."""

from __future__ import annotations

import numpy as np

from ..masks import rasterize_box, rasterize_polygon
from .base import MaskOutput, View


class BoxSegmenter:
    name = "box"
    model_sha256 = ""
    host_only = True           # plain CPU code: sam-refine runs it whole in its worker processes

    def segment(self, view: View, boxes: np.ndarray, jitter: np.ndarray) -> list[MaskOutput]:
        h, w = view.image.shape[:2]
        outputs = []
        for i, box in enumerate(boxes):
            polygon = view.polygons[i] if i < len(view.polygons) else None
            mask = rasterize_polygon(polygon, h, w) if polygon is not None else rasterize_box(box, h, w)
            outputs.append(MaskOutput(mask=mask.astype(bool),
                                      jitter_masks=[rasterize_box(b, h, w).astype(bool) for b in jitter[i]]))
        return outputs
