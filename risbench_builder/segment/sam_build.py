"""Building and loading Segment Anything (as segment-anything's ``build_sam.py`` sits apart
from its predictor; the segmenter is ``sam.py``).

The sizes differ only in numbers, so one private builder takes the knobs and a small dict maps
names to public builders (``vit_b``, ``vit_l``, ``vit_h`` with segment-anything's exact numbers,
and ``tiny``, our own seeded random model for CPU tests). Weights load with
``torch.load(..., weights_only=True)`` or from ``.safetensors``; nothing else is unpickled.
:func:`model_checksum` names the weights (the embedding cache key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from risbench_builder.segment.attention import use_token_axis_attention

CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
CHECKPOINT_FILES = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]


class SamCheckpointError(ValueError):
    """A SAM checkpoint is missing, unsafe or does not fit the chosen model: a wrong
    ``refine.checkpoint`` value, which the CLI reports in one line (a ValueError)."""


# ------------------------------------------------------------------------ registry
# The sizes differ only in these numbers (segment-anything's build_sam.py; tiny: our own).
SAM_ARCHS: dict[str, dict[str, Any]] = {
    "vit_b": dict(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                  encoder_global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16,
                  encoder_global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16,
                  encoder_global_attn_indexes=(7, 15, 23, 31)),
    # A ~0.5 M parameter random SAM at 256 px for CPU tests. Masks and scores are meaningless;
    # shapes, transforms and data flow are the real ones. Low-res logits are 64x64 (S/4).
    "tiny": dict(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
                 image_size=256, window_size=4, prompt_embed_dim=32, mask_in_chans=4, decoder_mlp_dim=64,
                 decoder_num_heads=2, iou_head_hidden_dim=32),
}


def _prompt_encoder(image_size: int, prompt_embed_dim: int, mask_in_chans: int) -> PromptEncoder:
    grid = image_size // 16
    return PromptEncoder(embed_dim=prompt_embed_dim, image_embedding_size=(grid, grid),
                         input_image_size=(image_size, image_size), mask_in_chans=mask_in_chans)


def _mask_decoder(prompt_embed_dim: int, decoder_mlp_dim: int, decoder_num_heads: int,
                  iou_head_hidden_dim: int) -> MaskDecoder:
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=decoder_mlp_dim,
                                      num_heads=decoder_num_heads),
        transformer_dim=prompt_embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=iou_head_hidden_dim,
    )


def _build_sam(
    *,
    encoder_embed_dim: int,
    encoder_depth: int,
    encoder_num_heads: int,
    encoder_global_attn_indexes: tuple[int, ...],
    image_size: int = 1024,
    window_size: int = 14,
    prompt_embed_dim: int = 256,
    mask_in_chans: int = 16,
    decoder_mlp_dim: int = 2048,
    decoder_num_heads: int = 8,
    iou_head_hidden_dim: int = 256,
    name: str = "sam",
    checkpoint: str | Path | None = None,
    seed: int = 0,
) -> Sam:
    """segment-anything's ``_build_sam`` with the fixed numbers as knobs and safe loading."""
    state = _read_state_dict(name, Path(checkpoint)) if checkpoint is not None else None  # fail before building
    vit_patch_size = 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random init and PositionEmbeddingRandom's Gaussian buffer
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=encoder_depth,
                embed_dim=encoder_embed_dim,
                img_size=image_size,
                mlp_ratio=4,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=encoder_num_heads,
                patch_size=vit_patch_size,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=tuple(encoder_global_attn_indexes),
                window_size=window_size,
                out_chans=prompt_embed_dim,
            ),
            prompt_encoder=_prompt_encoder(image_size, prompt_embed_dim, mask_in_chans),
            mask_decoder=_mask_decoder(prompt_embed_dim, decoder_mlp_dim, decoder_num_heads, iou_head_hidden_dim),
            pixel_mean=PIXEL_MEAN,
            pixel_std=PIXEL_STD,
        )
    use_token_axis_attention(sam.mask_decoder)  # same math, a CPU-friendly layout (segment/attention.py)
    sam.eval()
    if state is not None:
        _load_into(sam, name, Path(checkpoint), state)
    return sam


def build_sam_vit_b(checkpoint: str | Path | None = None, seed: int = 0) -> Sam:
    return _build_sam(**SAM_ARCHS["vit_b"], name="vit_b", checkpoint=checkpoint, seed=seed)


def build_sam_vit_l(checkpoint: str | Path | None = None, seed: int = 0) -> Sam:
    return _build_sam(**SAM_ARCHS["vit_l"], name="vit_l", checkpoint=checkpoint, seed=seed)


def build_sam_vit_h(checkpoint: str | Path | None = None, seed: int = 0) -> Sam:
    return _build_sam(**SAM_ARCHS["vit_h"], name="vit_h", checkpoint=checkpoint, seed=seed)


def build_sam_tiny(checkpoint: str | Path | None = None, seed: int = 0) -> Sam:
    """A ~0.5 M parameter random SAM at 256 px for CPU tests (our own config, not upstream)."""
    return _build_sam(**SAM_ARCHS["tiny"], name="tiny", checkpoint=checkpoint, seed=seed)


sam_model_registry: dict[str, Callable[..., Sam]] = {
    "vit_b": build_sam_vit_b,
    "vit_l": build_sam_vit_l,
    "vit_h": build_sam_vit_h,
    "tiny": build_sam_tiny,
}


def build_sam_decoder(name: str, seed: int = 0) -> tuple[PromptEncoder, MaskDecoder]:
    """Prompt encoder and mask decoder of ``name`` alone, random weights, no image encoder.

    For work that runs on cached embeddings only (adapter parameter counts, decoder-side GPU
    benchmarks): the vit_h encoder is 632 M parameters, its decoder side about 4 M.
    """
    if name not in SAM_ARCHS:
        raise ValueError(f"unknown SAM model {name!r}; choose one of {sorted(SAM_ARCHS)}")
    knobs = {"image_size": 1024, "prompt_embed_dim": 256, "mask_in_chans": 16, "decoder_mlp_dim": 2048,
             "decoder_num_heads": 8, "iou_head_hidden_dim": 256}
    knobs.update({k: v for k, v in SAM_ARCHS[name].items() if k in knobs})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prompt = _prompt_encoder(knobs["image_size"], knobs["prompt_embed_dim"], knobs["mask_in_chans"])
        decoder = _mask_decoder(knobs["prompt_embed_dim"], knobs["decoder_mlp_dim"], knobs["decoder_num_heads"],
                                knobs["iou_head_hidden_dim"])
    return prompt.eval(), decoder.eval()


def build_sam_model(name: str, checkpoint: str | Path | None = None, device: str = "cpu", seed: int = 0) -> Sam:
    """Build ``name`` from the registry, load ``checkpoint`` (random weights when None), move to ``device``.

    Random weights are drawn with ``seed`` on the CPU, so they are the same whatever the device.
    """
    if name not in sam_model_registry:
        raise ValueError(f"unknown SAM model {name!r}; choose one of {sorted(sam_model_registry)}")
    sam = sam_model_registry[name](checkpoint=checkpoint, seed=seed)
    return sam.to(device).eval()


def _how_to_get(name: str) -> str:
    if name in CHECKPOINT_FILES:
        return f"download {CHECKPOINT_FILES[name]} from {CHECKPOINT_URL} and set refine.checkpoint"
    return f"{name} has no published weights: leave refine.checkpoint empty for random weights"


def _read_state_dict(name: str, path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SamCheckpointError(f"sam:{name}: checkpoint {path} not found; {_how_to_get(name)}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise SamCheckpointError(
                f"sam:{name}: {path} is not a readable safetensors file ({_first_line(e)}); {_how_to_get(name)}"
            ) from e
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError for unsafe pickles, RuntimeError for broken zips, ...
            raise SamCheckpointError(
                f"sam:{name}: {path} is not a plain tensor state_dict, refused by torch.load(weights_only=True) "
                f"({_first_line(e)}); {_how_to_get(name)} or convert the file to .safetensors"
            ) from e
    if isinstance(state, Mapping):
        for wrapper in ("model", "state_dict"):  # training checkpoints often nest the weights
            if wrapper in state and isinstance(state[wrapper], Mapping):
                state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SamCheckpointError(f"sam:{name}: {path} does not hold a dict of tensors; {_how_to_get(name)}")
    return dict(state)


def _load_into(sam: Sam, name: str, path: Path, state: dict[str, torch.Tensor]) -> None:
    own = sam.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        first = (mismatched or missing or unexpected)[0]
        raise SamCheckpointError(
            f"sam:{name}: checkpoint {path} does not fit this model ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(mismatched)} mismatched keys, first {first!r}); set refine.model to the "
            f"architecture of the file ({', '.join(f'{v} -> {k}' for k, v in CHECKPOINT_FILES.items())})"
        )
    sam.load_state_dict(state, strict=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def model_checksum(name: str, checkpoint: str | Path | None = None, seed: int = 0) -> str:
    """sha256 of the checkpoint file (streamed), or of ``(name, seed, "random")`` for random weights."""
    if checkpoint is None:
        return hashlib.sha256(f"{name}\0{seed}\0random".encode()).hexdigest()
    path = Path(checkpoint)
    if not path.is_file():
        raise SamCheckpointError(f"sam:{name}: checkpoint {path} not found; {_how_to_get(name)}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
