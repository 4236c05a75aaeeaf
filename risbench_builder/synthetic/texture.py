"""Texture helpers: crops, low-frequency noise, anti-aliased strokes, fills and shaded surfaces."""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from .. import masks


def _crop(quad: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Whole-pixel box (x0, y0, x1, y1) around a polygon, inside the image."""
    x0, y0, x1, y1 = masks.polygon_box(quad)
    return (max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0),
            min(int(math.ceil(x1)), width), min(int(math.ceil(y1)), height))


def _smooth(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: colour fields and blotches."""
    small = rng.standard_normal((cells, cells, channels), dtype=np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return big.reshape(h, w, channels)


def _stroke(layer: np.ndarray, dist: np.ndarray, half: float, colour: Sequence[float],
            alpha: float = 1.0) -> None:
    """Blend an anti-aliased line (|dist| < half) of ``colour`` into ``layer`` in place."""
    a = np.clip(half + 0.5 - np.abs(dist), 0, 1)[..., None] * alpha
    layer *= 1 - a
    layer += a * np.asarray(colour, np.float32)


def _fill(layer: np.ndarray, inside: np.ndarray, colour: Sequence[float] | np.ndarray) -> None:
    layer[inside] = np.asarray(colour, np.float32) if np.ndim(colour) == 1 else colour[inside]


def _jitter(rng: np.random.Generator, colour: Sequence[float], amount: float = 12) -> np.ndarray:
    """Vary a colour mostly in brightness, a little in hue (no purple asphalt)."""
    shift = rng.normal(0, amount) + rng.normal(0, amount * 0.25, 3)
    return np.clip(np.asarray(colour, np.float32) + shift, 0, 255).astype(np.float32)


def _surface(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, colour: Sequence[float],
             length: float, width: float, noise: float = 5.0, shade: float = 0.08) -> np.ndarray:
    """Base colour with a gentle linear shading, blotches and grain: no flat colour anywhere."""
    h, w = u.shape
    phi = rng.uniform(0, 2 * math.pi)
    ramp = 1 + shade * (u / max(length, 1) * math.cos(phi) + v / max(width, 1) * math.sin(phi)) * 2
    layer = np.asarray(colour, np.float32) * ramp[..., None]
    layer += _smooth(rng, h, w, 3, 1) * noise * 0.8
    layer += rng.standard_normal((h, w, 1), dtype=np.float32) * noise
    return layer
