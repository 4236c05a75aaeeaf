"""Placement: how each class is sized and laid out, and who owns each pixel once objects are placed
(groups, region rules, bounded occlusion)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from shapely.geometry import Polygon
from shapely.ops import unary_union

from .. import masks
from .geometry import _parts, _Pose, _rect
from .ground import _Ground


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
