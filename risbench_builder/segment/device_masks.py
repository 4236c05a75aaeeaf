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

from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
import torch

from .base import MeasuredMask

__all__ = ["ReducedMasks", "area_and_box", "collect", "measure_batch", "pixel_counts", "reduce_masks"]


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


@dataclass
class ReducedMasks:
    """One view's masks reduced on their device by :func:`reduce_masks`, not yet on the host.

    ``main`` is kept (on the device) for the tight-box crops; ``ints`` holds per box the area,
    the box, the jitter counts and overlaps and the multimask counts and pair overlaps; ``floats``
    the iou_pred and stability columns that were given.
    """

    main: torch.Tensor
    ints: torch.Tensor
    floats: torch.Tensor | None
    jitter: int                                       # K jittered masks per box
    alternatives: int                                 # multimask alternatives per box (0: not measured)
    scores: tuple[bool, bool]                         # iou_pred given, stability given


def reduce_masks(main: torch.Tensor, multimask: torch.Tensor | None, jitter: torch.Tensor | None,
                 iou_pred: torch.Tensor | None = None, stability: torch.Tensor | None = None) -> ReducedMasks:
    """N boxes' masks reduced on their device, with no host sync: launched right after the
    decoder, so that :func:`collect` can bring back many views' results in one pair of copies.

    ``main``: (N, H, W) bool; ``multimask``: (N, M, H, W) alternatives or None; ``jitter``: (N,
    K, H, W) masks of the jittered boxes or None; ``iou_pred``, ``stability``: (N,) or None.
    """
    if main.dim() != 3:
        raise ValueError(f"main masks must be (N, H, W), got shape {tuple(main.shape)}")
    main = _as_bool(main)
    parts = [area_and_box(main)]                                   # area, x1, y1, x2, y2
    k = 0 if jitter is None else jitter.shape[1]
    if k:
        jitter = _as_bool(jitter)
        parts += [pixel_counts(jitter), pixel_counts(jitter & main[:, None])]
    alternatives = multimask.shape[1] if multimask is not None and multimask.shape[1] > 1 else 0
    if alternatives:
        multimask = _as_bool(multimask)
        pairs = combinations(range(alternatives), 2)
        parts.append(pixel_counts(multimask))
        parts.append(torch.stack([pixel_counts(multimask[:, i] & multimask[:, j]) for i, j in pairs], dim=1))
    scores = [t.float() for t in (iou_pred, stability) if t is not None]
    return ReducedMasks(main, torch.cat(parts, dim=1), torch.stack(scores, dim=1) if scores else None,
                        k, alternatives, (iou_pred is not None, stability is not None))


def collect(reduced: Sequence[ReducedMasks]) -> list[list[MeasuredMask]]:
    """:class:`MeasuredMask` of every box of every view in ``reduced``, in order, from two
    synchronising copies to the host whatever the number of views: one of all counts and scores,
    one of all main masks' tight-box crops (the host needs the boxes to cut them)."""
    if not reduced:
        return []
    ints, floats = _to_host([torch.cat([r.ints.reshape(-1) for r in reduced]),
                             torch.cat([r.floats.reshape(-1) for r in reduced if r.floats is not None]
                                       or [reduced[0].ints.new_zeros(0, dtype=torch.float32)])])
    tables, float_tables, at, fat = [], [], 0, 0
    for r in reduced:
        rows, cols = r.ints.shape
        tables.append(ints[at:at + rows * cols].reshape(rows, cols))
        at += rows * cols
        if r.floats is not None:
            rows, cols = r.floats.shape
            float_tables.append(floats[fat:fat + rows * cols].reshape(rows, cols).astype(np.float64))
            fat += rows * cols
        else:
            float_tables.append(None)
    crops = [r.main[i, int(y1):int(y2), int(x1):int(x2)].reshape(-1)
             for r, table in zip(reduced, tables) for i, (area, x1, y1, x2, y2) in enumerate(table[:, :5]) if area]
    flat = _to_host([torch.cat(crops)])[0] if crops else np.zeros(0, bool)
    out, at = [], 0
    for r, table, scores in zip(reduced, tables, float_tables):
        measured, at = _measured(r, table, scores, flat, at)
        out.append(measured)
    return out


def measure_batch(main: torch.Tensor, multimask: torch.Tensor | None, jitter: torch.Tensor | None,
                  iou_pred: torch.Tensor | None = None, stability: torch.Tensor | None = None) -> list[MeasuredMask]:
    """N boxes' masks reduced on their device to :class:`MeasuredMask` (``signals.measure`` on the
    host gives the same integers): :func:`reduce_masks` then :func:`collect` of that one view;
    no full frame leaves the device."""
    return collect([reduce_masks(main, multimask, jitter, iou_pred, stability)])[0]


def _to_host(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """The tensors as host arrays with one sync: on CUDA, non-blocking copies into pinned memory
    then one wait for the stream (a plain ``.cpu()`` each would wait once per tensor)."""
    if tensors and tensors[0].device.type == "cuda":
        hosts = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
        for host, t in zip(hosts, tensors):
            host.copy_(t, non_blocking=True)
        torch.cuda.current_stream(tensors[0].device).synchronize()
        tensors = hosts
    return [t.cpu().numpy() for t in tensors]


def _measured(r: ReducedMasks, table: np.ndarray, scores: np.ndarray | None, flat: np.ndarray,
              at: int) -> tuple[list[MeasuredMask], int]:
    """One view's MeasuredMasks from its rows of counts and its crops, which start at ``flat[at]``."""
    _, h, w = r.main.shape
    k, c = r.jitter, r.alternatives
    pairs = c * (c - 1) // 2
    out: list[MeasuredMask] = []
    for i, row in enumerate(table.tolist()):
        area, x1, y1, x2, y2 = row[:5]
        if area:
            size = (y2 - y1) * (x2 - x1)
            crop = flat[at:at + size].reshape(y2 - y1, x2 - x1)
            at += size
        else:
            crop, x1, y1 = np.zeros((0, 0), bool), 0, 0
        m = MeasuredMask(h, w, x1, y1, crop)
        rest = row[5:]
        if k:
            m.jitter_counts, m.jitter_overlaps, rest = rest[:k], rest[k:2 * k], rest[2 * k:]
        if c:
            m.multimask_counts, m.multimask_overlaps = rest[:c], rest[c:c + pairs]
        if scores is not None:
            values = iter(scores[i].tolist())
            m.iou_pred = next(values) if r.scores[0] else None
            m.stability = next(values) if r.scores[1] else None
        out.append(m)
    return out, at
