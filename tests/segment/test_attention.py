"""TokenAxisAttention computes segment-anything's Attention in another layout: same outputs and
gradients (up to float rounding), same parameter names, and every SAM this package builds uses it
for the image-to-token attention only."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything.modeling.transformer import Attention  # noqa: E402

from risbench_builder.segment.attention import TokenAxisAttention, use_token_axis_attention  # noqa: E402
from risbench_builder.segment.sam_build import build_sam_tiny  # noqa: E402


@pytest.mark.parametrize("queries,keys,downsample", [(256, 7, 2), (64, 15, 2), (9, 9, 1)])
def test_token_axis_attention_equals_stock(queries: int, keys: int, downsample: int) -> None:
    torch.manual_seed(0)
    stock = Attention(32, 4, downsample_rate=downsample)
    fast = copy.deepcopy(stock)
    fast.__class__ = TokenAxisAttention
    q = torch.randn(3, queries, 32, requires_grad=True)
    k = torch.randn(3, keys, 32, requires_grad=True)
    v = torch.randn(3, keys, 32, requires_grad=True)
    out_stock, out_fast = stock(q, k, v), fast(q, k, v)
    torch.testing.assert_close(out_fast, out_stock, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out_stock)
    grads_stock = torch.autograd.grad(out_stock, [q, k, v, *stock.parameters()], g)
    grads_fast = torch.autograd.grad(out_fast, [q, k, v, *fast.parameters()], g)
    for a, b in zip(grads_fast, grads_stock):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # sums over 768 rows


def test_built_sam_uses_it_for_image_to_token_only() -> None:
    sam = build_sam_tiny()
    layers = sam.mask_decoder.transformer.layers
    assert all(type(layer.cross_attn_image_to_token) is TokenAxisAttention for layer in layers)
    assert all(type(layer.cross_attn_token_to_image) is Attention and type(layer.self_attn) is Attention
               for layer in layers)
    before = sam.mask_decoder.state_dict()
    use_token_axis_attention(sam.mask_decoder)  # idempotent; names and tensors unchanged
    assert list(sam.mask_decoder.state_dict()) == list(before)
    assert build_sam_tiny().state_dict().keys() == sam.state_dict().keys()
