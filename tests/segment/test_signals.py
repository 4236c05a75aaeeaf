"""Quality signals and routing on hand-made masks, where every value is known."""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import cv2
import numpy as np
import pytest

from risbench_builder.config import RouteConfig
from risbench_builder.masks import box_area, box_iou, mask_iou, rasterize_polygon
from risbench_builder.segment.base import MaskOutput
from risbench_builder.segment.routing import ACCEPT, REVIEW, failed_tests, route
from risbench_builder.segment.signals import component_count, compute_signals, tight_box


def square(x1: int, y1: int, x2: int, y2: int, shape=(64, 64)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y1:y2, x1:x2] = True
    return m


def test_perfect_mask_signals() -> None:
    m = square(10, 10, 30, 30)
    out = MaskOutput(mask=m, iou_pred=1.37, stability=0.97, multimask=np.stack([m, m, m]),
                     jitter_masks=[m, m])
    poly = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)
    s = compute_signals(out, (10, 10, 30, 30), poly)
    assert s == {"area": 400.0, "iou_pred": 1.0, "stability": 0.97, "box_iou": 1.0, "jitter_agreement": 1.0,
                 "multimask_disagreement": 0.0, "components": 1.0, "area_ratio": 1.0, "polygon_iou": 1.0}


def test_leaky_split_and_unstable_masks() -> None:
    m = square(10, 10, 30, 30) | square(40, 40, 50, 50)          # two parts: 400 + 100 px
    shifted = square(20, 10, 40, 30)                              # IoU with the first square: 1/3
    out = MaskOutput(mask=m, multimask=np.stack([square(10, 10, 30, 30), square(10, 10, 20, 30), m]),
                     jitter_masks=[shifted])
    s = compute_signals(out, (10, 10, 30, 30), None)
    assert s["components"] == 2 and s["area_ratio"] == pytest.approx(500 / 400)
    assert s["box_iou"] == pytest.approx(400 / 1600)              # mask box 10..50 vs prompt 10..30
    assert s["jitter_agreement"] == pytest.approx(200 / 700)      # inter 200, union 500 + 400 - 200
    pairs = [200 / 400, 400 / 500, 200 / 500]
    assert s["multimask_disagreement"] == pytest.approx(1 - np.mean(pairs), abs=1e-6)
    assert "iou_pred" not in s and "polygon_iou" not in s


def test_components_ignore_specks_and_empty_masks() -> None:
    m = square(0, 0, 30, 30)
    m[50, 50] = True                                              # a 1-px speck: < 5 % of the mask
    assert component_count(m) == 1
    assert component_count(np.zeros((8, 8), bool)) == 0
    assert tight_box(np.zeros((8, 8), bool)) is None and tight_box(square(2, 3, 5, 7)) == (2, 3, 5, 7)
    s = compute_signals(MaskOutput(mask=np.zeros((16, 16), bool)), (2, 2, 8, 8), None)
    assert s["area"] == 0 and s["box_iou"] == 0 and s["components"] == 0
    assert route(s, RouteConfig()) == REVIEW and failed_tests(s, RouteConfig())[0] == "empty_mask"


GOOD = {"area": 400.0, "iou_pred": 0.95, "stability": 0.97, "box_iou": 0.9, "jitter_agreement": 0.92,
        "multimask_disagreement": 0.1, "components": 1.0, "area_ratio": 0.8, "polygon_iou": 0.9}


@pytest.mark.parametrize("signal, value, test", [
    ("iou_pred", 0.5, "min_iou_pred"),
    ("stability", 0.5, "min_stability"),
    ("box_iou", 0.5, "min_box_iou"),
    ("jitter_agreement", 0.5, "min_jitter_agreement"),
    ("multimask_disagreement", 0.6, "max_multimask_disagreement"),
    ("components", 3, "max_components"),
    ("area_ratio", 0.05, "min_area_ratio"),
    ("area_ratio", 1.4, "max_area_ratio"),
])
def test_each_threshold_routes_to_review(signal: str, value: float, test: str) -> None:
    cfg = RouteConfig()
    assert route(GOOD, cfg) == ACCEPT
    bad = dict(GOOD, **{signal: value})
    assert failed_tests(bad, cfg) == [test] and route(bad, cfg) == REVIEW
    assert route(bad, cfg.model_copy(update={test: None})) == ACCEPT   # None switches the test off


def test_signals_a_backend_lacks_are_not_tested() -> None:
    grabcut_like = {k: v for k, v in GOOD.items() if k not in ("iou_pred", "stability", "multimask_disagreement")}
    assert route(grabcut_like, RouteConfig()) == ACCEPT
    assert route(dict(GOOD, polygon_iou=0.1), RouteConfig(min_polygon_iou=0.5)) == REVIEW


# ----------------------------------------------------------------------------- crops == whole frames
# Verbatim copies of the whole-frame implementation (before the tight-box crops), the reference
# that compute_signals must match to the last bit of every rounded float.
def _reference_tight_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Pixel-edge xyxy box of a bool mask, None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _reference_component_count(mask: np.ndarray, min_fraction: float = 0.05) -> int:
    """Connected components (8-connectivity) holding at least ``min_fraction`` of the mask."""
    if not mask.any():
        return 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas >= min_fraction * areas.sum()).sum())


def _reference_compute_signals(out: MaskOutput, prompt_box: Sequence[float], polygon: np.ndarray | None) -> dict[str, float]:
    """All signals for one mask against its prompt box (and OBB polygon when the source has one)."""
    mask = out.mask.astype(bool)
    area = float(mask.sum())
    signals: dict[str, float] = {"area": area}
    if out.iou_pred is not None:
        signals["iou_pred"] = float(np.clip(out.iou_pred, 0.0, 1.0))
    if out.stability is not None:
        signals["stability"] = float(out.stability)
    box = _reference_tight_box(mask)
    signals["box_iou"] = box_iou(box, prompt_box) if box else 0.0
    if out.jitter_masks:
        signals["jitter_agreement"] = float(np.mean([mask_iou(mask, j) for j in out.jitter_masks]))
    if out.multimask is not None and len(out.multimask) > 1:
        pairs = [mask_iou(a, b) for a, b in combinations(list(out.multimask), 2)]
        signals["multimask_disagreement"] = 1.0 - float(np.mean(pairs))
    signals["components"] = float(_reference_component_count(mask))
    prompt_area = box_area(prompt_box)
    signals["area_ratio"] = area / prompt_area if prompt_area > 0 else 0.0
    if polygon is not None:
        signals["polygon_iou"] = mask_iou(mask, rasterize_polygon(polygon, *mask.shape))
    return {k: round(v, 6) for k, v in signals.items()}


def random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One of: empty, full, a rectangle (often cut by the border), blobs, blobs with specks, noise."""
    kind = rng.choice(["empty", "full", "rect", "border", "blobs", "specks", "noise"],
                      p=[0.08, 0.04, 0.2, 0.16, 0.24, 0.2, 0.08])
    m = np.zeros((h, w), bool)
    if kind == "full":
        m[:] = True
    elif kind in ("rect", "border"):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
        if kind == "border":                                       # stretch to one or more edges
            side = int(rng.integers(0, 16))
            x0, y0 = (0 if side & 1 else x0), (0 if side & 2 else y0)
            x1, y1 = (w if side & 4 else x1), (h if side & 8 else y1)
        m[y0:y1, x0:x1] = True
    elif kind in ("blobs", "specks"):
        yy, xx = np.mgrid[:h, :w]
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)
            rx, ry = rng.uniform(1, max(2, w / 3)), rng.uniform(1, max(2, h / 3))
            m |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        if kind == "specks":                                       # 1-3 px specks and a small part
            for _ in range(int(rng.integers(1, 6))):
                y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
                m[y : y + int(rng.integers(1, 3)), x : x + int(rng.integers(1, 3))] = True
    elif kind == "noise":
        m = rng.random((h, w)) < rng.uniform(0.001, 0.3)
    return m


def variant(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    """A jittered or alternative mask: shifted, grown, shrunk, unrelated, or empty."""
    h, w = m.shape
    kind = rng.choice(["shift", "dilate", "erode", "other", "same", "empty"], p=[0.35, 0.15, 0.15, 0.2, 0.1, 0.05])
    if kind == "shift":
        dy, dx = int(rng.integers(-max(1, h // 8), max(2, h // 8))), int(rng.integers(-max(1, w // 8), max(2, w // 8)))
        out = np.zeros_like(m)
        out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = m[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
        return out
    if kind in ("dilate", "erode"):
        op = cv2.dilate if kind == "dilate" else cv2.erode
        return op(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 4))).astype(bool)
    if kind == "other":
        return random_mask(rng, h, w)
    return m.copy() if kind == "same" else np.zeros_like(m)


def as_dtype(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    """Mostly bool, as SAM gives; sometimes 0/1 uint8 or float32 like other backends might."""
    return m if rng.random() < 0.8 else m.astype(rng.choice([np.uint8, np.float32]))


def random_case(rng: np.random.Generator) -> tuple[MaskOutput, tuple[float, ...], np.ndarray | None]:
    """A random MaskOutput (8x8 to 512x512) with its prompt box and OBB polygon (or None)."""
    h, w = (int(v) for v in rng.integers(8, 513, 2)) if rng.random() < 0.7 else (int(rng.integers(8, 513)),) * 2
    mask = random_mask(rng, h, w)
    jitter = [as_dtype(rng, variant(rng, mask)) for _ in range(int(rng.choice([0, 1, 4])))]
    multimask = None
    if rng.random() < 0.7:
        multimask = np.stack([variant(rng, mask) for _ in range(int(rng.choice([1, 2, 3, 3])))])
    x0, y0 = rng.uniform(-0.2 * w, w), rng.uniform(-0.2 * h, h)
    box = (x0, y0, x0 + rng.uniform(-2, w), y0 + rng.uniform(-2, h))    # sometimes empty or inverted
    polygon = None
    if rng.random() < 0.6:                                         # a rotated rectangle, often partly outside
        cx, cy = rng.uniform(-0.2 * w, 1.2 * w), rng.uniform(-0.2 * h, 1.2 * h)
        hw, hh, t = rng.uniform(0, w / 2), rng.uniform(0, h / 2), rng.uniform(0, np.pi)
        corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        polygon = corners @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + (cx, cy)
    out = MaskOutput(mask=as_dtype(rng, mask),
                     iou_pred=None if rng.random() < 0.3 else float(rng.uniform(-0.2, 1.3)),
                     stability=None if rng.random() < 0.3 else float(rng.uniform(0, 1)),
                     multimask=multimask, jitter_masks=jitter)
    return out, box, polygon


def test_signals_from_crops_equal_whole_frame_signals() -> None:
    rng = np.random.default_rng(15)
    for case in range(300):
        out, box, polygon = random_case(rng)
        got, want = compute_signals(out, box, polygon), _reference_compute_signals(out, box, polygon)
        assert got == want, (case, out.mask.shape, got, want)
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()], case
        mask = out.mask.astype(bool)
        assert tight_box(mask) == _reference_tight_box(mask), case
        assert component_count(mask, 0.2) == _reference_component_count(mask, 0.2), case


def test_crops_match_on_edge_cases() -> None:
    full = np.ones((8, 8), bool)
    specks = square(0, 0, 40, 40, (48, 48))
    specks[46:, 46:] = True                                         # 4 px in the corner: a speck
    specks[0, 47] = True
    cases = [
        (MaskOutput(mask=np.zeros((8, 8), bool), multimask=np.zeros((3, 8, 8), bool),
                    jitter_masks=[np.zeros((8, 8), bool), full]), (0, 0, 8, 8), np.array([[0, 0], [8, 0], [8, 8], [0, 8.0]])),
        (MaskOutput(mask=full, multimask=np.stack([full, ~full, full]), jitter_masks=[full]), (0, 0, 8, 8),
         np.array([[-4, -4], [20, -4], [20, 20], [-4, 20.0]])),
        (MaskOutput(mask=specks, jitter_masks=[square(10, 10, 48, 48, (48, 48))]), (0, 0, 40, 40),
         np.array([[30, 30], [60, 30], [60, 60], [30, 60.0]])),             # polygon mostly outside
        (MaskOutput(mask=specks), (5, 5, 5, 5), np.array([[100, 100], [120, 100], [120, 120.0]])),
    ]
    for out, box, polygon in cases:
        assert compute_signals(out, box, polygon) == _reference_compute_signals(out, box, polygon)
