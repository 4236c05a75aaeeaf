"""CroBIM (arXiv 2410.08613) assembled from its parts, implemented from the paper.

No official CroBIM code is public; this follows Section IV of the paper and, where it is
silent, its ancestors RMSIN / LAVT (Lsan2401/RMSIN, yz93/LAVT-RIS). Data flow:

    image -> backbone -> V_1..V_4 (strides 4, 8, 16, 32)
    V_1..V_4 -> CAPM -> N_p prompts;  [CLS] + prompts + words -> BERT (inputs_embeds) -> L_v
    V_i, L_v -> LGFA (+ attention-deficit compensation) -> V_li
    V_li, L_v -> MID -> logits at stride 4 -> bilinear upsample to the input size

``forward(image (B, 3, H, W), input_ids (B, T), attention_mask (B, T))`` -> logits (B, 1, H, W);
the prediction is ``logits > 0`` (p(fg) > 0.5, the 2-class argmax of RMSIN).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .backbones import ImageBackbone, TextEncoder
from .capm import CAPM
from .lgfa import LGFA
from .mid import MID


class CroBIM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ImageBackbone(cfg.backbone, cfg.img_size, cfg.backbone_weights, cfg.drop_path_rate)
        self.text = TextEncoder(cfg.text_encoder, cfg.text_config, cfg.max_tokens)
        channels, d_l = self.backbone.channels, self.text.dim
        self.capm = CAPM(channels, d_l, cfg.num_prompts, cfg.capm_pool)
        lg = cfg.lgfa
        self.lgfa = LGFA(channels, d_l, cfg.max_tokens + cfg.num_prompts, lg.key_dim, lg.compensation, lg.top_k,
                         [s - 1 for s in lg.stages], lg.width, lg.heads, lg.identity_init)
        m = cfg.mid
        self.mid = MID(channels, d_l, m.dim, m.depth, m.heads, m.ffn_dim, m.points, m.dropout)

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        return self.text.tokenize(texts)

    def encode_text(self, feats: Sequence[Tensor], input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """CAPM + BERT: (B, T + N_p, D_l) features and their mask; prompts sit right after [CLS]."""
        prompts = self.capm(feats)
        words = self.text.embed(input_ids)
        embeds = torch.cat([words[:, :1], prompts.to(words.dtype), words[:, 1:]], 1)
        ones = attention_mask.new_ones(attention_mask.shape[0], prompts.shape[1])
        mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], 1)
        return self.text(embeds, mask), mask

    def forward(self, image: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        feats = self.backbone(image)
        lang, mask = self.encode_text(feats, input_ids, attention_mask)
        feats, _ = self.lgfa(feats, lang, mask)
        logits = self.mid(feats, lang, mask)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=self.cfg.align_corners)
