"""Mask measurements computed where the mask lives (GPU or CPU), so that only small results leave it.

A SAM mask is born on the device as a logits threshold. Copying 25 dense full-resolution
masks per image back to the host costs more than computing what the catalog needs from them
there: the COCO run lengths (:func:`column_runs`, turned into the RLE string on the host by
:func:`risbench_builder.masks.rle_from_runs`), the area and the tight box
(:func:`area_and_box`). Torch ops only, on the mask's device; the one host sync is the size of
``nonzero``'s output.

On the CPU, ``masks.encode``/``masks.encode_sparse`` of the numpy mask are several times faster
than these (pycocotools' C loop against torch's reductions): use these for masks on a GPU.

>>> m = torch.zeros(3, 4, dtype=torch.bool); m[1:3, 1] = True
>>> column_runs(m).tolist()
[4, 2, 6]
>>> area_and_box(m).tolist()
[2, 1, 1, 2, 3]
"""

from __future__ import annotations

import torch

__all__ = ["area_and_box", "column_runs", "column_runs_batch", "split_runs"]


def column_runs_batch(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """COCO run lengths of N masks at once: ``(runs, counts)``, both int64 on the masks' device.

    ``masks``: bool (N, H, W) (any dtype is read as ``!= 0``). Each mask's runs are its pixels in
    column-major (Fortran) order as alternating 0-runs and 1-runs starting with a 0-run (0 when
    the first pixel is set), exactly the runs pycocotools encodes; ``runs`` holds them mask after
    mask and ``counts[i]`` how many belong to mask i. An H*W = 0 mask has the single run ``[0]``.
    One ``nonzero`` for the whole batch; :func:`split_runs` cuts the copied-back result apart.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    flat = _as_bool(masks).transpose(1, 2).reshape(n, h * w)        # column-major pixel order
    # a run ends before every pixel that differs from its predecessor (the one before pixel 0
    # counts as unset) and at H*W: those positions, per mask, are the runs' cumulative ends
    change = torch.empty((n, h * w + 1), dtype=torch.bool, device=masks.device)
    change[:, h * w] = True
    if h * w:
        change[:, 0] = flat[:, 0]
        torch.ne(flat[:, 1:], flat[:, :-1], out=change[:, 1 : h * w])
    row, pos = change.nonzero(as_tuple=True)                        # sorted by mask, then position
    first = torch.ones_like(row, dtype=torch.bool)
    first[1:] = row[1:] != row[:-1]
    start = torch.zeros_like(pos)
    start[1:] = pos[:-1]
    runs = pos - torch.where(first, torch.zeros_like(start), start)
    return runs, change.sum(dim=1)


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def column_runs(mask: torch.Tensor) -> torch.Tensor:
    """COCO run lengths of one (H, W) mask, int64 on its device (see :func:`column_runs_batch`).

    ``risbench_builder.masks.rle_from_runs(column_runs(m).cpu().numpy(), H, W)`` equals
    ``masks.encode(m.cpu().numpy())`` byte for byte.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    return column_runs_batch(mask[None])[0]


def split_runs(runs: torch.Tensor, counts: torch.Tensor) -> list[torch.Tensor]:
    """:func:`column_runs_batch`'s output cut into one run tensor per mask (on the CPU: copy first)."""
    return list(torch.split(runs, [int(c) for c in counts.tolist()]))


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
    area = m.sum(dim=-1, dtype=torch.int32).sum(dim=-1, dtype=torch.int64)  # a row holds < 2**31
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
