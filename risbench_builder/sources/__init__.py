"""Source readers: one per format, all yielding :class:`~.base.SourceRecord` / :class:`~.base.Rejected`."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ..config import IngestConfig, SourceConfig
from .base import Item, Rejected, SourceReader, SourceRecord

_MODULES = {"vrsbench": "vrsbench", "dota": "dota", "dior": "dior", "dior_r": "dior", "dior_rsvg": "dior_rsvg"}


def make_reader(cfg: SourceConfig, root: Path, limits: IngestConfig | None = None) -> SourceReader:
    """The reader for ``cfg.kind`` over ``root`` (already resolved against the workspace), bounded
    by ``limits`` (file size, JSON nesting; the defaults of :class:`IngestConfig` when None)."""
    module = import_module(f"{__name__}.{_MODULES[cfg.kind]}")
    return module.READERS[cfg.kind](cfg, root, limits)


__all__ = ["Item", "Rejected", "SourceReader", "SourceRecord", "make_reader"]
