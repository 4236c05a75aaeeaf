"""Score a CroBIM checkpoint on an export split with the reference protocol (metrics.py).

Default grid: the image is resized to ``eval.size`` (480 in the paper configs), the GT mask
nearest-resized to the same grid, and the prediction is ``logits > 0`` there. ``native=True``
instead upsamples the logits (bilinear) to each image's own size and scores against the
original mask. Every expression is one sample; results per split, and by ``is_unique``.

    risbench evaluate --checkpoint runs/crobim-x/best --data EXPORT --split test
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..devices import pick_device
from .config import CroBIMConfig
from .data import RefSegDataset, RefSample, load_split, make_collate
from .metrics import SegMetrics, table_header, table_row


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


@torch.no_grad()
def predict_logits(model: torch.nn.Module, samples: Sequence[RefSample], size: int, batch_size: int = 8,
                   device: torch.device | None = None, bf16: bool = False,
                   dataset: RefSegDataset | None = None) -> Any:
    """Yields (sample index, logits (1, S, S) float on CPU, GT mask at the grid (S, S) uint8)."""
    device = device or next(model.parameters()).device
    ds = dataset or RefSegDataset(samples, size)
    collate = make_collate(model.tokenize)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(ds), batch_size):
            batch = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
            with _autocast(device, bf16):
                logits = model(batch["image"].to(device), batch["input_ids"].to(device),
                               batch["attention_mask"].to(device))
            logits = logits.float().cpu()
            for j, idx in enumerate(batch["index"].tolist()):
                yield idx, logits[j], batch["mask"][j]
    finally:
        model.train(was_training)


def score(model: torch.nn.Module, samples: Sequence[RefSample], size: int, batch_size: int = 8, native: bool = False,
          device: torch.device | None = None, bf16: bool = False, dataset: RefSegDataset | None = None) -> SegMetrics:
    """Per-sample I/U of ``samples`` (in order) with ``is_unique`` groups; key = triplet_id."""
    metrics = SegMetrics()
    for idx, logits, gt in predict_logits(model, samples, size, batch_size, device, bf16, dataset):
        s = samples[idx]
        if native:
            gt_native = s.mask()
            up = F.interpolate(logits[None], size=gt_native.shape, mode="bilinear", align_corners=False)[0, 0]
            metrics.add((up > 0).numpy(), gt_native, s.is_unique, s.triplet_id)
        else:
            metrics.add((logits[0] > 0).numpy(), gt.numpy(), s.is_unique, s.triplet_id)
    return metrics


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, CroBIMConfig]:
    """Rebuild the model from the config stored in the checkpoint and load its weights strictly."""
    from .model import build_model
    from .checkpoint import load_weights, model_file, stored_config

    file = model_file(path)
    cfg = stored_config(file)
    with warnings.catch_warnings():          # every weight comes from the checkpoint: no init files needed
        warnings.simplefilter("ignore")
        model = build_model(cfg.model.model_copy(update={"backbone_weights": None}))
    load_weights(model, file)
    return model.to(device), cfg


def evaluate(checkpoint: str | Path, data: str | Path, split: str = "test", native: bool | None = None,
             batch_size: int | None = None, device: str | None = None, size: int | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Scores ``split`` of the export; prints the paper's table row (all / unique / non-unique)."""
    dev = pick_device(device)
    model, cfg = load_checkpoint(checkpoint, dev)
    native = cfg.eval.native if native is None else native
    grid = size or cfg.eval.size
    samples = load_split(data, split)
    if not samples:
        raise ValueError(f"{data}: split {split!r} is empty")
    metrics = score(model, samples, grid, batch_size or cfg.eval.batch_size, native, dev,
                    bf16=cfg.train.bf16)
    result = metrics.summary()
    where = "native resolution" if native else f"{grid}x{grid} grid, GT nearest-resized"
    log(f"CroBIM {cfg.name} on {data} split {split} ({len(samples)} expressions, {where})")
    log(table_header())
    for group, res in result.items():
        log(table_row(split if group == "all" else f"{split} ({group.replace('_', '-')})", res))
    return {"split": split, "native": native, "size": grid, "checkpoint": str(checkpoint), "results": result}
