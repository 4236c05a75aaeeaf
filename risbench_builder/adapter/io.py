"""The adapter file: safetensors weights plus, in its metadata and a JSON beside it, the recipe
and the sha256 of the SAM checkpoint it was trained against.

An adapter only makes sense on top of the SAM weights it was trained with: its unfrozen
decoder parts replace SAM's, and its new modules learned SAM's features. Loading therefore
refuses another SAM with one line that says which one it needs. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..export.manifest import sha256_file
from ..segment.sam import SamSegmenter
from .model import GuideFeatures, PromptAdapterDecoder, build_adapter_decoder, guide_size

FORMAT = "risbench-adapter/1"
_META = "risbench_adapter"
WEIGHTS, SIDECAR = "adapter.safetensors", "adapter.json"


class AdapterError(ValueError):
    """An adapter file that cannot be used with this SAM (one line: what is wrong, what to do)."""


@dataclass
class LoadedAdapter:
    """What :meth:`SamSegmenter.set_adapter` takes: decoder, checksum and per-image features."""

    mask_decoder: PromptAdapterDecoder
    sha256: str
    image_features: GuideFeatures
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def weights_path(path: str | Path) -> Path:
    """The ``.safetensors`` of an adapter given as that file, its JSON, or their folder."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS
    elif p.suffix == ".json":
        p = p.with_name(WEIGHTS) if p.name == SIDECAR else p.with_suffix(".safetensors")
    if not p.is_file():
        raise AdapterError(f"adapter {path}: no such file; train one with `risbench adapter train` "
                           "(it writes RUN/adapter.safetensors)")
    return p


def save_adapter(decoder: PromptAdapterDecoder, folder: Path, *, recipe: dict[str, Any], sam_model: str,
                 sam_sha256: str, info: dict[str, Any] | None = None) -> tuple[Path, str]:
    """Write ``folder/adapter.safetensors`` (atomically) and ``folder/adapter.json``; returns (path, sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WEIGHTS
    meta = {"format": FORMAT, "sam_model": sam_model, "sam_sha256": sam_sha256,
            "recipe": json.dumps(recipe, sort_keys=True), "n_points": str(decoder.n_points),
            "gumbel_tau": str(decoder.gumbel_tau), "trainable": json.dumps(list(decoder.trainable))}
    state = {k: v.detach().float().cpu().contiguous() for k, v in decoder.trainable_state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=".adapter.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        # one metadata key: safetensors writes several in hash order, and the file's sha256 names the adapter
        save_file(state, tmp, metadata={_META: json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sha = sha256_file(path)
    sidecar = {"format": FORMAT, "adapter_sha256": sha, "sam": {"model": sam_model, "sha256": sam_sha256},
               "recipe": recipe, "parameters": decoder.parameter_counts(), **(info or {})}
    (folder / SIDECAR).write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return path, sha


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str], Path]:
    """(tensors, metadata, weights path) of an adapter file, checked to be one."""
    p = weights_path(path)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {}).get(_META, "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise AdapterError(f"adapter {p}: not a readable risbench adapter file ({type(e).__name__})") from None
    if meta.get("format") != FORMAT:
        raise AdapterError(f"adapter {p}: not a risbench adapter (format {meta.get('format')!r}, expected {FORMAT!r})")
    return state, meta, p


def load_adapter(path: str | Path, seg: SamSegmenter) -> LoadedAdapter:
    """The adapter at ``path`` built on ``seg``'s SAM; refuses a SAM other than the one it was trained on."""
    state, meta, p = read_adapter(path)
    want_model, want_sha = meta.get("sam_model", ""), meta.get("sam_sha256", "")
    if want_model != seg.model_name or want_sha != seg.model_sha256:
        raise AdapterError(
            f"adapter {p} was trained against SAM {want_model} sha256 {want_sha[:12]}, but sam-refine uses "
            f"{seg.model_name} sha256 {seg.model_sha256[:12]}: set refine.model/refine.checkpoint to the SAM it was "
            "trained with, or retrain the adapter on this one")
    decoder = build_adapter_decoder(seg.model.mask_decoder, seg.model.prompt_encoder,
                                    n_points=int(meta.get("n_points", 4)),
                                    trainable=json.loads(meta.get("trainable", "[]")),
                                    gumbel_tau=float(meta.get("gumbel_tau", 1.0)))
    expected = set(decoder.trainable_names())
    if set(state) != expected:
        odd = sorted(set(state) ^ expected)
        raise AdapterError(f"adapter {p}: its tensors do not fit this adapter architecture ({len(odd)} keys differ, "
                           f"first {odd[0]!r}); retrain it with this version")
    own = dict(decoder.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise AdapterError(f"adapter {p}: {k} has shape {tuple(v.shape)}, this SAM needs {tuple(own[k].shape)}")
            own[k].copy_(v)
    decoder.to(seg.device).eval()
    return LoadedAdapter(decoder, sha256_file(p), GuideFeatures(guide_size(seg.model.prompt_encoder)),
                         {**meta, "recipe": json.loads(meta.get("recipe", "{}"))}, p)
