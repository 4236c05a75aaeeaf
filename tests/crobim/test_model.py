"""Shapes follow the paper's formulas; MSDeformAttn equals a dense reference; CAPM/LGFA/MID parts."""

from __future__ import annotations

import pytest
import torch

from risbench_builder.crobim.config import ModelConfig
from risbench_builder.crobim.model import build_model, count_parameters
from risbench_builder.crobim.model.backbones import HashTokenizer, ImageBackbone, TextEncoder
from risbench_builder.crobim.model.capm import CAPM
from risbench_builder.crobim.model.lgfa import LGFA, AttentionDeficitCompensation, LGFAStage
from risbench_builder.crobim.model.mid import MID, sine_position_encoding
from risbench_builder.crobim.model.msdeform import (MSDeformAttn, ms_deform_attn_core_pytorch,
                                                    ms_deform_attn_dense, reference_points)

CH = [8, 16, 24, 32]


def pyramid(b: int = 2, size: int = 64) -> list[torch.Tensor]:
    """(H_i, W_i) = (H / 2^(i+1), W / 2^(i+1)) for i = 1..4."""
    return [torch.randn(b, c, size // 2 ** (i + 2), size // 2 ** (i + 2)) for i, c in enumerate(CH)]


def test_msdeform_core_matches_dense_reference() -> None:
    torch.manual_seed(0)
    shapes = [(6, 5), (3, 4), (2, 2)]
    value = torch.randn(2, sum(h * w for h, w in shapes), 3, 4, dtype=torch.float64)
    # locations partly outside [0, 1] to exercise the zero padding
    loc = torch.rand(2, 7, 3, 3, 4, 2, dtype=torch.float64) * 1.3 - 0.15
    w = torch.rand(2, 7, 3, 3, 4, dtype=torch.float64)
    w = w / w.sum((-1, -2), keepdim=True)
    fast = ms_deform_attn_core_pytorch(value, shapes, loc, w)
    dense = ms_deform_attn_dense(value, shapes, loc, w)
    assert fast.shape == (2, 7, 12)
    torch.testing.assert_close(fast, dense, rtol=1e-9, atol=1e-9)


def test_msdeform_module_paths_agree_and_shapes() -> None:
    torch.manual_seed(1)
    shapes = [(8, 8), (4, 4), (2, 2), (1, 1)]
    s = sum(h * w for h, w in shapes)
    attn = MSDeformAttn(32, 4, 4, 3)
    with torch.no_grad():                                       # move away from the grid init
        attn.sampling_offsets.weight.normal_(0, 0.3)
        attn.attention_weights.weight.normal_(0, 0.3)
    x = torch.randn(2, s, 32)
    ref = reference_points(shapes)[None, :, None].expand(2, -1, 4, -1)
    out = attn(x, ref, x, shapes)
    attn.core = "dense"
    torch.testing.assert_close(out, attn(x, ref, x, shapes), rtol=1e-4, atol=1e-5)
    assert out.shape == (2, s, 32)
    assert ref.min() > 0 and ref.max() < 1


def test_capm_shapes_and_distinct_prompts() -> None:
    feats = pyramid()
    capm = CAPM(CH, 48, num_prompts=4, pool_size=1)
    assert capm.context(feats).shape == (2, 1, sum(CH))         # eq. 1: s*s tokens of C_total
    p = capm(feats)
    assert p.shape == (2, 4, 48)                                 # N_p x D_l
    assert not torch.allclose(p[:, 0], p[:, 1])
    assert CAPM(CH, 48, 4, pool_size=2).context(feats).shape == (2, 4, sum(CH))


def test_lgfa_stage_shapes_and_masked_words() -> None:
    torch.manual_seed(0)
    v = torch.randn(2, 16, 8, 8)
    lang = torch.randn(2, 6, 40)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    stage = LGFAStage(16, 40, l_m=6)
    v_l, attn = stage(v, lang, mask)
    assert v_l.shape == v.shape and attn.shape == (2, 6, 8, 8)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, 8, 8))
    assert attn[0, 3:].abs().max() == 0                          # padded words get no attention
    lang2 = lang.clone()
    lang2[0, 3:] = 100.0                                         # changing padded words changes nothing
    torch.testing.assert_close(stage(v, lang2, mask)[0][0], v_l[0])


def test_attention_deficit_compensation_touches_only_topk_regions() -> None:
    torch.manual_seed(0)
    feats = pyramid(size=128)                                    # stage 4 is 4x4
    attns = [torch.rand(2, 5, f.shape[-2], f.shape[-1]).softmax(1) for f in feats]
    mask = torch.ones(2, 5, dtype=torch.long)
    adc = AttentionDeficitCompensation(CH, width=8, top_k=3, heads=2)
    m = adc.deficit_map(attns, mask, (4, 4))
    assert m.shape == (2, 4, 4)
    out = adc(feats, attns, mask)
    assert all(torch.equal(a, b) for a, b in zip(out, feats))    # zero-initialised back projection
    for p in adc.proj_out:
        torch.nn.init.normal_(p.weight)
    out = adc(feats, attns, mask)
    top = m.flatten(1).topk(3, dim=1).indices
    for s, (a, b) in enumerate(zip(out, feats)):
        assert a.shape == b.shape
        changed = (a != b).any(1)                                # (B, H_i, W_i)
        r = a.shape[-1] // 4
        cells = changed.view(2, 4, r, 4, r).any(-1).any(2).flatten(1)   # back on the stage-4 grid
        for i in range(2):
            assert set(cells[i].nonzero().flatten().tolist()) <= set(top[i].tolist())
            assert cells[i].sum() >= 1


def test_lgfa_only_some_stages_compensated() -> None:
    feats = pyramid(size=128)
    lg = LGFA(CH, 40, l_m=6, top_k=2, stages=(3,), width=8, heads=2)
    for p in lg.adc.proj_out:
        torch.nn.init.normal_(p.weight)
    lang, mask = torch.randn(2, 6, 40), torch.ones(2, 6, dtype=torch.long)
    fused, attns = lg(feats, lang, mask)
    plain = [st(f, lang, mask)[0] for st, f in zip(lg.stages, feats)]
    assert [f.shape for f in fused] == [f.shape for f in feats]
    assert all(torch.equal(fused[i], plain[i]) for i in range(3)) and not torch.equal(fused[3], plain[3])


def test_mid_output_at_stride_four() -> None:
    feats = pyramid(size=64)
    mid = MID(CH, 40, dim=32, depth=2, heads=4, ffn_dim=64, n_points=2)
    lang, mask = torch.randn(2, 9, 40), torch.ones(2, 9, dtype=torch.long)
    mask[0, 5:] = 0
    out = mid(feats, lang, mask)
    assert out.shape == (2, 1, 16, 16)                           # (H_1, W_1) = (H/4, W/4)
    assert sine_position_encoding(3, 5, 32).shape == (15, 32)


def test_hash_tokenizer() -> None:
    ids, mask = HashTokenizer(4096)(["The tank at the top left.", ""], 6)
    assert ids.shape == mask.shape == (2, 6)
    assert ids[0, 0] == 101 and ids[0, 5] == 102 and mask[0].all()        # truncated to 4 words + CLS/SEP
    assert ids[1].tolist()[:2] == [101, 102] and mask[1].sum() == 2


def test_text_encoder_with_inputs_embeds() -> None:
    enc = TextEncoder(None, "tiny", max_tokens=20)
    ids, mask = enc.tokenize(["the small plane on the left"])
    assert ids.shape == (1, 20)
    out = enc(enc.embed(ids), mask)
    assert out.shape == (1, 20, 64)


def test_tiny_crobim_end_to_end_shapes(tiny_cfg) -> None:
    model = build_model(tiny_cfg.model)
    size = tiny_cfg.model.img_size
    ids, mask = model.tokenize(["the large ship at the bottom", "a tank"])
    image = torch.randn(2, 3, size, size)
    feats = model.backbone(image)
    assert [tuple(f.shape[-2:]) for f in feats] == [(size // 4, size // 4), (size // 8, size // 8),
                                                    (size // 16, size // 16), (size // 32, size // 32)]
    lang, lmask = model.encode_text(feats, ids, mask)
    n_p = tiny_cfg.model.num_prompts
    assert lang.shape == (2, 20 + n_p, model.text.dim)          # (l_m + N_p) x D_l
    assert lmask[:, 1:1 + n_p].all()
    logits = model(image, ids, mask)
    assert logits.shape == (2, 1, size, size)
    logits.mean().backward()
    assert model.capm.prompts.grad is not None and model.capm.prompts.grad.abs().sum() > 0
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_backbone_registry_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown image backbone"):
        ImageBackbone("resnet_nope")


@pytest.mark.slow
def test_paper_backbone_shapes_at_480() -> None:
    """c1..c4 of Swin-B at 480: [B,128,120,120] ... [B,1024,15,15] (LAVT ``lib/_utils.py`` comment)."""
    bb = ImageBackbone("swin_b", 480)
    with torch.no_grad():
        feats = bb(torch.randn(1, 3, 480, 480))
    assert [tuple(f.shape) for f in feats] == [(1, 128, 120, 120), (1, 256, 60, 60), (1, 512, 30, 30),
                                               (1, 1024, 15, 15)]
    assert ModelConfig().max_tokens == 20


class _Payload:
    """Unpickling this runs code: it touches ``marker`` (what a hostile .pth would do worse)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_backbone_weights_load_from_a_file_and_a_pickle_with_code_is_refused(tmp_path) -> None:
    """The real loading path (timm reads a local file) for .safetensors and .pth; a .pth whose
    pickle would run code, and a corrupt file, are one-line ValueErrors before timm opens them."""
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_convnext3")
    state = {k: v.clone() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pth")
    for file in ("w.safetensors", "w.pth"):
        bb = ImageBackbone("tiny", 64, tmp_path / file)
        loaded = dict(bb.body.named_parameters())      # features_only renames stem.0 -> stem_0
        assert torch.equal(loaded["stem_0.weight"], state["stem.0.weight"])
        assert torch.equal(loaded["stages_3.blocks.0.conv_dw.weight"], state["stages.3.blocks.0.conv_dw.weight"])
    with pytest.warns(UserWarning, match="random init"):
        fresh = ImageBackbone("tiny", 64)
    assert not torch.equal(dict(fresh.body.named_parameters())["stem_0.weight"], state["stem.0.weight"])
    marker = tmp_path / "ran"
    torch.save({"stem.0.weight": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"evil\.pth: not a plain weights file, refused \(UnpicklingError"):
        ImageBackbone("tiny", 64, tmp_path / "evil.pth")
    assert not marker.exists()
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.safetensors: not a plain weights file, refused \(SafetensorError"):
        ImageBackbone("tiny", 64, tmp_path / "junk.safetensors")
