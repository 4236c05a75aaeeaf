"""One optimisation step of the adapter on a batch of cached features (torch only).

Shared by the trainer, the CPU benchmark and the GPU check, so all three time the same work:
frozen prompt encoder on the box prompts, adapter decoder, the recipe's losses, backward, Adam.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Mapping

import torch
from torch import Tensor

from .losses import adapter_losses


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fp16 is unsafe for SAM, segment-anything #540); fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """The trainer's Adam: the fused kernel (one op for all parameters; same update rule, equal
    up to float rounding) where this torch has it for the parameters' device, else the default."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch or a device without a fused Adam
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def train_step(model: torch.nn.Module, prompt_encoder: torch.nn.Module, image_pe: Tensor, embeddings: Tensor,
               guide: Tensor, boxes: Tensor, target: Tensor, weights: Mapping[str, float],
               opt: torch.optim.Optimizer, grad_clip: float | None = None) -> dict[str, Tensor]:
    """Forward, losses, backward and step; ``model`` is the adapter decoder (or its DDP wrapper)."""
    with autocast(embeddings.device):
        with torch.no_grad():
            sparse, dense = prompt_encoder(points=None, boxes=boxes, masks=None)
        res = model(embeddings, image_pe, sparse, dense, guide, multimask=False)  # the losses use mask 0 only
    losses = adapter_losses(res.masks, res.coarse, res.refined, res.uncertainty, target, weights)
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], grad_clip)
    opt.step()
    return losses
