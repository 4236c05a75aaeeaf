"""What a segmenter is shown: an image as RGB, jittered copies of a box prompt, and the
context window that zooms in on a tiny box. Shared by sam-refine and the adapter's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ..images import open_image


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array."""
    with open_image(path) as img:
        return np.asarray(img.convert("RGB"))


def jitter_boxes(box: np.ndarray, k: int, scale: float, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """K perturbed copies of a box, HQ-SAM ``box_noise`` style (centre and size ± scale·size)."""
    if k == 0:
        return np.zeros((0, 4))
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    d = rng.uniform(-1, 1, size=(k, 4)) * scale
    ncx, ncy = cx + d[:, 0] * w / 2, cy + d[:, 1] * h / 2
    nw, nh = np.maximum(w * (1 + d[:, 2]), 1.0), np.maximum(h * (1 + d[:, 3]), 1.0)
    out = np.stack([ncx - nw / 2, ncy - nh / 2, ncx + nw / 2, ncy + nh / 2], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    out[:, 2] = np.maximum(out[:, 2], np.minimum(out[:, 0] + 1, width))
    out[:, 3] = np.maximum(out[:, 3], np.minimum(out[:, 1] + 1, height))
    return out


def context_window(box: np.ndarray, side: int, width: int, height: int) -> tuple[int, int, int, int]:
    """A ``side``-px window centred on the box, shifted to stay inside the image."""
    cw, ch = min(side, width), min(side, height)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(np.clip(round(cx - cw / 2), 0, width - cw))
    y0 = int(np.clip(round(cy - ch / 2), 0, height - ch))
    return x0, y0, x0 + cw, y0 + ch
