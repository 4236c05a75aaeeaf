"""The ground under the objects: land patches, crop fields, roads and water."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .. import masks
from .geometry import _Pose, _rect
from .texture import _crop, _jitter, _smooth


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
