"""The segmenter backends by name, apart from the stage that runs them (as segment-anything's
``build_sam.py`` sits apart from its predictor). ``refine.segmenter`` names one of :data:`SEGMENTERS`."""

from __future__ import annotations

from typing import Callable

from ..config import ConfigError, RefineConfig
from ..workspace import Workspace
from .base import Segmenter


def _box(cfg: RefineConfig, ws: Workspace, device: str | None) -> Segmenter:
    from .box import BoxSegmenter

    return BoxSegmenter()


def _grabcut(cfg: RefineConfig, ws: Workspace, device: str | None) -> Segmenter:
    from .grabcut import GrabCutSegmenter

    return GrabCutSegmenter(iterations=cfg.grabcut_iterations, seed=cfg.seed)


def _sam(cfg: RefineConfig, ws: Workspace, device: str | None) -> Segmenter:
    try:
        from .cache import EmbeddingCache
        from .sam import SamSegmenter
    except ImportError as exc:
        raise ConfigError(f"the sam segmenter needs the sam extra: pip install 'risbench-builder[sam]' ({exc})") from None
    cache = None
    if cfg.cache_embeddings:
        import torch

        cache = EmbeddingCache(ws.cache / "embeddings", storage_dtype=getattr(torch, cfg.cache_dtype), background=True)
    checkpoint = ws.resolve(cfg.checkpoint) if cfg.checkpoint else None
    seg = SamSegmenter(cfg.model, checkpoint=checkpoint, device=device or cfg.device, cache=cache,
                       chunk_size=cfg.chunk_size, seed=cfg.seed, encoder_batch=cfg.encoder_batch)
    if cfg.adapter:  # refuses an adapter trained on another SAM (one-line AdapterError)
        from ..adapter.io import load_adapter

        seg.set_adapter(load_adapter(ws.resolve(cfg.adapter), seg))
    return seg


SEGMENTERS: dict[str, Callable[[RefineConfig, Workspace, "str | None"], Segmenter]] = {
    "box": _box, "grabcut": _grabcut, "sam": _sam,
}


def make_segmenter(cfg: RefineConfig, ws: Workspace, device: str | None = None) -> Segmenter:
    """The backend ``cfg.segmenter`` names, built for ``ws`` (checkpoint, cache, adapter)."""
    return SEGMENTERS[cfg.segmenter](cfg, ws, device)
