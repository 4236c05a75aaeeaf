"""A finished dataset's own mask, decoded against the image it belongs to.

Readers of finished datasets (``refer``, ``native``, ``hf``) hand masks over undecoded
(:class:`~.base.ImportedMask`); this module turns one into a bool array the size of the image,
or says why it cannot. Known defects of real datasets are repaired where the repair is safe
and recorded either way, because repairing them is what importing is for:

- a mask a few pixels off the image size (RRSIS-D ships 800x801 images with 800x800 masks,
  Lsan2401/RMSIN#12) is padded or cropped at its bottom/right edge and the fit is recorded;
- an RLE that does not decode, a mask file that is missing or unreadable, or a size far from
  the image's give an empty mask plus a problem (kind, detail): the triplet stays, flagged, so
  a fresh mask and a reviewer can repair it.

REFER annotations may hold several RLEs or polygons in one ``segmentation``; they are united
(REFER's ``getMask`` sums them and then keeps only pixels equal to 1, which zeroes overlaps; a
union is what the annotator drew).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
import numpy as np

from .. import masks
from .base import MASK_SIZE_MISMATCH, MISSING_MASK, UNDECODABLE_MASK, ImportedMask

#: the segmenter name of imported masks in ``proposals`` (one name for every import kind: a
#: workspace has one current proposal set, and the kind is in each triplet's source)
IMPORTED_SEGMENTER = "imported"

#: masks this close to the image size (per side: max(2 px, 1 %)) are fitted, not refused
FIT_MIN_PX, FIT_FRACTION = 2, 0.01


@dataclass
class DecodedMask:
    """An imported mask at the image's size; ``problem`` = (kind, detail) when it could not be
    used (the mask is then empty), ``fitted`` = a note when it was padded/cropped to fit."""

    mask: np.ndarray
    problem: tuple[str, str] | None = None
    fitted: str | None = None


def _raw(source: ImportedMask) -> np.ndarray:
    """The mask as the dataset stores it (any size); MaskError/OSError when it does not decode."""
    if source.rle is not None:
        rle = source.rle
        if not isinstance(rle, dict):
            raise masks.MaskError(f"segmentation is a {type(rle).__name__}, not an RLE dict")
        if "parts" in rle:
            parts = rle["parts"]
            if not isinstance(parts, list) or not parts:
                raise masks.MaskError("segmentation holds no RLE parts")
            decoded = [masks.decode(p) for p in parts]
            if len({d.shape for d in decoded}) != 1:
                raise masks.MaskError(f"segmentation parts have different sizes: {sorted({d.shape for d in decoded})}")
            return np.logical_or.reduce(decoded)
        if "polygons" in rle:
            size = rle.get("size")
            if not isinstance(size, (list, tuple)) or len(size) != 2:
                raise masks.MaskError("polygon segmentation without an image size")
            h, w = int(size[0]), int(size[1])
            out = np.zeros((h, w), bool)
            for flat in rle["polygons"] or []:
                if not isinstance(flat, (list, tuple)) or len(flat) % 2:
                    raise masks.MaskError("a polygon is not a flat list of x, y pairs")
                pts = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
                out |= masks.rasterize_polygon(pts, h, w).astype(bool)
            return out
        return masks.decode(rle).astype(bool)
    if source.data is not None:
        return masks.read_png_mask(io.BytesIO(source.data)).astype(bool)
    if source.path is not None:
        return masks.read_png_mask(source.path).astype(bool)
    raise masks.MaskError("the record names no mask")


def _tolerance(side: int) -> int:
    return max(FIT_MIN_PX, int(round(FIT_FRACTION * side)))


def decode_imported(source: ImportedMask | None, width: int, height: int) -> DecodedMask:
    """``source`` as a bool (height, width) mask, fitted or refused as the module says."""
    empty = np.zeros((height, width), bool)
    where = f"{source.where}: " if source is not None and source.where else ""
    if source is None:
        return DecodedMask(empty, (MISSING_MASK, "the dataset has no mask for this expression"))
    try:
        raw = _raw(source)
    except FileNotFoundError:
        return DecodedMask(empty, (MISSING_MASK, f"{where}mask file {source.path} does not exist"))
    except (masks.MaskError, OSError, ValueError, TypeError, OverflowError) as exc:
        return DecodedMask(empty, (UNDECODABLE_MASK, f"{where}{' '.join(str(exc).split())[:200]}"))
    mh, mw = raw.shape
    if (mh, mw) == (height, width):
        return DecodedMask(raw)
    note = f"mask {mw}x{mh} on a {width}x{height} image"
    if abs(mh - height) > _tolerance(height) or abs(mw - width) > _tolerance(width):
        return DecodedMask(empty, (MASK_SIZE_MISMATCH, f"{where}{note}: too far apart to fit"))
    fitted = np.zeros((height, width), bool)
    h, w = min(mh, height), min(mw, width)
    fitted[:h, :w] = raw[:h, :w]
    lost = int(raw.sum()) - int(fitted.sum())
    return DecodedMask(fitted, fitted=note + (f" (fitted at the bottom/right edge; {lost} mask pixels cut)"
                                              if lost else " (fitted at the bottom/right edge)"))


__all__ = ["IMPORTED_SEGMENTER", "DecodedMask", "decode_imported"]
