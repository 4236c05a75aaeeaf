"""Training objective, paper eq. 18: lambda * CE + (1 - lambda) * Dice, lambda = 0.9.

The model emits one logit per pixel (p(fg) = sigmoid). Written as the equivalent 2-class
problem of RMSIN's ``loss/loss.py``: CE with class weights (bg 0.9, fg 1.1) as a weighted mean
(PyTorch's ``cross_entropy(weight=...)``), Dice over both classes of each sample with smooth
1e-6. ``dice_reduction="sum"`` reproduces RMSIN's batch-scaled sum; ``"mean"`` (default) keeps
lambda's meaning independent of the batch size. Device-agnostic (no ``.cuda()``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_ce(logits: Tensor, target: Tensor, class_weights: Sequence[float] = (0.9, 1.1)) -> Tensor:
    """2-class weighted cross-entropy from one logit channel: sum(w_y * -log p_y) / sum(w_y)."""
    z = logits.float().squeeze(1)
    y = target.float()
    w = torch.where(y > 0.5, z.new_tensor(class_weights[1]), z.new_tensor(class_weights[0]))
    nll = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    return (w * nll).sum() / w.sum()


def dice_loss(logits: Tensor, target: Tensor, smooth: float = 1e-6, reduction: str = "mean") -> Tensor:
    """1 - Dice per sample and class (fg and bg), reduced by mean or sum over batch x 2."""
    p1 = torch.sigmoid(logits.float().squeeze(1)).flatten(1)
    y1 = target.float().flatten(1)
    p = torch.stack([1 - p1, p1], 1)
    y = torch.stack([1 - y1, y1], 1)
    dice = (2 * (p * y).sum(-1) + smooth) / (p.sum(-1) + y.sum(-1) + smooth)
    loss = 1 - dice
    return loss.sum() if reduction == "sum" else loss.mean()


def crobim_loss(logits: Tensor, target: Tensor, ce_weight: float = 0.9,
                class_weights: Sequence[float] = (0.9, 1.1), dice_reduction: str = "mean") -> Tensor:
    """Eq. 18 on (B, 1, H, W) logits and (B, H, W) 0/1 targets."""
    return (ce_weight * weighted_ce(logits, target, class_weights)
            + (1 - ce_weight) * dice_loss(logits, target, reduction=dice_reduction))
