"""Language-guided feature aggregation (LGFA, paper Section IV-B, eq. 3-13).

Per stage (:class:`LGFAStage`, eq. 3-7): project the visual map to queries, the language to
keys L_ik and values L_iv; scores S_i = V_iq L_ik^T over pixels x words; softmax over words
scaled by 1/sqrt(l_m) (as the paper writes it; padded words masked), times L_iv, unflatten;
Gate = 1x1 conv + GELU; V_li = Conv1x1(Att_i) (element-wise) V_i.

Attention-deficit compensation (:class:`AttentionDeficitCompensation`, eq. 8-13): every
stage's attention map is resampled to stage-4 size (area averaging), M = sum_i |S'_i - S'_(i+1)|
(summed over valid words) and the top-K cells of M are the deficit regions. Each region's
features are gathered from the compensated stages (a stage-4 cell covers an 8x8 / 4x4 / 2x2 /
1x1 patch of stages 1-4, averaged: the resampling I), projected to a common width C_v and
concatenated over channels; LN + multi-head self-attention across the K regions with a
residual; projected back per stage (channel split), and put back at their places: the result
is replicated over the region's patch (I', nearest) and added to that stage's map.

[inferred] Attention maps are the softmax probabilities (comparable across stages, unlike raw
scores); the back projections start at zero, so compensation starts as the identity. K is not
given by the paper; it and the compensated stages are configurable (Table VI: all four best).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LGFAStage(nn.Module):
    """Eq. 3-7 for one stage: (B, C, H, W), (B, l, D_l), (B, l) -> V_li (B, C, H, W), attention (B, l, H, W)."""

    def __init__(self, vis_dim: int, text_dim: int, key_dim: int | None = None, l_m: int = 24,
                 identity_init: bool = False) -> None:
        super().__init__()
        key_dim = key_dim or vis_dim
        self.w_q = nn.Conv2d(vis_dim, key_dim, 1)
        self.w_k = nn.Linear(text_dim, key_dim)
        self.w_v = nn.Linear(text_dim, vis_dim)
        self.gate = nn.Sequential(nn.Conv2d(vis_dim, vis_dim, 1), nn.GELU())
        self.out = nn.Conv2d(vis_dim, vis_dim, 1)
        if identity_init:                     # Conv1x1(Att) starts at 1: V_li = V_i until language is learned
            nn.init.zeros_(self.out.weight)
            nn.init.ones_(self.out.bias)
        self.scale = float(l_m) ** -0.5

    def forward(self, v: Tensor, lang: Tensor, lang_mask: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = v.shape
        q = self.w_q(v).flatten(2).transpose(1, 2)                                # (B, HW, Ck)
        scores = q @ self.w_k(lang).transpose(1, 2) * self.scale                  # (B, HW, l)
        scores = scores.masked_fill(~lang_mask.bool()[:, None, :], torch.finfo(scores.dtype).min)
        attn = scores.softmax(-1)
        ctx = (attn @ self.w_v(lang)).transpose(1, 2).reshape(b, c, h, w)
        v_l = self.out(self.gate(ctx)) * v
        return v_l, attn.transpose(1, 2).reshape(b, -1, h, w)


class AttentionDeficitCompensation(nn.Module):
    """Eq. 8-13 over the four stages; ``stages`` are 0-based indices of the compensated stages."""

    def __init__(self, channels: Sequence[int], width: int = 256, top_k: int = 64,
                 stages: Sequence[int] = (0, 1, 2, 3), heads: int = 8) -> None:
        super().__init__()
        self.stages = tuple(sorted(stages))
        if not self.stages or any(s not in range(len(channels)) for s in self.stages):
            raise ValueError(f"compensation stages {stages} must be a non-empty subset of 0..{len(channels) - 1}")
        self.top_k, self.width = top_k, width
        d = width * len(self.stages)
        if d % heads:
            raise ValueError(f"compensation width {d} not divisible by {heads} heads")
        self.proj_in = nn.ModuleList(nn.Linear(channels[s], width) for s in self.stages)
        self.norm = nn.LayerNorm(d)
        self.msa = nn.MultiheadAttention(d, heads, batch_first=True)
        self.proj_out = nn.ModuleList(nn.Linear(width, channels[s]) for s in self.stages)
        for p in self.proj_out:
            nn.init.zeros_(p.weight)
            nn.init.zeros_(p.bias)

    @staticmethod
    def deficit_map(attns: Sequence[Tensor], lang_mask: Tensor, size: tuple[int, int]) -> Tensor:
        """Eq. 8-9: M (B, H4, W4) from attention maps [(B, l, H_i, W_i)]."""
        resampled = [F.adaptive_avg_pool2d(a, size) for a in attns]
        keep = lang_mask.to(resampled[0].dtype)[:, :, None, None]
        return sum(((a - b).abs() * keep).sum(1) for a, b in zip(resampled[:-1], resampled[1:]))

    def forward(self, feats: Sequence[Tensor], attns: Sequence[Tensor], lang_mask: Tensor) -> list[Tensor]:
        b = feats[0].shape[0]
        h4, w4 = feats[-1].shape[-2:]
        m = self.deficit_map(attns, lang_mask, (h4, w4)).flatten(1)             # (B, H4*W4)
        k = min(self.top_k, m.shape[1])
        idx = m.topk(k, dim=1).indices                                           # eq. 10
        tokens = []
        for s, proj in zip(self.stages, self.proj_in):
            pooled = F.adaptive_avg_pool2d(feats[s], (h4, w4)).flatten(2)        # (B, C, H4*W4)
            region = pooled.gather(2, idx[:, None, :].expand(-1, pooled.shape[1], -1))
            tokens.append(proj(region.transpose(1, 2)))                          # (B, K, C_v)
        x = torch.cat(tokens, -1)                                                # eq. 11
        y = self.norm(x)
        x = x + self.msa(y, y, y, need_weights=False)[0]                         # eq. 12
        out = list(feats)
        for part, s, proj in zip(x.split(self.width, -1), self.stages, self.proj_out):
            delta = proj(part).transpose(1, 2)                                   # (B, C, K)
            grid = delta.new_zeros(b, delta.shape[1], h4 * w4).scatter(2, idx[:, None, :].expand_as(delta), delta)
            grid = F.interpolate(grid.view(b, -1, h4, w4), size=feats[s].shape[-2:], mode="nearest")
            out[s] = feats[s] + grid                                             # eq. 13
        return out


class LGFA(nn.Module):
    """All four stages plus compensation: feats, lang, mask -> (fused feats, attention maps)."""

    def __init__(self, channels: Sequence[int], text_dim: int, l_m: int = 24, key_dim: int | None = None,
                 compensation: bool = True, top_k: int = 64, stages: Sequence[int] = (0, 1, 2, 3),
                 width: int = 256, heads: int = 8, identity_init: bool = False) -> None:
        super().__init__()
        self.stages = nn.ModuleList(LGFAStage(c, text_dim, key_dim, l_m, identity_init) for c in channels)
        self.adc = AttentionDeficitCompensation(channels, width, top_k, stages, heads) if compensation else None

    def forward(self, feats: Sequence[Tensor], lang: Tensor, lang_mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        fused, attns = zip(*(stage(f, lang, lang_mask) for stage, f in zip(self.stages, feats)))
        fused = list(fused)
        if self.adc is not None:
            fused = self.adc(fused, attns, lang_mask)
        return fused, list(attns)
