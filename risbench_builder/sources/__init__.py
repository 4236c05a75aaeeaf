"""Source readers: one per format, all yielding :class:`~.base.SourceRecord` / :class:`~.base.Rejected`."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ..config import SourceConfig
from .base import Item, Rejected, SourceReader, SourceRecord

_MODULES = {"vrsbench": "vrsbench", "dota": "dota", "dior": "dior", "dior_r": "dior", "dior_rsvg": "dior_rsvg"}


def make_reader(cfg: SourceConfig, root: Path) -> SourceReader:
    """The reader for ``cfg.kind`` over ``root`` (already resolved against the workspace)."""
    module = import_module(f"{__name__}.{_MODULES[cfg.kind]}")
    return module.READERS[cfg.kind](cfg, root)


__all__ = ["Item", "Rejected", "SourceReader", "SourceRecord", "make_reader"]
