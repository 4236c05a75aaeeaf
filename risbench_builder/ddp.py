"""What the two trainers (adapter, CroBIM) share under ``torchrun``: a check that DDP kept the ranks
in step. Imports torch only."""

from __future__ import annotations

from typing import Iterable

import torch


def ranks_agree(parameters: Iterable[torch.nn.Parameter], world: int) -> bool:
    """Whether every rank holds rank 0's trainable weights, bit for bit (collective: call on all ranks).

    DDP averages the gradients so that they should; a rank that trained its own model (a forward
    that bypassed the DDP wrapper, rank-dependent optimizer settings) would otherwise save or
    evaluate a model that no other rank has, silently.
    """
    if world <= 1:
        return True
    import torch.distributed as dist

    flat = torch.cat([p.detach().float().flatten() for p in parameters if p.requires_grad])
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff) == 0.0
