"""Routing: which masks a person must look at, from quality signals and configured thresholds."""

from __future__ import annotations

from typing import Mapping

from ..config import RouteConfig

ACCEPT, REVIEW = "accept", "review"

# threshold field -> (signal, comparison that must hold for the mask to pass)
_TESTS: dict[str, tuple[str, str]] = {
    "min_iou_pred": ("iou_pred", ">="),
    "min_stability": ("stability", ">="),
    "min_box_iou": ("box_iou", ">="),
    "min_jitter_agreement": ("jitter_agreement", ">="),
    "max_multimask_disagreement": ("multimask_disagreement", "<="),
    "max_components": ("components", "<="),
    "min_area_ratio": ("area_ratio", ">="),
    "max_area_ratio": ("area_ratio", "<="),
    "min_polygon_iou": ("polygon_iou", ">="),
}


def failed_tests(signals: Mapping[str, float], cfg: RouteConfig) -> list[str]:
    """Threshold names the mask fails; signals a backend does not give are not tested.

    An empty mask always fails (``area`` 0), and so does a mask a later stage sent to review
    (``forced_review``, e.g. finalize's expression-geometry check).
    """
    failed = ["empty_mask"] if signals.get("area", 1) <= 0 else []
    if "forced_review" in signals:
        failed.append(f"forced_review:{signals['forced_review']}")
    for field, (signal, op) in _TESTS.items():
        limit = getattr(cfg, field)
        value = signals.get(signal)
        if limit is None or value is None:
            continue
        if (op == ">=" and value < limit) or (op == "<=" and value > limit):
            failed.append(field)
    return failed


def route(signals: Mapping[str, float], cfg: RouteConfig) -> str:
    return REVIEW if failed_tests(signals, cfg) else ACCEPT


def threshold_tests() -> dict[str, tuple[str, str]]:
    """The tests the router knows, for calibration."""
    return dict(_TESTS)
