"""The one mask and geometry toolbox.

Inside the builder every mask is a COCO compressed RLE (pycocotools) held as a dict
``{"size": [H, W], "counts": str}`` and stored as JSON text in the catalog. Other encodings
(PNG, polygons, Label Studio brush RLE) exist only at the edges and convert through here.

>>> m = np.zeros((4, 6), np.uint8); m[1:3, 2:5] = 1
>>> rle = encode(m); area(rle), bbox_xyxy(rle)
(6, (2.0, 1.0, 5.0, 3.0))
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable, Sequence, TypedDict

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask
from shapely.errors import ShapelyError
from shapely.geometry import MultiPoint, Polygon

from .images import MAX_IMAGE_PIXELS, open_image

Box = tuple[float, float, float, float]
Point = tuple[float, float]


class RLE(TypedDict):
    """A COCO compressed RLE as pycocotools writes it, with ``counts`` as text: ``size`` is
    ``[height, width]``, ``counts`` the run lengths of the column-major (Fortran order) mask,
    alternating 0-runs and 1-runs from a 0-run, in COCO's 6-bit character code."""

    size: list[int]
    counts: str

#: The largest mask (H x W pixels) a decoder builds; bigger sizes are refused before anything is
#: allocated. 2**30 (1 GiB as uint8) holds the largest DOTA-v2 image (29200 x 27620), whose
#: full-image masks the box segmenter rasterises; no dimension may exceed it either.
MAX_MASK_PIXELS = MAX_IMAGE_PIXELS       # 2**30: a mask covers its image
#: Polygon coordinates beyond +-MAX_COORD pixels are refused (or rejected by repair_polygon).
MAX_COORD = 1e9


class MaskError(ValueError):
    """Malformed mask or geometry input (untrusted JSON, a brush stream, a polygon): one line."""


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


def _line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:120]}" if text else type(exc).__name__


def _dims(height: Any, width: Any, what: str = "mask") -> tuple[int, int]:
    """(height, width) as ints: integers (not bool), >= 0, H*W <= MAX_MASK_PIXELS."""
    for value, name in ((height, "height"), (width, "width")):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise MaskError(f"{what} {name} must be an integer, got {_short(value)}")
        if value < 0:
            raise MaskError(f"{what} {name} {value} is negative")
        if value > MAX_MASK_PIXELS:
            raise MaskError(f"{what} {name} {value} is over MAX_MASK_PIXELS ({MAX_MASK_PIXELS})")
    h, w = int(height), int(width)
    if h * w > MAX_MASK_PIXELS:
        raise MaskError(f"{what} {h}x{w} has {h * w} pixels, over MAX_MASK_PIXELS ({MAX_MASK_PIXELS})")
    return h, w


# --------------------------------------------------------------------------- RLE
def encode(mask: np.ndarray) -> RLE:
    """Binary (H, W) mask -> COCO compressed RLE with a str ``counts``."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask.astype(bool).astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_runs(counts: str | bytes) -> np.ndarray:
    """The run lengths of a COCO compressed-RLE string (pycocotools ``rleFrString``), vectorised.

    Parsed here so that a corrupt string is refused before pycocotools (which does not check
    bounds) decodes it. Runs may come out negative (the string stores differences); callers check.
    Raises :class:`MaskError` (a ValueError) for a character outside ``0``..``o``, a value longer
    than 7 characters or a string that ends inside a value.

    >>> rle_runs(encode(np.eye(3, dtype=np.uint8))["counts"]).tolist()
    [0, 1, 3, 1, 3, 1]
    """
    if isinstance(counts, str):
        try:
            data = counts.encode("ascii")
        except UnicodeEncodeError:
            raise MaskError("RLE counts string holds a non-ASCII character") from None
    elif isinstance(counts, (bytes, bytearray)):
        data = bytes(counts)
    else:
        raise MaskError(f"RLE counts must be a string, got {type(counts).__name__}")
    b = np.frombuffer(data, np.uint8).astype(np.int64) - 48
    if b.size == 0:
        return np.zeros(0, np.int64)
    if (b < 0).any() or (b > 63).any():
        raise MaskError("RLE counts string holds a character outside '0'..'o'")
    more = (b & 0x20) != 0
    if more[-1]:
        raise MaskError("RLE counts string ends inside a value")
    ends = np.flatnonzero(~more)
    starts = np.r_[0, ends[:-1] + 1]
    nchars = ends - starts + 1
    if nchars.max() > 7:
        raise MaskError("RLE counts string holds a value longer than 7 characters")
    k = np.arange(b.size) - np.repeat(starts, nchars)
    x = np.add.reduceat((b & 0x1F) << (5 * k), starts)
    negative = (b[ends] & 0x10) != 0
    x = np.where(negative, x | np.left_shift(np.int64(-1), 5 * nchars), x)
    cnts = x.copy()
    cnts[1::2] = np.cumsum(x[1::2])
    cnts[2::2] = np.cumsum(x[2::2])
    return cnts


def _coco(rle: Any) -> dict:
    """A validated RLE as pycocotools wants it (bytes counts): the runs cover exactly H*W pixels."""
    if not isinstance(rle, Mapping):
        raise MaskError(f"RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}")
    if "size" not in rle or "counts" not in rle:
        raise MaskError(f"RLE lacks {'size' if 'size' not in rle else 'counts'}: {_short(dict(rle))}")
    size = rle["size"]
    if not isinstance(size, (list, tuple, np.ndarray)) or len(size) != 2:
        raise MaskError(f"RLE size must be [H, W], got {_short(size)}")
    h, w = _dims(size[0], size[1], "RLE size")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple)):                # uncompressed RLE (COCO iscrowd style)
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in counts):
            raise MaskError("uncompressed RLE counts must be integers")
        if any(c < 0 for c in counts) or sum(int(c) for c in counts) != h * w:
            raise MaskError(f"RLE counts cover {sum(int(c) for c in counts)} pixels (or hold a negative run), "
                            f"size {h}x{w} says {h * w}")
        try:
            return coco_mask.frPyObjects({"counts": [int(c) for c in counts], "size": [h, w]}, h, w)
        except Exception as exc:  # noqa: BLE001 - any pycocotools failure is a malformed RLE
            raise MaskError(f"RLE counts rejected by pycocotools: {_line(exc)}") from None
    if not isinstance(counts, (str, bytes, bytearray)):
        raise MaskError(f"RLE counts must be a string or a list of ints, got {type(counts).__name__}")
    cacheable = isinstance(counts, (str, bytes)) and len(counts) <= 8192
    problem = (_runs_problem_cached if cacheable else _runs_problem)(counts, h, w)
    if problem:
        raise MaskError(problem)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts)}


def _runs_problem(counts: str | bytes | bytearray, h: int, w: int) -> str | None:
    """Why a compressed counts string is not a decodable H x W mask, or None."""
    if len(counts) > 7 * (h * w + 1):
        return f"RLE counts string of {len(counts)} characters is too long for size {h}x{w}"
    try:
        runs = rle_runs(counts)
    except MaskError as exc:
        return str(exc)
    if (runs < 0).any():
        return "RLE counts hold a negative run"
    if int(runs.sum()) != h * w:
        return f"RLE counts cover {int(runs.sum())} pixels, size {h}x{w} says {h * w}"
    return None


# one RLE is often decoded, measured and boxed in a row: remember the verdict on short strings
_runs_problem_cached = functools.lru_cache(maxsize=4096)(_runs_problem)


def _pycoco(what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - inputs are validated; anything left is a malformed RLE
        raise MaskError(f"{what}: pycocotools failed: {_line(exc)}") from None


def decode(rle: RLE) -> np.ndarray:
    """COCO RLE -> uint8 (H, W) mask of 0/1.

    ``counts`` is a compressed string (str or bytes) or an uncompressed list of run lengths.
    Raises :class:`MaskError` (a ValueError) when ``rle`` is not such a dict, its size is not
    two integers >= 0 with H*W <= :data:`MAX_MASK_PIXELS`, or its runs are malformed, negative
    or do not cover exactly H*W pixels.
    """
    return _pycoco("decode", coco_mask.decode, _coco(rle)).astype(np.uint8)


def area(rle: RLE) -> int:
    """Foreground pixels of a COCO RLE. Raises :class:`MaskError` as :func:`decode` does."""
    return int(_pycoco("area", coco_mask.area, _coco(rle)))


def bbox_xyxy(rle: RLE) -> Box:
    """Tight box of the mask in pixel-edge coordinates (x2, y2 exclusive).
    Raises :class:`MaskError` as :func:`decode` does."""
    x, y, w, h = (float(v) for v in _pycoco("bbox_xyxy", coco_mask.toBbox, _coco(rle)))
    return (x, y, x + w, y + h)


def iou(a: RLE, b: RLE) -> float:
    """Mask IoU of two RLEs of the same size (0 when both are empty).
    Raises :class:`MaskError` as :func:`decode` does, or when the sizes differ."""
    ca, cb = _coco(a), _coco(b)
    if ca["size"] != cb["size"]:
        raise MaskError(f"mask sizes differ: {a['size']} vs {b['size']}")
    return float(_pycoco("iou", coco_mask.iou, [ca], [cb], [0])[0][0])


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two binary arrays (0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def boundary_iou(a: np.ndarray, b: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU (Cheng et al., CVPR 2021): IoU of the bands within d px inside each mask's
    contour, d = ``dilation_ratio`` x image diagonal; it punishes wrong edges that plain IoU of a
    large object hides (0 when both bands are empty).

    >>> m = np.zeros((50, 50), np.uint8); m[10:40, 10:40] = 1
    >>> boundary_iou(m, m), round(boundary_iou(m, np.roll(m, 3, axis=1)), 3)
    (1.0, 0.303)
    """
    d = max(1, int(round(dilation_ratio * float(np.hypot(*a.shape[:2])))))

    def band(m: np.ndarray) -> np.ndarray:
        m = m.astype(np.uint8)
        padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
        return (m - eroded).astype(bool)

    return mask_iou(band(a), band(b))


def dumps(rle: RLE) -> str:
    """The catalog's text form of an RLE: compact JSON, ``size`` first.

    >>> dumps({"size": [2, 3], "counts": "06"})
    '{"size":[2,3],"counts":"06"}'
    """
    return json.dumps({"size": list(rle["size"]), "counts": rle["counts"]}, separators=(",", ":"))


def loads(text: str | bytes) -> RLE:
    """JSON text -> the RLE dict it holds (as parsed), validated as :func:`decode` validates.

    Raises :class:`MaskError` or ``json.JSONDecodeError`` (both ValueErrors) for text that is
    not JSON, nests too deeply, or does not hold a well-formed RLE.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise MaskError(f"RLE JSON must be text, got {type(text).__name__}")
    try:
        rle = json.loads(text)
    except RecursionError:
        raise MaskError("RLE JSON nests too deeply") from None
    _coco(rle)
    return rle


# ----------------------------------------------------------------------- boxes
def box_area(box: Sequence[float]) -> float:
    """Area of an xyxy box; 0 for an empty or inverted one.

    >>> box_area((0, 0, 4, 2.5)), box_area((5, 5, 1, 9))
    (10.0, 0.0)
    """
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes (0 when both are empty).

    >>> box_iou((0, 0, 2, 2), (1, 0, 3, 2))
    0.3333333333333333
    """
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = box_area((ix1, iy1, ix2, iy2))
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """An xyxy box clipped to a ``width`` x ``height`` image, as floats.

    >>> clip_box((-5, 10, 700, 20), 512, 512)
    (0.0, 10.0, 512.0, 20.0)
    """
    x1, y1, x2, y2 = box
    return (
        float(min(max(x1, 0.0), width)),
        float(min(max(y1, 0.0), height)),
        float(min(max(x2, 0.0), width)),
        float(min(max(y2, 0.0), height)),
    )


def _point_array(points: Any) -> np.ndarray:
    """(N, 2) float64 from pairs (list, tuple, array) or a flat x, y, x, y... list; shape only."""
    if isinstance(points, (str, bytes, bytearray, Mapping)):
        raise MaskError(f"points must be (x, y) pairs, got {type(points).__name__}")
    try:
        arr = np.asarray(points if isinstance(points, np.ndarray) else list(points), dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise MaskError(f"points must be numeric (x, y) pairs: {_line(exc)}") from None
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim == 1 and arr.size % 2 == 0:
        return arr.reshape(-1, 2)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr
    raise MaskError(f"points must be (x, y) pairs or a flat x, y list of even length, got shape {arr.shape}")


def _coord_problem(arr: np.ndarray) -> str | None:
    if not np.isfinite(arr).all():
        return "non-finite coordinate (NaN or inf)"
    if arr.size and float(np.abs(arr).max()) > MAX_COORD:
        return f"coordinate beyond +-{MAX_COORD:g} (MAX_COORD)"
    return None


def _points(points: Any) -> np.ndarray:
    arr = _point_array(points)
    problem = _coord_problem(arr)
    if problem:
        raise MaskError(f"polygon has a {problem}")
    return arr


def polygon_box(points: Iterable[Sequence[float]]) -> Box:
    """(x1, y1, x2, y2) around the points. Raises :class:`MaskError` (a ValueError) for no points,
    points that are not numeric (x, y) pairs, or a NaN, infinite or beyond-MAX_COORD coordinate."""
    pts = _points(points)
    if not len(pts):
        raise MaskError("polygon has no points")
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def repair_polygon(points: Sequence[Sequence[float]]) -> tuple[list[Point] | None, str | None]:
    """Return a valid simple polygon for ``points`` and what was done to it.

    A self-intersecting ("bow-tie") quad, as DOTA labels sometimes hold, is replaced by the
    convex hull of its vertices when that hull keeps every vertex: the annotator clicked the
    right corners in the wrong order. Anything else that is invalid or has no area (also a NaN,
    infinite or beyond-MAX_COORD coordinate) gives ``(None, reason)`` so the caller can reject it.
    Raises :class:`MaskError` (a ValueError) only when ``points`` are not numeric (x, y) pairs.
    """
    arr = _point_array(points)
    problem = _coord_problem(arr)
    if problem:
        return None, problem
    pts = [(float(x), float(y)) for x, y in arr.tolist()]
    if len(pts) < 3:
        return None, "fewer than 3 vertices"
    try:
        poly = Polygon(pts)
        if poly.is_valid and poly.area > 0:
            return pts, None
        hull = MultiPoint(pts).convex_hull
        if isinstance(hull, Polygon) and hull.area > 0:
            hull_pts = [(float(x), float(y)) for x, y in list(hull.exterior.coords)[:-1]]
            if len(hull_pts) == len(set(pts)):
                return _orient_like_dota(hull_pts, pts[0]), "self-intersecting: vertices reordered to convex hull"
            return None, f"self-intersecting and not convex ({len(hull_pts)} of {len(set(pts))} vertices on hull)"
    except (ShapelyError, ValueError) as exc:
        return None, f"geometry error: {_line(exc)}"
    return None, "zero-area polygon"


def _orient_like_dota(hull: list[Point], first: Point) -> list[Point]:
    """Clockwise in image coordinates (y down), starting at the original first vertex."""
    arr = np.asarray(hull)
    signed = 0.5 * np.sum(arr[:, 0] * np.roll(arr[:, 1], -1) - np.roll(arr[:, 0], -1) * arr[:, 1])
    if signed < 0:  # counter-clockwise on screen
        hull = hull[::-1]
    start = hull.index(first) if first in hull else 0
    return hull[start:] + hull[:start]


def polygon_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """Area IoU of two polygons (invalid ones repaired with ``buffer(0)``; 0 when the union is
    empty; an empty point list is an empty polygon). Raises :class:`MaskError` (a ValueError)
    for points that are not numeric (x, y) pairs, 1 or 2 points, a NaN, infinite or
    beyond-MAX_COORD coordinate, or a geometry error in shapely."""
    pts = [_points(p) for p in (a, b)]
    for arr in pts:
        if 0 < len(arr) < 3:
            raise MaskError(f"polygon has {len(arr)} points, needs at least 3")
    try:
        pa, pb = (Polygon(arr.tolist() if len(arr) else None).buffer(0) for arr in pts)
        union = pa.union(pb).area
        inter = pa.intersection(pb).area
    except (ShapelyError, ValueError) as exc:
        raise MaskError(f"polygon IoU: shapely failed: {_line(exc)}") from None
    return float(inter / union) if union > 0 else 0.0


# ----------------------------------------------------------------- rasterising
def rasterize_polygon(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Fill a pixel-coordinate polygon into a uint8 (H, W) 0/1 mask.

    Coordinates are pixel edges (a box 0..2 covers pixels 0 and 1): a pixel is inside when its
    centre is (even-odd rule, half-open edges), tested only inside the polygon's bounding box.
    Fewer than 3 points give an empty mask. Raises :class:`MaskError` (a ValueError) for a
    height or width that is not an integer >= 0 (or H*W over :data:`MAX_MASK_PIXELS`), points
    that are not numeric (x, y) pairs, or a NaN, infinite or beyond-MAX_COORD coordinate.
    """
    height, width = _dims(height, width)
    pts = _points(points)
    mask = np.zeros((height, width), np.uint8)
    if len(pts) < 3:
        return mask
    c1 = max(int(np.floor(pts[:, 0].min())), 0)
    c2 = min(int(np.ceil(pts[:, 0].max())), width)
    r1 = max(int(np.floor(pts[:, 1].min())), 0)
    r2 = min(int(np.ceil(pts[:, 1].max())), height)
    if c2 <= c1 or r2 <= r1:
        return mask
    xs = np.arange(c1, c2, dtype=np.float64)[None, :] + 0.5
    ys = np.arange(r1, r2, dtype=np.float64)[:, None] + 0.5
    inside = np.zeros((r2 - r1, c2 - c1), bool)
    for (xa, ya), (xb, yb) in zip(pts, np.roll(pts, -1, axis=0)):
        if ya == yb:
            continue
        crosses = (ya <= ys) != (yb <= ys)                      # (rows, 1)
        x_at = xa + (ys - ya) * (xb - xa) / (yb - ya)             # (rows, 1)
        inside ^= crosses & (xs < x_at)
    mask[r1:r2, c1:c2] = inside
    return mask


def rasterize_box(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """Pixels whose centres fall inside the box (pixel-edge coordinates)."""
    mask = np.zeros((height, width), np.uint8)
    x1, y1, x2, y2 = clip_box(box, width, height)
    c1, r1 = int(np.ceil(x1 - 0.5)), int(np.ceil(y1 - 0.5))
    c2, r2 = int(np.ceil(x2 - 0.5)), int(np.ceil(y2 - 0.5))
    mask[r1:r2, c1:c2] = 1
    return mask


# ------------------------------------------------------------------------- PNG
def read_png_mask(path: str | Path | Any) -> np.ndarray:
    """Read a mask image (a path or a binary file object); foreground is ``> 0`` on the first
    channel (3-channel masks occur). OSError when the file cannot be opened; :class:`MaskError`
    (a ValueError) when it does not decode or has more than :data:`MAX_MASK_PIXELS` pixels."""
    f = open(path, "rb") if isinstance(path, (str, os.PathLike)) else path
    try:
        with open_image(f) as im:
            _dims(im.size[1], im.size[0], "mask image")
            arr = np.asarray(im)
    except MaskError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL's decoders raise many kinds; all mean unreadable
        raise MaskError(f"mask image does not decode: {_line(exc)}") from None
    finally:
        if f is not path:
            f.close()
    if arr.ndim == 3:
        arr = arr[..., 0]
    return (arr > 0).astype(np.uint8)


def write_png_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a single-channel 0/255 PNG."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask.astype(bool) * 255).astype(np.uint8), mode="L").save(path)


# ------------------------------------------------------- Label Studio brush RLE
# Label Studio stores a brush mask as the thi.ng ``rle-pack`` bitstream of the RGBA canvas,
# row-major, H*W*4 bytes (only alpha matters), as a JSON list of ints 0-255. Header: 32 bits
# value count | 5 bits word size - 1 | 4 x 4 bits run-length field widths - 1 (3, 4, 8, 16).
# Then blocks: 1 flag bit (1 = one value repeated, 0 = literal values) | 2 bits width index |
# width bits (count - 1) | one word (repeat) or count words (literal). This is not COCO RLE:
# it is row-major and byte-level, so conversions go through a dense mask.
_BRUSH_SIZES = (3, 4, 8, 16)


def brush_encode(mask: np.ndarray) -> list[int]:
    """Binary (H, W) mask -> Label Studio brush RLE, byte for byte what
    ``label_studio_sdk.converter.brush.mask2rle(mask * 255)`` gives (R = G = B = A = 0/255,
    every run a repeat block, the 16-bit field for runs over 256, a zero pad byte when the
    stream already ends on a byte boundary).

    >>> brush_encode(np.ones((1, 2), np.uint8))
    [0, 0, 0, 8, 57, 27, 252, 255, 224]
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    flat = mask.astype(bool).ravel()
    n = flat.size * 4
    header = f"{n:032b}{8 - 1:05b}" + "".join(f"{s - 1:04b}" for s in _BRUSH_SIZES)
    parts = [header]
    if flat.size:
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate(([0], edges))
        lengths = np.diff(np.concatenate((starts, [flat.size]))) * 4
        for length, on in zip(lengths.tolist(), flat[starts].tolist()):
            value = "11111111" if on else "00000000"
            if length <= 8:
                parts.append(f"100{length - 1:03b}{value}")
            elif length <= 16:
                parts.append(f"101{length - 1:04b}{value}")
            elif length <= 256:
                parts.append(f"110{length - 1:08b}{value}")
            else:
                while length > 1 << 16:
                    parts.append(f"111{(1 << 16) - 1:016b}{value}")
                    length -= 1 << 16
                parts.append(f"111{length - 1:016b}{value}")
    bits = "".join(parts)
    bits += "0" * (8 - len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def _brush_bytes(rle: Any) -> np.ndarray:
    """The brush stream as uint8: a list / tuple / 1-D integer array of values 0..255."""
    if isinstance(rle, np.ndarray):
        arr = rle
    elif isinstance(rle, (list, tuple)):
        try:
            arr = np.asarray(rle)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise MaskError(f"brush RLE must be a list of ints 0-255: {_line(exc)}") from None
    else:
        raise MaskError(f"brush RLE must be a list of ints 0-255, got {type(rle).__name__}")
    if arr.size == 0:
        return np.zeros(0, np.uint8)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise MaskError(f"brush RLE must be a flat list of ints 0-255, got {arr.dtype} values of shape {arr.shape}")
    if int(arr.min()) < 0 or int(arr.max()) > 255:
        raise MaskError(f"brush RLE holds a value outside 0-255 ({int(arr.min())}..{int(arr.max())})")
    return arr.astype(np.uint8)


def brush_decode(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> uint8 (H, W) mask of 0/1 (alpha > 127, as browser strokes
    are anti-aliased). Reads any valid stream, not only what :func:`brush_encode` writes.

    Raises :class:`MaskError` (a ValueError) when ``rle`` is not a flat list of ints 0-255,
    ``height``/``width`` are not integers >= 0 (or H*W is over :data:`MAX_MASK_PIXELS`), or
    the stream is short, truncated or holds a value count other than H*W*4.

    >>> brush_decode(brush_encode(np.eye(3, dtype=np.uint8)), 3, 3).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
    height, width = _dims(height, width, "brush mask")
    bits = (np.unpackbits(_brush_bytes(rle)) + 48).tobytes().decode("ascii")  # "0101..."
    if len(bits) < 53:
        raise MaskError("brush RLE is shorter than its 53-bit header")
    n, word = int(bits[0:32], 2), int(bits[32:37], 2) + 1
    sizes = [int(bits[37 + 4 * i: 41 + 4 * i], 2) + 1 for i in range(4)]
    if n != height * width * 4:
        raise MaskError(f"brush RLE holds {n} values, not {height}x{width}x4 = {height * width * 4}")
    values: list[int] = []
    counts: list[int] = []
    pos, done, end = 53, 0, len(bits)
    while done < n:
        if pos + 3 > end:
            raise MaskError("brush RLE ends before its last block")
        head = int(bits[pos:pos + 3], 2)              # repeat flag, width index
        size = sizes[head & 3]
        if pos + 3 + size > end:
            raise MaskError("brush RLE ends in the middle of a block")
        count = int(bits[pos + 3:pos + 3 + size], 2) + 1
        pos += 3 + size
        if head & 4:
            if pos + word > end:
                raise MaskError("brush RLE ends in the middle of a block")
            values.append(int(bits[pos:pos + word], 2))
            counts.append(count)
            pos += word
        else:
            if pos + count * word > end:
                raise MaskError("brush RLE ends in the middle of a block")
            values.extend(int(bits[p:p + word], 2) for p in range(pos, pos + count * word, word))
            counts.extend([1] * count)
            pos += count * word
        done += count
    if done != n:
        raise MaskError(f"brush RLE blocks give {done} values, header says {n}")
    if n == 0:
        return np.zeros((height, width), np.uint8)
    # only alpha (byte 4p + 3) matters: a run over bytes [s, e) holds pixels s // 4 .. e // 4
    ends = np.cumsum(counts)
    pixels = ends // 4 - (ends - counts) // 4
    return np.repeat(np.asarray(values) > 127, pixels).astype(np.uint8).reshape(height, width)


def encode_sparse(mask: np.ndarray) -> RLE:
    """The same COCO RLE as :func:`encode`, built from the window that holds the set pixels:
    several times faster for the small objects of aerial images (no full-image transpose).

    >>> m = np.zeros((300, 400), np.uint8); m[10:20, 30:45] = 1
    >>> encode_sparse(m) == encode(m)
    True
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return encode(mask)
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return encode_window(mask[r0:r1, c0:c1], c0, r0, h, w)


def encode_window(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> RLE:
    """The COCO RLE of a ``height`` x ``width`` mask that is empty outside ``crop``, whose top-left
    pixel is ``(x0, y0)``: what :func:`encode` gives for the whole frame, without making it.

    >>> m = np.zeros((30, 40), bool); m[10:20, 5:9] = True
    >>> encode_window(m[10:20, 5:9], 5, 10, 30, 40) == encode(m)
    True
    """
    crop = np.asarray(crop)
    h, w = _dims(height, width)
    ch, cw = crop.shape if crop.ndim == 2 else (-1, -1)
    if ch < 0 or not (0 <= x0 and 0 <= y0 and x0 + cw <= w and y0 + ch <= h):
        raise MaskError(f"a {crop.shape} crop at ({x0}, {y0}) does not fit a {h}x{w} mask")
    if crop.size == 0:
        return encode(np.zeros((h, w), bool))
    band = np.zeros((cw, h), bool)                            # the window's columns, full height
    band[:, y0:y0 + ch] = crop.T
    flat = band.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:                                               # COCO counts start with a zero run
        runs.insert(0, 0)
    runs[0] += int(x0) * h
    tail = int(w - x0 - cw) * h
    if not flat[-1]:
        runs[-1] += tail
    elif tail:
        runs.append(tail)
    compressed = coco_mask.frPyObjects({"counts": runs, "size": [h, w]}, h, w)
    return {"size": [h, w], "counts": compressed["counts"].decode("ascii")}


def brush_to_coco(rle: Sequence[int], height: int, width: int) -> RLE:
    """Label Studio brush RLE -> COCO RLE (through the dense mask; runs differ in order).
    Raises :class:`MaskError` (a ValueError) as :func:`brush_decode` does."""
    return encode_sparse(brush_decode(rle, height, width))


def coco_to_brush(rle: RLE) -> list[int]:
    """COCO RLE -> Label Studio brush RLE; ``coco_to_brush(brush_to_coco(b, h, w)) == b`` for
    any ``b`` that :func:`brush_encode` or the Label Studio SDK wrote."""
    return brush_encode(decode(rle))
