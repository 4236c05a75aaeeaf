"""Source readers: one per format, all yielding :class:`~.base.SourceRecord` / :class:`~.base.Rejected`."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ..config import IngestConfig, SourceConfig
from .base import Item, Rejected, SourceReader, SourceRecord

_MODULES = {"vrsbench": "vrsbench", "dota": "dota", "dior": "dior", "dior_r": "dior", "dior_rsvg": "dior_rsvg",
            "refer": "refer", "native": "native", "hf": "hf"}


def make_reader(cfg: SourceConfig, root: Path, limits: IngestConfig | None = None,
                work_dir: Path | None = None) -> SourceReader:
    """The reader for ``cfg.kind`` over ``root`` (already resolved against the workspace), bounded
    by ``limits`` (file size, JSON nesting; the defaults of :class:`IngestConfig` when None).

    ``work_dir`` is a folder the reader may write to (the ``hf`` reader extracts embedded images
    there, since the catalog names image files); readers of files on disk ignore it.
    """
    module = import_module(f"{__name__}.{_MODULES[cfg.kind]}")
    reader_cls = module.READERS[cfg.kind]
    if getattr(reader_cls, "needs_work_dir", False):
        return reader_cls(cfg, root, limits, work_dir)
    return reader_cls(cfg, root, limits)


__all__ = ["Item", "Rejected", "SourceReader", "SourceRecord", "make_reader"]
