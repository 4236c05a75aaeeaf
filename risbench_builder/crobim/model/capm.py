"""Context-aware prompt modulation (CAPM, paper Section IV-A, eq. 1-2).

Every stage is pooled to s x s (adaptive average pooling, s = 1 in the paper) and the stages
are concatenated over channels: V_e has s*s tokens of C_total = sum(C_i) channels. N_p = 4
learnable prompts P (width D_l, the text width) cross-attend to V_e (queries from P, keys and
values from V_e). The prompts P_v then join the word embeddings before BERT (see crobim.py).

[inferred] With s = 1 there is a single key, so a bare cross-attention gives N_p identical
prompts whatever P is; P_v = P + CrossAttn(P, V_e) keeps them distinct (a residual, as every
attention sub-layer in the paper's decoder has).

Shapes: feats [(B, C_i, H_i, W_i)] x 4 -> (B, N_p, D_l).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class CAPM(nn.Module):
    def __init__(self, in_channels: Sequence[int], text_dim: int, num_prompts: int = 4, pool_size: int = 1) -> None:
        super().__init__()
        self.num_prompts, self.pool_size = num_prompts, pool_size
        total = int(sum(in_channels))
        self.prompts = nn.Parameter(torch.randn(num_prompts, text_dim) * 0.02)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.w_q = nn.Linear(text_dim, text_dim)
        self.w_k = nn.Linear(total, text_dim)
        self.w_v = nn.Linear(total, text_dim)
        self.scale = text_dim ** -0.5

    def context(self, feats: Sequence[Tensor]) -> Tensor:
        """Eq. 1: V_e, (B, s*s, C_total)."""
        return torch.cat([self.pool(f) for f in feats], dim=1).flatten(2).transpose(1, 2)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        v_e = self.context(feats)
        q = self.w_q(self.prompts)[None]                                          # (1, N_p, D_l)
        attn = torch.softmax(q @ self.w_k(v_e).transpose(1, 2) * self.scale, -1)  # (B, N_p, s*s)
        return self.prompts[None] + attn @ self.w_v(v_e)                          # eq. 2 + residual
