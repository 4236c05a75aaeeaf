"""One aerial-like scene and its truth: the class vocabulary, the public types, the objects'
VRSBench attributes and :func:`render_scene`."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import _Pose
from .ground import _make_ground
from .paint import _add_clutter, _finish, _paint_object
from .placement import _ROUND_ANGLE, _SPECS, _Board, _candidate, _commit, _dims, _fits, _place_group, _plan


PATCH = 512

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
#: RISBench name -> DIOR file name (as spelled in DIOR's XML; note the capitalised Expressway name).
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


def _render_nonempty(rng: np.random.Generator, size: int, classes: Sequence[str],
                     max_objects: int = 10) -> Scene:
    for _ in range(8):
        scene = render_scene(rng, size, classes, max_objects)
        if scene.objects:
            return scene
    return scene
