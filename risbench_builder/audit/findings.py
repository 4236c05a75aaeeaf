"""The defects ``risbench audit`` looks for in a finished dataset, one small check each.

Every defect kind is one a real RRSIS dataset has been reported to hold: RRSIS-D images a
pixel taller than their masks (Lsan2401/RMSIN#12), sentences that lost their masks
(RMSIN#32), masks that miss their object or spill out of its box (RMSIN#9), the same image in
train and test. A finding never changes a mask; it sends the triplet to a reviewer.

Masks are measured one at a time (:func:`measure`) and only their numbers are kept, so the
audit of a 17,402-triplet dataset holds one mask in memory at a time; checks across triplets
(duplicates, split leaks, position words against the other objects) work on those numbers.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .. import masks
from ..config import AuditConfig
from ..finalize.geometry import check as geometry_check
from ..finalize.geometry import parse
from ..segment.signals import SPECK_FRACTION, component_count, mask_window, window_box
from ..sources.base import MASK_SIZE_MISMATCH, MISSING_MASK, UNDECODABLE_MASK, normalize_expression

BOX_SLACK_PX = 1           # box checks forgive a box one pixel off (tiny objects would fail on that alone)

#: defect kind -> what it means (README and AUDIT.md render this table)
DEFECTS: dict[str, str] = {
    "size_mismatch": "the mask, the image file and the size the annotation declares do not agree "
                     "(RRSIS-D's 800x801 images against 800x800 masks); a near fit is padded or cropped",
    "missing_mask": "the expression has no mask in the dataset (a mask file that is not there, or an "
                    "ann_split sentence whose mask was lost, RMSIN#32)",
    "undecodable_mask": "the mask is in the dataset but does not decode (a broken RLE or image file)",
    "empty_mask": "the mask decodes but holds no pixel",
    "mask_outside_box": "a large share of the mask lies outside the object's box (the mask spills)",
    "mask_box_disagreement": "the mask's tight box and the dataset's box hardly overlap (the mask is "
                             "on another object, or the box is wrong)",
    "many_components": "the mask falls apart into several sizeable pieces (one referent is one object)",
    "duplicate_expression": "the same expression on the same image names two different masks (ambiguous), "
                            "or the same triplet is in the dataset twice",
    "duplicate_mask": "the very same mask on two different images (a copied mask file), or on two objects "
                      "the dataset declares different",
    "split_leak_image": "the same image (same bytes) is in two splits",
    "split_leak_scene": "images of one scene are in two splits",
    "position_contradiction": "the expression names a position (left, top, ...) that the mask contradicts",
    "fresh_mask_disagreement": "a fresh mask from the configured segmenter disagrees with the dataset's mask",
}

_PROBLEM_KINDS = {MISSING_MASK: "missing_mask", UNDECODABLE_MASK: "undecodable_mask",
                  MASK_SIZE_MISMATCH: "size_mismatch"}


@dataclass
class AuditRow:
    """One triplet of the audited proposal set, as the catalog holds it."""

    triplet_id: str
    image_id: str
    image_path: str
    scene_id: str
    sha256: str | None
    source: str
    category: str
    expression: str
    box: tuple[float, float, float, float]
    attributes: dict[str, Any]
    origin_split: str | None
    width: int
    height: int
    rle: str

    @property
    def file_name(self) -> str:
        """The file the dataset names for this triplet (its image, or its annotation file)."""
        return str(self.attributes.get("image_file") or self.image_path.rsplit("/", 1)[-1])

    @property
    def object_key(self) -> str:
        """What identifies the object inside its image: a downloaded REFER set's annotation id, a
        downloaded native set's line (each line is its own referent). Our own exports write one
        annotation or file per *expression*, so there an identical mask is one object named twice."""
        if "origin_triplet_id" in self.attributes:
            return f"mask:{self.rle}"
        ann = self.attributes.get("ann_id")
        return f"ann:{ann}" if ann is not None else f"triplet:{self.triplet_id}"


@dataclass
class Measured:
    """The numbers of one mask the checks need (the mask itself is not kept)."""

    row: AuditRow
    area: int = 0
    tight: tuple[float, float, float, float] | None = None
    outside: int = 0
    components: int = 0
    centroid: tuple[float, float] = (0.0, 0.0)


def measure(row: AuditRow) -> Measured:
    """Decode the mask once and keep area, tight box, pixels outside the box, components, centroid.

    Everything after the decode works on the mask's tight-box crop (nothing lies outside it)."""
    m = Measured(row)
    mask = masks.decode(masks.loads(row.rle)).astype(bool)
    window = mask_window(mask)
    if window is None:
        return m
    crop = mask[window]
    m.tight = window_box(window)
    c0, r0 = int(m.tight[0]), int(m.tight[1])
    m.area = int(np.count_nonzero(crop))
    ys, xs = np.nonzero(crop)
    m.centroid = (float(xs.mean()) + c0 + 0.5, float(ys.mean()) + r0 + 0.5)
    x1, y1, x2, y2 = row.box        # a pixel of slack: RRSIS-D's small vehicles have boxes a pixel off
    inside = masks.rasterize_box((x1 - BOX_SLACK_PX - c0, y1 - BOX_SLACK_PX - r0, x2 + BOX_SLACK_PX - c0,
                                  y2 + BOX_SLACK_PX - r0), *crop.shape).astype(bool)
    m.outside = m.area - int(np.count_nonzero(crop & inside))
    m.components = component_count(crop)
    return m


def single_findings(m: Measured, cfg: AuditConfig) -> list[tuple[str, str]]:
    """Defects one triplet shows alone: (kind, detail)."""
    row, out = m.row, []
    attrs = row.attributes
    problem = str(attrs.get("mask_problem") or "")
    if problem:
        code, _, detail = problem.partition(": ")
        out.append((_PROBLEM_KINDS.get(code, "undecodable_mask"), detail or code))
    elif attrs.get("lost_mask"):
        out.append(("missing_mask", "a sentence of the dataset's annotation files with no mask in its refs"))
    if attrs.get("mask_fitted"):
        out.append(("size_mismatch", str(attrs["mask_fitted"])))
    declared = attrs.get("declared_size")
    if isinstance(declared, (list, tuple)) and len(declared) == 2 and list(declared) != [row.width, row.height]:
        out.append(("size_mismatch", f"the annotation declares {declared[0]}x{declared[1]}, the image file is "
                                     f"{row.width}x{row.height}"))
    if problem or attrs.get("lost_mask"):
        return out
    if m.area == 0:
        out.append(("empty_mask", "the mask holds no pixel"))
        return out
    if not attrs.get("box_from_mask"):
        share = m.outside / m.area
        if share > cfg.max_outside_fraction:
            out.append(("mask_outside_box", f"{share:.0%} of the mask lies outside its box"))
        overlap = masks.box_iou(m.tight, row.box) if m.tight else 0.0
        off_by_a_pixel = m.tight is not None and max(abs(a - b) for a, b in zip(m.tight, row.box)) <= BOX_SLACK_PX
        if overlap < cfg.min_box_iou and not off_by_a_pixel:
            out.append(("mask_box_disagreement", f"the mask's box has IoU {overlap:.2f} with the dataset's box"))
    if m.components > cfg.max_components:
        out.append(("many_components", f"{m.components} components of at least {SPECK_FRACTION:.0%} of the mask"))
    return out


def image_findings(group: Sequence[Measured]) -> dict[str, list[tuple[str, str]]]:
    """Defects among the triplets of one image: duplicates and position words against the others."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    by_expression: dict[str, list[Measured]] = defaultdict(list)
    by_mask: dict[str, list[Measured]] = defaultdict(list)
    for m in group:
        by_expression[normalize_expression(m.row.expression)].append(m)
        if m.area:
            by_mask[m.row.rle].append(m)
    for same in by_expression.values():
        if len(same) < 2:
            continue
        masks_differ = len({m.row.rle for m in same}) > 1
        for m in same:
            others = [o.row.triplet_id for o in same if o is not m]
            why = "names another mask too" if masks_differ else "is in the dataset again"
            out[m.row.triplet_id].append(("duplicate_expression", f"the same expression {why}: "
                                                                  f"{', '.join(others[:3])}"))
    for same in by_mask.values():
        # one mask under two different expressions is one object named twice, unless the dataset
        # declares them different objects (REFER annotation ids)
        if len({m.row.object_key for m in same}) < 2 or len({normalize_expression(m.row.expression)
                                                              for m in same}) < 2:
            continue
        for m in same:
            others = [o.row.triplet_id for o in same if o.row.object_key != m.row.object_key]
            out[m.row.triplet_id].append(("duplicate_mask", f"another object of this image has the same mask: "
                                                            f"{', '.join(others[:3])}"))
    for m in group:
        if not m.area:
            continue
        others = [(o.centroid[0], o.centroid[1], float(o.area)) for o in group
                  if o.area and o.row.category == m.row.category and o.row.rle != m.row.rle]
        found = geometry_check(parse(m.row.expression), m.centroid, (m.row.width, m.row.height), float(m.area), others)
        if found:
            out[m.row.triplet_id].append(("position_contradiction",
                                          "; ".join(f"'{f.word}': {f.reason}" for f in found)))
    return out


class MaskCopies:
    """The same non-empty mask on two different images: a mask file copied under another name
    (a mask that matches another image's object exactly is not chance)."""

    def __init__(self) -> None:
        self._images: dict[str, dict[str, list[str]]] = defaultdict(dict)   # mask digest -> image -> triplets

    def add(self, image_key: str, m: Measured) -> None:
        if m.area:
            digest = hashlib.sha256(f"{m.row.source}\x1f{m.row.rle}".encode()).hexdigest()
            self._images[digest].setdefault(image_key, []).append(m.row.triplet_id)

    def findings(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for by_image in self._images.values():
            if len(by_image) < 2:
                continue
            for image, tids in by_image.items():
                others = [t for other, ts in by_image.items() if other != image for t in ts]
                for tid in tids:
                    out[tid].append(("duplicate_mask", f"a triplet of another image has the very same mask: "
                                                       f"{', '.join(others[:3])}"))
        return out


def split_leaks(rows: Iterable[AuditRow]) -> dict[str, list[tuple[str, str]]]:
    """Triplets whose image bytes, or whose scene, sit in more than one upstream split."""
    rows = list(rows)
    by_sha: dict[str, set[str]] = defaultdict(set)
    by_scene: dict[tuple[str, str], set[str]] = defaultdict(set)
    images_of_scene: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        if not r.origin_split:
            continue
        by_sha[r.sha256 or r.image_id].add(r.origin_split)
        by_scene[(r.source, r.scene_id)].add(r.origin_split)
        images_of_scene[(r.source, r.scene_id)].add(r.sha256 or r.image_id)
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in rows:
        if not r.origin_split:
            continue
        splits = by_sha[r.sha256 or r.image_id]
        if len(splits) > 1:
            out[r.triplet_id].append(("split_leak_image", f"the same image is in {', '.join(sorted(splits))}"))
            continue
        scene = (r.source, r.scene_id)
        if len(by_scene[scene]) > 1 and len(images_of_scene[scene]) > 1:
            out[r.triplet_id].append(("split_leak_scene", f"scene {r.scene_id} is in "
                                                          f"{', '.join(sorted(by_scene[scene]))}"))
    return out


def fresh_finding(imported_rle: str, fresh_rle: str | None, cfg: AuditConfig) -> tuple[str, str] | None:
    """The imported mask against a fresh one from the configured segmenter."""
    if fresh_rle is None:
        return None
    overlap = masks.iou(masks.loads(imported_rle), masks.loads(fresh_rle))
    if overlap < cfg.min_fresh_iou:
        return "fresh_mask_disagreement", f"IoU {overlap:.2f} with a fresh mask"
    return None
