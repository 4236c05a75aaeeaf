"""Consensus of several reviewers: agreement, pixel majority vote, binary STAPLE, decisions.

Community Label Studio computes no agreement, so it happens here, on dense masks, with numpy
only (STAPLE is a small EM over the 2**n rater patterns instead of a 264 MB SimpleITK wheel).

>>> a = np.zeros((4, 4), np.uint8); a[1:3, 1:3] = 1
>>> b = a.copy(); b[0, 0] = 1
>>> int(majority_vote([a, a, b]).sum()), round(mean_pairwise_iou([a, a, b]), 3)
(4, 0.867)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from typing import Optional, Sequence

import numpy as np

from ..masks import mask_iou

VERDICTS = ("accept", "corrected", "reject-mask", "expression-ambiguous", "expression-wrong")
MASK_VERDICTS = ("accept", "corrected")
REJECT_VERDICTS = ("reject-mask", "expression-wrong", "expression-ambiguous")   # tie order

CONSENSUS, ADJUDICATE, ADJUDICATED = "consensus", "adjudicate", "adjudicated"


def mean_pairwise_iou(masks: Sequence[np.ndarray]) -> float:
    """Mean IoU over all pairs (1.0 for a single mask: nobody disagrees)."""
    pairs = list(combinations(masks, 2))
    if not pairs:
        return 1.0
    return float(np.mean([mask_iou(a, b) if (a.any() or b.any()) else 1.0 for a, b in pairs]))


def majority_vote(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Pixels that more than half of the raters set (a tie stays off)."""
    votes = np.sum([m.astype(bool) for m in masks], axis=0)
    return (2 * votes > len(masks)).astype(np.uint8)


@dataclass
class Staple:
    mask: np.ndarray
    probability: np.ndarray
    sensitivity: list[float]
    specificity: list[float]
    iterations: int


def staple(masks: Sequence[np.ndarray], *, max_iter: int = 100, tol: float = 1e-7,
           init: float = 0.99, background: int = 0) -> Staple:
    """Binary STAPLE (Warfield et al. 2004): EM over the true mask and each rater's sensitivity
    and specificity, with the prior fixed at the raters' mean foreground fraction (as
    SimpleITK's STAPLEImageFilter does). The E-step runs over the 2**n distinct rater patterns,
    so the cost hardly depends on the image size. ``background`` counts pixels outside the
    given (cropped) masks that every rater left empty, so a crop gives the full image's result.

    >>> a = np.zeros((8, 8), np.uint8); a[2:6, 2:6] = 1
    >>> b = a.copy(); b[2, 2:6] = 0
    >>> c = a.copy(); c[6, 2:6] = 1
    >>> bool((staple([a, b, c]).mask == majority_vote([a, b, c])).all())
    True
    """
    d = np.stack([m.astype(bool).ravel() for m in masks])                 # (n, N)
    n = d.shape[0]
    if n > 16:
        raise ValueError(f"staple: {n} raters is more than this pattern-based EM supports (16)")
    code = np.zeros(d.shape[1], np.int64)
    for j in range(n):
        code |= d[j].astype(np.int64) << j
    counts = np.bincount(code, minlength=1 << n).astype(np.float64)
    counts[0] += background
    patterns = ((np.arange(1 << n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)   # (P, n)
    prior = float(d.sum() / (d.size + n * background))
    shape = masks[0].shape
    if prior in (0.0, 1.0):
        full = np.full(shape, prior, np.float64)
        return Staple(full.astype(np.uint8), full, [1.0] * n, [1.0] * n, 0)
    p = np.full(n, init)
    q = np.full(n, init)
    eps = 1e-12
    it = 0
    for it in range(1, max_iter + 1):
        log_a = np.log(prior) + patterns @ np.log(p + eps) + (1 - patterns) @ np.log(1 - p + eps)
        log_b = np.log(1 - prior) + (1 - patterns) @ np.log(q + eps) + patterns @ np.log(1 - q + eps)
        w = 1.0 / (1.0 + np.exp(np.clip(log_b - log_a, -700, 700)))       # P(true = 1 | pattern)
        cw, cv = counts * w, counts * (1 - w)
        new_p = (cw @ patterns) / max(cw.sum(), eps)
        new_q = (cv @ (1 - patterns)) / max(cv.sum(), eps)
        change = max(np.abs(new_p - p).max(), np.abs(new_q - q).max())
        p, q = new_p, new_q
        if change < tol:
            break
    probability = w[code].reshape(shape)
    return Staple((probability > 0.5).astype(np.uint8), probability, p.tolist(), q.tolist(), it)


def fuse(masks: Sequence[np.ndarray], method: str, background: int = 0) -> np.ndarray:
    if method == "majority":
        return majority_vote(masks)
    if method == "staple":
        return staple(masks, background=background).mask
    raise ValueError(f"unknown consensus method {method!r}: choose majority or staple")


def union_box(masks: Sequence[np.ndarray]) -> tuple[slice, slice] | None:
    """Slices of the smallest window holding every set pixel (None when all are empty)."""
    rows = np.logical_or.reduce([m.any(axis=1) for m in masks])
    cols = np.logical_or.reduce([m.any(axis=0) for m in masks])
    if not rows.any():
        return None
    r, c = np.flatnonzero(rows), np.flatnonzero(cols)
    return slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1)


@dataclass
class Vote:
    """One reviewer's answer: verdict, mask (None when they drew none) and any corrected text."""

    annotator: str
    verdict: str
    mask: Optional[np.ndarray] = None
    corrected_expression: Optional[str] = None


@dataclass
class Decision:
    decision: str                        # consensus | adjudicate | a reject verdict
    mask: Optional[np.ndarray]
    agreement: Optional[float]
    detail: str
    verdicts: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> bool:
        return self.decision in REJECT_VERDICTS


def decide(votes: Sequence[Vote], proposal: Optional[np.ndarray], *, method: str, min_agreement: float,
           shape: Optional[tuple[int, int]] = None) -> Decision:
    """What the reviews of one task add up to.

    - More than half of the verdicts reject (mask or expression): the triplet is dropped; the
      reason is the most common rejecting verdict.
    - Otherwise the masks of the accepting and correcting reviewers (the proposal for an
      ``accept`` without a drawing) are fused; agreement is their mean pairwise IoU. At or
      above ``min_agreement`` (and not empty) the fused mask is the consensus, else the task
      goes to adjudication with the fused mask as the expert's starting point.

    Masks are compared and fused inside the window that holds all of them, which gives the
    full-image result at a fraction of the cost.
    """
    verdicts = Counter(v.verdict for v in votes)
    summary = ", ".join(f"{v.annotator}: {v.verdict}" for v in votes)
    rejecting = sum(verdicts[r] for r in REJECT_VERDICTS)
    if 2 * rejecting > len(votes):
        reason = max(REJECT_VERDICTS, key=lambda r: (verdicts[r], -REJECT_VERDICTS.index(r)))
        return Decision(reason, None, None, f"{rejecting} of {len(votes)} reviewers rejected ({summary})",
                        dict(verdicts))
    shape = shape or (proposal.shape if proposal is not None else next(
        v.mask.shape for v in votes if v.mask is not None))
    drawn = []
    for v in votes:
        if v.verdict not in MASK_VERDICTS:
            continue
        if v.mask is not None:
            drawn.append(v.mask)
        elif v.verdict == "accept":
            if proposal is None:
                raise ValueError(f"{v.annotator} accepted the proposal as shown, but no proposal mask was given")
            drawn.append(proposal)
        else:
            drawn.append(np.zeros(shape, np.uint8))
    window = union_box(drawn)
    fused = np.zeros(shape, np.uint8)
    if window is None:
        agreement = 1.0
    else:
        crops = [m[window] for m in drawn]
        agreement = mean_pairwise_iou(crops)
        fused[window] = fuse(crops, method, background=fused.size - crops[0].size)
    if agreement >= min_agreement and fused.any():
        return Decision(CONSENSUS, fused, agreement, f"{method} of {len(drawn)} masks, mean pairwise IoU "
                        f"{agreement:.3f} ({summary})", dict(verdicts))
    why = "empty consensus mask" if not fused.any() else f"mean pairwise IoU {agreement:.3f} < {min_agreement}"
    return Decision(ADJUDICATE, fused, agreement, f"{why} ({summary})", dict(verdicts))
