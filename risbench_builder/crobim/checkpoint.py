"""CroBIM checkpoints: ``model.safetensors`` with the config in its metadata, plus a
``optimizer.pt`` for resuming, written atomically; strict loading that names every mismatch.

Its own module so that training and evaluation both use it without importing each other.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..text import unexpected
from .config import CroBIMConfig, parse_config

# What may change between a run and its --resume: loader threads, init files the checkpoint's
# weights replace, and what only evaluates. Anything else changes the trajectory being continued.
RESUMABLE_CHANGES = ("name", "train.num_workers", "model.backbone_weights", "eval.", "smoke.")


def model_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such checkpoint (expected a folder with model.safetensors, or the file)")
    return file


def unreadable(file: Path, exc: BaseException) -> ValueError:
    """The one-line error for a checkpoint file that does not open (truncated, not safetensors)."""
    return ValueError(f"{file}: not a readable checkpoint ({unexpected(exc)})")


def stored_config(path: str | Path) -> CroBIMConfig:
    """The config a checkpoint was trained with (the safetensors metadata ``save_checkpoint`` writes)."""
    from safetensors import safe_open

    file = model_file(path)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: the file is not usable
        raise unreadable(file, exc) from None
    if "config" not in meta:
        raise ValueError(f"{file}: no CroBIM config in the safetensors metadata (not a risbench checkpoint)")
    return parse_config(json.loads(meta["config"]), file)


def _leaves(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(stored: CroBIMConfig, now: CroBIMConfig) -> list[str]:
    """``field old -> new`` for each field that differs and is not one of :data:`RESUMABLE_CHANGES`."""
    old, new = _leaves(stored.model_dump(mode="json")), _leaves(now.model_dump(mode="json"))
    return [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key) and not key.startswith(RESUMABLE_CHANGES)]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(folder: Path, model: nn.Module, cfg: CroBIMConfig, optimizer: Any = None, scheduler: Any = None,
                    state: dict | None = None) -> Path:
    """``folder/model.safetensors`` (+ config in metadata) and ``folder/optimizer.pt``, written atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"), metadata={"config": cfg.to_json(), "format": "risbench-crobim-1"})
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                    "state": state or {}, "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                   tmp / "optimizer.pt")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Strict load: any missing or unexpected key is an error that lists them."""
    from safetensors.torch import load_file

    file = model_file(path)
    try:
        weights = load_file(str(file))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: the file is not usable
        raise unreadable(file, exc) from None
    own = _unwrap(model).state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shape = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or shape:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
        parts = [f"{len(missing)} missing: {few(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {few(unexpected)}" if unexpected else "",
                 f"{len(shape)} with other shapes: {few(shape)}" if shape else ""]
        raise ValueError(f"{file}: checkpoint does not match the model; " + "; ".join(p for p in parts if p))
    _unwrap(model).load_state_dict(weights, strict=True)


def load_training_state(folder: Path, optimizer: Any, scheduler: Any) -> dict:
    try:
        blob = torch.load(Path(folder) / "optimizer.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors, or globals weights_only refuses
        raise unreadable(Path(folder) / "optimizer.pt", exc) from None
    optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob.get("scheduler"):
        scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"])
    if torch.cuda.is_available() and blob.get("cuda_rng"):
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return dict(blob.get("state") or {})
