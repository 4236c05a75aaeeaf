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
from risbench_builder.segment.sam import build_sam_decoder


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
