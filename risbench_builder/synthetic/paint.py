"""Painters: one per class in the object's own frame, then clutter (buildings, trees), shadows
and the sensor look."""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from .. import masks
from .geometry import _Pose, _rect, _sd_box, _sd_stadium
from .ground import _Ground
from .placement import _SPECS, _Board, _Placed
from .texture import _crop, _fill, _jitter, _stroke, _surface


def _paint_tennis(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_basketball(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_soccer(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_track(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_pool(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_vehicle(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_airplane(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_ship(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_tank(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_roundabout(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


def _paint_service_area(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, p: _Placed) -> np.ndarray:
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


_PAINTERS: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray, _Placed], np.ndarray]] = {
    "tennis-court": _paint_tennis, "basketball-court": _paint_basketball,
    "soccer-ball-field": _paint_soccer, "ground-track-field": _paint_track,
    "swimming-pool": _paint_pool, "vehicle": _paint_vehicle, "airplane": _paint_airplane,
    "ship": _paint_ship, "storage-tank": _paint_tank, "roundabout": _paint_roundabout,
    "expressway-service-area": _paint_service_area,
}


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
