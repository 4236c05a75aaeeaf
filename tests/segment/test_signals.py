"""Quality signals and routing on hand-made masks, where every value is known."""

from __future__ import annotations

import numpy as np
import pytest

from risbench_builder.config import RouteConfig
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
