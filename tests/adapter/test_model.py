"""adapter/model.py and losses.py: parameter counts, frozen parts, shapes, point mining, gradients."""

from __future__ import annotations

import pytest
import torch

from risbench_builder.adapter.losses import adapter_losses, boundary_band
from risbench_builder.adapter.model import (
    PA_SAM_TRAINABLE,
    build_adapter_decoder,
    guide_image,
    guide_size,
    select_points,
)
from risbench_builder.adapter.recipe import load_recipe
from risbench_builder.segment.sam_build import build_sam_decoder


def adapter_for(recipe: str):
    r = load_recipe(recipe)
    prompt, decoder = build_sam_decoder(r.sam.model)  # decoder side only: no 632 M vit_h encoder
    return build_adapter_decoder(decoder, prompt, n_points=r.adapter.points, trainable=r.adapter.trainable), prompt


@pytest.mark.parametrize("recipe, low, high", [("pa_sam_vit_h", 0.9e6, 1.1e6), ("pa_sam_vit_b", 0.9e6, 1.1e6),
                                               ("tiny", 1e4, 3e4)])
def test_trainable_parameter_count(recipe: str, low: float, high: float, capsys) -> None:
    adapter, prompt = adapter_for(recipe)
    counts = adapter.parameter_counts()
    with capsys.disabled():
        print(f"\n{recipe}: {counts}")
    assert low <= counts["trainable"] <= high  # vit_h: 1,007,008 (PA-SAM: about 1 M)
    assert counts["trainable"] == sum(p.numel() for p in adapter.parameters() if p.requires_grad)
    # only the recipe's decoder parts train; SAM's prompt encoder is not even part of the module
    for name, p in adapter.decoder.named_parameters():
        assert p.requires_grad == (name.split(".")[0] in PA_SAM_TRAINABLE), name
    assert not any(n.startswith("prompt") for n, _ in adapter.named_parameters() if "adapter" not in n)


def test_one_image_broadcast_equals_per_prompt_images() -> None:
    torch.manual_seed(0)
    adapter, prompt = adapter_for("tiny")
    adapter.eval()
    g = prompt.image_embedding_size[0]
    emb = torch.randn(1, 32, g, g)
    guide = guide_image(torch.randn(1, 3, 256, 256), guide_size(prompt))
    boxes = torch.tensor([[10.0, 20, 120, 90], [100, 100, 250, 200], [0, 0, 60, 60]])
    sparse, dense = prompt(points=None, boxes=boxes, masks=None)
    pe = prompt.get_dense_pe()
    with torch.no_grad():
        masks, iou = adapter.predict_masks(emb, pe, sparse, dense, guide=guide)
        full = adapter(emb.expand(3, -1, -1, -1), pe, sparse, dense.contiguous(), guide.expand(3, -1, -1, -1))
    assert masks.shape == (3, 4, 4 * g, 4 * g) and iou.shape == (3, 4)
    assert full.coarse.shape == full.refined.shape == full.uncertainty.shape == (3, 1, g, g)
    assert torch.allclose(masks, full.masks, atol=1e-4)
    with pytest.raises(ValueError, match="guiding image"):
        adapter.predict_masks(emb, pe, sparse, dense)


def test_point_mining_topk_and_gumbel() -> None:
    score = torch.randn(2, 64, requires_grad=True)
    idx, w = select_points(score, 4, gumbel=False)
    assert torch.equal(idx, torch.topk(score, 4, dim=1).indices) and torch.all(w == 1)
    gen = torch.Generator().manual_seed(0)
    idx, w = select_points(score, 4, gumbel=True, generator=gen)
    assert idx.shape == (2, 4) and all(len(set(row.tolist())) == 4 for row in idx)
    assert torch.allclose(w, torch.ones_like(w))  # straight-through: value 1 ...
    w.sum().backward()
    assert score.grad is not None and score.grad.abs().sum() > 0  # ... gradient of the soft k-hot
    again, _ = select_points(score.detach(), 4, gumbel=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, idx)  # seeded: a resumed run draws the same points


def test_losses_train_all_new_parts() -> None:
    torch.manual_seed(0)
    adapter, prompt = adapter_for("tiny")
    adapter.train()
    adapter.generator = torch.Generator().manual_seed(1)
    g = prompt.image_embedding_size[0]
    emb, guide = torch.randn(2, 32, g, g), torch.randn(2, 4, 4 * g, 4 * g)
    sparse, dense = prompt(points=None, boxes=torch.tensor([[10.0, 20, 120, 90], [0, 0, 60, 60]]), masks=None)
    out = adapter(emb, prompt.get_dense_pe(), sparse, dense, guide)
    target = torch.zeros(2, 1, 4 * g, 4 * g)
    target[:, :, 10:30, 12:40] = 1
    losses = adapter_losses(out.masks, out.coarse, out.refined, out.uncertainty, target,
                            {"mask": 1, "coarse": 1, "refined": 1, "uncertainty": 1})
    assert set(losses) == {"mask", "coarse", "refined", "uncertainty", "total"}
    losses["total"].backward()
    assert adapter.guiding_conv[0].weight.grad is not None
    assert adapter.prompt_adapter.uncertain_mlp.layers[0].weight.grad is not None
    assert adapter.decoder.output_hypernetworks_mlps[0].layers[0].weight.grad is not None
    band = boundary_band(target[:, :, ::4, ::4])
    assert band.sum() > 0 and band.max() == 1


def test_detail_attention_equals_sam_attention() -> None:
    """The reassociated adapter attention is SAM's Attention on (detail + key_pe, detail), up to rounding."""
    from segment_anything.modeling.transformer import Attention

    from risbench_builder.adapter.model import detail_attention

    torch.manual_seed(0)
    attn = Attention(32, 2, downsample_rate=2)
    key_pe = torch.randn(1, 64, 32)
    for nd in (3, 1):  # one detail map per prompt, or one image broadcast over the prompts
        q_in = torch.randn(3, 7, 32, requires_grad=True)
        detail = torch.randn(nd, 64, 32, requires_grad=True)
        ref = attn(q=q_in, k=detail + key_pe, v=detail)
        out = detail_attention(attn, q_in, detail, key_pe)
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
        g_ref = torch.autograd.grad(ref.square().sum(), (q_in, detail, attn.q_proj.weight, attn.v_proj.weight))
        g_out = torch.autograd.grad(out.square().sum(), (q_in, detail, attn.q_proj.weight, attn.v_proj.weight))
        for a, b in zip(g_out, g_ref):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("recipe", ["tiny", "pa_sam_vit_b"])
def test_fast_paths_match_the_reference_decoder(recipe: str, monkeypatch) -> None:
    """Outputs of the optimised decoder (reassociated adapter attention, fused guiding-conv layer
    norm, both point signs mined in one draw, mask-0-only training output) against the plain
    formulation: equal up to float rounding, in inference and in training (same Gumbel draws)."""
    from segment_anything.modeling.common import LayerNorm2d

    from risbench_builder.adapter import model as M

    torch.manual_seed(0)
    adapter, prompt = adapter_for(recipe)
    g, c = prompt.image_embedding_size[0], prompt.embed_dim
    boxes = torch.rand(3, 4).sort(-1).values * prompt.input_image_size[0]
    with torch.no_grad():
        sparse, dense = prompt(points=None, boxes=boxes, masks=None)
    pe = prompt.get_dense_pe()

    def reference_select(score, k, *, gumbel, tau=1.0, generator=None):  # one call per sign, as PA-SAM
        b = score.shape[0] // 2
        (i1, w1), (i2, w2) = (M._gumbel_topk(s, k, tau, generator) if gumbel else
                              (torch.topk(s, k, dim=1).indices, torch.ones(b, k)) for s in (score[:b], score[b:]))
        return torch.cat([i1, i2]), torch.cat([w1, w2])

    def run(emb, guide, train, fast):
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(M, "detail_attention", lambda attn, q, detail, key_pe, _proj=None: attn(q=q, k=detail + key_pe, v=detail))
                m.setattr(M._LayerNorm2d, "forward", LayerNorm2d.forward)
                m.setattr(M, "select_points", reference_select)
            adapter.train(train)
            adapter.generator = torch.Generator().manual_seed(5) if train else None
            with torch.set_grad_enabled(train):
                out = adapter(emb, pe, sparse, dense, guide)
                if train:
                    adapter.generator = torch.Generator().manual_seed(5)  # the same draws again
                one = adapter(emb, pe, sparse, dense, guide, multimask=False) if train else None
            adapter._guiding_memo = None
            return out, one

    for nb in (1, 3):
        emb, guide = torch.randn(nb, c, g, g), torch.randn(nb, 4, 4 * g, 4 * g)
        for train in (False, True):
            (fast, one), (ref, _) = run(emb, guide, train, True), run(emb, guide, train, False)
            for f in ("masks", "iou_pred", "coarse", "refined", "uncertainty", "final"):
                a, b = getattr(fast, f), getattr(ref, f)
                assert torch.allclose(a, b, atol=1e-5 * (1 + b.abs().max().item()), rtol=1e-4), (recipe, nb, train, f)
            if train:
                assert one.masks.shape[1] == 1 and one.iou_pred.numel() == 0
                assert torch.allclose(one.masks, fast.masks[:, :1], atol=1e-5 * (1 + fast.masks.abs().max().item()))
