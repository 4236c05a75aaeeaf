"""CroBIM model parts, one ``nn.Module`` per file; :func:`build_model` makes one from a config."""

from __future__ import annotations

from ..config import ModelConfig
from .crobim import CroBIM


def build_model(cfg: ModelConfig) -> CroBIM:
    return CroBIM(cfg)


def count_parameters(model) -> dict[str, int]:
    """Parameters per top-level part and in total."""
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    parts["total"] = sum(parts.values())
    return parts


__all__ = ["CroBIM", "build_model", "count_parameters"]
