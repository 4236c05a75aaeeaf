"""Training losses of the PA-SAM adapter (xzz2/pa-sam ``utils/losses.py``), weighted by the recipe.

``mask``: BCE + dice on the adapted single mask (token 0) against the trusted mask, at the
decoder's low-res output. ``coarse`` / ``refined``: BCE + dice on the coarse map where the
uncertainty map says "certain" (< 0.5) and on the refined map where it says "uncertain" (>= 0.5),
at the embedding grid. ``uncertainty``: BCE of the uncertainty map against a one-cell band
around the trusted mask's boundary (PA-SAM's ``mask_to_boundary`` target at grid scale).
Imports torch only.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor
from torch.nn import functional as F

LOSS_NAMES: tuple[str, ...] = ("mask", "coarse", "refined", "uncertainty")


def _bce_dice(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean BCE plus soft dice over (B, 1, H, W), optionally restricted to ``weight`` pixels."""
    logits, target = logits.float(), target.float()
    if weight is None:
        weight = torch.ones_like(target)
    n = weight.sum(dim=(1, 2, 3)).clamp(min=1.0)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum(dim=(1, 2, 3)) / n
    p = torch.sigmoid(logits) * weight
    t = target * weight
    dice = 1 - (2 * (p * t).sum(dim=(1, 2, 3)) + 1) / (p.sum(dim=(1, 2, 3)) + t.sum(dim=(1, 2, 3)) + 1)
    return (bce + dice).mean()


def boundary_band(target: Tensor, width: int = 1) -> Tensor:
    """Pixels within ``width`` of the mask boundary (dilation minus erosion) of a (B, 1, H, W) mask."""
    k = 2 * width + 1
    dilated = F.max_pool2d(target, k, stride=1, padding=width)
    eroded = -F.max_pool2d(-target, k, stride=1, padding=width)
    return (dilated - eroded).clamp(0, 1)


def adapter_losses(masks: Tensor, coarse: Tensor, refined: Tensor, uncertainty: Tensor, target: Tensor,
                   weights: Mapping[str, float]) -> dict[str, Tensor]:
    """Each weighted loss and their ``total``; ``target`` is the trusted mask (B, 1, 4h, 4w) in {0, 1}."""
    target = target.float()
    grid = F.interpolate(target, size=coarse.shape[-2:], mode="area")
    grid_bin = (grid >= 0.5).float()
    gate = (torch.sigmoid(uncertainty.float()) >= 0.5).float().detach()
    terms = {
        "mask": lambda: _bce_dice(masks[:, :1], target),
        "coarse": lambda: _bce_dice(coarse, grid_bin, 1 - gate),
        "refined": lambda: _bce_dice(refined, grid_bin, gate),
        "uncertainty": lambda: F.binary_cross_entropy_with_logits(uncertainty.float(), boundary_band(grid_bin)),
    }
    out = {name: float(weights.get(name, 0.0)) * fn() for name, fn in terms.items() if weights.get(name, 0.0)}
    out["total"] = sum(out.values()) if out else masks.sum() * 0.0
    return out
