"""Drawing masks, boxes and polygons over an image, and the one-triplet panel of `risbench show`.

One fixed palette for every QA view, so a colour means the same thing in a thumbnail, in the
report's detail view and in a `show` PNG:

=============  ==========================================  ===========================
what           colour                                      how
=============  ==========================================  ===========================
proposal       cyan ``(0, 255, 255)``                      40 % fill + solid outline
consensus      green ``(0, 220, 0)``                       outline, twice as thick
reviewers      magenta, red, blue, white, violet, pink     outline
prompt box     yellow ``(255, 255, 0)``                    rectangle on the box edges
OBB polygon    orange ``(255, 140, 0)``                    closed polyline
=============  ==========================================  ===========================

Images are RGB ``uint8`` arrays (H, W, 3); masks are 0/1 arrays of the same height and width.

>>> img = np.full((8, 8, 3), 100, np.uint8); m = np.zeros((8, 8), np.uint8); m[2:6, 2:6] = 1
>>> fill(img, m, PROPOSAL.color, 0.5); img[3, 3].tolist()
[50, 178, 178]
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import masks
from ..images import open_image
from .records import TripletRecord

Color = tuple[int, int, int]


@dataclass(frozen=True)
class LayerStyle:
    """How one kind of mask is drawn: fill opacity (0 = outline only) and outline width factor."""

    color: Color
    fill_alpha: float
    line: int


PROPOSAL = LayerStyle((0, 255, 255), 0.40, 1)
CONSENSUS = LayerStyle((0, 220, 0), 0.0, 2)
REVIEWER_COLORS: tuple[Color, ...] = ((255, 0, 255), (255, 60, 60), (70, 130, 255), (255, 255, 255),
                                      (170, 100, 255), (255, 170, 210))
BOX_COLOR: Color = (255, 255, 0)
POLYGON_COLOR: Color = (255, 140, 0)
GRAY: Color = (96, 96, 96)


def reviewer_style(i: int) -> LayerStyle:
    return LayerStyle(REVIEWER_COLORS[i % len(REVIEWER_COLORS)], 0.0, 1)


@dataclass(frozen=True)
class MaskLayer:
    """A named mask in the view, e.g. ``("proposal", PROPOSAL, rle_json)``."""

    name: str
    style: LayerStyle
    rle: str


def mask_layers(rec: TripletRecord) -> list[MaskLayer]:
    """The masks of a triplet in drawing order: proposal, reviewers, consensus on top."""
    layers = [MaskLayer("proposal", PROPOSAL, rec.proposal.rle)] if rec.proposal else []
    layers += [MaskLayer(f"reviewer {r.annotator}", reviewer_style(i), r.rle)
               for i, r in enumerate(rec.reviews) if r.rle]
    if rec.consensus and rec.consensus.rle:
        layers.append(MaskLayer("consensus", CONSENSUS, rec.consensus.rle))
    return layers


# --------------------------------------------------------------------------- primitives
def fill(img: np.ndarray, mask: np.ndarray, color: Color, alpha: float) -> None:
    """Blend ``color`` into the mask's pixels in place: ``(1 - alpha) * img + alpha * color``."""
    sel = mask.astype(bool)
    if alpha <= 0 or not sel.any():
        return
    blended = img[sel].astype(np.float32) * (1.0 - alpha) + np.asarray(color, np.float32) * alpha
    img[sel] = np.round(blended).astype(np.uint8)


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The mask's own border pixels, ``thickness`` deep (inside the mask, so it never grows)."""
    m = mask.astype(np.uint8)
    if thickness <= 0 or not m.any():
        return np.zeros(m.shape, bool)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    inner = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m > 0) & (inner == 0)


def draw_box(img: np.ndarray, box: Sequence[float], color: Color, thickness: int = 1) -> None:
    """Rectangle on the pixels just inside a pixel-edge box (x2, y2 exclusive), in place."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    if x2 <= x1 or y2 <= y1:
        return
    for t in range(thickness):
        a, b, c, d = x1 + t, y1 + t, x2 - 1 - t, y2 - 1 - t
        if c < a or d < b:
            break
        cv2.rectangle(img, (a, b), (c, d), color, 1)


def draw_polygon(img: np.ndarray, points: Sequence[Sequence[float]], color: Color, thickness: int = 1) -> None:
    """Closed polyline through pixel-edge vertices, in place (sub-pixel precise, not anti-aliased)."""
    pts = np.round((np.asarray(points, np.float64).reshape(-1, 2) - 0.5) * 16).astype(np.int32)
    if len(pts) >= 2:
        cv2.polylines(img, [pts], True, color, thickness, cv2.LINE_8, shift=4)  # exact colours


def compose(img: np.ndarray, layers: Sequence[tuple[LayerStyle, np.ndarray]],
            box: Sequence[float] | None = None, polygon: Sequence[Sequence[float]] | None = None,
            thickness: int = 1) -> np.ndarray:
    """A copy of ``img`` with every mask (fills first, then outlines), the polygon and the box.

    Coordinates are in ``img``'s pixels; ``thickness`` scales every line (for big images).
    """
    out = np.ascontiguousarray(img.copy())
    for style, m in layers:
        fill(out, m, style.color, style.fill_alpha)
    for style, m in layers:
        out[outline(m, style.line * thickness)] = style.color
    if polygon is not None:
        draw_polygon(out, polygon, POLYGON_COLOR, thickness)
    if box is not None:
        draw_box(out, box, BOX_COLOR, thickness)
    return out


# --------------------------------------------------------------------------- images
def load_image(path: str, width: int, height: int) -> tuple[np.ndarray, str | None]:
    """RGB pixels of an image, or a gray canvas of the catalogued size and why it failed.

    OpenCV decodes PNG/JPEG about twice as fast as PIL, which matters at 50k thumbnails;
    PIL is the fallback for formats OpenCV refuses.
    """
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED) if Path(path).is_file() else None  # UNCHANGED: ~20 % faster
    if raw is not None and raw.dtype == np.uint16:
        raw = (raw >> 8).astype(np.uint8)
    if raw is not None and raw.dtype == np.uint8 and (raw.ndim == 2 or raw.shape[2] in (1, 3, 4)):
        code = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}[1 if raw.ndim == 2 else raw.shape[2]]
        return cv2.cvtColor(raw, code), None
    try:
        with open_image(path) as im:
            return np.asarray(im.convert("RGB")), None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is drawn, not raised
        canvas = np.empty((max(height, 1), max(width, 1), 3), np.uint8)
        canvas[:] = GRAY
        return canvas, f"image unreadable: {type(exc).__name__}: {exc}"[:200]


def decode_sized(rle_json: str, height: int, width: int) -> np.ndarray:
    """Decode an RLE; a mask of another size than the image is fitted (nearest) so it still shows."""
    m = masks.decode(masks.loads(rle_json))
    if m.shape != (height, width):
        m = cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST)
    return m


def line_scale(height: int, width: int, target: int = 512) -> int:
    return max(1, int(round(max(height, width) / (2 * target))) + 1) if max(height, width) > target else 1


# --------------------------------------------------------------------------- the `show` panel
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.3f}"
    return str(value)


def caption_lines(rec: TripletRecord, failed: Sequence[str] | None = None, note: str | None = None) -> list[str]:
    """The text under a `show` image: what the triplet is and what every stage said."""
    lines = [f"{rec.category}  |  {rec.triplet_id}  |  {rec.source_ref}",
             f'"{rec.expression or "(no expression)"}"',
             f"box {[round(v, 1) for v in rec.box]}  |  image {rec.width}x{rec.height}  |  split {rec.split}"]
    if rec.proposal:
        p = rec.proposal
        why = f" (fails {', '.join(failed)})" if failed else ""
        lines.append(f"route {p.route}{why}  |  segmenter {p.segmenter}")
        lines.append("signals: " + "  ".join(f"{k} {fmt(v)}" for k, v in sorted(p.scores.items())))
    else:
        lines.append("no proposal yet (sam-refine has not run for this triplet)")
    for r in rec.reviews:
        extra = f', corrected: "{r.corrected_expression}"' if r.corrected_expression else ""
        lines.append(f"review {r.annotator}: {r.verdict}{extra}")
    if rec.consensus:
        agreement = "n/a" if rec.consensus.agreement is None else f"{rec.consensus.agreement:.3f}"
        lines.append(f"consensus: {rec.consensus.decision}, agreement {agreement}")
    if rec.final_split:
        lines.append(f"final: {rec.final_split} ({rec.mask_origin})")
    lines += [f"rejected at {stage}: {reason}: {detail}" for stage, reason, detail in rec.rejects]
    if note:
        lines.append(note)
    return lines


def render_triplet(rec: TripletRecord, failed: Sequence[str] | None = None) -> Image.Image:
    """The full-size image with every mask, the box and the polygon, and a caption panel below."""
    img, problem = load_image(rec.image_path, rec.width, rec.height)
    h, w = img.shape[:2]
    layers = [(layer.style, decode_sized(layer.rle, h, w)) for layer in mask_layers(rec)]
    view = compose(img, layers, rec.box, rec.polygon, line_scale(h, w))
    font = _font(14)
    width = max(w, 560)
    chars = max(40, width // 8)
    text = [piece for line in caption_lines(rec, failed, problem) for piece in textwrap.wrap(line, chars) or [""]]
    legend = [(layer.name, layer.style.color) for layer in mask_layers(rec)]
    legend += [("prompt box", BOX_COLOR)] + ([("OBB polygon", POLYGON_COLOR)] if rec.polygon else [])
    row = 18
    panel = Image.new("RGB", (width, h + 12 + row * (len(text) + 1) + 8), (24, 24, 24))
    panel.paste(Image.fromarray(view), ((width - w) // 2, 0))
    draw = ImageDraw.Draw(panel)
    y = h + 8
    x = 8
    for name, color in legend:  # colour key first, so the caption reads as a legend too
        draw.rectangle((x, y + 3, x + 11, y + 14), fill=color)
        draw.text((x + 16, y), name, fill=(230, 230, 230), font=font)
        x += 16 + int(draw.textlength(name, font=font)) + 14
    for line in text:
        y += row
        draw.text((8, y), line, fill=(230, 230, 230), font=font)
    return panel
