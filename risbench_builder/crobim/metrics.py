"""The reference evaluation protocol (LAVT / RMSIN ``test.py``, identical in FIANet).

Per sample (one expression): I = |pred & gt|, U = |pred | gt|, IoU = I / U and **0 when U = 0**
(an empty prediction on an empty mask scores 0, not 1). oIoU = sum(I) / sum(U) over samples;
mIoU = mean per-sample IoU; Pr@X = share of samples with IoU >= X (inclusive) for X in
0.5 ... 0.9. Values are fractions here; tables print them x100 with two decimals, as the papers.
Scored by default on the 480 grid with the GT nearest-resized (see evaluate.py); groups: all,
and by ``is_unique`` (samples whose uniqueness is unknown count only in "all").

>>> m = SegMetrics(); m.add(np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]]))
0.5
>>> m.add(np.zeros((2, 2)), np.zeros((2, 2)))            # empty union: IoU 0
0.0
>>> r = m.summary()["all"]; r["mIoU"], r["oIoU"], r["Pr@0.5"]
(0.25, 0.5, 0.5)
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
COLUMNS = ("Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "oIoU", "mIoU")


def intersection_union(pred: Any, gt: Any) -> tuple[int, int]:
    """Pixel counts of one sample; ``pred``/``gt`` are boolean-like arrays of one shape."""
    p, g = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    return int(np.logical_and(p, g).sum()), int(np.logical_or(p, g).sum())


def sample_iou(i: int, u: int) -> float:
    return 0.0 if u == 0 else i / u


def summarize(inters: Iterable[int], unions: Iterable[int]) -> dict[str, float]:
    inters, unions = np.asarray(list(inters), np.int64), np.asarray(list(unions), np.int64)
    n = len(inters)
    if n == 0:
        return {"n": 0, **{c: 0.0 for c in COLUMNS}}
    ious = np.where(unions > 0, inters / np.maximum(unions, 1), 0.0)
    out: dict[str, float] = {"n": n}
    for t in THRESHOLDS:
        out[f"Pr@{t}"] = float((ious >= t).mean())
    out["oIoU"] = float(inters.sum() / unions.sum()) if unions.sum() else 0.0
    out["mIoU"] = float(ious.mean())
    return out


class SegMetrics:
    """Accumulates per-sample I and U with a group tag (is_unique) and an optional key."""

    def __init__(self) -> None:
        self.inters: list[int] = []
        self.unions: list[int] = []
        self.unique: list[bool | None] = []
        self.keys: list[Any] = []

    def add(self, pred: Any, gt: Any, is_unique: bool | None = None, key: Any = None) -> float:
        i, u = intersection_union(pred, gt)
        self.add_counts(i, u, is_unique, key)
        return sample_iou(i, u)

    def add_counts(self, i: int, u: int, is_unique: bool | None = None, key: Any = None) -> None:
        self.inters.append(int(i))
        self.unions.append(int(u))
        self.unique.append(is_unique)
        self.keys.append(key)

    def ious(self) -> list[float]:
        return [sample_iou(i, u) for i, u in zip(self.inters, self.unions)]

    def select(self, keep: Iterable[bool]) -> dict[str, float]:
        pairs = [(i, u) for (i, u), k in zip(zip(self.inters, self.unions), keep) if k]
        return summarize([p[0] for p in pairs], [p[1] for p in pairs])

    def summary(self) -> dict[str, dict[str, float]]:
        out = {"all": summarize(self.inters, self.unions)}
        for name, flag in (("unique", True), ("non_unique", False)):
            if any(u is flag for u in self.unique):
                out[name] = self.select(u is flag for u in self.unique)
        return out


def table_row(split: str, result: dict[str, float]) -> str:
    """The paper's row: split | Pr@0.5 ... Pr@0.9 | oIoU | mIoU, x100, two decimals."""
    return "| " + " | ".join([split, *(f"{100 * result[c]:.2f}" for c in COLUMNS)]) + " |"


def table_header() -> str:
    return "| split | " + " | ".join(COLUMNS) + " |\n|---" * 1 + "|---" * len(COLUMNS) + "|"
