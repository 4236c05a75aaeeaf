"""Box noise for adapter training: random jitter plus errors measured on the workspace's own boxes.

Why: the adapter must learn to fix the boxes it will actually be given. Generic jitter (centre
shift, log scale, log aspect) covers "a bit off"; the *profile* covers the workspace's own
error pattern, e.g. VRSBench's boxes that are systematically too large. An error is measured
from a (prompt box, trusted-mask box) pair as four numbers relative to the trusted box:
centre shift in x and y (fraction of width / height), log area scale and log aspect, and
applied to another trusted box the same way.

>>> err = box_error((12, 10, 32, 30), (10, 10, 30, 30)); err.round(3).tolist()
[0.1, 0.0, 0.0, 0.0]
>>> apply_error((0, 0, 10, 20), err).tolist()
[1.0, 0.0, 11.0, 20.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .. import masks


def box_error(prompt: Sequence[float], truth: Sequence[float]) -> np.ndarray:
    """(dx, dy, log scale, log aspect) of ``prompt`` relative to ``truth`` (both xyxy)."""
    pw, ph = max(prompt[2] - prompt[0], 1e-3), max(prompt[3] - prompt[1], 1e-3)
    tw, th = max(truth[2] - truth[0], 1e-3), max(truth[3] - truth[1], 1e-3)
    dx = ((prompt[0] + prompt[2]) - (truth[0] + truth[2])) / 2 / tw
    dy = ((prompt[1] + prompt[3]) - (truth[1] + truth[3])) / 2 / th
    return np.array([dx, dy, 0.5 * np.log(pw * ph / (tw * th)), np.log((pw / ph) / (tw / th))])


def apply_error(box: Sequence[float], err: Sequence[float]) -> np.ndarray:
    """The box that has error ``err`` relative to ``box`` (inverse of :func:`box_error`)."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2 + err[0] * w, (box[1] + box[3]) / 2 + err[1] * h
    s, a = np.exp(err[2]), np.exp(err[3] / 2)
    nw, nh = w * s * a, h * s / a
    return np.array([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2])


@dataclass
class NoiseProfile:
    """Errors of the workspace's prompt boxes against trusted-mask boxes, (N, 4)."""

    errors: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    @classmethod
    def measure(cls, pairs: Iterable[tuple[Sequence[float], Sequence[float]]]) -> "NoiseProfile":
        """From (prompt box, trusted box) pairs; pairs with a degenerate box are skipped."""
        errs = [box_error(p, t) for p, t in pairs if masks.box_area(p) > 0 and masks.box_area(t) > 0]
        return cls(np.asarray(errs, float).reshape(-1, 4))

    def __len__(self) -> int:
        return len(self.errors)

    def summary(self) -> dict[str, Any]:
        """Mean and std of each error component, and the mean IoU of prompt vs trusted box."""
        if not len(self):
            return {"pairs": 0}
        names = ("shift_x", "shift_y", "log_scale", "log_aspect")
        ious = [masks.box_iou(apply_error((0, 0, 100, 100), e), (0, 0, 100, 100)) for e in self.errors]
        return {"pairs": len(self), "mean_box_iou": round(float(np.mean(ious)), 4),
                **{f"{n}_mean": round(float(m), 4) for n, m in zip(names, self.errors.mean(0))},
                **{f"{n}_std": round(float(s), 4) for n, s in zip(names, self.errors.std(0))}}

    def to_list(self) -> list[list[float]]:
        return np.round(self.errors, 5).tolist()


@dataclass(frozen=True)
class BoxNoise:
    """Recipe jitter plus, with probability ``profile_weight``, one measured error."""

    shift: float = 0.1
    scale: float = 0.1
    aspect: float = 0.1
    profile_weight: float = 0.5
    profile: NoiseProfile = field(default_factory=NoiseProfile)

    def sample_error(self, rng: np.random.Generator) -> np.ndarray:
        err = rng.normal(0.0, 1.0, 4) * np.array([self.shift, self.shift, self.scale, self.aspect])
        if len(self.profile) and rng.random() < self.profile_weight:
            err = err + self.profile.errors[rng.integers(len(self.profile))]
        return err

    def apply(self, box: Sequence[float], rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        """A noisy copy of ``box``, clipped to the image and at least 1 px wide and high."""
        out = apply_error(box, self.sample_error(rng))
        out[[0, 2]] = out[[0, 2]].clip(0, width)
        out[[1, 3]] = out[[1, 3]].clip(0, height)
        out[2] = max(out[2], min(out[0] + 1, width))
        out[0] = min(out[0], out[2] - 1)
        out[3] = max(out[3], min(out[1] + 1, height))
        out[1] = min(out[1], out[3] - 1)
        return out
