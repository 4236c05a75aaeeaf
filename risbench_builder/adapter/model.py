"""The PA-SAM prompt adapter on segment-anything's ``MaskDecoder`` (xzz2/pa-sam ``mask_decoder_pa.py``).

Why: box prompts from detection datasets are often shifted, too large or too small. PA-SAM
adds, inside the decoder, a branch that looks at image detail (a guiding embedding from the
RGB image and its gradient), an uncertainty token and a refined token, and mines hard points
where the refined and the coarse mask disagree; those points join the sparse prompts, so the
decoder can correct a bad box from the image itself.

Placement follows the paper's code: inside the :class:`TwoWayTransformer`, in the second block,
right after its token-to-image attention. The adapter's token output is added to that
attention's output (plus 2k new point tokens), its detail-enriched keys to the image keys.
SAM's image encoder and prompt encoder are never touched; of SAM's decoder only the parts a
recipe names train (PA-SAM: ``output_upscaling``, ``output_hypernetworks_mlps``,
``mask_tokens``).

Differences from the paper's code, on purpose: grid, width and head count come from the SAM
given (so the tiny test model works); the per-image loop is vectorised (one image broadcast
over B prompts, or B images for B prompts); no ``.cuda()`` calls; point mining is an explicit
argument instead of the ``CURRENT_EPOCH`` environment variable; the Gumbel noise takes a
``torch.Generator`` so a resumed run draws the same points.

Imports torch and segment-anything only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from segment_anything.modeling.transformer import Attention
from torch import Tensor, nn
from torch.nn import functional as F

#: SAM decoder parts PA-SAM fine-tunes; everything else of SAM stays frozen.
PA_SAM_TRAINABLE: tuple[str, ...] = ("output_upscaling", "output_hypernetworks_mlps", "mask_tokens")
#: SAM decoder parts a recipe may name in ``trainable``.
DECODER_PARTS: tuple[str, ...] = ("transformer", "iou_token", "mask_tokens", "output_upscaling",
                                  "output_hypernetworks_mlps", "iou_prediction_head")
_GUIDE_CHANNELS = 4  # RGB + gradient magnitude
_TINY = float(np.finfo(np.float32).tiny)


# --------------------------------------------------------------------------- guiding input
def image_gradient(rgb: Tensor) -> Tensor:
    """Sobel gradient magnitude of the channel mean: Bx3xHxW -> Bx1xHxW (edges guide the adapter)."""
    gray = rgb.mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=rgb.device, dtype=rgb.dtype)
    kernels = torch.stack([kx, kx.t()])[:, None] / 8.0
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
    return torch.sqrt((g * g).sum(dim=1, keepdim=True) + 1e-12)


def guide_image(preprocessed: Tensor, size: int) -> Tensor:
    """SAM's preprocessed (normalised, padded) Bx3xSxS input -> Bx4x size x size guiding image.

    PA-SAM feeds the image resized to 256x256 (4x the 64x64 grid) plus a gradient channel.
    """
    rgb = F.interpolate(preprocessed.float(), (size, size), mode="bilinear", align_corners=False, antialias=True)
    return torch.cat([rgb, image_gradient(rgb)], dim=1)


class GuideFeatures:
    """The adapter's per-image input for :class:`~risbench_builder.segment.sam.SamSegmenter`'s
    hook: computed once per image from SAM's preprocessed input, cached beside the embedding."""

    names: tuple[str, ...] = ("guide",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, preprocessed: Tensor) -> dict[str, Tensor]:
        return {"guide": guide_image(preprocessed, self.size)}


# --------------------------------------------------------------------------- point mining
def _gumbel_topk(score: Tensor, k: int, tau: float, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Gumbel-softmax top-k (PA-SAM): indices of a hard k-hot and straight-through weights."""
    u = torch.rand(score.shape, generator=generator, device=score.device, dtype=torch.float32)
    logits = score.float() - torch.log(-torch.log(u.clamp(_TINY, 1.0 - 1e-7)))
    khot = torch.zeros_like(logits)
    onehot = torch.zeros_like(logits)
    for _ in range(k):
        logits = logits + torch.log(torch.clamp(1.0 - onehot, min=_TINY))
        onehot = torch.softmax(logits / tau, dim=-1)
        khot = khot + onehot
    idx = torch.topk(khot.detach(), k, dim=1).indices
    soft = khot.gather(1, idx)
    return idx, 1.0 + soft - soft.detach()  # value 1, gradient of the soft k-hot


def select_points(score: Tensor, k: int, *, gumbel: bool, tau: float = 1.0,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(B, HW) scores -> (B, k) indices and weights: Gumbel top-k when training, plain top-k else."""
    if gumbel:
        return _gumbel_topk(score, k, tau, generator)
    idx = torch.topk(score, k, dim=1).indices
    return idx, torch.ones(idx.shape, device=score.device, dtype=score.dtype)


def _gather(tokens: Tensor, idx: Tensor) -> Tensor:
    """tokens (B or 1, HW, C), idx (B, k) -> (B, k, C)."""
    tokens = tokens.expand(idx.shape[0], -1, -1)
    return tokens.gather(1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


def detail_attention(attn: Attention, q_in: Tensor, detail: Tensor, key_pe: Tensor,
                     key_pe_proj: Tensor | None = None) -> Tensor:
    """``attn(q=q_in, k=detail + key_pe, v=detail)`` without projecting the image-sized keys and values.

    Same arithmetic, reassociated (equal up to float rounding): with per-head key weights
    ``Wk_h`` a score is ``q_h . (Wk_h x + kpe_h) = (q_h Wk_h) . x + q_h . kpe_h``, and as each
    softmax row sums to 1, ``P_h (x Wv_h^T + bv_h) = (P_h x) Wv_h^T + bv_h``. So the few
    queries are mapped into the image's channel space (heads x queries rows) instead of all
    h*w detail tokens into the attention's (twice per prompt); ``key_pe`` (the same for every
    prompt and image) is projected once per call, or passed as ``key_pe_proj`` (``attn.k_proj(key_pe)``).
    ``q_in`` (B, nq, C), ``detail`` (B or 1, hw, C), ``key_pe`` (1, hw, C).
    """
    b, nq, c = q_in.shape
    hw = detail.shape[1]
    heads = attn.num_heads
    d = attn.internal_dim // heads
    q = attn.q_proj(q_in).view(b, nq, heads, d).transpose(1, 2) * (1.0 / math.sqrt(d))  # (B, H, nq, d)
    wk = attn.k_proj.weight.view(heads, d, c)
    wv = attn.v_proj.weight.view(heads, d, c)
    qw = torch.einsum("bhnd,hdc->bhnc", q, wk).reshape(b, heads * nq, c)
    kpe = attn.k_proj(key_pe[:1]) if key_pe_proj is None else key_pe_proj
    kpe = kpe.view(hw, heads, d).permute(1, 2, 0)  # (H, d, hw), bias included
    bias = torch.matmul(q.transpose(0, 1).reshape(heads, b * nq, d), kpe).view(heads, b, nq, hw)
    if detail.shape[0] == 1 and b > 1:  # one image for every prompt: one matmul over all rows
        scores = torch.matmul(qw.reshape(1, b * heads * nq, c), detail.transpose(1, 2)).view(b, heads, nq, hw)
    else:
        scores = torch.matmul(qw, detail.transpose(1, 2)).view(b, heads, nq, hw)
    p = torch.softmax(scores + bias.transpose(0, 1), dim=-1).view(b, heads * nq, hw)
    if detail.shape[0] == 1 and b > 1:
        pd = torch.matmul(p.reshape(1, b * heads * nq, hw), detail).view(b, heads, nq, c)
    else:
        pd = torch.matmul(p, detail).view(b, heads, nq, c)
    out = torch.einsum("bhnc,hdc->bnhd", pd, wv) + attn.v_proj.bias.view(heads, d)
    return attn.out_proj(out.reshape(b, nq, heads * d))


# --------------------------------------------------------------------------- modules
class _LayerNorm2d(LayerNorm2d):
    """segment-anything's ``LayerNorm2d`` (same parameters, same formula: biased variance, eps
    inside the root) as one fused ``layer_norm`` over the channels instead of nine tensor ops."""

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class PromptAdapter(nn.Module):
    """Uncertainty and refined tokens, coarse/refined/uncertainty maps and hard-point tokens."""

    def __init__(self, dim: int, num_heads: int, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.static_uncertain_token = nn.Embedding(1, dim)
        self.static_refined_token = nn.Embedding(1, dim)
        self.uncertain_mlp = MLP(dim * 2, dim // 4, dim, 3)
        self.refined_mlp = MLP(dim * 2, dim // 4, dim, 3)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=attention_downsample_rate)

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor, guiding: Tensor,
                point_pe: tuple[Tensor, Tensor], grid: tuple[int, int], n_points: int, mine: bool,
                gumbel: bool, tau: float, generator: torch.Generator | None, key_pe_proj: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Returns (token update, keys + detail-enriched keys, query PE with the point PEs, maps at the grid)."""
        b = queries.shape[0]
        h, w = grid
        detail = guiding * keys  # dense-prompt compensation: detail-enriched image keys
        attn = detail_attention(self.cross_attn_token_to_image, queries + query_pe, detail, key_pe, key_pe_proj)
        mask_token = attn[:, 1]  # single-output mask token (query index 1)
        u_tok = self.uncertain_mlp(torch.cat([self.static_uncertain_token.weight.expand(b, -1), mask_token], -1))
        r_tok = self.refined_mlp(torch.cat([self.static_refined_token.weight.expand(b, -1), mask_token], -1))
        # the three maps in one pass over the detail keys: uncertainty, refined, coarse
        grids = (torch.stack([u_tok, r_tok, mask_token], dim=1) @ detail.transpose(1, 2)).view(b, 3, h, w)
        uncertainty, refined, coarse = grids[:, 0:1], grids[:, 1:2], grids[:, 2:3]
        probs = torch.sigmoid(grids)  # the three maps' probabilities in one op
        gate = (probs[:, 0:1] >= 0.5).detach()
        maps = {"uncertainty": uncertainty, "refined": refined, "coarse": coarse,
                "final": torch.where(gate, refined, coarse)}
        attn = torch.cat([attn[:, :1], r_tok[:, None], attn[:, 2:]], dim=1)  # refined token replaces mask token 0
        new_keys = keys + detail
        if mine and n_points > 0:
            score = (probs[:, 0] * (probs[:, 1] - probs[:, 2])).flatten(1)
            # positive and negative points in one draw: rows 0..B-1 score, B..2B-1 -score (the
            # Gumbel noise comes from the generator in the same order as two separate draws)
            idx, wt = select_points(torch.cat([score, -score]), n_points, gumbel=gumbel, tau=tau, generator=generator)
            idx = torch.cat([idx[:b], idx[b:]], dim=1)  # (B, 2k): positive, then negative points
            wt = torch.cat([wt[:b], wt[b:]], dim=1)[..., None].to(keys.dtype)
            emb = torch.cat([point_pe[1].expand(n_points, -1), point_pe[0].expand(n_points, -1)])
            new_pe = _gather(key_pe, idx) * wt + emb
            new_tok = _gather(new_keys, idx)  # keys + detail at the points (the sum is needed anyway)
            query_pe = torch.cat([query_pe.expand(b, -1, -1), new_pe], dim=1)
            attn = torch.cat([attn, new_tok * wt], dim=1)  # content: keys + detail there
        return attn, new_keys, query_pe, maps


@dataclass
class AdapterOutput:
    masks: Tensor        # (B, 4, 4h, 4w) low-res logits; token 0 is the adapted single mask
    iou_pred: Tensor     # (B, 4)
    coarse: Tensor       # (B, 1, h, w) logits at the embedding grid
    refined: Tensor
    uncertainty: Tensor  # logits; sigmoid >= 0.5 marks where the refined mask is used
    final: Tensor


class PromptAdapterDecoder(nn.Module):
    """SAM's ``MaskDecoder`` (a private copy) with a guiding conv and a :class:`PromptAdapter`.

    ``predict_masks`` has ``MaskDecoder.predict_masks``'s signature plus ``guide`` (the
    :class:`GuideFeatures` tensor, 1 or B images), so it plugs into SamSegmenter's adapter hook.
    """

    def __init__(self, mask_decoder: MaskDecoder, prompt_encoder: PromptEncoder, n_points: int = 4,
                 trainable: Sequence[str] = PA_SAM_TRAINABLE, gumbel_tau: float = 1.0) -> None:
        super().__init__()
        unknown = sorted(set(trainable) - set(DECODER_PARTS))
        if unknown:
            raise ValueError(f"adapter: unknown decoder parts {unknown} in trainable; choose from {list(DECODER_PARTS)}")
        self.decoder = copy.deepcopy(mask_decoder)
        dim = self.decoder.transformer_dim
        heads = self.decoder.transformer.num_heads
        self.guiding_conv = nn.Sequential(
            nn.Conv2d(_GUIDE_CHANNELS, dim // 4, kernel_size=2, stride=2),
            _LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.Conv2d(dim // 4, dim, kernel_size=2, stride=2),
            _LayerNorm2d(dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, kernel_size=1),
        )
        self.prompt_adapter = PromptAdapter(dim, heads)
        # SAM's negative / positive point embeddings (frozen; they come from the verified SAM)
        self.register_buffer("point_neg", prompt_encoder.point_embeddings[0].weight.detach().clone(), persistent=False)
        self.register_buffer("point_pos", prompt_encoder.point_embeddings[1].weight.detach().clone(), persistent=False)
        self.n_points = n_points
        self.gumbel_tau = gumbel_tau
        self.trainable = tuple(trainable)
        self.mine_points = True  # the trainer switches mining off for the first epochs
        self.generator: torch.Generator | None = None  # Gumbel noise source while training
        for name, p in self.decoder.named_parameters():
            p.requires_grad_(name.split(".")[0] in self.trainable)

    # ------------------------------------------------------------ parameters
    def trainable_names(self) -> list[str]:
        """Names of the parameters an adapter file stores: the new modules and the unfrozen parts."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        own = dict(self.named_parameters())
        return {n: own[n].detach() for n in self.trainable_names()}

    def parameter_counts(self) -> dict[str, int]:
        """New (adapter) and unfrozen SAM parameters; their sum is what trains."""
        new = sum(p.numel() for n, p in self.named_parameters() if not n.startswith("decoder."))
        unfrozen = sum(p.numel() for p in self.decoder.parameters() if p.requires_grad)
        return {"new": new, "unfrozen_sam": unfrozen, "trainable": new + unfrozen,
                "frozen_sam_decoder": sum(p.numel() for p in self.decoder.parameters() if not p.requires_grad)}

    # ------------------------------------------------------------ forward
    def _guiding(self, guide: Tensor) -> Tensor:
        """Guiding embedding as (1 or B, hw, C) tokens. At inference sam-refine decodes an image in
        several chunks with the same ``guide`` tensor: the conv then runs once per image, not per chunk."""
        memo = getattr(self, "_guiding_memo", None)
        reuse = not self.training and not torch.is_grad_enabled()
        if reuse and memo is not None and memo[0] is guide:  # the memo holds guide, so its id stays unique
            return memo[1]
        out = self.guiding_conv(guide).flatten(2).transpose(1, 2).contiguous()  # (hw, C) rows: no copy per use
        self._guiding_memo = (guide, out) if reuse else None
        return out

    def _key_pe_proj(self, image_pe: Tensor, key_pe: Tensor) -> Tensor | None:
        """The adapter attention's projected key PE. At inference it depends only on ``image_pe``
        (the same tensor for every chunk of an image) and frozen weights: projected once."""
        if self.training or torch.is_grad_enabled():
            return None
        k = self.prompt_adapter.cross_attn_token_to_image.k_proj
        weights = (k.weight._version, k.bias._version)
        memo = getattr(self, "_key_pe_memo", None)
        if memo is not None and memo[0] is image_pe and memo[1] == weights:  # the memo holds image_pe
            return memo[2]
        out = k(key_pe[:1])
        self._key_pe_memo = (image_pe, weights, out)
        return out

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                      dense_prompt_embeddings: Tensor, guide: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``MaskDecoder.predict_masks`` with the adapter: (B, 4, 4h, 4w) logits, (B, 4) IoU."""
        out = self.forward(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, guide)
        return out.masks, out.iou_pred

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                dense_prompt_embeddings: Tensor, guide: Tensor | None = None, multimask: bool = True) -> AdapterOutput:
        """All outputs for B prompts on 1 image (broadcast) or on B images (one each).

        ``multimask=False`` (the training step): only token 0's mask, and no IoU prediction
        (``masks`` is (B, 1, 4h, 4w), ``iou_pred`` empty) -- the losses use nothing else, so
        the hypernetwork MLPs of tokens 1-3 and the frozen IoU head are skipped, not run for
        nothing (their gradients were exactly zero; with weight decay 0 Adam leaves them as is).
        """
        if guide is None:
            raise ValueError("adapter: the decoder needs the guiding image (GuideFeatures); none was given")
        dec = self.decoder
        t = dec.transformer
        bsz = sparse_prompt_embeddings.shape[0]
        _, c, h, w = image_embeddings.shape
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens.unsqueeze(0).expand(bsz, -1, -1), sparse_prompt_embeddings], dim=1)
        dense = dense_prompt_embeddings
        if image_embeddings.shape[0] == 1 and dense.shape[0] > 1 and dense.stride(0) == 0:
            dense = dense[:1]  # the expanded no-mask embedding: keep the image work shared
        src = image_embeddings + dense
        keys = src.flatten(2).transpose(1, 2)  # (1 or B, hw, c)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        guiding = self._guiding(guide.to(src.dtype))
        queries, query_pe = tokens, tokens

        queries, keys = t.layers[0](queries=queries, keys=keys, query_pe=query_pe, key_pe=key_pe)
        layer = t.layers[1]  # second block, with the adapter after its token-to-image attention
        q = queries + query_pe
        queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
        attn_out = layer.cross_attn_token_to_image(q=queries + query_pe, k=keys + key_pe, v=keys)
        gumbel = self.training and self.generator is not None
        pa_out, new_keys, query_pe, maps = self.prompt_adapter(
            queries, keys, query_pe, key_pe, guiding, (self.point_neg, self.point_pos), (h, w), self.n_points,
            self.mine_points, gumbel, self.gumbel_tau, self.generator, self._key_pe_proj(image_pe, key_pe))
        extra = pa_out.shape[1] - attn_out.shape[1]
        if extra:
            attn_out = F.pad(attn_out, (0, 0, 0, extra))
            queries = F.pad(queries, (0, 0, 0, extra))
        queries = layer.norm2(queries + attn_out + pa_out)
        keys = new_keys  # keys + detail: the detail-enriched keys join the image tokens
        queries = layer.norm3(queries + layer.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = layer.norm4(keys + layer.cross_attn_image_to_token(q=k, k=q, v=queries))
        q, k = queries + query_pe, keys + key_pe
        hs = t.norm_final_attn(queries + t.final_attn_token_to_image(q=q, k=k, v=keys))

        n_masks = dec.num_mask_tokens if multimask else 1
        src = keys.expand(bsz, -1, -1).transpose(1, 2).reshape(bsz, c, h, w)
        if torch.is_grad_enabled() and src.is_cpu:
            # a channels-last view; the upscaling's GELU backward then mixes layouts, ~10x slower
            # on the CPU than on plain NCHW (the stock decoder's layout is kept at inference and on GPUs)
            src = src.contiguous()
        upscaled = dec.output_upscaling(src)
        hyper_in = torch.stack([dec.output_hypernetworks_mlps[i](hs[:, 1 + i]) for i in range(n_masks)], dim=1)
        b, cu, hu, wu = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, cu, hu * wu)).view(b, n_masks, hu, wu)
        iou_pred = dec.iou_prediction_head(hs[:, 0]) if multimask else hs.new_zeros(b, 0)
        return AdapterOutput(masks, iou_pred, maps["coarse"], maps["refined"], maps["uncertainty"], maps["final"])


def build_adapter_decoder(mask_decoder: MaskDecoder, prompt_encoder: PromptEncoder, *, n_points: int = 4,
                          trainable: Sequence[str] = PA_SAM_TRAINABLE, gumbel_tau: float = 1.0,
                          seed: int = 0) -> PromptAdapterDecoder:
    """A :class:`PromptAdapterDecoder` whose new modules are initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PromptAdapterDecoder(mask_decoder, prompt_encoder, n_points, trainable, gumbel_tau)


def guide_size(prompt_encoder: PromptEncoder) -> int:
    """Side of the guiding image: 4x the embedding grid (256 for the real models, 64 for tiny)."""
    return 4 * int(prompt_encoder.image_embedding_size[0])
