"""Agreement, majority vote, numpy STAPLE and the per-task decision, on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from risbench_builder.review.client import ReviewError, check_url
from risbench_builder.review.consensus import (
    ADJUDICATE, CONSENSUS, Vote, decide, majority_vote, mean_pairwise_iou, staple,
)


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


A = box(10, 10, 2, 8, 2, 8)        # 36 px
B = box(10, 10, 2, 8, 3, 9)        # shifted right by one
C = box(10, 10, 1, 9, 1, 9)        # one pixel larger all round: 64 px


def test_majority_vote_by_hand() -> None:
    expected = np.zeros((10, 10), np.uint8)
    expected[2:8, 2:9] = 1                  # in A and C, or in B and C
    expected[2:8, 2] = 1
    assert np.array_equal(majority_vote([A, B, C]), expected)
    # two raters: a tie stays off, so the vote is the intersection
    assert np.array_equal(majority_vote([A, B]), A & B)


def test_mean_pairwise_iou_by_hand() -> None:
    iou_ab, iou_ac, iou_bc = 30 / 42, 36 / 64, 36 / 64
    assert mean_pairwise_iou([A, B, C]) == pytest.approx((iou_ab + iou_ac + iou_bc) / 3)
    assert mean_pairwise_iou([A]) == 1.0
    assert mean_pairwise_iou([np.zeros((3, 3)), np.zeros((3, 3))]) == 1.0


def test_staple_agrees_with_majority_for_similar_raters_and_weighs_down_a_bad_one() -> None:
    result = staple([A, B, C])
    assert np.array_equal(result.mask, majority_vote([A, B, C]))
    assert all(0 < s <= 1 for s in result.sensitivity + result.specificity)
    # four raters agree on A, one marks everything: STAPLE keeps A and rates the odd one low
    bad = np.ones((10, 10), np.uint8)
    result = staple([A, A, A, B, bad])
    assert np.array_equal(result.mask, A)
    assert result.specificity[4] < 0.05 < min(result.specificity[:4])
    empty = staple([np.zeros((4, 4)), np.zeros((4, 4))])
    assert not empty.mask.any()


def test_staple_on_a_crop_with_its_background_equals_staple_on_the_image() -> None:
    big = [np.pad(m, ((30, 25), (12, 40))) for m in (A, B, C, box(10, 10, 0, 10, 4, 6))]
    full = staple(big)
    window = (slice(30, 40), slice(12, 22))
    crop = staple([m[window] for m in big], background=big[0].size - 100)
    assert np.array_equal(full.mask[window], crop.mask) and not full.mask.sum() - crop.mask.sum()
    assert np.allclose(full.sensitivity, crop.sensitivity) and np.allclose(full.specificity, crop.specificity)


def test_decide_consensus_adjudication_and_drops() -> None:
    proposal = C
    ok = decide([Vote("a", "accept", A), Vote("b", "corrected", B), Vote("c", "accept")], proposal,
                method="majority", min_agreement=0.5)
    assert ok.decision == CONSENSUS and np.array_equal(ok.mask, majority_vote([A, B, C]))
    assert ok.agreement == pytest.approx(mean_pairwise_iou([A, B, C]))
    far = box(10, 10, 0, 2, 0, 2)
    low = decide([Vote("a", "accept", A), Vote("b", "corrected", far), Vote("c", "reject-mask")], proposal,
                 method="majority", min_agreement=0.5)
    assert low.decision == ADJUDICATE and low.agreement == 0.0 and "adjudicat" not in low.detail
    dropped = decide([Vote("a", "expression-wrong", None, "the left one"), Vote("b", "accept", A),
                      Vote("c", "expression-wrong")], proposal, method="staple", min_agreement=0.5)
    assert dropped.dropped and dropped.decision == "expression-wrong" and dropped.mask is None
    assert "2 of 3" in dropped.detail
    tie = decide([Vote("a", "reject-mask"), Vote("b", "expression-ambiguous"), Vote("c", "accept", A)], proposal,
                 method="majority", min_agreement=0.5)
    assert tie.decision == "reject-mask"                     # ties: reject-mask before the expression verdicts


def test_plain_http_only_to_loopback_unless_allowed() -> None:
    assert check_url("http://127.0.0.1:8080/", False) == "http://127.0.0.1:8080"
    assert check_url("http://localhost:8080", False) == "http://localhost:8080"
    assert check_url("http://[::1]:8080", False) == "http://[::1]:8080"
    assert check_url("https://ls.example.org", False) == "https://ls.example.org"
    assert check_url("http://ls.lab:8080", True) == "http://ls.lab:8080"
    with pytest.raises(ReviewError, match="allow_insecure_http"):
        check_url("http://ls.lab:8080", False)
    with pytest.raises(ReviewError, match="credentials"):
        check_url("https://user:pw@ls.example.org", False)
    with pytest.raises(ReviewError, match="not an http"):
        check_url("ftp://ls.example.org", False)
