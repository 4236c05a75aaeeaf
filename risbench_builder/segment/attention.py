"""A faster layout for SAM's image-to-token attention on the CPU (same parameters, same math).

In each two-way block the image tokens (64x64 = 4096 for the real models) attend to the few
prompt tokens (5 + prompts, + 8 hard points with the adapter). segment-anything computes the
scores as (B, heads, image, tokens) and takes the softmax over that last axis of length 5-15,
which PyTorch's CPU kernel handles row by row: on a 2-core x86 VM it was ~20x slower than the
same softmax laid out (B, heads, tokens, image) and taken over the token axis, and it was the
largest single cost of a tiny adapter training step. :class:`TokenAxisAttention` computes
exactly the stock formula in that layout; the result equals the stock module up to float
rounding. It is swapped in by class, so state dicts, checkpoints and parameter names are unchanged.
On a GPU the stock layout is kept: there the token-axis one was slower (BENCHMARKS.md).
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import Attention
from torch import Tensor


class TokenAxisAttention(Attention):
    """``Attention`` for many queries over few keys: scores kept as keys x queries."""

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if not q.is_cpu:
            return super().forward(q, k, v)
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        scores = (k @ q.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, H, keys, queries)
        attn = torch.softmax(scores, dim=-2)                           # over the keys, as the stock module
        return self.out_proj(self._recombine_heads(attn.transpose(-1, -2) @ v))


def use_token_axis_attention(decoder: MaskDecoder) -> MaskDecoder:
    """Swap every block's image-to-token attention of ``decoder`` for :class:`TokenAxisAttention` in place."""
    for layer in decoder.transformer.layers:
        attn = layer.cross_attn_image_to_token
        if type(attn) is Attention:
            attn.__class__ = TokenAxisAttention
    return decoder
