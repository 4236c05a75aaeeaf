"""Object frames and silhouettes: the pose that maps an object's local (u along, v across)
coordinates to pixels, the class outlines in that frame, and signed distances for painting."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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
