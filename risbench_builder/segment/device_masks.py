"""Mask measurements made where the masks live (the GPU, or the CPU), so only small results leave it.

A SAM mask is born on the device as a logits threshold. Copying every box's dense
full-resolution masks back to the host (its main mask, 3 alternatives, K jittered ones) costs
more than reducing them there to what the catalog needs (:func:`measure_batch`): pixel counts
and overlaps for the signals, and the main mask inside its tight box, from which the host makes
the COCO RLE (``masks.encode_window``, byte-identical to ``pycocotools.mask.encode`` of the
frame) and counts connected components. Torch ops only, on the masks' device.

>>> m = torch.zeros(3, 4, dtype=torch.bool); m[1:3, 1] = True
>>> area_and_box(m).tolist()
[2, 1, 1, 2, 3]
>>> measure_batch(m[None], None, None)[0].crop.tolist()
[[True], [True]]
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch

from .base import MeasuredMask

__all__ = ["area_and_box", "measure_batch", "pixel_counts"]


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def area_and_box(mask: torch.Tensor) -> torch.Tensor:
    """Area and tight box of masks, on their device: int64 ``(..., 5)`` = ``area, x1, y1, x2, y2``.

    ``mask``: (H, W) or (..., H, W), read as ``!= 0``. The box is in pixel-edge coordinates (x2,
    y2 exclusive), as ``signals.tight_box`` and ``masks.bbox_xyxy`` give it; an empty mask has
    area 0 and the box ``0, 0, 0, 0`` (``tight_box`` says None: test the area). No host sync.
    """
    if mask.dim() < 2:
        raise ValueError(f"mask must be (..., H, W), got shape {tuple(mask.shape)}")
    m = _as_bool(mask).view(torch.uint8)                           # 0/1 bytes: faster reductions
    h, w = m.shape[-2], m.shape[-1]
    area = pixel_counts(m)
    if h == 0 or w == 0:
        return torch.stack([area, *[torch.zeros_like(area)] * 4], dim=-1)
    cols = m.amax(dim=-2)                                           # (..., W): 1 where a pixel is set
    rows = m.amax(dim=-1)                                           # (..., H)
    # argmax returns the first maximal index: the first set column/row, from either end
    x1 = cols.argmax(dim=-1)
    y1 = rows.argmax(dim=-1)
    x2 = w - cols.flip(-1).argmax(dim=-1)
    y2 = h - rows.flip(-1).argmax(dim=-1)
    box = torch.stack([x1, y1, x2, y2], dim=-1).to(torch.int64)
    box = torch.where((area > 0).unsqueeze(-1), box, torch.zeros_like(box))
    return torch.cat([area.unsqueeze(-1), box], dim=-1)


def pixel_counts(masks: torch.Tensor) -> torch.Tensor:
    """Set pixels of each (H, W) mask of ``(..., H, W)`` masks, int64 ``(...)`` on their device."""
    m = _as_bool(masks).view(torch.uint8)
    return m.sum(dim=-1, dtype=torch.int32).sum(dim=-1, dtype=torch.int64)  # a row holds < 2**31


def measure_batch(main: torch.Tensor, multimask: torch.Tensor | None, jitter: torch.Tensor | None,
                  iou_pred: torch.Tensor | None = None, stability: torch.Tensor | None = None) -> list[MeasuredMask]:
    """N boxes' masks reduced on their device to :class:`MeasuredMask` (``signals.measure`` on the
    host gives the same integers): two copies to the host, one of the counts and boxes, one of
    the main masks' tight-box crops; no full frame leaves the device.

    ``main``: (N, H, W) bool; ``multimask``: (N, M, H, W) alternatives or None; ``jitter``: (N,
    K, H, W) masks of the jittered boxes or None; ``iou_pred``, ``stability``: (N,) or None.
    """
    if main.dim() != 3:
        raise ValueError(f"main masks must be (N, H, W), got shape {tuple(main.shape)}")
    n, h, w = main.shape
    main = _as_bool(main)
    parts = [area_and_box(main)]                                   # area, x1, y1, x2, y2
    k = 0 if jitter is None else jitter.shape[1]
    if k:
        jitter = _as_bool(jitter)
        parts += [pixel_counts(jitter), pixel_counts(jitter & main[:, None])]
    pairs = list(combinations(range(multimask.shape[1]), 2)) if multimask is not None else []
    if multimask is not None and multimask.shape[1] > 1:
        multimask = _as_bool(multimask)
        parts.append(pixel_counts(multimask))
        parts.append(torch.stack([pixel_counts(multimask[:, i] & multimask[:, j]) for i, j in pairs], dim=1))
    scores = [t.float() for t in (iou_pred, stability) if t is not None]
    small = torch.cat(parts, dim=1).cpu().numpy()
    floats = torch.stack(scores, dim=1).cpu().numpy().astype(np.float64) if scores else None
    crops = [main[i, int(y1):int(y2), int(x1):int(x2)] for i, (area, x1, y1, x2, y2) in enumerate(small[:, :5])
             if area]
    flat = torch.cat([c.reshape(-1) for c in crops]).cpu().numpy() if crops else np.zeros(0, bool)
    out: list[MeasuredMask] = []
    at = 0
    for i in range(n):
        area, x1, y1, x2, y2 = (int(v) for v in small[i, :5])
        if area:
            size = (y2 - y1) * (x2 - x1)
            crop = flat[at:at + size].reshape(y2 - y1, x2 - x1)
            at += size
        else:
            crop, x1, y1 = np.zeros((0, 0), bool), 0, 0
        row = small[i, 5:].tolist()
        m = MeasuredMask(h, w, x1, y1, crop)
        if k:
            m.jitter_counts, m.jitter_overlaps, row = row[:k], row[k:2 * k], row[2 * k:]
        if pairs:
            c = multimask.shape[1]  # type: ignore[union-attr]
            m.multimask_counts, m.multimask_overlaps = row[:c], row[c:c + len(pairs)]
        if floats is not None:
            values = iter(floats[i].tolist())
            m.iou_pred = next(values) if iou_pred is not None else None
            m.stability = next(values) if stability is not None else None
        out.append(m)
    return out
