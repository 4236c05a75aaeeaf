"""Filter rules that drop uninformative triplets, each with the reason it goes to ``rejects``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import masks
from ..config import FinalizeConfig
from ..sources.base import normalize_expression
from .geometry import Parsed, parse

EMPTY_MASK = "empty_mask"
TINY_MASK = "tiny_mask"
MASK_BOX_MISMATCH = "mask_box_mismatch"
REVIEWER_REJECTED = "reviewer_rejected"
DUPLICATE_EXPRESSION = "duplicate_expression"
TOO_FEW_WORDS = "too_few_words"
NOT_DISTINGUISHED = "not_distinguished"
GEOMETRY_CONTRADICTION = "geometry_contradiction"


@dataclass
class Candidate:
    """A triplet with a decided mask, as the filters see it."""

    triplet_id: str
    image_id: str
    scene_id: str
    category: str
    expression: str
    box: tuple[float, float, float, float]
    attributes: dict[str, Any]
    origin_split: str | None
    rle: dict
    mask_origin: str                   # auto | consensus | adjudicated
    size: tuple[int, int]              # (W, H)
    area: int = 0
    centroid: tuple[float, float] = (0.0, 0.0)
    parsed: Parsed = field(default_factory=Parsed)

    def measure(self) -> "Candidate":
        m = masks.decode(self.rle)
        self.area = int(m.sum())
        if self.area:
            ys, xs = np.nonzero(m)
            self.centroid = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
        self.parsed = parse(self.expression)
        return self


def mask_rules(c: Candidate, cfg: FinalizeConfig) -> tuple[str, str] | None:
    """Rules on one candidate alone; the first that fails gives (reason, detail)."""
    if c.area == 0:
        return EMPTY_MASK, "the mask is empty"
    if c.area < cfg.min_mask_pixels:
        return TINY_MASK, f"mask has {c.area} px, fewer than {cfg.min_mask_pixels}"
    tight = masks.bbox_xyxy(c.rle)
    overlap = masks.box_iou(tight, c.box)
    if overlap < cfg.min_mask_box_iou:
        return MASK_BOX_MISMATCH, f"mask box vs prompt box IoU {overlap:.2f} < {cfg.min_mask_box_iou}"
    words = len(c.expression.split())
    if words < cfg.min_words:
        return TOO_FEW_WORDS, f"{words} word(s) in {c.expression!r}, fewer than {cfg.min_words}"
    if cfg.require_distinguisher and c.attributes.get("is_unique") is False and not c.parsed.distinguishes:
        return NOT_DISTINGUISHED, f"non-unique {c.category} with no position, size or relation word: {c.expression!r}"
    return None


def duplicate_key(c: Candidate) -> tuple[str, str]:
    return c.image_id, normalize_expression(c.expression)
