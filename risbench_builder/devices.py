"""The one place a device name becomes a ``torch.device``, checked against this machine.

``--device cuda`` on a node without a usable GPU (or ``cuda:3`` on a node with one) used to get
as far as the first ``.to(device)`` and end in CUDA's own traceback ("Found no NVIDIA driver"),
after the data had loaded. Here it is one line that says what the machine has.
"""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device this machine does not have (the CLI prints it as one line)."""


def pick_device(device: str | None = None, local_rank: int | None = None) -> torch.device:
    """``device`` as named, else CUDA where there is one (``cuda:local_rank`` for a torchrun rank),
    else the CPU."""
    if not device:
        if torch.cuda.is_available():
            return torch.device("cuda" if local_rank is None else f"cuda:{local_rank}")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"device {device!r} is not a device name: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch {torch.__version__} is built without CUDA" if torch.version.cuda is None
                   else "torch sees none; check nvidia-smi and CUDA_VISIBLE_DEVICES")
            raise DeviceError(f"device {device}: this machine has no usable CUDA GPU ({why}); use cpu, or leave "
                              "the device unset to take a GPU only where there is one")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {device}: this machine has {count} GPU{'s' if count != 1 else ''} "
                              f"(cuda:0 to cuda:{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device}: this machine has no usable Apple GPU: use cpu")
    return dev
