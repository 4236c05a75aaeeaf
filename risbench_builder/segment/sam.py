"""Box-prompted Segment Anything: the SAM segmenter (building and loading: ``sam_build.py``).

:class:`SamSegmenter` encodes each view once (or takes its embedding from the
:class:`~risbench_builder.segment.cache.EmbeddingCache`) and decodes all boxes and all
jittered boxes of the view in chunks, one decoder pass per chunk giving the single-mask
output (token 0) and the three multimask alternatives (tokens 1-3) together.
:meth:`SamSegmenter.segment_views` does the same for many views, the encoder running on
``encoder_batch`` of them per call (fixed, padded batches).

>>> seg = SamSegmenter("tiny")                                        # doctest: +SKIP
>>> out = seg.segment(View(rgb, key="sha..."), boxes, jitter)         # doctest: +SKIP
>>> out[0].mask.shape, out[0].multimask.shape, len(out[0].jitter_masks)  # doctest: +SKIP
((200, 300), (3, 200, 300), 4)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, Sam
from segment_anything.utils.amg import calculate_stability_score
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

from risbench_builder.devices import pick_device
from risbench_builder.segment.base import MaskOutput, MeasuredMask, View
from risbench_builder.segment.device_masks import ReducedMasks, collect, reduce_masks
from risbench_builder.segment.sam_build import build_sam_model, model_checksum

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

    ``encoder_batch``: views per image-encoder call in :meth:`segment_views` (always that many
    rows: a short batch is padded); :meth:`segment` and :meth:`image_inputs` encode one view.

    Counters for tests and benchmarks: ``encoder_calls`` (image encoder runs, one per batch) and
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
        encoder_batch: int = 8,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"sam: chunk_size must be >= 1, got {chunk_size}")
        if encoder_batch < 1:
            raise ValueError(f"sam: encoder_batch must be >= 1, got {encoder_batch}")
        self.model_name = model_name
        self.device = pick_device(device)
        self.model = build_sam_model(model_name, checkpoint, device=str(self.device), seed=seed)
        self.model_sha256 = model_checksum(model_name, checkpoint, seed)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.cache = cache
        self.chunk_size = chunk_size
        self.encoder_batch = encoder_batch
        self.set_adapter(adapter)
        self.encoder_calls = 0
        self.decoder_calls = 0
        self.feature_calls = 0
        # Decode with segment-anything's MaskDecoder code but the image once per chunk (see
        # _predict_masks_one_image); False runs MaskDecoder.predict_masks exactly as shipped.
        self.share_image_work = True
        # Views whose measured masks come back per host round trip (None: encoder_batch). 1 is how
        # they came back before (each view waited for), kept for the GPU benchmark's A/B arm.
        self.collect_views: int | None = None

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

    def flush(self) -> None:
        """Wait for the embedding cache's background writes (a no-op without a cache)."""
        if self.cache is not None:
            self.cache.flush()

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

    @property
    def host_transform(self) -> ResizeLongestSide:
        """The resize :meth:`host_input` applies, as a small picklable object: sam-refine's worker
        processes call its ``apply_image`` on each view and pass the result to :meth:`segment_views`."""
        return self.transform

    def host_input(self, image: np.ndarray) -> np.ndarray:
        """The host-side part of the encoder input: ``image`` (RGB uint8 HxWx3) resized so that its
        long side is the encoder's ``img_size`` (``ResizeLongestSide.apply_image``, a PIL resize).

        The CPU-bound part of preprocessing: worker processes may compute it and pass it as the
        fourth element of a :meth:`segment_views` item. Normalising and padding happen on the device.
        """
        return self.transform.apply_image(_check_image(image))

    def _input_batch(self, resized: Sequence[np.ndarray], rows: int) -> torch.Tensor:
        """``rows`` x 3 x S x S float32 encoder input on the device (``Sam.preprocess`` per image).

        Row i holds ``resized[i]`` normalised and zero-padded to S x S, the same elementwise
        arithmetic as ``Sam.preprocess`` on the single image; rows past ``len(resized)`` are zero
        (padding for a short batch, dropped after the encoder). The uint8 images are stacked in
        host memory as they come (HxWx3; pinned on CUDA), copied in one non-blocking transfer and
        made channels-first on the device: the host only copies rows (0.13 against 0.6 ms per
        1024 px view for a channels-first copy, 2-core VM), the device does the transpose.
        """
        s = self.model.image_encoder.img_size
        cuda = self.device.type == "cuda"
        # uninitialised: everything outside the images is zeroed on the device after normalising
        host = torch.empty((rows, s, s, 3), dtype=torch.uint8, pin_memory=cuda)
        for i, r in enumerate(resized):
            host[i, : r.shape[0], : r.shape[1]] = torch.from_numpy(r)
        x = host.to(self.device, non_blocking=True) if cuda else host
        x = x.permute(0, 3, 1, 2).contiguous()
        x = (x - self.model.pixel_mean) / self.model.pixel_std
        for i in range(rows):
            if i < len(resized):
                h, w = resized[i].shape[:2]
                x[i, :, h:, :] = 0.0
                x[i, :, :h, w:] = 0.0
            else:
                x[i] = 0.0
        return x

    def _encode(self, pre: torch.Tensor) -> torch.Tensor:
        """One image-encoder call on a preprocessed batch; float32 embeddings."""
        with self._autocast():
            emb = self.model.image_encoder(pre)
        self.encoder_calls += 1
        return emb.float()

    def _features(self, features: Any) -> tuple[Any, tuple[str, ...]]:
        if features == "adapter":
            features = getattr(self.adapter, "image_features", None)
        return features, (tuple(getattr(features, "names", ())) if features is not None else ())

    def _lookup(
        self, view: View, image: np.ndarray, names: tuple[str, ...]
    ) -> tuple[tuple[torch.Tensor, tuple[int, int], dict[str, torch.Tensor]] | None, dict[str, torch.Tensor] | None]:
        """The cached inputs when the cache holds the embedding and every extra, and the entry (or None)."""
        if self.cache is None:
            return None, None
        original_size = (int(image.shape[0]), int(image.shape[1]))
        hit = self.cache.get(view.key, self.model_sha256, check=lambda t: _fits(t, original_size, self.model))
        if hit is not None and all(n in hit for n in names):
            emb = self._to_device(hit["image_embeddings"]).float()
            extras = {n: self._to_device(hit[n]).float() for n in names}
            return (emb, tuple(int(v) for v in hit["input_size"].tolist()), extras), hit
        return None, hit

    def _finish(
        self,
        view: View,
        image: np.ndarray,
        hit: dict[str, torch.Tensor] | None,
        pre: torch.Tensor,
        emb: torch.Tensor,
        input_size: tuple[int, int],
        features: Any,
    ) -> tuple[torch.Tensor, tuple[int, int], dict[str, torch.Tensor]]:
        """Extras from the preprocessed 1x3xSxS ``pre``, and the cache entry stored."""
        extras: dict[str, torch.Tensor] = {}
        if features is not None:
            extras = {k: v.float() for k, v in features(pre).items()}
            self.feature_calls += 1
        if self.cache is not None:
            stored = {k: v for k, v in (hit or {}).items()}
            stored.update({
                "image_embeddings": emb,
                "original_size": torch.tensor(image.shape[:2], dtype=torch.int64),
                "input_size": torch.tensor(input_size, dtype=torch.int64),
                **extras,
            })
            self.cache.put(view.key, self.model_sha256, stored, {"model": self.model_name, "precision": self.precision})
        return emb, input_size, extras

    def _inputs_from(
        self, view: View, image: np.ndarray, resized: np.ndarray, hit: dict[str, torch.Tensor] | None, features: Any
    ) -> tuple[torch.Tensor, tuple[int, int], dict[str, torch.Tensor]]:
        """One view's inputs with a batch of one: encoded unless ``hit`` holds the embedding."""
        pre = self._input_batch([resized], 1)
        if hit is not None:  # embedding cached, extras missing
            emb = self._to_device(hit["image_embeddings"]).float()
        else:
            emb = self._encode(pre)
        return self._finish(view, image, hit, pre, emb, (int(resized.shape[0]), int(resized.shape[1])), features)

    @torch.inference_mode()
    def image_inputs(
        self, view: View, features: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None | str = "adapter"
    ) -> tuple[torch.Tensor, tuple[int, int], dict[str, torch.Tensor]]:
        """:meth:`embed` plus the extra per-image tensors of ``features`` (default: the adapter's).

        Extras live in the same cache entry as the embedding; a cached entry without them gets
        them computed from the image (no encoder call) and is stored again.
        """
        features, names = self._features(features)
        image = _check_image(view.image)
        ready, hit = self._lookup(view, image, names)
        if ready is not None:
            return ready
        return self._inputs_from(view, image, self.transform.apply_image(image), hit, features)

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def segment(self, view: View, boxes: np.ndarray, jitter: np.ndarray) -> list[MaskOutput]:
        """One :class:`MaskOutput` per box: token-0 mask, clipped IoU, stability, tokens 1-3, jitter masks."""
        image, boxes, jitter = self._prompts(view, boxes, jitter)
        if len(boxes) == 0:
            return []
        return self._decode_view(image, boxes, jitter, *self.image_inputs(view))

    @torch.inference_mode()
    def segment_views(self, items: Sequence[tuple[Any, ...]], measure: bool = False
                      ) -> list[list[MaskOutput]] | list[list[MeasuredMask]]:
        """:meth:`segment` for many views, the image encoder run on ``encoder_batch`` views at a time.

        ``measure``: hand back each box's masks as a :class:`MeasuredMask` reduced on the device
        (counts and the tight-box crop of the main mask: what signals and the catalog need), not
        as dense frames; sam-refine asks for that.

        ``items``: ``(view, boxes, jitter)`` or ``(view, boxes, jitter, resized)`` tuples, each
        exactly what :meth:`segment` takes (views of different images and sizes, tiny-box context
        crops included); ``resized``, when given and not None, is :meth:`host_input` of the view's
        image, computed elsewhere (e.g. in a worker process) and checked for its shape. Returns
        one :meth:`segment` result per item, in item order.

        Every item is checked before anything is encoded. Views with no boxes are not encoded.
        Views whose embedding (and the adapter's extras) the cache holds skip the encoder; the
        others are encoded in item order, ``encoder_batch`` per encoder call, the last batch padded
        with zero rows to the same size (fixed shapes for cudnn and compiled kernels), and stored
        in the cache as :meth:`segment` stores them. Each batch's views are decoded right after
        it, so at most ``encoder_batch`` embeddings are alive at once. With ``measure``, the masks of
        ``encoder_batch`` views at a time come back together (``device_masks.collect``: two host
        syncs per batch, not per view), so that on a GPU the host queues a whole batch's decoding
        behind its encoder run without waiting. Two items with the same view key are encoded twice
        (the cache is looked up before either is stored).

        Numbers: with ``encoder_batch=1`` the results are exactly :meth:`segment`'s. Every batch
        has ``encoder_batch`` rows, and on the CPU a view's embedding is bit-identical whichever
        row it takes and whichever views share its batch (tested), so results depend on
        ``encoder_batch`` but not on the order or grouping of items. Against a batch of one, a
        kernel may take another path by batch size: on the CPU vit_b measured bit-equal at 2 and 4;
        the tiny test model's neck convolution differs by up to 2.4e-6 (masks measured equal,
        iou_pred within 7e-8). On CUDA (bf16 autocast) nothing is measured yet.

        How the stage calls it: gather the views of several images in a stable order (each
        image's whole view with its non-tiny boxes, then its tiny-box crops; resized by
        :meth:`host_input` in the workers if they can), a multiple of ``encoder_batch`` views per
        call where possible (a short call pads its last batch), call this once, and map the
        results back by position (crop masks pasted into the image as today).
        """
        checked = [self._prompts(*item[:3]) for item in items]
        given: list[np.ndarray | None] = []
        for item, (image, _, _) in zip(items, checked):
            resized = item[3] if len(item) > 3 else None
            if resized is not None:
                resized = np.asarray(resized)
                s = self.model.image_encoder.img_size
                want = (*ResizeLongestSide.get_preprocess_shape(image.shape[0], image.shape[1], s), 3)
                if resized.dtype != np.uint8 or resized.shape != want:
                    raise ValueError(f"sam: resized input must be uint8 {want} for a view of {image.shape[:2]}, "
                                     f"got {resized.dtype} {resized.shape}")
            given.append(resized)

        features, names = self._features("adapter")
        results: list[Any] = [[] for _ in items]
        pending: list[tuple[int, np.ndarray]] = []                # views waiting for the encoder
        reduced: list[tuple[int, ReducedMasks]] = []              # measured on the device, not yet back

        def decoded(i: int, out: list[MaskOutput] | ReducedMasks) -> None:
            if not isinstance(out, ReducedMasks):
                results[i] = out
                return
            reduced.append((i, out))
            if len(reduced) >= (self.collect_views or self.encoder_batch):
                gather()

        def gather() -> None:
            # one pair of host copies for a whole batch of views: on a GPU the decoder's launches
            # queue up behind the encoder instead of waiting for each view's masks to come back
            for (i, _), measured in zip(reduced, collect([r for _, r in reduced])):
                results[i] = measured
            reduced.clear()

        def flush() -> None:
            pre = self._input_batch([r for _, r in pending], self.encoder_batch)
            emb = self._encode(pre)
            for row, (i, resized) in enumerate(pending):
                view, (image, boxes, jitter) = items[i][0], checked[i]
                inputs = self._finish(view, image, None, pre[row : row + 1], emb[row : row + 1],
                                      (int(resized.shape[0]), int(resized.shape[1])), features)
                decoded(i, self._decode_view(image, boxes, jitter, *inputs, measure=measure))
            pending.clear()

        for i, (item, (image, boxes, jitter)) in enumerate(zip(items, checked)):
            if len(boxes) == 0:
                continue
            view = item[0]
            ready, hit = self._lookup(view, image, names)
            if ready is None:
                resized = given[i] if given[i] is not None else self.transform.apply_image(image)
                if hit is None:
                    pending.append((i, resized))
                    if len(pending) == self.encoder_batch:
                        flush()
                    continue
                ready = self._inputs_from(view, image, resized, hit, features)
            decoded(i, self._decode_view(image, boxes, jitter, *ready, measure=measure))
        if pending:
            flush()
        if reduced:
            gather()
        return results

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the device without waiting for it: a plain copy from pageable host memory makes
        the host wait for the stream (every queued encoder and decoder kernel) before it returns."""
        if self.device.type != "cuda":
            return t.to(self.device)
        return t.pin_memory().to(self.device, non_blocking=True)

    def _prompts(self, view: View, boxes: np.ndarray, jitter: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The checked image, (N, 4) float32 boxes and (N, K, 4) float32 jitter."""
        image = _check_image(view.image)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        jitter = np.asarray(jitter, dtype=np.float32)
        if jitter.size == 0:
            jitter = np.zeros((n, 0, 4), np.float32)
        if jitter.ndim != 3 or jitter.shape[0] != n or jitter.shape[2] != 4:
            raise ValueError(f"sam: jitter must be (N, K, 4) with N={n} boxes, got shape {jitter.shape}")
        return image, boxes, jitter

    def _decode_view(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        jitter: np.ndarray,
        emb: torch.Tensor,
        input_size: tuple[int, int],
        extras: dict[str, torch.Tensor],
        measure: bool = False,
    ) -> list[MaskOutput] | ReducedMasks:
        """All boxes and jittered boxes of one view decoded against its embedding, in chunks.

        The masks are made on the device; ``measure`` reduces them there (``reduce_masks``, no host
        sync: ``collect`` brings them back later, with other views'), else they come back whole."""
        h, w = int(image.shape[0]), int(image.shape[1])
        n, k = len(boxes), jitter.shape[1]
        prompts = np.concatenate([boxes, jitter.reshape(-1, 4)], axis=0)  # N main boxes, then N*K jittered
        prompts[:, 0::2] = prompts[:, 0::2].clip(0, w)
        prompts[:, 1::2] = prompts[:, 1::2].clip(0, h)
        coords = self._to_device(self.transform.apply_boxes_torch(torch.from_numpy(prompts), (h, w)))

        on = {"device": self.device}
        masks = torch.zeros((n, h, w), dtype=torch.bool, **on)
        multimask = torch.zeros((n, 3, h, w), dtype=torch.bool, **on)
        jitter_masks = torch.zeros((n * k, h, w), dtype=torch.bool, **on)
        iou_pred = torch.zeros(n, dtype=torch.float32, **on)
        stability = torch.zeros(n, dtype=torch.float32, **on)
        pe = self.model.prompt_encoder.get_dense_pe()
        chunk = self.effective_chunk_size
        threshold = self.model.mask_threshold
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
                iou_pred[start : start + n_main] = iou[:n_main, 0].clamp(0.0, 1.0)
                for lo, full in self._upscaled(low_res[:n_main], input_size, (h, w)):
                    rows = slice(start + lo, start + lo + len(full))
                    stab = calculate_stability_score(full[:, 0], threshold, 1.0)
                    stability[rows] = torch.nan_to_num(stab, nan=0.0)  # empty mask -> 0
                    binary = full > threshold
                    masks[rows] = binary[:, 0]
                    multimask[rows] = binary[:, 1:4]
            if stop > n:
                j0 = max(start, n)
                for lo, full in self._upscaled(low_res[j0 - start :, :1], input_size, (h, w)):
                    jitter_masks[j0 - n + lo : j0 - n + lo + len(full)] = full[:, 0] > threshold

        if measure:
            return reduce_masks(masks, multimask, jitter_masks.reshape(n, k, h, w), iou_pred, stability)
        masks_np, multimask_np = masks.cpu().numpy(), multimask.cpu().numpy()
        jitter_np = jitter_masks.reshape(n, k, h, w).cpu().numpy()
        iou_np, stability_np = iou_pred.cpu().numpy().astype(np.float64), stability.cpu().numpy().astype(np.float64)
        return [
            MaskOutput(
                mask=masks_np[i],
                iou_pred=float(iou_np[i]),
                stability=float(stability_np[i]),
                multimask=multimask_np[i],
                jitter_masks=[jitter_np[i, j] for j in range(k)],
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
