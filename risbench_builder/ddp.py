"""What the two trainers (adapter, CroBIM) share under ``torchrun``: joining and leaving the process
group, and a check that DDP kept the ranks in step. Imports torch only."""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator

import torch


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, int, int]]:
    """(rank, world size, local rank): under torchrun, join the process group (nccl on GPUs, gloo
    on the CPU) and leave it at the end. A rank that exits still in the group can abort in gloo's
    threads at interpreter exit ("terminate called without an active exception", SIGABRT,
    pytorch/pytorch#190489), which fails the whole torchrun after the work is done. A group the
    caller made is left to it."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if world == 1 or "MASTER_ADDR" not in os.environ:
        yield 0, 1, 0
        return
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(backend, rank=rank, world_size=world)
    yield rank, world, local_rank
    if owner:               # after success only: a rank that failed may leave others in a collective
        dist.destroy_process_group()


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
