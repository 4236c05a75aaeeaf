"""Mutual-interaction decoder (MID, paper Section IV-C, eq. 14-17).

V_ms: each stage projected to D (1x1 conv + GroupNorm, as Deformable DETR's input
projection) and flattened: (B, N, D) with N = sum(H_i W_i). Language L_v is projected to D.
Each cascaded layer (:class:`MIDLayer`, depth 3 by default; the paper's figure draws three):

- language-to-vision (eq. 15): L = FFN(SelfAttn(CrossAttn(L -> V_ms)))
- vision-to-language (eq. 16): V = FFN(MSDeformAttn(CrossAttn(V -> L)))

every sub-layer with a residual and LayerNorm (post-norm). As in Deformable DETR, a 2-D sine
position encoding plus a learned level embedding is added where visual tokens act as queries or
keys, and MSDeformAttn samples around each token's own position at every level.

Output (eq. 17): V_out = resample_to_stride_4(Conv1x1(V_hat + V_ms)) (each level convolved,
bilinearly resampled to (H_1, W_1) and summed); logits = <V_out(i, j), L_out> / sqrt(D) + b,
where L_out is the [CLS] token of L_hat. One logit channel: p(fg) = sigmoid, decided at 0.5;
the bias b starts at the prior log(0.1 / 0.9) (foreground is rare), a common detection init.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .msdeform import MSDeformAttn, reference_points


def sine_position_encoding(h: int, w: int, dim: int, device: torch.device | None = None,
                           temperature: float = 10000.0) -> Tensor:
    """DETR's normalised 2-D sine encoding, (h*w, dim): half for y, half for x."""
    if dim % 4:
        raise ValueError(f"position encoding width {dim} must be divisible by 4")
    n = dim // 2
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    t = temperature ** (2 * (torch.arange(n, device=device, dtype=torch.float32) // 2) / n)
    py, px = ys[:, None] / t, xs[:, None] / t
    py = torch.stack([py[:, 0::2].sin(), py[:, 1::2].cos()], -1).flatten(1)       # (h, n)
    px = torch.stack([px[:, 0::2].sin(), px[:, 1::2].cos()], -1).flatten(1)       # (w, n)
    return torch.cat([py[:, None, :].expand(h, w, n), px[None, :, :].expand(h, w, n)], -1).reshape(h * w, dim)


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MIDLayer(nn.Module):
    """One cascade step: language-to-vision then vision-to-language (post-norm residuals)."""

    def __init__(self, dim: int = 256, heads: int = 8, ffn_dim: int = 1024, n_levels: int = 4,
                 n_points: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.l_cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.l_self = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.l_ffn = FFN(dim, ffn_dim, dropout)
        self.v_cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.v_deform = MSDeformAttn(dim, n_levels, heads, n_points)
        self.v_ffn = FFN(dim, ffn_dim, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(6))
        self.drop = nn.Dropout(dropout)

    def forward(self, vis: Tensor, pos: Tensor, lang: Tensor, pad: Tensor, ref: Tensor,
                shapes: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        n = self.norms
        # eq. 15: language-to-vision
        lang = n[0](lang + self.drop(self.l_cross(lang, vis + pos, vis, need_weights=False)[0]))
        lang = n[1](lang + self.drop(self.l_self(lang, lang, lang, key_padding_mask=pad, need_weights=False)[0]))
        lang = n[2](lang + self.drop(self.l_ffn(lang)))
        # eq. 16: vision-to-language
        vis = n[3](vis + self.drop(self.v_cross(vis + pos, lang, lang, key_padding_mask=pad, need_weights=False)[0]))
        vis = n[4](vis + self.drop(self.v_deform(vis + pos, ref, vis, shapes)))
        vis = n[5](vis + self.drop(self.v_ffn(vis)))
        return vis, lang


class MID(nn.Module):
    """feats [(B, C_i, H_i, W_i)] x 4, lang (B, l, D_l), mask (B, l) -> logits (B, 1, H_1, W_1)."""

    def __init__(self, channels: Sequence[int], text_dim: int, dim: int = 256, depth: int = 3, heads: int = 8,
                 ffn_dim: int = 1024, n_points: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.n_levels = dim, len(channels)
        groups = math.gcd(32, dim)
        self.input_proj = nn.ModuleList(nn.Sequential(nn.Conv2d(c, dim, 1), nn.GroupNorm(groups, dim))
                                         for c in channels)
        self.text_proj = nn.Linear(text_dim, dim)
        self.level_embed = nn.Parameter(torch.randn(len(channels), dim) * 0.02)
        self.layers = nn.ModuleList(MIDLayer(dim, heads, ffn_dim, len(channels), n_points, dropout)
                                    for _ in range(depth))
        self.out_conv = nn.Conv2d(dim, dim, 1)
        self.bias = nn.Parameter(torch.full((1,), math.log(0.1 / 0.9)))     # prior p(fg) = 0.1

    def forward(self, feats: Sequence[Tensor], lang: Tensor, lang_mask: Tensor) -> Tensor:
        shapes = [tuple(f.shape[-2:]) for f in feats]
        b = feats[0].shape[0]
        dev = feats[0].device
        v_ms = torch.cat([p(f).flatten(2).transpose(1, 2) for p, f in zip(self.input_proj, feats)], 1)  # eq. 14
        pos = torch.cat([sine_position_encoding(h, w, self.dim, dev) + self.level_embed[i]
                         for i, (h, w) in enumerate(shapes)], 0)[None].to(v_ms.dtype)
        ref = reference_points(shapes, dev)[None, :, None, :].expand(b, -1, len(shapes), -1).to(v_ms.dtype)
        pad = ~lang_mask.bool()
        vis, lng = v_ms, self.text_proj(lang)
        for layer in self.layers:
            vis, lng = layer(vis, pos, lng, pad, ref, shapes)
        out = vis + v_ms
        h1, w1 = shapes[0]
        v_out = 0
        for lvl, part in enumerate(out.split([h * w for h, w in shapes], 1)):
            m = self.out_conv(part.transpose(1, 2).reshape(b, self.dim, *shapes[lvl]))
            v_out = v_out + (m if lvl == 0 else F.interpolate(m, size=(h1, w1), mode="bilinear", align_corners=False))
        l_out = lng[:, 0]                                                         # [CLS]
        logits = torch.einsum("bdhw,bd->bhw", v_out, l_out) / math.sqrt(self.dim) + self.bias
        return logits[:, None]
