"""Synthetic sources in the exact real on-disk formats, with the true masks kept beside them.

Why: the later stages (box-prompted SAM or GrabCut) can only report *real* mask quality when the
true masks are known. One scene generator, :func:`render_scene`, draws an aerial-like patch
(textured ground, fields, roads, water, buildings, trees) with oriented, textured objects of
11 RISBench classes, and keeps every object's exact quad and visible mask. The writers put the
same scenes on disk as VRSBench (the demo source, with loose boxes like VRSBench's), DOTA,
DIOR / DIOR-R and DIOR-RSVG trees; the torchgeo-style generators in ``tests/data/*/data.py``
call them with small parameters. The truth never goes into the annotation files: it is a
``masks.jsonl`` (COCO RLE via :mod:`risbench_builder.masks`) in a separate folder.

>>> scene = render_scene(np.random.default_rng(0))
>>> scene.image.shape, scene.image.dtype, all(o.mask.sum() >= 30 for o in scene.objects)
((512, 512, 3), dtype('uint8'), True)
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
from shapely.geometry import Polygon
from shapely.ops import unary_union

from .. import masks
from ..config import BoxNoiseConfig, SyntheticConfig

PATCH = 512
GENERATOR_VERSION = 1

# ------------------------------------------------------------------ vocabulary
DRAWABLE_CLASSES: tuple[str, ...] = (
    "airplane", "ship", "storage-tank", "tennis-court", "basketball-court", "swimming-pool",
    "vehicle", "roundabout", "soccer-ball-field", "ground-track-field", "expressway-service-area",
)
#: RISBench name -> DOTA-v2 file name (vehicles split by size into large-/small-vehicle).
DOTA_NAMES: dict[str, str] = {
    "airplane": "plane", "ship": "ship", "storage-tank": "storage-tank",
    "tennis-court": "tennis-court", "basketball-court": "basketball-court",
    "swimming-pool": "swimming-pool", "vehicle": "small-vehicle", "roundabout": "roundabout",
    "soccer-ball-field": "soccer-ball-field", "ground-track-field": "ground-track-field",
}
#: RISBench name -> DIOR file name (formats.md §9, note the capitalised Expressway name).
DIOR_NAMES: dict[str, str] = {
    "airplane": "airplane", "ship": "ship", "storage-tank": "storagetank",
    "tennis-court": "tenniscourt", "basketball-court": "basketballcourt", "vehicle": "vehicle",
    "ground-track-field": "groundtrackfield", "expressway-service-area": "Expressway-Service-area",
}
DOTA_CLASSES: tuple[str, ...] = tuple(DOTA_NAMES)
DIOR_CLASSES: tuple[str, ...] = tuple(DIOR_NAMES)

GRID_POSITIONS: tuple[tuple[str, ...], ...] = (
    ("top-left", "top-middle", "top-right"),
    ("middle-left", "center", "middle-right"),
    ("bottom-left", "bottom-middle", "bottom-right"),
)


@dataclass(frozen=True)
class _Spec:
    """How a class is sized and laid out; lengths in pixels of a 512 patch."""

    length: tuple[float, float]        # long side (diameter for round classes), log-uniform
    aspect: tuple[float, float]        # width / length
    count: tuple[int, int]             # instances when the class is picked for a scene
    weight: float                      # how often the class is picked
    layout: str = "single"             # single | row (side by side) | line (end to end) | grid
    gap: tuple[float, float] = (2, 8)  # spacing inside a group, pixels
    round: bool = False                # rotation-free quad (tanks, roundabouts)
    big: bool = False                  # at most one big class per scene
    water: bool = False                # lives on water (ships)
    shadow: float = 0.0                # shadow offset as a fraction of the width


_SPECS: dict[str, _Spec] = {
    "airplane": _Spec((30, 110), (0.85, 1.1), (1, 3), 1.0, shadow=0.05),
    "ship": _Spec((26, 150), (0.16, 0.24), (1, 3), 1.0, layout="row", gap=(3, 14), water=True,
                  shadow=0.12),
    "storage-tank": _Spec((12, 70), (1, 1), (1, 5), 1.0, layout="grid", gap=(2, 9), round=True,
                          shadow=0.22),
    "tennis-court": _Spec((36, 64), (0.48, 0.55), (1, 3), 1.0, layout="row", gap=(0, 3)),
    "basketball-court": _Spec((34, 62), (0.53, 0.6), (1, 2), 0.8, layout="row", gap=(2, 10)),
    "swimming-pool": _Spec((14, 56), (0.42, 0.7), (1, 3), 0.8),
    "vehicle": _Spec((9, 16), (0.42, 0.5), (1, 6), 1.3, layout="row", gap=(0.5, 4), shadow=0.35),
    "roundabout": _Spec((56, 140), (1, 1), (1, 1), 0.45, round=True, big=True),
    "soccer-ball-field": _Spec((100, 190), (0.6, 0.68), (1, 1), 0.5, big=True),
    "ground-track-field": _Spec((150, 230), (0.5, 0.56), (1, 1), 0.45, big=True),
    "expressway-service-area": _Spec((120, 220), (0.45, 0.7), (1, 1), 0.4, big=True),
}
_LARGE_VEHICLE = ((20.0, 40.0), (0.3, 0.38))     # buses and trucks: DOTA large-vehicle
# Round objects get an axis-aligned quad that starts top-left like DOTA's (rotating _rect by
# -90 degrees does exactly that; a circle does not care).
_ROUND_ANGLE = -math.pi / 2
_PLACE_ORDER = {"roundabout": 0, "ground-track-field": 0, "soccer-ball-field": 0,
                "expressway-service-area": 0, "vehicle": 3}
_HOSTS = {"vehicle": {"expressway-service-area"}}   # vehicles may park on top of these
# size spread inside a group: cars vary a little, tank farms and moored ships a lot, courts not
_MEMBER_JITTER = {"vehicle": (0.88, 1.12), "storage-tank": (0.6, 1.0), "ship": (0.55, 1.0)}


# ------------------------------------------------------------------ public types
@dataclass
class SceneObject:
    """One drawn object with its truth: exact quad and visible mask, plus VRSBench attributes.

    ``quad`` is (4, 2) pixel corners, clockwise on screen, vertex 1 at the head (DOTA order).
    ``mask`` is uint8 (H, W) 0/1 of the *visible* pixels: a later object's pixels are removed.
    ``rel_size`` uses the plain spelling ``largest``; the VRSBench writer writes ``largeest``.
    """

    category: str
    quad: np.ndarray
    mask: np.ndarray
    angle: float                  # degrees, long axis, clockwise on screen from +x
    length: float
    width: float
    subtype: str = ""             # vehicles: "small" | "large"
    visible_fraction: float = 1.0  # visible / in-image silhouette pixels (occlusion)
    truncated: bool = False       # the quad leaves the image
    colour: str = ""
    size: str = ""
    rel_size: str = ""
    position: str = ""
    rel_position: str = ""
    is_unique: bool = False

    @property
    def occluded(self) -> bool:
        return self.visible_fraction < 0.98


@dataclass
class Scene:
    image: np.ndarray             # (H, W, 3) uint8 RGB
    objects: list[SceneObject]
    water: bool = False
    roads: int = 0

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass
class Referent:
    """A referred object of a scene (its index in ``scene.objects``) and its sentence."""

    index: int
    sentence: str


# ------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class _Pose:
    cx: float
    cy: float
    angle: float                  # radians, clockwise on screen from +x

    def apply(self, local: np.ndarray) -> np.ndarray:
        """Local (u along the length, v across) -> image pixel coordinates."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.asarray(local, np.float64) @ np.array([[c, s], [-s, c]]) + (self.cx, self.cy)

    def uv(self, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Local coordinates of the pixel centres of a crop, for painting in the object frame."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - self.cx
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - self.cy
        return dx * c + dy * s, -dx * s + dy * c


def _rect(length: float, width: float) -> np.ndarray:
    """Local quad in DOTA order: head-left, head-right, tail-right, tail-left (clockwise)."""
    hl, hw = length / 2, width / 2
    return np.array([[hl, -hw], [hl, hw], [-hl, hw], [-hl, -hw]])


def _arc(cu: float, cv: float, r: float, a0: float, a1: float, n: int) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([cu + r * np.cos(t), cv + r * np.sin(t)], axis=1)


def _circle(r: float) -> np.ndarray:
    return _arc(0, 0, r, 0, 2 * math.pi, int(np.clip(r * 1.6, 16, 72)))[:-1]


def _rounded_rect(length: float, width: float, r: float) -> np.ndarray:
    hl, hw = length / 2 - r, width / 2 - r
    return np.concatenate([
        _arc(hl, hw, r, 0, math.pi / 2, 5), _arc(-hl, hw, r, math.pi / 2, math.pi, 5),
        _arc(-hl, -hw, r, math.pi, 1.5 * math.pi, 5), _arc(hl, -hw, r, 1.5 * math.pi, 2 * math.pi, 5)])


def _stadium(length: float, width: float) -> np.ndarray:
    r = width / 2
    return np.concatenate([_arc(length / 2 - r, 0, r, -math.pi / 2, math.pi / 2, 24),
                           _arc(-length / 2 + r, 0, r, math.pi / 2, 1.5 * math.pi, 24)])


def _airplane_parts(length: float, span: float) -> list[np.ndarray]:
    """Fuselage, swept wings, tailplane and engines; nose at +u, wing tips at v = ±span/2."""
    L, s2 = length, span / 2
    f = max(1.3, 0.055 * L)
    t = np.linspace(-math.pi / 2, math.pi / 2, 9)
    nose = np.stack([L / 2 - 2 * f + 2 * f * np.cos(t), f * np.sin(t)], axis=1)
    body = np.concatenate([[[-L / 2, -0.45 * f], [-0.42 * L, -f]], nose,
                           [[-0.42 * L, f], [-L / 2, 0.45 * f]]])
    lead, sweep, root_c, tip_c = 0.1 * L, 0.32 * s2, 0.24 * L, 0.08 * L
    wing = np.array([[lead, f * 0.9], [lead - sweep, s2], [lead - sweep - tip_c, s2],
                     [lead - root_c, f * 0.9]])
    ts, tl = 0.36 * s2, -0.31 * L
    tail = np.array([[tl, 0.8 * f], [tl - 0.08 * L, ts], [tl - 0.13 * L, ts], [-0.45 * L, 0.6 * f]])
    parts = [body, wing, wing * [1, -1], tail, tail * [1, -1]]
    ew = max(1.6, 0.05 * L)
    for frac in ((0.4,) if L < 80 else (0.33, 0.62)):
        eng = _rect(0.12 * L, ew) + [lead - sweep * frac + 0.02 * L, frac * s2]
        parts += [eng, eng * [1, -1]]
    return parts


def _ship_hull(length: float, width: float) -> np.ndarray:
    """Flat stern with cut corners, straight sides, ogive bow ending in a point at +u."""
    hl, hw, bow = length / 2, width / 2, 0.27 * length
    t = np.linspace(0, 1, 9)
    bow_side = np.stack([hl - bow + bow * t, hw * (1 - t ** 2)], axis=1)       # +v side, to tip
    port = np.concatenate([[[-hl, 0.8 * hw], [-hl + 0.2 * width, hw]], bow_side])
    starboard = (port * [1, -1])[::-1][1:]                                      # tip shared
    return np.concatenate([port, starboard])


def _parts(cls: str, length: float, width: float, subtype: str) -> list[np.ndarray]:
    """Local silhouette polygons; their union is the object's true outline."""
    if cls == "airplane":
        return _airplane_parts(length, width)
    if cls == "ship":
        return [_ship_hull(length, width)]
    if cls in ("storage-tank", "roundabout"):
        return [_circle(length / 2)]
    if cls == "swimming-pool":
        return [_rounded_rect(length, width, 0.22 * width)]
    if cls == "vehicle":
        return [_rounded_rect(length, width, (0.28 if subtype == "small" else 0.12) * width)]
    if cls == "ground-track-field":
        return [_stadium(length, width)]
    return [_rect(length, width)]


def _sd_box(u: np.ndarray, v: np.ndarray, hl: float, hw: float) -> np.ndarray:
    """Signed distance to a centred box (negative inside); paints lines and rims."""
    qx, qy = np.abs(u) - hl, np.abs(v) - hw
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _sd_stadium(u: np.ndarray, v: np.ndarray, hl: float, hw: float) -> np.ndarray:
    return np.hypot(np.maximum(np.abs(u) - (hl - hw), 0), v) - hw


# ------------------------------------------------------------------ texture helpers
def _crop(quad: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Whole-pixel box (x0, y0, x1, y1) around a polygon, inside the image."""
    x0, y0, x1, y1 = masks.polygon_box(quad)
    return (max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0),
            min(int(math.ceil(x1)), width), min(int(math.ceil(y1)), height))


def _smooth(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: colour fields and blotches."""
    small = rng.standard_normal((cells, cells, channels), dtype=np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return big.reshape(h, w, channels)


def _stroke(layer: np.ndarray, dist: np.ndarray, half: float, colour: Sequence[float],
            alpha: float = 1.0) -> None:
    """Blend an anti-aliased line (|dist| < half) of ``colour`` into ``layer`` in place."""
    a = np.clip(half + 0.5 - np.abs(dist), 0, 1)[..., None] * alpha
    layer *= 1 - a
    layer += a * np.asarray(colour, np.float32)


def _fill(layer: np.ndarray, inside: np.ndarray, colour: Sequence[float] | np.ndarray) -> None:
    layer[inside] = np.asarray(colour, np.float32) if np.ndim(colour) == 1 else colour[inside]


def _jitter(rng: np.random.Generator, colour: Sequence[float], amount: float = 12) -> np.ndarray:
    """Vary a colour mostly in brightness, a little in hue (no purple asphalt)."""
    shift = rng.normal(0, amount) + rng.normal(0, amount * 0.25, 3)
    return np.clip(np.asarray(colour, np.float32) + shift, 0, 255).astype(np.float32)


def _surface(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, colour: Sequence[float],
             length: float, width: float, noise: float = 5.0, shade: float = 0.08) -> np.ndarray:
    """Base colour with a gentle linear shading, blotches and grain: no flat colour anywhere."""
    h, w = u.shape
    phi = rng.uniform(0, 2 * math.pi)
    ramp = 1 + shade * (u / max(length, 1) * math.cos(phi) + v / max(width, 1) * math.sin(phi)) * 2
    layer = np.asarray(colour, np.float32) * ramp[..., None]
    layer += _smooth(rng, h, w, 3, 1) * noise * 0.8
    layer += rng.standard_normal((h, w, 1), dtype=np.float32) * noise
    return layer


# ------------------------------------------------------------------ painters
def _paint_tennis(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    inner, apron = [((62, 128, 82), (48, 100, 66)), ((48, 96, 160), (64, 124, 84)),
                    ((178, 98, 66), (160, 90, 64)), ((52, 110, 140), (40, 84, 110))][rng.integers(4)]
    layer = _surface(rng, u, v, _jitter(rng, apron, 8), L, W, 4)
    al, aw = 0.4 * L, 0.36 * W
    _fill(layer, _sd_box(u, v, al, aw) < 0, _surface(rng, u, v, _jitter(rng, inner, 8), L, W, 4))
    white, t = (236, 236, 230), max(0.45, 0.011 * L)
    _stroke(layer, _sd_box(u, v, al, aw), t, white)
    for sv in (-0.76 * aw, 0.76 * aw):
        _stroke(layer, np.where(np.abs(u) <= al, v - sv, 99), t, white)
    _stroke(layer, np.where(np.abs(v) <= 0.76 * aw, np.abs(u) - 0.54 * al, 99), t, white)
    _stroke(layer, np.where(np.abs(u) <= 0.54 * al, v, 99), t, white)
    _stroke(layer, np.where(np.abs(v) <= aw * 1.08, u, 99), t * 1.4, (60, 60, 60), 0.8)
    return layer


def _paint_basketball(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    floor, key = [((196, 142, 88), (170, 70, 50)), ((178, 84, 56), (60, 90, 150)),
                  ((54, 94, 152), (176, 80, 58)), ((72, 122, 88), (176, 140, 90))][rng.integers(4)]
    layer = _surface(rng, u, v, _jitter(rng, floor, 10), L, W, 5)
    al, aw = 0.45 * L, 0.42 * W
    in_key = (np.abs(v) <= 0.16 * W) & (np.abs(u) >= al - 0.19 * L) & (np.abs(u) <= al)
    _fill(layer, in_key, _jitter(rng, key, 8))
    white, t = (238, 236, 228), max(0.45, 0.012 * L)
    _stroke(layer, _sd_box(u, v, al, aw), t, white)
    _stroke(layer, np.where(np.abs(v) <= aw, u, 99), t, white)
    _stroke(layer, np.hypot(u, v) - 0.12 * W, t, white)
    _stroke(layer, _sd_box(np.abs(u) - (al - 0.095 * L), v, 0.095 * L, 0.16 * W), t, white)
    arc = np.hypot(np.abs(u) - (al - 0.05 * L), v) - 0.4 * W
    _stroke(layer, np.where(np.abs(u) < al - 0.05 * L, arc, 99), t, white)
    return layer


def _paint_soccer(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    grass = _jitter(rng, (74, 132, 64), 10)
    layer = _surface(rng, u, v, grass, L, W, 4)
    layer *= (1 + 0.06 * np.sign(np.sin(u * (2 * math.pi / (L / 6)))))[..., None]
    al, aw = 0.45 * L, 0.43 * W
    white, t = (235, 238, 232), max(0.5, 0.0055 * L)
    _stroke(layer, _sd_box(u, v, al, aw), t, white)
    _stroke(layer, np.where(np.abs(v) <= aw, u, 99), t, white)
    _stroke(layer, np.hypot(u, v) - 0.14 * W, t, white)
    for depth, half in ((0.16 * L, 0.3 * W), (0.055 * L, 0.13 * W)):
        _stroke(layer, _sd_box(np.abs(u) - (al - depth / 2), v, depth / 2, half), t, white)
    return layer


def _paint_track(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    track = [(172, 78, 58), (62, 104, 160), (104, 128, 100), (150, 90, 70)][rng.integers(4)]
    layer = _surface(rng, u, v, _jitter(rng, track, 8), L, W, 4)
    tw = 0.14 * W
    d = _sd_stadium(u, v, L / 2, W / 2)
    field_colour = _surface(rng, u, v, _jitter(rng, (80, 134, 66), 8), L, W, 4)
    _fill(layer, d < -tw, field_colour)
    for k in range(1, 6):
        _stroke(layer, d + tw * k / 6, 0.35, (232, 228, 220), 0.8)
    _stroke(layer, d + tw, 0.6, (238, 238, 236))
    _stroke(layer, np.where(np.abs(v) < W / 2 - tw, u, 99), 0.5, (236, 238, 232), 0.9)
    return layer


def _paint_pool(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    water = [(70, 168, 210), (46, 128, 196), (96, 190, 205), (60, 150, 170)][rng.integers(4)]
    layer = _surface(rng, u, v, _jitter(rng, water, 8), L, W, 3, shade=0.16)
    r = 0.22 * W
    d = _sd_box(u, v, L / 2 - r, W / 2 - r) - r
    rim = max(0.8, 0.05 * W)
    _fill(layer, d > -rim, _jitter(rng, (222, 216, 198), 10))
    if L > 36:
        for k in (-1, 0, 1):
            _stroke(layer, np.where(np.abs(u) < L / 2 - 3 * rim, v - k * W / 4, 99), 0.4,
                    (30, 80, 150), 0.7)
    return layer


_CAR_COLOURS = ((232, 232, 230), (178, 180, 182), (118, 120, 124), (40, 40, 44), (168, 40, 36),
                (40, 72, 150), (214, 184, 48), (70, 90, 70))


def _paint_vehicle(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    body = _jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 8)
    layer = _surface(rng, u, v, body, L, W, 4, shade=0.12)
    if p.subtype == "small":
        glass = (u > 0.1 * L) & (u < 0.3 * L) & (np.abs(v) < 0.4 * W)
        glass |= (u < -0.3 * L) & (u > -0.42 * L) & (np.abs(v) < 0.38 * W)
        layer[glass] *= 0.35
    else:
        cargo = u < 0.26 * L
        layer[cargo] = _surface(rng, u, v, _jitter(rng, (206, 206, 200), 14), L, W, 4)[cargo]
        _stroke(layer, np.where(cargo, u % 3.5 - 1.75, 99), 0.2, (150, 150, 146), 0.5)
    return layer


def _paint_airplane(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    white = [(232, 232, 234), (212, 214, 218), (190, 192, 196), (236, 230, 220)][rng.integers(4)]
    layer = _surface(rng, u, v, np.asarray(_jitter(rng, white, 5)) * 0.93, L, W, 4, shade=0.1)
    f = max(1.3, 0.055 * L)
    body = np.abs(v) < f
    highlight = np.clip(1.08 - 0.25 * (v / f) ** 2, 0.8, 1.1)[..., None]
    layer[body] = (np.asarray(_jitter(rng, white, 4), np.float32) * highlight)[body]
    if rng.random() < 0.5:
        accent = _jitter(rng, [(170, 40, 40), (40, 70, 150), (40, 110, 70)][rng.integers(3)], 10)
        layer[body & (u < -0.33 * L)] = accent
    return layer


_CONTAINERS = ((170, 50, 40), (50, 80, 150), (60, 120, 70), (200, 120, 50), (180, 180, 176))


def _paint_ship(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    deck = [(128, 128, 130), (214, 214, 210), (150, 62, 50), (52, 62, 92), (64, 100, 72),
            (46, 46, 50)][rng.integers(6)]
    layer = _surface(rng, u, v, _jitter(rng, deck, 8), L, W, 5)
    _stroke(layer, np.abs(v) - 0.46 * W, 0.6, np.asarray(deck) * 0.6 + 40, 0.7)
    bridge = (u > -0.43 * L) & (u < -0.24 * L) & (np.abs(v) < 0.36 * W)
    _fill(layer, bridge, _jitter(rng, (236, 236, 232), 6))
    if L > 60:
        n = int(rng.integers(3, 8))
        edges = np.linspace(-0.2 * L, 0.22 * L, n + 1)
        for a, b in zip(edges[:-1], edges[1:]):
            hatch = (u > a + 0.8) & (u < b - 0.8) & (np.abs(v) < 0.33 * W)
            _fill(layer, hatch, _jitter(rng, _CONTAINERS[rng.integers(len(_CONTAINERS))], 10))
    return layer


def _paint_tank(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    R = p.length / 2
    roof = [(226, 226, 222), (200, 202, 200), (176, 180, 170), (150, 160, 150)][rng.integers(4)]
    layer = _surface(rng, u, v, _jitter(rng, roof, 6), R, R, 3, shade=0.0)
    r = np.hypot(u, v) / R
    sun = (u * p.sun[0] + v * p.sun[1]) / R
    layer *= (1 - 0.12 * sun)[..., None]
    layer[r > 0.88] *= 0.78
    if rng.random() < 0.6:
        _stroke(layer, (r - 0.72) * R, 0.5, (120, 120, 118), 0.7)
    _stroke(layer, r * R, max(0.5, 0.05 * R), (110, 110, 108), 0.8)
    return layer


def _paint_roundabout(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    R = p.length / 2
    r = np.hypot(u, v)
    layer = _surface(rng, u, v, _jitter(rng, (104, 104, 108), 6), R, R, 4)
    island = r < 0.62 * R
    _fill(layer, island, _surface(rng, u, v, _jitter(rng, (78, 122, 62), 10), R, R, 8))
    _stroke(layer, r - 0.62 * R, 0.8, (206, 204, 196))
    dash = np.where(np.sin(np.arctan2(v, u) * R / 3) > 0, r - 0.81 * R, 99)
    _stroke(layer, dash, 0.45, (226, 224, 214), 0.9)
    _stroke(layer, r - 0.985 * R, 0.6, (196, 194, 186), 0.8)
    return layer


def _paint_service_area(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: "_Placed") -> np.ndarray:
    L, W = p.length, p.width
    layer = _surface(rng, u, v, _jitter(rng, (124, 124, 128), 8), L, W, 5)
    edge = -_sd_box(u, v, L / 2, W / 2)
    _fill(layer, edge < 0.05 * W, _surface(rng, u, v, _jitter(rng, (84, 120, 66), 8), L, W, 6))
    rows = np.arange(-0.3, 0.31, 0.15) * W
    for rv in rows:
        stalls = np.where((np.abs(v - rv) < 0.05 * W) & (u < 0.2 * L) & (u > -0.44 * L),
                          u % 4.0 - 2.0, 99)
        _stroke(layer, stalls, 0.15, (228, 228, 222), 0.8)
    roof = _jitter(rng, [(196, 196, 200), (150, 70, 56), (70, 96, 140)][rng.integers(3)], 8)
    building = (u > 0.26 * L) & (u < 0.44 * L) & (np.abs(v) < 0.3 * W)
    _fill(layer, building, roof)
    layer[building & (v > 0)] *= 0.86
    return layer


_PAINTERS: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray, "_Placed"], np.ndarray]] = {
    "tennis-court": _paint_tennis, "basketball-court": _paint_basketball,
    "soccer-ball-field": _paint_soccer, "ground-track-field": _paint_track,
    "swimming-pool": _paint_pool, "vehicle": _paint_vehicle, "airplane": _paint_airplane,
    "ship": _paint_ship, "storage-tank": _paint_tank, "roundabout": _paint_roundabout,
    "expressway-service-area": _paint_service_area,
}


# ------------------------------------------------------------------ ground
_LANDS = (((98, 118, 72), (120, 130, 84)), ((152, 140, 108), (126, 120, 92)),
          ((130, 128, 122), (112, 110, 104)), ((178, 164, 132), (158, 150, 122)))
_FIELDS = ((88, 126, 62), (140, 116, 86), (170, 160, 98), (62, 96, 56), (112, 132, 74))


@dataclass
class _Ground:
    image: np.ndarray                  # float32 (H, W, 3)
    water: np.ndarray                  # bool (H, W)
    roads: list[tuple[np.ndarray, np.ndarray, float]]
    road_mask: np.ndarray              # bool (H, W), widened: clutter keeps off it
    sun: tuple[float, float]           # unit vector shadows fall along
    water_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # where ships may anchor


def _make_ground(rng: np.random.Generator, size: int, water: bool,
                 hub: tuple[float, float] | None) -> _Ground:
    """Land patches at several scales, crop fields, roads (through ``hub`` for a roundabout), water."""
    base, alt = _LANDS[rng.integers(len(_LANDS))]
    mix = 1 / (1 + np.exp(-3 * _smooth(rng, size, size, 5, 1)))         # patchy, not a gradient
    img = np.asarray(base, np.float32) * (1 - mix) + np.asarray(alt, np.float32) * mix
    lum = sum(_smooth(rng, size, size, cells, 1) * amp
              for cells, amp in ((4, 0.06), (16, 0.05), (64, 0.045), (160, 0.035)))
    img *= 1 + lum
    img += _smooth(rng, size, size, 6, 3) * 3                           # slight chroma drift
    _add_fields(rng, img)
    roads = _add_roads(rng, img, hub)
    water_mask = _add_water(rng, img) if water else np.zeros((size, size), bool)
    road_mask = np.zeros((size, size), np.uint8)
    for p0, p1, w in roads:
        cv2.line(road_mask, _pt(p0), _pt(p1), 1, int(w) + 8)
    a = rng.uniform(0, 2 * math.pi)
    ys, xs = np.nonzero(water_mask)
    return _Ground(img, water_mask, roads, road_mask.astype(bool), (math.cos(a), math.sin(a)),
                   np.stack([xs, ys], axis=1) + 0.5)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _add_fields(rng: np.random.Generator, img: np.ndarray) -> None:
    size = img.shape[0]
    for _ in range(int(rng.integers(1, 7))):
        L, W = rng.uniform(90, 320), rng.uniform(60, 220)
        pose = _Pose(rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, math.pi))
        quad = pose.apply(_rect(L, W))
        m = masks.rasterize_polygon(quad, size, size).astype(bool)
        x0, y0, x1, y1 = _crop(quad, size, size)
        if not m.any():
            continue
        u, _ = pose.uv(x0, y0, x1, y1)
        colour = _jitter(rng, _FIELDS[rng.integers(len(_FIELDS))], 8)
        stripes = 1 + rng.uniform(0.03, 0.09) * np.sin(u * 2 * math.pi / rng.uniform(4, 9))
        crop = img[y0:y1, x0:x1]
        sub = m[y0:y1, x0:x1]
        tex = colour * stripes[..., None] * (1 + _smooth(rng, y1 - y0, x1 - x0, 24, 1) * 0.05)
        crop[sub] = 0.2 * crop[sub] + 0.8 * tex[sub]


def _add_roads(rng: np.random.Generator, img: np.ndarray,
               hub: tuple[float, float] | None) -> list[tuple[np.ndarray, np.ndarray, float]]:
    size = img.shape[0]
    roads: list[tuple[np.ndarray, np.ndarray, float]] = []
    if hub is not None:
        a0 = rng.uniform(0, 2 * math.pi)
        for k in range(int(rng.integers(3, 5))):
            a = a0 + k * math.pi / 2 + rng.normal(0, 0.15)
            c = np.asarray(hub)
            roads.append((c, c + 2 * size * np.array([math.cos(a), math.sin(a)]), rng.uniform(9, 15)))
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        c = rng.uniform(0.1, 0.9, 2) * size
        a = rng.uniform(0, math.pi)
        d = 1.5 * size * np.array([math.cos(a), math.sin(a)])
        roads.append((c - d, c + d, rng.uniform(7, 16)))
    for p0, p1, w in roads:
        _draw_road(rng, img, p0, p1, w)
    return roads


def _draw_road(rng: np.random.Generator, img: np.ndarray, p0: np.ndarray, p1: np.ndarray, w: float) -> None:
    asphalt = tuple(float(c) for c in _jitter(rng, (96, 96, 100), 8))
    cv2.line(img, _pt(p0), _pt(p1), asphalt, int(round(w)), cv2.LINE_AA)
    d = (p1 - p0) / max(np.linalg.norm(p1 - p0), 1e-6)
    n = np.array([-d[1], d[0]])
    for side in (-1, 1):
        off = n * side * (w / 2 - 1.5)
        cv2.line(img, _pt(p0 + off), _pt(p1 + off), (176, 176, 170), 1, cv2.LINE_AA)
    length = float(np.linalg.norm(p1 - p0))
    for t in np.arange(0, length, 14.0):
        a, b = p0 + d * t, p0 + d * min(t + 7, length)
        cv2.line(img, _pt(a), _pt(b), (214, 206, 160), 1, cv2.LINE_AA)


def _add_water(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Water on one side behind a wavy coast, with a sandy shore band."""
    size = img.shape[0]
    t = np.arange(size, dtype=np.float32)
    depth = rng.uniform(0.35, 0.55) * size
    coast = depth + 18 * np.sin(t / rng.uniform(40, 90) + rng.uniform(0, 6)) + 9 * np.sin(t / 23 + 1)
    along, across = np.meshgrid(t, t)          # along = x, across = y
    side = int(rng.integers(4))
    coord, pos = [(along, across), (across, along)][side % 2]
    water = (coord < coast[pos.astype(int)]) if side < 2 else (coord > size - coast[pos.astype(int)])
    colour = _jitter(rng, [(36, 66, 82), (30, 58, 92), (48, 80, 74), (40, 74, 96)][rng.integers(4)], 6)
    tex = colour + _smooth(rng, size, size, 6, 1) * 6 + _smooth(rng, size, size, 40, 1) * 2.5
    img[water] = tex[water]
    dist = cv2.distanceTransform((~water).astype(np.uint8), cv2.DIST_L2, 3)
    shore = (dist > 0) & (dist < 4)
    img[shore] = 0.4 * img[shore] + 0.6 * np.asarray(_jitter(rng, (190, 178, 146), 6))
    return water


# ------------------------------------------------------------------ placement
@dataclass
class _Placed:
    cls: str
    pose: _Pose
    length: float
    width: float
    subtype: str
    quad: np.ndarray
    sil: np.ndarray            # uint8 (H, W) full silhouette inside the image
    area: int                  # in-image silhouette pixels
    sun: tuple[float, float] = (1.0, 0.0)


@dataclass
class _Board:
    """Who owns each pixel so far (latest object drawn wins) and how much each still shows."""

    owner: np.ndarray                               # int16 (H, W), -1 = ground
    visible: list[int] = field(default_factory=list)
    placed: list[_Placed] = field(default_factory=list)


def _dims(cls: str, rng: np.random.Generator) -> tuple[float, float, str]:
    spec = _SPECS[cls]
    (lo, hi), (alo, ahi), subtype = spec.length, spec.aspect, ""
    if cls == "vehicle":
        subtype = "large" if rng.random() < 0.18 else "small"
        if subtype == "large":
            (lo, hi), (alo, ahi) = _LARGE_VEHICLE
    length = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return length, length * float(rng.uniform(alo, ahi)), subtype


def _candidate(cls: str, pose: _Pose, length: float, width: float, subtype: str,
               size: int) -> _Placed | None:
    parts = [pose.apply(p) for p in _parts(cls, length, width, subtype)]
    sil = np.zeros((size, size), np.uint8)
    for part in parts:
        sil |= masks.rasterize_polygon(part, size, size)
    area = int(sil.sum())
    full = unary_union([Polygon(p).buffer(0) for p in parts]).area
    if area < 30 or area < 0.55 * full:            # too small, or too far out of the image
        return None
    return _Placed(cls, pose, length, width, subtype, pose.apply(_rect(length, width)), sil, area)


def _fits(c: _Placed, board: _Board, ground: _Ground, allow: float) -> bool:
    """Region rules (ships on water, the rest on land) and bounded, survivable occlusion."""
    on = c.sil.astype(bool)
    wet = float(ground.water[on].mean())
    if (_SPECS[c.cls].water and wet < 0.97) or (not _SPECS[c.cls].water and wet > 0.02):
        return False
    below = board.owner[on]
    below = below[below >= 0]
    if below.size == 0:
        return True
    hosts = _HOSTS.get(c.cls, set())
    owners, lost = np.unique(below, return_counts=True)
    free = sum(int(n) for k, n in zip(owners, lost) if board.placed[k].cls in hosts)
    if below.size - free > allow * c.area + 2:
        return False
    return all(board.visible[k] - n >= max(30, 0.5 * board.placed[k].area)
               for k, n in zip(owners, lost))


def _commit(c: _Placed, board: _Board) -> None:
    on = c.sil.astype(bool)
    below = board.owner[on]
    for k, n in zip(*np.unique(below[below >= 0], return_counts=True)):
        board.visible[k] -= int(n)
    board.owner[on] = len(board.placed)
    board.placed.append(c)
    board.visible.append(c.area)


def _offsets(layout: str, n: int, length: float, width: float, gap: float) -> list[tuple[float, float]]:
    """Member centres of a group in the group's frame (u along the length)."""
    if layout == "row":
        return [(0.0, (k - (n - 1) / 2) * (width + gap)) for k in range(n)]
    if layout == "line":
        return [((k - (n - 1) / 2) * (length + gap), 0.0) for k in range(n)]
    if layout == "grid":
        cols = 2 if n > 2 else n
        return [((k % cols - (cols - 1) / 2) * (length + gap), (k // cols) * (width + gap))
                for k in range(n)]
    return [(0.0, 0.0)]


def _anchor(cls: str, rng: np.random.Generator, ground: _Ground, board: _Board, extent: float,
            size: int) -> tuple[_Pose, float, str]:
    """A group centre and angle, the overlap allowance, and the layout to use."""
    spec = _SPECS[cls]
    angle = _ROUND_ANGLE if spec.round else rng.uniform(0, 2 * math.pi)
    layout = spec.layout
    if cls == "vehicle":
        hosts = [p for p in board.placed if p.cls in _HOSTS["vehicle"]]
        if hosts and rng.random() < 0.6:
            h = hosts[int(rng.integers(len(hosts)))]
            local = rng.uniform(-0.3, 0.15) * h.length, rng.uniform(-0.3, 0.3) * h.width
            c = h.pose.apply(np.array([local]))[0]
            return _Pose(c[0], c[1], h.pose.angle + math.pi / 2), 0.0, "row"
        if ground.roads and rng.random() < 0.55:
            p0, p1, w = ground.roads[int(rng.integers(len(ground.roads)))]
            d = p1 - p0
            t = rng.uniform(0.02, 0.98)
            lane = rng.choice([-1, 1]) * w / 4
            n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6)
            c = p0 + t * d + lane * n
            a = math.atan2(d[1], d[0]) + (math.pi if lane < 0 else 0.0)
            return _Pose(c[0], c[1], a), 0.0, "line"
    if spec.water and len(ground.water_xy):
        x, y = ground.water_xy[int(rng.integers(len(ground.water_xy)))]
        return _Pose(float(x), float(y), angle), 0.0, layout
    if board.placed and rng.random() < 0.25:       # aim at an earlier object: partial occlusion
        other = board.placed[int(rng.integers(len(board.placed)))]
        r = 0.5 * math.hypot(other.length, other.width) * rng.uniform(0.7, 1.1)
        a = rng.uniform(0, 2 * math.pi)
        return _Pose(other.pose.cx + r * math.cos(a), other.pose.cy + r * math.sin(a), angle), 0.35, layout
    margin = -0.2 * extent if rng.random() < 0.12 else 0.5 * extent + 2
    lo, hi = margin, size - margin
    if hi <= lo:
        lo, hi = 0.45 * size, 0.55 * size
    return _Pose(rng.uniform(lo, hi), rng.uniform(lo, hi), angle), 0.0, layout


def _place_group(cls: str, n: int, rng: np.random.Generator, ground: _Ground, board: _Board,
                 size: int, room: int) -> None:
    """Try a few anchors for a group of ``n``; commit the first try that places the most."""
    spec = _SPECS[cls]
    best: list[_Placed] = []
    for _ in range(14 if n > 1 else 30):
        length, width, subtype = _dims(cls, rng)
        gap = float(rng.uniform(*spec.gap))
        pose, allow, layout = _anchor(cls, rng, ground, board, math.hypot(length, width) * max(1, n / 2), size)
        trial = _Board(board.owner.copy(), list(board.visible), list(board.placed))
        got: list[_Placed] = []
        for du, dv in _offsets(layout, min(n, room), length, width, gap):
            grow = float(rng.uniform(*_MEMBER_JITTER.get(cls, (1.0, 1.0))))
            jl = length * grow
            jw = width * (grow if cls != "vehicle" else float(rng.uniform(0.92, 1.08)))
            centre = pose.apply(np.array([[du, dv]]))[0]
            turn = rng.normal(0, 0.03) if cls == "vehicle" else 0.0
            c = _candidate(cls, _Pose(centre[0], centre[1], pose.angle + turn), jl, jw, subtype, size)
            if c is not None and _fits(c, trial, ground, allow if not got else 0.03):
                _commit(c, trial)
                got.append(c)
        if len(got) > len(best):
            best = got
        if len(best) >= min(n, room):
            break
    for c in best:
        c.sun = ground.sun
        _commit(c, board)


def _plan(rng: np.random.Generator, classes: Sequence[str], max_objects: int) -> list[tuple[str, int]]:
    """Which classes (2-4) and how many of each; at most one big class, placed big-first."""
    pool = [c for c in classes if c in _SPECS]
    if not pool or max_objects <= 0:
        return []
    weights = np.array([_SPECS[c].weight for c in pool])
    k = min(len(pool), int(rng.integers(2, 5)))
    picked: list[str] = []
    for c in rng.choice(pool, size=len(pool), replace=False, p=weights / weights.sum()):
        if len(picked) == k:
            break
        if _SPECS[c].big and any(_SPECS[p].big for p in picked):
            continue
        picked.append(str(c))
    plan = [(c, int(rng.integers(_SPECS[c].count[0], _SPECS[c].count[1] + 1))) for c in picked]
    plan.sort(key=lambda cn: (_PLACE_ORDER.get(cn[0], 1), -_SPECS[cn[0]].length[1]))
    return plan


# ------------------------------------------------------------------ clutter and painting
def _add_clutter(rng: np.random.Generator, img: np.ndarray, ground: _Ground, board: _Board) -> None:
    """Buildings and trees: distractors GrabCut and SAM must not swallow; they keep off objects."""
    size = img.shape[0]
    busy = cv2.dilate((board.owner >= 0).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    busy |= ground.water | ground.road_mask
    for _ in range(int(rng.integers(4, 30))):
        L, W = rng.uniform(10, 46), rng.uniform(8, 30)
        pose = _Pose(rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, math.pi))
        quad = pose.apply(_rect(L, W))
        x0, y0, x1, y1 = _crop(quad, size, size)
        if x1 <= x0 or y1 <= y0 or busy[y0:y1, x0:x1].any():
            continue
        m = masks.rasterize_polygon(quad, size, size).astype(bool)
        if not m.any():
            continue
        _paint_building(rng, img, pose, L, W, m, ground.sun)
        busy |= cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    for _ in range(int(rng.integers(1, 9))):
        cx, cy = rng.uniform(0, size, 2)
        for _ in range(int(rng.integers(4, 24))):
            x, y = int(cx + rng.normal(0, 14)), int(cy + rng.normal(0, 14))
            r = int(rng.integers(2, 7))
            if not (0 <= x < size and 0 <= y < size) or busy[max(0, y - r - 2):y + r + 3,
                                                               max(0, x - r - 2):x + r + 3].any():
                continue
            sx, sy = int(round(ground.sun[0] * r * 0.6)), int(round(ground.sun[1] * r * 0.6))
            cv2.circle(img, (x + sx, y + sy), r, (38, 44, 32), -1, cv2.LINE_AA)
            crown = tuple(float(c) for c in _jitter(rng, (56, 84, 44), 8))
            cv2.circle(img, (x, y), r, crown, -1, cv2.LINE_AA)
            cv2.circle(img, (x - max(1, r // 3), y - max(1, r // 3)), max(1, r // 2),
                       tuple(min(255.0, c * 1.25) for c in crown), -1, cv2.LINE_AA)


def _paint_building(rng: np.random.Generator, img: np.ndarray, pose: _Pose, L: float, W: float,
                    m: np.ndarray, sun: tuple[float, float]) -> None:
    shadow = _shift(m, sun[0] * 4, sun[1] * 4) & ~m
    img[shadow] *= 0.6
    x0, y0, x1, y1 = _crop(pose.apply(_rect(L, W)), *m.shape)
    u, v = pose.uv(x0, y0, x1, y1)
    roof = _jitter(rng, [(172, 92, 72), (150, 150, 152), (196, 190, 176), (110, 104, 98)][rng.integers(4)], 10)
    layer = _surface(rng, u, v, roof, L, W, 4)
    layer[v > 0] *= 0.82                            # gable: two roof halves lit differently
    sub = m[y0:y1, x0:x1]
    img[y0:y1, x0:x1][sub] = layer[sub]


def _shift(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``mask`` moved by whole pixels, for shadows."""
    dx, dy = int(round(dx)), int(round(dy))
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def _paint_object(rng: np.random.Generator, img: np.ndarray, p: _Placed, sun: tuple[float, float]) -> None:
    on = p.sil.astype(bool)
    lift = _SPECS[p.cls].shadow * p.width + (1 if _SPECS[p.cls].shadow else 0)
    if lift:
        img[_shift(on, sun[0] * lift, sun[1] * lift) & ~on] *= 0.62
    x0, y0, x1, y1 = _crop(p.quad, *on.shape)
    u, v = p.pose.uv(x0, y0, x1, y1)
    layer = _PAINTERS[p.cls](rng, u, v, p)
    sub = on[y0:y1, x0:x1]
    crop = img[y0:y1, x0:x1]
    if rng.random() < 0.12:                          # low-contrast case: blend towards the ground
        layer = 0.6 * layer + 0.4 * crop[sub].mean(axis=0)
    crop[sub] = layer[sub]


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Sensor look: slight blur, haze, grain; then uint8."""
    img = cv2.GaussianBlur(img, (0, 0), 0.65)
    haze = rng.uniform(0, 0.06)
    img = img * (1 - haze) + haze * np.array([200, 205, 215], np.float32)
    img += rng.standard_normal(img.shape[:2] + (1,), dtype=np.float32) * 2.5
    img += rng.standard_normal(img.shape, dtype=np.float32) * 1.5
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ attributes
def colour_name(rgb: Sequence[float]) -> str:
    """VRSBench-style colour word for a mean RGB colour.

    >>> colour_name((230, 230, 228)), colour_name((40, 72, 150)), colour_name((74, 132, 64))
    ('white', 'blue', 'green')
    """
    r, g, b = (float(c) / 255 for c in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    if v < 0.2:
        return "black"
    if s < 0.2 or (max(r, g, b) - min(r, g, b)) < 0.08:
        return "white" if v > 0.72 else "gray"
    deg = h * 360
    if deg < 16 or deg >= 335:
        return "red" if v >= 0.45 else "brown"
    if deg < 45:
        return "orange" if (s >= 0.5 and v >= 0.6) else "brown"
    if deg < 70:
        return "yellow" if (s >= 0.35 and v >= 0.5) else "brown"
    if deg < 165:
        return "green"
    if deg < 260:
        return "blue"
    return "purple"


def dominant_colour(pixels: np.ndarray) -> str:
    """Most frequent colour word over (a regular sample of) an object's pixels.

    A mean colour is muddy for two-tone objects (a red track round a green field reads as
    "yellow"); the word a person would pick is the one covering most of the object.
    """
    pix = np.asarray(pixels, np.float32).reshape(-1, 3)
    sample = pix[:: max(1, len(pix) // 300)]
    words = [colour_name(c) for c in sample]
    return max(dict.fromkeys(words), key=words.count)


def _grid_position(cx: float, cy: float, size: int) -> str:
    col = min(2, max(0, int(cx * 3 // size)))
    row = min(2, max(0, int(cy * 3 // size)))
    return GRID_POSITIONS[row][col]


def _abs_size(cls: str, length: float) -> str:
    """``small`` / ``large`` against the class's own size range; never for vehicles (VRSBench)."""
    if cls == "vehicle":
        return ""
    lo, hi = _SPECS[cls].length
    t = (math.log(length) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return "small" if t < 0.3 else "large" if t > 0.7 else ""


def _rel_size(mine: float, others: list[float]) -> str:
    """larger/smaller for a pair, largest/smallest for 3+, when clearly so (20 % margin)."""
    if not others:
        return ""
    if len(others) == 1:
        return "larger" if mine > 1.25 * others[0] else "smaller" if mine * 1.25 < others[0] else ""
    return "largest" if mine > 1.2 * max(others) else "smallest" if mine * 1.2 < min(others) else ""


def _rel_position(centre: np.ndarray, others: list[np.ndarray], margin: float) -> str:
    """The extreme direction in which this object leads every same-class object by ``margin``."""
    if not others:
        return ""
    o = np.asarray(others)
    leads = {"left-most": o[:, 0].min() - centre[0], "right-most": centre[0] - o[:, 0].max(),
             "top-most": o[:, 1].min() - centre[1], "bottom-most": centre[1] - o[:, 1].max()}
    best = max(leads, key=lambda k: leads[k])
    return best if leads[best] > margin else ""


def _set_attributes(objects: list[SceneObject], image: np.ndarray) -> None:
    size = image.shape[0]
    centres = []
    for o in objects:
        ys, xs = np.nonzero(o.mask)
        centres.append(np.array([(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2]))
        o.colour = dominant_colour(image[ys, xs])
        o.size = _abs_size(o.category, o.length)
        o.position = _grid_position(*centres[-1], size)
    for i, o in enumerate(objects):
        peers = [j for j, q in enumerate(objects) if q.category == o.category and j != i]
        o.is_unique = not peers
        o.rel_size = _rel_size(o.length * o.width, [objects[j].length * objects[j].width for j in peers])
        o.rel_position = _rel_position(centres[i], [centres[j] for j in peers], max(8.0, 0.3 * o.width))


# ------------------------------------------------------------------ the scene
def render_scene(rng: np.random.Generator, size: int = PATCH,
                 classes: Sequence[str] = DRAWABLE_CLASSES, max_objects: int = 10) -> Scene:
    """Draw one aerial-like patch and keep every object's truth.

    Objects are oriented, textured and shadowed; some touch (rows of cars, court pairs, tank
    grids), some are partly hidden by a later object (their mask loses those pixels), a few are
    cut by the border. ``max_objects`` defaults to 10 because VRSBench skipped busier patches.
    """
    plan = _plan(rng, classes, max_objects)
    hub = None
    if any(c == "roundabout" for c, _ in plan):
        hub = (float(rng.uniform(0.3, 0.7) * size), float(rng.uniform(0.3, 0.7) * size))
    water = any(_SPECS[c].water for c, _ in plan) or rng.random() < 0.08
    ground = _make_ground(rng, size, water, hub)
    board = _Board(np.full((size, size), -1, np.int16))
    for cls, n in plan:
        room = max_objects - len(board.placed)
        if room <= 0:
            break
        if cls == "roundabout" and hub is not None:
            length, width, subtype = _dims(cls, rng)
            c = _candidate(cls, _Pose(hub[0], hub[1], _ROUND_ANGLE), length, width, subtype, size)
            if c is not None and _fits(c, board, ground, 0.0):
                c.sun = ground.sun
                _commit(c, board)
            continue
        if _SPECS[cls].layout == "single":
            for _ in range(min(n, room)):
                _place_group(cls, 1, rng, ground, board, size, 1)
        else:
            _place_group(cls, n, rng, ground, board, size, room)
    img = ground.image
    _add_clutter(rng, img, ground, board)
    for p in board.placed:
        _paint_object(rng, img, p, ground.sun)
    image = _finish(rng, img)
    objects = _scene_objects(board, size)
    _set_attributes(objects, image)
    return Scene(image, objects, water=bool(ground.water.any()), roads=len(ground.roads))


def _scene_objects(board: _Board, size: int) -> list[SceneObject]:
    out = []
    for k, p in enumerate(board.placed):
        vis = (board.owner == k).astype(np.uint8)
        if vis.sum() < 30:
            continue
        angle = 0.0 if _SPECS[p.cls].round else math.degrees(p.pose.angle) % 360
        truncated = bool((p.quad < 0).any() or (p.quad > size).any())
        out.append(SceneObject(p.cls, p.quad, vis, angle, p.length, p.width, p.subtype,
                               float(vis.sum()) / p.area, truncated))
    return out


# ------------------------------------------------------------------ language
_NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    "airplane": (("airplane", "airplanes"), ("plane", "planes"), ("aircraft", "aircraft")),
    "ship": (("ship", "ships"), ("boat", "boats"), ("vessel", "vessels")),
    "storage-tank": (("storage tank", "storage tanks"), ("tank", "tanks"), ("oil tank", "oil tanks")),
    "tennis-court": (("tennis court", "tennis courts"),),
    "basketball-court": (("basketball court", "basketball courts"),),
    "swimming-pool": (("swimming pool", "swimming pools"), ("pool", "pools")),
    "vehicle": (("vehicle", "vehicles"), ("car", "cars")),
    "roundabout": (("roundabout", "roundabouts"), ("traffic circle", "traffic circles")),
    "soccer-ball-field": (("soccer field", "soccer fields"), ("soccer ball field", "soccer ball fields"),
                          ("football field", "football fields")),
    "ground-track-field": (("ground track field", "ground track fields"), ("running track", "running tracks"),
                           ("athletics track", "athletics tracks")),
    "expressway-service-area": (("expressway service area", "expressway service areas"),
                                ("service area", "service areas"), ("highway rest area", "highway rest areas")),
}
_LARGE_VEHICLE_NOUNS = (("large vehicle", "large vehicles"), ("truck", "trucks"), ("vehicle", "vehicles"))
_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top-left": ("in the top-left corner", "at the top left of the image", "in the upper-left part of the image"),
    "top-middle": ("at the top of the image", "near the top center", "in the upper middle of the image"),
    "top-right": ("in the top-right corner", "at the top right of the image", "in the upper-right part of the image"),
    "middle-left": ("on the left side of the image", "in the middle of the left side", "at the center left"),
    "center": ("in the center of the image", "in the middle of the image", "near the center"),
    "middle-right": ("on the right side of the image", "in the middle of the right side", "at the center right"),
    "bottom-left": ("in the bottom-left corner", "at the bottom left of the image",
                    "in the lower-left part of the image"),
    "bottom-middle": ("near the bottom", "at the bottom center", "in the lower middle of the image"),
    "bottom-right": ("in the bottom-right corner", "at the bottom right of the image",
                     "in the lower-right part of the image"),
}
_REL_POSITION_WORDS = {"top-most": ("top-most", "topmost", "uppermost"), "bottom-most": ("bottom-most", "lowest"),
                       "left-most": ("left-most", "leftmost"), "right-most": ("right-most", "rightmost")}
_REL_POSITION_PHRASES = {"top-most": "closest to the top of the image", "bottom-most": "closest to the bottom",
                         "left-most": "furthest to the left", "right-most": "furthest to the right"}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
_VRS_REL_SIZE = {"largest": "largeest", "larger": "larger", "smaller": "smaller", "smallest": "smallest", "": ""}


def _nouns(o: SceneObject, rng: np.random.Generator) -> tuple[str, str]:
    table = _LARGE_VEHICLE_NOUNS if o.subtype == "large" else _NOUNS[o.category]
    return table[int(rng.integers(len(table)))]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _finish_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def _distinguishers(objects: list[SceneObject], i: int) -> list[str]:
    """What tells object ``i`` apart from its class mates: rel_size, rel_pos and/or pos."""
    o = objects[i]
    if o.is_unique:
        return ["plain", "pos", "pos"]
    kinds = [k for k, ok in (("rel_size", o.rel_size), ("rel_pos", o.rel_position)) if ok]
    shared = any(q.position == o.position for j, q in enumerate(objects) if j != i and q.category == o.category)
    if not shared or not kinds:
        kinds.append("pos")
    return kinds


def _sentence(objects: list[SceneObject], i: int, rng: np.random.Generator) -> str:
    """A templated referring expression from the object's real attributes.

    Unique objects may go without a position; other objects always carry what tells them apart.
    """
    o = objects[i]
    sing, plur = _nouns(o, rng)
    colour = o.colour if rng.random() < 0.75 else ""
    size = o.size if rng.random() < 0.6 else ""
    phrase = " ".join(w for w in (size, colour, sing) if w)
    pos = _pick(rng, _POSITION_PHRASES[o.position])
    kind = _pick(rng, _distinguishers(objects, i))
    if kind == "plain":
        text = _pick(rng, (f"The {phrase}.", f"The only {sing} in the image.",
                           f"{_article(phrase)} {phrase} in the image."))
    elif kind == "pos":
        options = [f"The {phrase} {pos}.", f"{_article(phrase)} {phrase} {pos}.", f"The {phrase} located {pos}."]
        if o.colour:
            options.append(f"The {sing} {pos}, which is {o.colour}.")
        text = _pick(rng, options)
    elif kind == "rel_pos":
        word = _pick(rng, _REL_POSITION_WORDS[o.rel_position])
        text = _pick(rng, (f"The {word} {phrase}.", f"The {word} {phrase} among the {plur}.",
                           f"The {phrase} that is {_REL_POSITION_PHRASES[o.rel_position]}."))
    else:
        plain = " ".join(w for w in (colour, sing) if w)
        where = f" {pos}" if rng.random() < 0.5 else ""
        if o.rel_size in ("larger", "smaller"):
            text = _pick(rng, (f"The {o.rel_size} of the two {plur}.", f"The {o.rel_size} {plain}{where}."))
        else:
            text = _pick(rng, (f"The {o.rel_size} {plain}{where}.", f"The {o.rel_size} of the {plur}."))
    return _finish_sentence(text)


def refer_objects(scene: Scene, rng: np.random.Generator, max_refs: int = 5) -> list[Referent]:
    """Pick 1-5 objects a sentence can single out (VRSBench refers about 1.8 per patch)."""
    objs = scene.objects
    if not objs:
        return []
    per_class = {c: sum(o.category == c for o in objs) for c in {o.category for o in objs}}
    usable = [i for i, o in enumerate(objs) if per_class[o.category] < 10]     # >= 10: VRSBench flag
    telling = [i for i in usable if _distinguishers(objs, i) != ["pos"] or not any(
        q.position == objs[i].position for j, q in enumerate(objs) if j != i and q.category == objs[i].category)]
    pool = telling or usable or list(range(len(objs)))
    k = min(len(pool), max_refs, int(rng.choice([1, 1, 1, 2, 2, 2, 3, 3, 4, 5])))
    chosen = sorted(int(i) for i in rng.choice(pool, size=k, replace=False))
    return [Referent(i, _sentence(objs, i, rng)) for i in chosen]


def _caption(scene: Scene, rng: np.random.Generator, dota: bool) -> str:
    counts: dict[str, list[SceneObject]] = {}
    for o in scene.objects:
        counts.setdefault(o.category, []).append(o)
    parts = []
    for cls, objs in sorted(counts.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        sing, plur = _NOUNS[cls][0]
        n = len(objs)
        parts.append(f"{_article(objs[0].colour)} {objs[0].colour} {sing}" if n == 1
                     else f"{_COUNT_WORDS.get(n, 'several')} {plur}")
    things = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    where = (" next to a stretch of water" if scene.water else " along a road" if scene.roads
             else " on open ground")
    source = _pick(rng, (" from GoogleEarth", "")) if dota else ""
    quality = _pick(rng, ("high-resolution ", "", "detailed "))
    return f"The {quality}aerial image{source} shows {things}{where}."


def _qa_pairs(scene: Scene, refs: list[Referent], rng: np.random.Generator,
              pool: Sequence[str]) -> list[dict]:
    """Two or three simple QA in VRSBench's per-image schema (ques_id is sometimes a str there)."""
    objs = scene.objects
    present = sorted({o.category for o in objs})
    cls = _pick(rng, present)
    qas = [("How many {} are visible in the image?".format(_NOUNS[cls][0][1]),
            str(sum(o.category == cls for o in objs)), "object quantity")]
    ref = refs[int(rng.integers(len(refs)))]
    o = objs[ref.index]
    qas.append((f"What color is the {_nouns(o, rng)[0]} {_pick(rng, _POSITION_PHRASES[o.position])}?",
                o.colour, "object color"))
    absent = [c for c in pool if c not in present]
    if absent and rng.random() < 0.7:
        qas.append((f"Is there {_article(_NOUNS[absent[0]][0][0])} {_NOUNS[absent[0]][0][0]} in the image?",
                    "No", "object existence"))
    as_str = rng.random() < 0.3
    return [{"ques_id": str(k) if as_str else k, "question": q, "answer": a, "type": t}
            for k, (q, a, t) in enumerate(qas, start=1)]


# ------------------------------------------------------------------ loose boxes
def noisy_quad(quad: np.ndarray, noise: BoxNoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """A VRSBench-like loose version of an oriented quad, in pixels.

    In the quad's own frame: centre shift ~ N(0, shift * side) per axis, log scale ~ N(0, scale)
    for both sides, log aspect ~ N(0, aspect) split between them. The corner order is kept.
    """
    q = np.asarray(quad, np.float64).reshape(4, 2)
    centre = q.mean(axis=0)
    across, along = q[1] - q[0], q[2] - q[1]
    la, lb = float(np.linalg.norm(across)), float(np.linalg.norm(along))
    ea = across / la if la > 0 else np.array([0.0, 1.0])
    eb = along / lb if lb > 0 else np.array([-1.0, 0.0])
    scale = math.exp(rng.normal(0, noise.scale))
    aspect = math.exp(rng.normal(0, noise.aspect) / 2)
    shift = ea * rng.normal(0, noise.shift * la) + eb * rng.normal(0, noise.shift * lb)
    d = q - centre
    return (centre + shift + np.outer(d @ ea, ea) * (scale / aspect)
            + np.outer(d @ eb, eb) * (scale * aspect))


def _pixel_corners(quad: np.ndarray) -> np.ndarray:
    """Whole-pixel corners like the real labels; never collapses a box to zero width."""
    q = np.round(np.asarray(quad, np.float64))
    for axis in (0, 1):
        if q[:, axis].max() - q[:, axis].min() < 1:
            q[q[:, axis].argmax(), axis] += 1
    return q


# ------------------------------------------------------------------ small io helpers
def _seed_rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def _render_nonempty(rng: np.random.Generator, size: int, classes: Sequence[str],
                     max_objects: int = 10) -> Scene:
    for _ in range(8):
        scene = render_scene(rng, size, classes, max_objects)
        if scene.objects:
            return scene
    return scene


def _write_image(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if path.suffix.lower() == ".png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _write_json(path: Path, data: object, indent: int | None = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _truth_row(image: str, obj_id: int, o: SceneObject, **extra: object) -> dict:
    rle = masks.encode(o.mask)
    return {"image": image, "obj_id": obj_id, "category": o.category, **extra, "rle": rle,
            "quad": [[float(x), float(y)] for x, y in o.quad], "box_xyxy": list(masks.bbox_xyxy(rle)),
            "visible_fraction": round(o.visible_fraction, 4), "truncated": o.truncated}


def _write_truth(truth_dir: Path, rows: list[dict]) -> Path:
    truth_dir.mkdir(parents=True, exist_ok=True)
    path = truth_dir / "masks.jsonl"
    rows = sorted(rows, key=lambda r: (r["image"], r["obj_id"]))
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows), encoding="utf-8")
    return path


def load_truth(truth_dir: Path) -> dict[tuple[str, int], dict]:
    """``masks.jsonl`` keyed by (image file name, obj_id); decode ``rle`` with masks.decode."""
    out: dict[tuple[str, int], dict] = {}
    with open(Path(truth_dir) / "masks.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out[(row["image"], int(row["obj_id"]))] = row
    return out


def _class_counts(categories: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in categories:
        counts[c] = counts.get(c, 0) + 1
    return dict(sorted(counts.items()))


# ------------------------------------------------------------------ VRSBench
@dataclass(frozen=True)
class _PatchPlan:
    name: str          # P0012_0004.png or 00345_0002.png
    split: str         # train | val
    dota: bool
    scene: int         # index of the source scene in the config
    window: int


def _vrsbench_plan(cfg: SyntheticConfig) -> list[_PatchPlan]:
    """Scene ids, styles (DOTA / DIOR names alternate), scene-level splits and window indices."""
    rng = _seed_rng(cfg.seed, 0)
    n = cfg.scenes
    n_val = int(round(cfg.val_fraction * n))
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    val = set(int(i) for i in rng.permutation(n)[:n_val])
    dota_ids = rng.choice(np.arange(1, 2806), size=(n + 1) // 2, replace=False)
    dior_ids = rng.choice(np.arange(1, 11726), size=n // 2, replace=False)
    k = cfg.patches_per_scene
    plans = []
    for s in range(n):
        dota = s % 2 == 0
        windows = sorted(rng.choice(3 * k + 3 if dota else max(4, k), size=k, replace=False))
        stem = f"P{dota_ids[s // 2]:04d}" if dota else f"{dior_ids[s // 2]:05d}"
        for w in windows:
            plans.append(_PatchPlan(f"{stem}_{int(w):04d}.png", "val" if s in val else "train", dota, s, int(w)))
    return sorted(plans, key=lambda p: p.name)


def _vrsbench_object(obj_id: int, o: SceneObject, sentence: str, corners: np.ndarray, dota: bool) -> dict:
    if not dota:                                   # DIOR on VRSBench main: HBB corners
        x0, y0, x1, y1 = masks.polygon_box(corners)
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    x0, y0, x1, y1 = masks.polygon_box(corners)
    return {
        "obj_id": obj_id, "referring_sentence": sentence, "obj_cls": o.category,
        "obj_corner": [float(v) / PATCH for v in corners.reshape(-1)],
        "obj_coord": [round(max(x0, 0.0) / PATCH, 2), round(max(y0, 0.0) / PATCH, 2),
                      round(x1 / PATCH, 2), round(y1 / PATCH, 2)],
        "is_unique": o.is_unique, "obj_position": o.position,
        "obj_rel_position": "" if o.is_unique else o.rel_position, "obj_size": o.size,
        "obj_rel_size": _VRS_REL_SIZE[o.rel_size], "flag": False,
    }


def ground_truth_tokens(obj_corner: Sequence[float]) -> str:
    """Eval ``ground_truth``: HBB of the normalised corners, clipped to [0, 1], ``int(v * 100)``."""
    xs, ys = obj_corner[0::2], obj_corner[1::2]
    box = [min(xs), min(ys), max(xs), max(ys)]
    return "{" + "".join(f"<{int(min(max(v, 0.0), 1.0) * 100)}>" for v in box) + "}"


def _vrsbench_patch(plan: _PatchPlan, cfg: SyntheticConfig) -> tuple[np.ndarray, dict, list[dict]]:
    """Render one patch: image, per-image annotation and truth rows of its referred objects."""
    rng = _seed_rng(cfg.seed, 1, plan.scene, plan.window)
    scene = _render_nonempty(rng, PATCH, DOTA_CLASSES if plan.dota else DIOR_CLASSES)
    refs = refer_objects(scene, rng)
    objects, truth = [], []
    for ref in refs:
        o = scene.objects[ref.index]
        corners = _pixel_corners(noisy_quad(o.quad, cfg.box_noise, rng))
        objects.append(_vrsbench_object(ref.index, o, ref.sentence, corners, plan.dota))
        truth.append(_truth_row(plan.name, ref.index, o, split=plan.split))
    doc = {"image": plan.name, "caption": _caption(scene, rng, plan.dota), "objects": objects,
           "qa_pairs": _qa_pairs(scene, refs, rng, DOTA_CLASSES if plan.dota else DIOR_CLASSES)}
    return scene.image, doc, truth


def _vrsbench_image_path(root: Path, split: str, name: str) -> Path:
    """The val zip of the real release nests one level deeper: Images_val/Images_val/*.png."""
    return root / "Images_train" / name if split == "train" else root / "Images_val" / "Images_val" / name


def _eval_records(docs: list[dict]) -> list[dict]:
    records = []
    for doc in docs:
        for obj in doc["objects"]:
            records.append({
                "image_id": doc["image"], "question": obj["referring_sentence"],
                "ground_truth": ground_truth_tokens(obj["obj_corner"]), "dataset": "RSBench",
                "question_id": len(records), "type": "ref", "unique": obj["is_unique"],
                "obj_corner": obj["obj_corner"], "obj_cls": obj["obj_cls"], "obj_ids": [0],
                "size_group": obj["obj_size"]})
    return records


def write_vrsbench(root: Path, cfg: SyntheticConfig, truth_dir: Path | None = None) -> dict:
    """A VRSBench release tree (formats.md §2.1-2.3) of ``cfg.scenes`` x ``cfg.patches_per_scene``
    512x512 patches, with the truth in ``truth_dir`` (default: sibling ``<root>_truth``)."""
    root = Path(root)
    truth_dir = Path(truth_dir) if truth_dir is not None else root.parent / (root.name + "_truth")
    docs: dict[str, list[dict]] = {"train": [], "val": []}
    truth: list[dict] = []
    for plan in _vrsbench_plan(cfg):
        image, doc, rows = _vrsbench_patch(plan, cfg)
        _write_image(_vrsbench_image_path(root, plan.split, plan.name), image)
        _write_json(root / f"Annotations_{plan.split}" / (Path(plan.name).stem + ".json"), doc)
        docs[plan.split].append(doc)
        truth.extend(rows)
    records = _eval_records(docs["val"])
    _write_json(root / "VRSBench_EVAL_referring.json", records, indent=None)
    _write_truth(truth_dir, truth)
    return {
        "kind": "vrsbench", "root": str(root), "truth_dir": str(truth_dir),
        "images": {s: len(d) for s, d in docs.items()},
        "objects": {s: sum(len(doc["objects"]) for doc in d) for s, d in docs.items()},
        "eval_records": len(records),
        "classes": _class_counts(r["category"] for r in truth),
    }


def config_hash(cfg: SyntheticConfig) -> str:
    """What decides the generated bytes: the config (less its output folder) and this version."""
    data = {"generator_version": GENERATOR_VERSION, **cfg.model_dump(mode="json", exclude={"out"})}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def generate_sources(out: Path, cfg: SyntheticConfig) -> dict:
    """The demo's sources: ``out/vrsbench`` + ``out/vrsbench_truth`` and ``out/manifest.json``.

    Skipped when the manifest already holds this config's hash, so reruns are instant and the
    files stay byte-identical; any other state is regenerated from scratch.
    """
    out = Path(out)
    manifest_path = out / "manifest.json"
    digest = config_hash(cfg)
    if manifest_path.is_file() and (out / "vrsbench_truth" / "masks.jsonl").is_file():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        if old.get("config_hash") == digest:
            return old
    manifest_path.unlink(missing_ok=True)
    for sub in ("vrsbench", "vrsbench_truth"):
        shutil.rmtree(out / sub, ignore_errors=True)
    info = write_vrsbench(out / "vrsbench", cfg, out / "vrsbench_truth")
    manifest = {
        "generator": "risbench_builder.synthetic", "generator_version": GENERATOR_VERSION,
        "config_hash": digest, "config": cfg.model_dump(mode="json", exclude={"out"}),
        "vrsbench": {**info, "root": "vrsbench", "truth_dir": "vrsbench_truth"},
    }
    tmp = manifest_path.with_suffix(".json.tmp")
    _write_json(tmp, manifest)
    os.replace(tmp, manifest_path)
    return manifest


# ------------------------------------------------------------------ DOTA
def _dota_line(o: SceneObject, as_float: bool) -> str:
    coords = [f"{v:.1f}" if as_float else str(int(round(v))) for v in o.quad.reshape(-1)]
    name = DOTA_NAMES[o.category]
    if o.category == "vehicle" and o.subtype == "large":
        name = "large-vehicle"
    difficult = int(o.visible_fraction < 0.6 or (o.category == "vehicle" and o.length < 11))
    return " ".join(coords + [name, str(difficult)])


def write_dota(root: Path, seed: int = 0, n_images: int = 4, size: int = 640,
               truth_dir: Path | None = None) -> dict:
    """A DOTA tree: ``images/P####.png`` + ``labelTxt/P####.txt``, every object of each image.

    Real DOTA images are 800-20,000 px; smaller here. Quirks reproduced: CRLF line endings,
    ``imagesource:``/``gsd:`` headers on even files only, integer coordinates on some files and
    ``398.0``-style floats on others, and one empty label file (the last image has no objects).
    """
    root = Path(root)
    rows, categories, empty = [], [], []
    for i in range(n_images):
        name = f"P{i + 1:04d}"
        rng = _seed_rng(seed, 2, i)
        is_empty = n_images > 1 and i == n_images - 1
        scene = render_scene(rng, size, DOTA_CLASSES, 0 if is_empty else 14)
        _write_image(root / "images" / f"{name}.png", scene.image)
        lines = [] if is_empty or i % 2 else ["imagesource:GoogleEarth", f"gsd:{rng.uniform(0.1, 0.6):.12f}"]
        lines += [_dota_line(o, as_float=i % 3 == 1) for o in scene.objects]
        (root / "labelTxt").mkdir(parents=True, exist_ok=True)
        (root / "labelTxt" / f"{name}.txt").write_bytes("".join(x + "\r\n" for x in lines).encode())
        if not scene.objects:
            empty.append(f"labelTxt/{name}.txt")
        rows += [_truth_row(f"{name}.png", k, o) for k, o in enumerate(scene.objects)]
        categories += [o.category for o in scene.objects]
    if truth_dir is not None:
        _write_truth(Path(truth_dir), rows)
    return {"kind": "dota", "root": str(root), "images": n_images, "objects": len(categories),
            "classes": _class_counts(categories), "empty_label_files": empty}


# ------------------------------------------------------------------ DIOR, DIOR-R, DIOR-RSVG
def _xml_text(parent: "ET.Element", tag: str, text: object) -> "ET.Element":
    el = ET.SubElement(parent, tag)
    el.text = str(text)
    return el


def _xml_header(filename: str, database: str, size: int) -> "ET.Element":
    ann = ET.Element("annotation")
    _xml_text(ann, "filename", filename)
    _xml_text(ET.SubElement(ann, "source"), "database", database)
    sz = ET.SubElement(ann, "size")
    for tag, val in (("width", size), ("height", size), ("depth", 3)):
        _xml_text(sz, tag, val)
    _xml_text(ann, "segmented", 0)
    return ann


def _hbb_ints(o: SceneObject, size: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(round(v)) for v in masks.clip_box(masks.polygon_box(o.quad), size, size))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _xml_bndbox(obj: "ET.Element", box: tuple[int, int, int, int]) -> None:
    bb = ET.SubElement(obj, "bndbox")
    for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), box):
        _xml_text(bb, tag, val)


def _write_xml(path: Path, ann: "ET.Element") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(ann, space="\t")
    path.write_bytes(ET.tostring(ann, encoding="utf-8") + b"\n")


def _dior_hbb_xml(filename: str, scene: Scene) -> "ET.Element":
    ann = _xml_header(filename, "DIOR", scene.size)
    for o in scene.objects:
        obj = ET.SubElement(ann, "object")
        _xml_text(obj, "name", DIOR_NAMES[o.category])
        _xml_text(obj, "pose", "Unspecified")
        _xml_bndbox(obj, _hbb_ints(o, scene.size))
    return ann


def _dior_obb_xml(filename: str, scene: Scene) -> "ET.Element":
    """DIOR-R: ``<angle>`` is a sibling of ``<robndbox>``, the database says Unknown."""
    ann = _xml_header(filename, "Unknown", scene.size)
    corners = ("left_top", "right_top", "right_bottom", "left_bottom")
    for o in scene.objects:
        obj = ET.SubElement(ann, "object")
        _xml_text(obj, "type", "robndbox")
        _xml_text(obj, "name", DIOR_NAMES[o.category])
        _xml_text(obj, "pose", "Unspecified")
        _xml_text(obj, "truncated", int(o.truncated))
        _xml_text(obj, "difficult", int(o.visible_fraction < 0.6))
        rb = ET.SubElement(obj, "robndbox")
        for corner, (x, y) in zip(corners, o.quad):
            _xml_text(rb, f"x_{corner}", int(round(x)))
            _xml_text(rb, f"y_{corner}", int(round(y)))
        _xml_text(obj, "angle", int(round(o.angle)) % 180)
    return ann


def write_dior(root: Path, seed: int = 0, n_images: int = 6, size: int = 400,
               truth_dir: Path | None = None) -> dict:
    """A DIOR + DIOR-R tree (formats.md §4). DIOR uses 800x800; smaller here for speed.

    Trainval ids count from 00001 into ``JPEGImages-trainval``, test ids from 11726 into
    ``JPEGImages-test`` (as the real ranges), about half of the images are test.
    """
    root = Path(root)
    n_test = n_images // 2
    n_trainval = n_images - n_test
    n_train = (n_trainval + 1) // 2
    ids = [(i + 1, "train" if i < n_train else "val") for i in range(n_trainval)]
    ids += [(11726 + i, "test") for i in range(n_test)]
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    rows, categories = [], []
    for k, (num, split) in enumerate(ids):
        stem = f"{num:05d}"
        # the first image always holds a service area, so the capitalised DIOR name is on disk
        classes = ("expressway-service-area", "vehicle") if k == 0 else DIOR_CLASSES
        scene = _render_nonempty(_seed_rng(seed, 3, k), size, classes, 12)
        folder = "JPEGImages-test" if split == "test" else "JPEGImages-trainval"
        _write_image(root / folder / f"{stem}.jpg", scene.image)
        _write_xml(root / "Annotations" / "Horizontal Bounding Boxes" / f"{stem}.xml",
                   _dior_hbb_xml(f"{stem}.jpg", scene))
        _write_xml(root / "Annotations" / "Oriented Bounding Boxes" / f"{stem}.xml",
                   _dior_obb_xml(f"{stem}.jpg", scene))
        splits[split].append(stem)
        rows += [_truth_row(f"{stem}.jpg", j, o, split=split) for j, o in enumerate(scene.objects)]
        categories += [o.category for o in scene.objects]
    for split, stems in splits.items():
        path = root / "ImageSets" / "Main" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(s + "\n" for s in stems), encoding="utf-8")
    if truth_dir is not None:
        _write_truth(Path(truth_dir), rows)
    return {"kind": "dior", "root": str(root), "images": {s: len(v) for s, v in splits.items()},
            "objects": len(categories), "classes": _class_counts(categories)}


def write_dior_rsvg(root: Path, seed: int = 0, n_images: int = 6, size: int = 400,
                    truth_dir: Path | None = None) -> dict:
    """A DIOR-RSVG tree (formats.md §5): referred objects only, each with ``<description>``.

    Object children are name, pose, bndbox, description, in that order (the loader reads them
    by position). Split files hold GLOBAL object indices counted over the sorted XML names and
    the objects in file order; images are split whole (about 70/10/20). DIOR-RSVG images are
    800x800; smaller here.
    """
    root = Path(root)
    rng = _seed_rng(seed, 4)
    order = [int(i) for i in rng.permutation(n_images)]
    n_val, n_test = max(1, n_images // 10), max(1, n_images // 5)
    split_of = {i: "val" if r < n_val else "test" if r < n_val + n_test else "train" for r, i in enumerate(order)}
    if n_images < 3:
        split_of = {i: "train" for i in range(n_images)}
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    rows, categories, index = [], [], 0
    for i in range(n_images):                   # ids ascend, so file order = sorted XML names
        stem = f"{i + 1:05d}"
        prng = _seed_rng(seed, 5, i)
        scene = _render_nonempty(prng, size, DIOR_CLASSES, 12)
        refs = refer_objects(scene, prng)
        _write_image(root / "JPEGImages" / f"{stem}.jpg", scene.image)
        ann = _xml_header(f"{stem}.jpg", "DIOR", size)
        for j, ref in enumerate(refs):
            o = scene.objects[ref.index]
            obj = ET.SubElement(ann, "object")
            _xml_text(obj, "name", DIOR_NAMES[o.category])
            _xml_text(obj, "pose", "Unspecified")
            _xml_bndbox(obj, _hbb_ints(o, size))
            _xml_text(obj, "description", ref.sentence)
            splits[split_of[i]].append(index)
            rows.append(_truth_row(f"{stem}.jpg", j, o, split=split_of[i], global_index=index))
            categories.append(o.category)
            index += 1
        _write_xml(root / "Annotations" / f"{stem}.xml", ann)
    for split, idx in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{k}\n" for k in idx), encoding="utf-8")
    if truth_dir is not None:
        _write_truth(Path(truth_dir), rows)
    return {"kind": "dior_rsvg", "root": str(root), "images": n_images, "objects": index,
            "splits": {s: len(v) for s, v in splits.items()}, "classes": _class_counts(categories)}


# ------------------------------------------------------------------ placeholders (benchmarks)
def _placeholder_names(n_files: int, val_fraction: float, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(name, split) for n patches: DOTA scenes with 8 windows and DIOR scenes with 4, alternating."""
    out: list[tuple[str, str]] = []
    scene = 0
    while len(out) < n_files:
        split = "val" if rng.random() < val_fraction else "train"
        sid = scene // 2 + 1
        stems = ([f"P{sid:04d}_{w:04d}.png" for w in range(8)] if scene % 2 == 0
                 else [f"{sid:05d}_{w:04d}.png" for w in range(4)])
        out += [(n, split) for n in stems[: n_files - len(out)]]
        scene += 1
    return out


def _placeholder_objects(count: int, rng: np.random.Generator) -> list[dict]:
    """Axis-aligned boxes (valid for DOTA and DIOR names alike) with one-line sentences."""
    cls_idx = rng.integers(len(DRAWABLE_CLASSES), size=count)
    xy = rng.integers(0, 440, size=(count, 2))
    wh = rng.integers(8, 72, size=(count, 2))
    colours = rng.integers(6, size=count)
    classes = [DRAWABLE_CLASSES[int(c)] for c in cls_idx]
    objs = []
    for k in range(count):
        (x0, y0), (w, h) = xy[k].tolist(), wh[k].tolist()
        x1, y1 = x0 + w, y0 + h
        cls = classes[k]
        position = _grid_position((x0 + x1) / 2, (y0 + y1) / 2, PATCH)
        colour = ("white", "gray", "red", "blue", "green", "yellow")[int(colours[k])]
        corners = [x0, y0, x1, y0, x1, y1, x0, y1]
        objs.append({
            "obj_id": k, "referring_sentence": f"The {colour} {_NOUNS[cls][0][0]} {_POSITION_PHRASES[position][0]}.",
            "obj_cls": cls, "obj_corner": [v / PATCH for v in corners],
            "obj_coord": [round(x0 / PATCH, 2), round(y0 / PATCH, 2), round(x1 / PATCH, 2), round(y1 / PATCH, 2)],
            "is_unique": classes.count(cls) == 1, "obj_position": position, "obj_rel_position": "",
            "obj_size": "", "obj_rel_size": "", "flag": False})
    return objs


def _link_or_copy(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copyfile(src, dst)
        return False


def write_vrsbench_placeholders(root: Path, n_files: int = 29_614, objects_total: int = 52_472,
                                seed: int = 0, val_fraction: float = 9_350 / 29_614) -> dict:
    """A RISBench-sized VRSBench tree, fast, for the ingest benchmark (no rendering).

    Every image is the same solid 512x512 PNG hard-linked under each name (copied where links
    fail), so ingest's size check passes; annotations are cheaply templated but well formed.
    Each file gets 1-5 objects and the total is exactly ``objects_total``.
    """
    if not n_files <= objects_total <= 5 * n_files:
        raise ValueError(f"objects_total={objects_total} must lie in [{n_files}, {5 * n_files}] "
                         "(each file holds 1-5 referred objects)")
    root = Path(root)
    rng = _seed_rng(seed, 6)
    names = _placeholder_names(n_files, val_fraction, rng)
    counts = np.ones(n_files, np.int64)
    extra = rng.permutation(np.repeat(np.arange(n_files), 4))[: objects_total - n_files]
    counts += np.bincount(extra, minlength=n_files)
    for folder in ("Images_train", "Images_val/Images_val", "Annotations_train", "Annotations_val"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    master = _vrsbench_image_path(root, names[0][1], names[0][0])
    ok, buf = cv2.imencode(".png", np.full((PATCH, PATCH, 3), (118, 122, 110), np.uint8))
    master.write_bytes(buf.tobytes())
    linked = True
    val_docs, n_split = [], {"train": 0, "val": 0}
    objects = {"train": 0, "val": 0}
    for (name, split), count in zip(names, counts.tolist()):
        image = _vrsbench_image_path(root, split, name)
        if image != master:
            linked &= _link_or_copy(master, image)
        doc = {"image": name, "caption": "The aerial image shows several objects.",
               "objects": _placeholder_objects(count, rng), "qa_pairs": []}
        (root / f"Annotations_{split}" / (name[:-4] + ".json")).write_text(json.dumps(doc), encoding="utf-8")
        n_split[split] += 1
        objects[split] += count
        if split == "val":
            val_docs.append(doc)
    records = _eval_records(val_docs)
    _write_json(root / "VRSBench_EVAL_referring.json", records, indent=None)
    return {"kind": "vrsbench-placeholders", "root": str(root), "images": n_split, "objects": objects,
            "eval_records": len(records), "hard_links": linked}
