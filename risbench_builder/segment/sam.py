"""Box-prompted Segment Anything: the SAM segmenter (building and loading: ``sam_build.py``).

:class:`SamSegmenter` encodes each view once (or takes its embedding from the
:class:`~risbench_builder.segment.cache.EmbeddingCache`) and decodes all boxes and all
jittered boxes of the view in chunks, one decoder pass per chunk giving the single-mask
output (token 0) and the three multimask alternatives (tokens 1-3) together.

>>> seg = SamSegmenter("tiny")                                        # doctest: +SKIP
>>> out = seg.segment(View(rgb, key="sha..."), boxes, jitter)         # doctest: +SKIP
>>> out[0].mask.shape, out[0].multimask.shape, len(out[0].jitter_masks)  # doctest: +SKIP
((200, 300), (3, 200, 300), 4)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, Sam
from segment_anything.utils.amg import calculate_stability_score
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

from risbench_builder.segment.base import MaskOutput, View
from risbench_builder.segment.sam_build import build_sam_model, model_checksum, sam_device

if TYPE_CHECKING:  # imported lazily: safetensors is only needed once a cache is used
    from risbench_builder.segment.cache import EmbeddingCache

# Full-resolution float logits held at once while upscaling (2**26 floats = 256 MiB).
_UPSAMPLE_FLOATS = 2**26
# On the CPU, decoder chunks are capped so that no per-chunk tensor exceeds this: larger ones
# cost page faults on every allocation (glibc serves them with fresh mmaps above 32 MiB) and
# fall out of cache. vit_b, 25 prompts on 2 cores: 1.9-2.0 s at chunks of 8-64, 1.2-1.4 s at 2-6.
_CPU_CHUNK_BYTES = 24 << 20


# ----------------------------------------------------------------------- segmenter
class SamSegmenter:
    """Box-prompted SAM behind the :class:`~risbench_builder.segment.base.Segmenter` protocol.

    ``adapter``: an optional object with ``mask_decoder`` (a module with
    ``MaskDecoder.predict_masks``'s signature and outputs, used instead of SAM's decoder) and
    ``sha256`` (its weights' checksum, carried in :attr:`name` and :attr:`adapter_sha256`).
    An adapter that needs more per-image inputs than the embedding (PA-SAM's guiding image)
    also has ``image_features``: a callable with a ``names`` tuple that maps SAM's
    preprocessed 1x3xSxS input to a dict of tensors; they are cached beside the embedding and
    passed to ``predict_masks`` as extra keyword arguments.
    The adapter is decoder-side, so the embedding cache stays keyed by :attr:`model_sha256`.

    Counters for tests and benchmarks: ``encoder_calls`` (image encoder runs) and
    ``decoder_calls`` (decoder passes, one per chunk of at most :attr:`effective_chunk_size`
    prompts: ``chunk_size``, capped on the CPU where big chunks are slower).
    """

    def __init__(
        self,
        model_name: str,
        checkpoint: str | Path | None = None,
        device: str | None = None,
        cache: EmbeddingCache | None = None,
        chunk_size: int = 64,
        adapter: Any = None,
        seed: int = 0,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"sam: chunk_size must be >= 1, got {chunk_size}")
        self.model_name = model_name
        self.device = sam_device(device)
        self.model = build_sam_model(model_name, checkpoint, device=str(self.device), seed=seed)
        self.model_sha256 = model_checksum(model_name, checkpoint, seed)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.cache = cache
        self.chunk_size = chunk_size
        self.set_adapter(adapter)
        self.encoder_calls = 0
        self.decoder_calls = 0
        self.feature_calls = 0
        # Decode with segment-anything's MaskDecoder code but the image once per chunk (see
        # _predict_masks_one_image); False runs MaskDecoder.predict_masks exactly as shipped.
        self.share_image_work = True

    def set_adapter(self, adapter: Any) -> None:
        """Decode with ``adapter`` from now on (None: SAM's own decoder); renames the segmenter."""
        self.adapter = adapter
        self.adapter_sha256 = ""
        self.mask_decoder = self.model.mask_decoder
        self.name = f"sam:{self.model_name}"
        if adapter is not None:
            self.adapter_sha256 = str(adapter.sha256)
            self.mask_decoder = adapter.mask_decoder
            if isinstance(self.mask_decoder, torch.nn.Module):
                self.mask_decoder.to(self.device).eval()
            self.name += f"+adapter:{self.adapter_sha256[:8]}"

    @property
    def effective_chunk_size(self) -> int:
        """Prompts per decoder pass: ``chunk_size``, capped on the CPU (see ``_CPU_CHUNK_BYTES``)."""
        if self.device.type != "cpu":
            return self.chunk_size
        c = self.model.prompt_encoder.embed_dim
        g = self.model.image_encoder.img_size // 16
        per_prompt = 4 * max(c * g * g, (c // 8) * (4 * g) ** 2)  # image tokens, upscaled features
        return max(1, min(self.chunk_size, _CPU_CHUNK_BYTES // per_prompt))

    @property
    def precision(self) -> str:
        return "bf16" if self.device.type == "cuda" else "fp32"

    def provenance(self) -> dict[str, str]:
        """What to store with each proposal so it can be traced to the exact weights."""
        return {
            "segmenter": self.name,
            "model_sha256": self.model_sha256,
            "adapter_sha256": self.adapter_sha256,
            "precision": self.precision,
        }

    def _autocast(self) -> contextlib.AbstractContextManager:
        # bf16 on CUDA (fp16 breaks the ViT-H encoder, segment-anything #540); plain fp32 elsewhere.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ encoding
    @torch.inference_mode()
    def embed(self, view: View) -> tuple[torch.Tensor, tuple[int, int]]:
        """The view's float32 image embedding (1xCxhxw, on the device) and the resized input size.

        Taken from the cache when present (no encoder call), else encoded and stored.
        ``SamPredictor.set_image`` semantics: PIL resize of the long side, normalise, pad.
        """
        emb, input_size, _ = self.image_inputs(view, features=None)
        return emb, input_size

    def _preprocessed(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        input_image = torch.as_tensor(self.transform.apply_image(image), device=self.device)
        input_image = input_image.permute(2, 0, 1).contiguous()[None, :, :, :]
        input_size = (int(input_image.shape[-2]), int(input_image.shape[-1]))
        return self.model.preprocess(input_image), input_size

    @torch.inference_mode()
    def image_inputs(
        self, view: View, features: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None | str = "adapter"
    ) -> tuple[torch.Tensor, tuple[int, int], dict[str, torch.Tensor]]:
        """:meth:`embed` plus the extra per-image tensors of ``features`` (default: the adapter's).

        Extras live in the same cache entry as the embedding; a cached entry without them gets
        them computed from the image (no encoder call) and is stored again.
        """
        if features == "adapter":
            features = getattr(self.adapter, "image_features", None)
        names = tuple(getattr(features, "names", ())) if features is not None else ()
        image = _check_image(view.image)
        original_size = (int(image.shape[0]), int(image.shape[1]))
        hit = None
        if self.cache is not None:
            hit = self.cache.get(view.key, self.model_sha256, check=lambda t: _fits(t, original_size, self.model))
            if hit is not None and all(n in hit for n in names):
                emb = hit["image_embeddings"].to(self.device, torch.float32)
                extras = {n: hit[n].to(self.device, torch.float32) for n in names}
                return emb, tuple(int(v) for v in hit["input_size"].tolist()), extras
        pre, input_size = self._preprocessed(image)
        if hit is not None:  # embedding cached, extras missing
            emb = hit["image_embeddings"].to(self.device, torch.float32)
        else:
            with self._autocast():
                emb = self.model.image_encoder(pre)
            self.encoder_calls += 1
            emb = emb.float()
        extras: dict[str, torch.Tensor] = {}
        if features is not None:
            extras = {k: v.float() for k, v in features(pre).items()}
            self.feature_calls += 1
        if self.cache is not None:
            stored = {k: v for k, v in (hit or {}).items()}
            stored.update({
                "image_embeddings": emb,
                "original_size": torch.tensor(original_size, dtype=torch.int64),
                "input_size": torch.tensor(input_size, dtype=torch.int64),
                **extras,
            })
            self.cache.put(view.key, self.model_sha256, stored, {"model": self.model_name, "precision": self.precision})
        return emb, input_size, extras

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def segment(self, view: View, boxes: np.ndarray, jitter: np.ndarray) -> list[MaskOutput]:
        """One :class:`MaskOutput` per box: token-0 mask, clipped IoU, stability, tokens 1-3, jitter masks."""
        image = _check_image(view.image)
        h, w = int(image.shape[0]), int(image.shape[1])
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        jitter = np.asarray(jitter, dtype=np.float32)
        if jitter.size == 0:
            jitter = np.zeros((n, 0, 4), np.float32)
        if jitter.ndim != 3 or jitter.shape[0] != n or jitter.shape[2] != 4:
            raise ValueError(f"sam: jitter must be (N, K, 4) with N={n} boxes, got shape {jitter.shape}")
        k = jitter.shape[1]
        if n == 0:
            return []

        emb, input_size, extras = self.image_inputs(view)
        prompts = np.concatenate([boxes, jitter.reshape(-1, 4)], axis=0)  # N main boxes, then N*K jittered
        prompts[:, 0::2] = prompts[:, 0::2].clip(0, w)
        prompts[:, 1::2] = prompts[:, 1::2].clip(0, h)
        coords = self.transform.apply_boxes_torch(torch.from_numpy(prompts), (h, w)).to(self.device)

        masks = np.zeros((n, h, w), bool)
        multimask = np.zeros((n, 3, h, w), bool)
        jitter_masks = np.zeros((n * k, h, w), bool)
        iou_pred = np.zeros(n, np.float64)
        stability = np.zeros(n, np.float64)
        pe = self.model.prompt_encoder.get_dense_pe()
        chunk = self.effective_chunk_size
        for start in range(0, len(prompts), chunk):
            stop = min(start + chunk, len(prompts))
            with self._autocast():
                sparse, dense = self.model.prompt_encoder(points=None, boxes=coords[start:stop], masks=None)
                low_res, iou = self._decode(
                    image_embeddings=emb,
                    image_pe=pe,
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    **extras,
                )
            self.decoder_calls += 1
            low_res, iou = low_res.float(), iou.float()
            n_main = max(0, min(stop, n) - start)  # main boxes in this chunk come first
            if n_main:
                iou_pred[start : start + n_main] = iou[:n_main, 0].clamp(0.0, 1.0).cpu().numpy()
                for lo, full in self._upscaled(low_res[:n_main], input_size, (h, w)):
                    rows = slice(start + lo, start + lo + len(full))
                    stab = calculate_stability_score(full[:, 0], self.model.mask_threshold, 1.0)
                    stability[rows] = torch.nan_to_num(stab, nan=0.0).cpu().numpy()  # empty mask -> 0
                    binary = (full > self.model.mask_threshold).cpu().numpy()
                    masks[rows] = binary[:, 0]
                    multimask[rows] = binary[:, 1:4]
            if stop > n:
                j0 = max(start, n)
                for lo, full in self._upscaled(low_res[j0 - start :, :1], input_size, (h, w)):
                    jitter_masks[j0 - n + lo : j0 - n + lo + len(full)] = (
                        (full[:, 0] > self.model.mask_threshold).cpu().numpy()
                    )

        jitter_masks = jitter_masks.reshape(n, k, h, w)
        return [
            MaskOutput(
                mask=masks[i],
                iou_pred=float(iou_pred[i]),
                stability=float(stability[i]),
                multimask=multimask[i],
                jitter_masks=[jitter_masks[i, j] for j in range(k)],
            )
            for i in range(n)
        ]

    def _decode(self, **kwargs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All 4 mask tokens' low-res logits and IoU predictions for one chunk of prompts."""
        if self.share_image_work and type(self.mask_decoder) is MaskDecoder:
            return _predict_masks_one_image(self.mask_decoder, **kwargs)
        return self.mask_decoder.predict_masks(**kwargs)  # adapters: their own decoder, as given

    def _upscaled(self, low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]):
        """Yield ``(offset, logits)`` groups of ``Sam.postprocess_masks`` output, a few rows at a time."""
        s = self.model.image_encoder.img_size
        per_row = low_res.shape[1] * (s * s + original_size[0] * original_size[1])
        step = max(1, _UPSAMPLE_FLOATS // per_row)
        for lo in range(0, low_res.shape[0], step):
            part = low_res[lo : lo + step]
            part = F.interpolate(part, (s, s), mode="bilinear", align_corners=False)
            part = part[..., : input_size[0], : input_size[1]]
            yield lo, F.interpolate(part, original_size, mode="bilinear", align_corners=False)


def _predict_masks_one_image(
    decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.predict_masks`` without repeating the image once per prompt.

    Box prompts carry no mask input, so every prompt's dense embedding is the same learned
    no-mask embedding and the image side of the transformer's first block is the same for all
    prompts. Passed with batch 1, those projections (token->image keys and values, image->token
    queries) run once and broadcast over the B prompts inside ``Attention``; the image tokens
    become per prompt at that block's residual add. Same arithmetic as segment-anything, less
    of it: the B copies of the 256x64x64 embedding and 3 of the 10 image-sized linears per
    prompt are gone. Only valid when ``dense_prompt_embeddings`` is identical along the batch.
    """
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
    _, c, h, w = image_embeddings.shape
    src = image_embeddings + dense_prompt_embeddings[:1]
    hs, src = decoder.transformer(src, image_pe, tokens)  # src comes back as (B, h*w, c)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :]
    src = src.expand(tokens.shape[0], -1, -1).transpose(1, 2).reshape(tokens.shape[0], c, h, w)
    upscaled = decoder.output_upscaling(src)
    hyper_in = torch.stack(
        [decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in range(decoder.num_mask_tokens)],
        dim=1,
    )
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    return masks, decoder.iou_prediction_head(iou_token_out)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"sam: a view must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image


def _fits(hit: dict[str, torch.Tensor], original_size: tuple[int, int], sam: Sam) -> bool:
    """A cached entry matches this view's size and this model's embedding shape."""
    emb = hit.get("image_embeddings")
    if emb is None or "original_size" not in hit or "input_size" not in hit:
        return False
    grid = sam.image_encoder.img_size // 16
    return (
        tuple(hit["original_size"].tolist()) == original_size
        and tuple(emb.shape) == (1, sam.prompt_encoder.embed_dim, grid, grid)
    )
