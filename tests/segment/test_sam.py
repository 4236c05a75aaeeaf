"""segment/sam_build.py (registry, safe checkpoint loading) and segment/sam.py (the SAM segmenter) on the tiny model.

The tiny model has random weights, so these tests check shapes, dtypes, counts, transforms and
data flow against segment-anything's own ``SamPredictor``, never mask quality.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything import SamPredictor  # noqa: E402
from segment_anything import sam_model_registry as reference_registry  # noqa: E402
from segment_anything.utils.amg import calculate_stability_score  # noqa: E402

from risbench_builder.segment.base import MaskOutput, Segmenter, View  # noqa: E402
from risbench_builder.segment.cache import EmbeddingCache  # noqa: E402
from risbench_builder.segment.signals import measure  # noqa: E402
from risbench_builder.segment.sam import SamSegmenter  # noqa: E402
from risbench_builder.segment.sam_build import (  # noqa: E402
    SamCheckpointError,
    build_sam_model,
    model_checksum,
    sam_model_registry,
)


# ------------------------------------------------------------------------- helpers
def scene(h: int, w: int, n: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright rectangles on a textured background; returns the RGB image and their xyxy boxes."""
    rng = np.random.default_rng(seed)
    image = rng.integers(20, 90, (h, w, 3), dtype=np.uint8)
    image[::7] //= 2  # stripes, so the background is not plain noise
    boxes = []
    for i in range(n):
        bw, bh = int(rng.integers(w // 8, w // 3)), int(rng.integers(h // 8, h // 3))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        image[y0 : y0 + bh, x0 : x0 + bw] = (200 + 15 * (i % 4), 180, 160 - 30 * (i % 4))
        boxes.append((x0, y0, x0 + bw, y0 + bh))
    return image, np.asarray(boxes, np.float32)


def jittered(boxes: np.ndarray, k: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(N, K, 4) boxes with HQ-SAM-style noise (10 % of the box size), clipped to the view."""
    rng = np.random.default_rng(seed)
    size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)[:, None, :]
    out = boxes[:, None, :] + rng.uniform(-0.1, 0.1, (len(boxes), k, 4)) * size
    out[..., 0::2] = out[..., 0::2].clip(0, w)
    out[..., 1::2] = out[..., 1::2].clip(0, h)
    return out.astype(np.float32)


def sharpen(seg: SamSegmenter, factor: float = 60.0) -> SamSegmenter:
    """Scale the tiny decoder's mask logits (random init gives |logit| < 0.1) so the masks and
    the stability score at offset 1.0 are not trivially empty/zero."""
    with torch.no_grad():
        for mlp in seg.model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(factor)
            mlp.layers[-1].bias.mul_(factor)
    return seg


class Payload:
    """Anything that is not a tensor: torch.load(weights_only=True) must refuse it."""

    def __init__(self) -> None:
        self.note = "arbitrary object"


# ------------------------------------------------------------------------ registry
@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_registry_matches_segment_anything(name: str) -> None:
    with torch.device("meta"):  # shapes only, no memory and no init cost
        ours, ref = sam_model_registry[name](), reference_registry[name]()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    # the same modules, but the image-to-token attention computed in another layout (segment/attention.py)
    assert str(ours).replace("TokenAxisAttention", "Attention") == str(ref)
    assert [b.attn.num_heads for b in ours.image_encoder.blocks] == [b.attn.num_heads for b in ref.image_encoder.blocks]
    assert [b.window_size for b in ours.image_encoder.blocks] == [b.window_size for b in ref.image_encoder.blocks]


def test_tiny_model() -> None:
    sam = build_sam_model("tiny")
    assert sam.image_encoder.img_size == 256 and not sam.training
    assert sum(p.numel() for p in sam.parameters()) < 1_000_000
    again = build_sam_model("tiny")
    other = build_sam_model("tiny", seed=1)
    sd, sd2, sd3 = sam.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert not all(torch.equal(sd[k], sd3[k]) for k in sd)


def test_building_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_sam_model("tiny", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown SAM model 'vit_x'"):
        build_sam_model("vit_x")


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_pth(tmp_path) -> None:
    sam = build_sam_model("tiny", seed=3)
    path = tmp_path / "tiny.pth"
    torch.save(sam.state_dict(), path)
    loaded = build_sam_model("tiny", checkpoint=path, seed=0)  # the file wins over the seed
    ref = sam.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())
    assert model_checksum("tiny", path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    sam = build_sam_model("tiny", seed=3)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, str(path))
    loaded = build_sam_model("tiny", checkpoint=path)
    ref = sam.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())
    assert model_checksum("tiny", path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_nested_training_checkpoint(tmp_path) -> None:
    sam = build_sam_model("tiny", seed=3)
    path = tmp_path / "epoch_3.pth"
    torch.save({"model": sam.state_dict()}, path)
    loaded = build_sam_model("tiny", checkpoint=path)
    assert torch.equal(loaded.mask_decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)


def test_pickled_object_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(2), "extra": Payload()}, path)
    with pytest.raises(SamCheckpointError, match=r"refused by torch.load\(weights_only=True\)") as err:
        build_sam_model("tiny", checkpoint=path)
    assert "\n" not in str(err.value)


def test_missing_checkpoint_says_what_to_do(tmp_path) -> None:
    with pytest.raises(SamCheckpointError) as err:
        build_sam_model("vit_b", checkpoint=tmp_path / "nope.pth")
    msg = str(err.value)
    assert "\n" not in msg
    assert "download sam_vit_b_01ec64.pth from https://dl.fbaipublicfiles.com/segment_anything/" in msg
    assert "refine.checkpoint" in msg
    with pytest.raises(SamCheckpointError, match="not found"):
        model_checksum("vit_b", tmp_path / "nope.pth")


def test_garbage_and_mismatched_checkpoints(tmp_path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(SamCheckpointError, match="not a plain tensor state_dict"):
        build_sam_model("tiny", checkpoint=junk)
    bad_st = tmp_path / "junk.safetensors"
    bad_st.write_bytes(b"\x00" * 5)
    with pytest.raises(SamCheckpointError, match="not a readable safetensors file"):
        build_sam_model("tiny", checkpoint=bad_st)
    state = build_sam_model("tiny").state_dict()
    state["image_encoder.pos_embed"] = torch.zeros(1, 8, 8, 8)
    del state["mask_decoder.iou_token.weight"]
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(SamCheckpointError, match=r"does not fit this model \(1 missing, 0 unexpected, 1 mismatched"):
        build_sam_model("tiny", checkpoint=wrong)


def test_random_weights_checksum() -> None:
    a = model_checksum("tiny", None, seed=0)
    assert a == model_checksum("tiny", None, seed=0) == hashlib.sha256(b"tiny\x000\x00random").hexdigest()
    assert a != model_checksum("tiny", None, seed=1) != model_checksum("vit_b", None, seed=1)


# ------------------------------------------------------------------------ segmenter
@pytest.mark.parametrize("hw", [(256, 256), (200, 300), (300, 180)])
def test_segment_shapes_and_counts(hw: tuple[int, int]) -> None:
    h, w = hw
    image, boxes = scene(h, w, n=3)
    k = 4
    seg = SamSegmenter("tiny", chunk_size=5)
    as_protocol: Segmenter = seg  # the protocol is not runtime_checkable: check its members
    assert all(hasattr(as_protocol, a) for a in ("name", "model_sha256", "segment"))
    assert seg.name == "sam:tiny" and len(seg.model_sha256) == 64
    out = seg.segment(View(image, key=f"scene-{h}x{w}"), boxes, jittered(boxes, k, h, w))
    assert seg.encoder_calls == 1
    assert seg.decoder_calls == math.ceil((3 + 3 * k) / 5) == 3
    assert len(out) == 3
    for o in out:
        assert isinstance(o, MaskOutput)
        assert o.mask.shape == (h, w) and o.mask.dtype == bool
        assert o.multimask.shape == (3, h, w) and o.multimask.dtype == bool
        assert len(o.jitter_masks) == k
        assert all(m.shape == (h, w) and m.dtype == bool for m in o.jitter_masks)
        assert isinstance(o.iou_pred, float) and 0.0 <= o.iou_pred <= 1.0
        assert isinstance(o.stability, float) and 0.0 <= o.stability <= 1.0


def test_matches_sam_predictor() -> None:
    """Token 0, tokens 1-3, clipped IoU, stability and jitter masks equal segment-anything's own path."""
    h, w, k = 200, 300, 4
    image, boxes = scene(h, w, n=3, seed=1)
    jit = jittered(boxes, k, h, w, seed=1)
    seg = sharpen(SamSegmenter("tiny", seed=5, chunk_size=64))
    out = seg.segment(View(image, key="s"), boxes, jit)

    predictor = SamPredictor(seg.model)
    predictor.set_image(image)
    prompts = torch.from_numpy(np.concatenate([boxes, jit.reshape(-1, 4)]))
    tb = predictor.transform.apply_boxes_torch(prompts, (h, w))
    logits, iou, _ = predictor.predict_torch(None, None, boxes=tb, multimask_output=False, return_logits=True)
    multi, _, _ = predictor.predict_torch(None, None, boxes=tb, multimask_output=True)
    main = logits[:3, 0] > 0
    assert 0.05 < float(main.float().mean()) < 0.95  # sharpened: the comparison is not trivially empty/full
    assert np.array_equal(np.stack([o.mask for o in out]), main.numpy())
    assert np.array_equal(np.stack([o.multimask for o in out]), multi[:3].numpy())
    jit_masks = np.stack([m for o in out for m in o.jitter_masks])
    assert np.array_equal(jit_masks, (logits[3:, 0] > 0).numpy())
    assert [o.iou_pred for o in out] == pytest.approx(iou[:3, 0].clamp(0, 1).tolist(), abs=1e-6)
    stab = torch.nan_to_num(calculate_stability_score(logits[:3, 0], 0.0, 1.0), nan=0.0)
    assert [o.stability for o in out] == pytest.approx(stab.tolist(), abs=1e-6)
    assert any(0.0 < o.stability < 1.0 for o in out)

    seg.share_image_work = False  # MaskDecoder.predict_masks as shipped, image repeated per prompt
    stock = seg.segment(View(image, key="s"), boxes, jit)
    assert all(np.array_equal(x.mask, y.mask) and x.iou_pred == y.iou_pred for x, y in zip(out, stock))


def test_chunk_size_changes_calls_not_results() -> None:
    h, w = 200, 300
    image, boxes = scene(h, w, n=3, seed=2)
    jit = jittered(boxes, 2, h, w, seed=2)
    one = sharpen(SamSegmenter("tiny", seed=5, chunk_size=64))
    many = sharpen(SamSegmenter("tiny", seed=5, chunk_size=2))
    a = one.segment(View(image, key="s"), boxes, jit)
    b = many.segment(View(image, key="s"), boxes, jit)
    assert (one.decoder_calls, many.decoder_calls) == (1, 5)
    for x, y in zip(a, b):
        # batched matmuls may round differently by batch size: allow a handful of boundary pixels
        assert (x.mask != y.mask).mean() < 1e-3
        assert all((p != q).mean() < 1e-3 for p, q in zip(x.jitter_masks, y.jitter_masks))


def test_cpu_chunks_are_capped_for_big_decoders() -> None:
    assert SamSegmenter("tiny", chunk_size=64).effective_chunk_size == 64  # 32-dim, 16x16 grid: no cap
    big = SamSegmenter("vit_b", chunk_size=64, device="cpu")  # 256 x 64 x 64 per prompt
    assert big.effective_chunk_size == 3
    image, boxes = scene(128, 128, n=2)
    big.model.image_encoder.forward = lambda x: torch.zeros(1, 256, 64, 64)  # skip the slow encoder
    big.segment(View(image, key="s"), boxes, jittered(boxes, 2, 128, 128))
    assert big.decoder_calls == math.ceil(6 / 3)


def test_deterministic() -> None:
    image, boxes = scene(200, 300, n=4, seed=3)
    jit = jittered(boxes, 4, 200, 300, seed=3)
    a = SamSegmenter("tiny", seed=5, chunk_size=7).segment(View(image, key="s"), boxes, jit)
    b = SamSegmenter("tiny", seed=5, chunk_size=7).segment(View(image, key="s"), boxes, jit)
    for x, y in zip(a, b):
        assert np.array_equal(x.mask, y.mask) and np.array_equal(x.multimask, y.multimask)
        assert all(np.array_equal(p, q) for p, q in zip(x.jitter_masks, y.jitter_masks))
        assert (x.iou_pred, x.stability) == (y.iou_pred, y.stability)


def test_cache_skips_the_encoder(tmp_path) -> None:
    image, boxes = scene(200, 300, n=3, seed=4)
    jit = jittered(boxes, 4, 200, 300, seed=4)
    view = View(image, key="image-sha256:crop=0,0,300,200")
    first = SamSegmenter("tiny", seed=5, cache=EmbeddingCache(tmp_path))
    a = first.segment(view, boxes, jit)
    assert first.encoder_calls == 1 and (first.cache.hits, first.cache.misses) == (0, 1)

    second = SamSegmenter("tiny", seed=5, cache=EmbeddingCache(tmp_path))
    b = second.segment(view, boxes, jit)
    assert second.encoder_calls == 0 and (second.cache.hits, second.cache.misses) == (1, 0)
    for x, y in zip(a, b):
        assert np.array_equal(x.mask, y.mask) and np.array_equal(x.multimask, y.multimask)
        assert all(np.array_equal(p, q) for p, q in zip(x.jitter_masks, y.jitter_masks))
        assert (x.iou_pred, x.stability) == (y.iou_pred, y.stability)

    other_weights = SamSegmenter("tiny", seed=6, cache=EmbeddingCache(tmp_path))
    other_weights.segment(view, boxes, jit)
    assert other_weights.encoder_calls == 1 and other_weights.cache.misses == 1
    assert len(EmbeddingCache(tmp_path)) == 2


def test_cache_entry_of_another_size_is_not_used(tmp_path) -> None:
    image, boxes = scene(200, 300, n=2, seed=4)
    seg = SamSegmenter("tiny", cache=EmbeddingCache(tmp_path))
    seg.segment(View(image, key="same-key"), boxes, np.zeros((2, 0, 4)))
    small, small_boxes = scene(120, 160, n=2, seed=4)
    seg.segment(View(small, key="same-key"), small_boxes, np.zeros((2, 0, 4)))  # stale key: re-encode
    assert seg.encoder_calls == 2 and seg.cache.misses == 2


def test_no_boxes_and_no_jitter() -> None:
    image, boxes = scene(128, 160, n=2)
    seg = SamSegmenter("tiny")
    assert seg.segment(View(image, key="s"), np.zeros((0, 4)), np.zeros((0, 4, 4))) == []
    out = seg.segment(View(image, key="s"), boxes, np.zeros((2, 0, 4)))
    assert len(out) == 2 and all(o.jitter_masks == [] for o in out)
    assert seg.decoder_calls == 1


def test_bad_inputs() -> None:
    image, boxes = scene(128, 160, n=2)
    seg = SamSegmenter("tiny")
    with pytest.raises(ValueError, match="RGB uint8"):
        seg.segment(View(image.astype(np.float32), key="s"), boxes, np.zeros((2, 0, 4)))
    with pytest.raises(ValueError, match=r"jitter must be \(N, K, 4\)"):
        seg.segment(View(image, key="s"), boxes, np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="chunk_size"):
        SamSegmenter("tiny", chunk_size=0)


class CountingDecoder(torch.nn.Module):
    """A trivial 'adapter' decoder: SAM's own decoder, counting calls."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def predict_masks(self, **kwargs):
        self.calls += 1
        return self.inner.predict_masks(**kwargs)


class TrivialAdapter:
    sha256 = "f00d" * 16

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.mask_decoder = CountingDecoder(decoder)


def test_adapter_hook() -> None:
    image, boxes = scene(200, 300, n=3, seed=5)
    jit = jittered(boxes, 4, 200, 300, seed=5)
    plain = SamSegmenter("tiny", chunk_size=8)
    adapter = TrivialAdapter(build_sam_model("tiny").mask_decoder)
    adapted = SamSegmenter("tiny", chunk_size=8, adapter=adapter)
    assert adapted.name == "sam:tiny+adapter:f00df00d"
    assert adapted.model_sha256 == plain.model_sha256  # the encoder (and its cache key) is SAM's
    assert adapted.provenance()["adapter_sha256"] == TrivialAdapter.sha256
    a = plain.segment(View(image, key="s"), boxes, jit)
    b = adapted.segment(View(image, key="s"), boxes, jit)
    assert adapter.mask_decoder.calls == adapted.decoder_calls == math.ceil(15 / 8)
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a, b))  # same weights wrapped


# ------------------------------------------------------------------ batched encoder
def view_items(k: int = 2) -> list[tuple[View, np.ndarray, np.ndarray]]:
    """Views of different images and sizes, two tiny-box context crops among them."""
    items = []
    for i, (h, w) in enumerate([(200, 300), (256, 256), (300, 180), (128, 200), (90, 90), (256, 100), (64, 64)]):
        image, boxes = scene(h, w, n=3, seed=10 + i)
        items.append((View(image, key=f"img{i}"), boxes, jittered(boxes, k, h, w, seed=i)))
    big, _ = scene(300, 400, n=1, seed=30)
    for j, (x0, y0, x1, y1) in enumerate([(10, 20, 74, 84), (300, 250, 400, 300)]):  # crops, edge one short
        crop = np.ascontiguousarray(big[y0:y1, x0:x1])
        box = np.array([[20, 12, 35, 30]], np.float32)
        items.append((View(crop, key=f"big@{x0},{y0},{x1},{y1}"), box, jittered(box, k, y1 - y0, x1 - x0, seed=j)))
    return items


def assert_same_outputs(a: list[MaskOutput], b: list[MaskOutput]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.mask, y.mask) and np.array_equal(x.multimask, y.multimask)
        assert len(x.jitter_masks) == len(y.jitter_masks)
        assert all(np.array_equal(p, q) for p, q in zip(x.jitter_masks, y.jitter_masks))
        assert (x.iou_pred, x.stability) == (y.iou_pred, y.stability)


def test_embedding_is_the_same_anywhere_in_a_padded_batch() -> None:
    """An image's embedding does not depend on its row or its neighbours in a batch of fixed size:
    bit-equal at the first row, the last row, alone with three padding rows, between other views.
    Against a batch of one (a 3x3 convolution in the neck takes another oneDNN path by batch
    size) the tiny model differs by at most 2.4e-6 (|embedding| up to 3.4); vit_b at batch 2 and 4
    measured bit-equal on the CPU."""
    seg = SamSegmenter("tiny", seed=5, encoder_batch=4)
    items = view_items()
    inputs = [seg.host_input(v.image) for v, _, _ in items[:5]]
    target = inputs[0]
    placements = [[target, *inputs[1:4]], [*inputs[1:4], target], [target], [inputs[4], target], [inputs[3], target]]
    rows = [0, 3, 0, 1, 1]
    embeddings = []
    for group, row in zip(placements, rows):
        pre = seg._input_batch(group, 4)
        assert pre.shape == (4, 3, 256, 256)
        assert torch.equal(pre[row : row + 1], seg._input_batch([target], 1))  # preprocessing is per image
        assert torch.equal(pre[len(group) :], torch.zeros_like(pre[len(group) :]))  # padding rows
        embeddings.append(seg._encode(pre)[row : row + 1])
    assert seg.encoder_calls == len(placements)
    assert all(torch.equal(e, embeddings[0]) for e in embeddings[1:])
    alone = seg._encode(seg._input_batch([target], 1))
    assert torch.allclose(alone, embeddings[0], rtol=0, atol=1e-5)


def test_input_batch_is_sam_preprocess() -> None:
    """Normalise and zero-pad per image: exactly segment-anything's Sam.preprocess of one image."""
    seg = SamSegmenter("tiny", encoder_batch=3)
    items = view_items()
    resized = [seg.host_input(v.image) for v, _, _ in items[7:9] + items[2:3]]
    pre = seg._input_batch(resized, 3)
    for row, r in enumerate(resized):
        ref = seg.model.preprocess(torch.as_tensor(r).permute(2, 0, 1).contiguous()[None])
        assert torch.equal(pre[row : row + 1], ref)


def test_segment_views_batch_of_one_is_segment() -> None:
    items = view_items()
    items.insert(3, (View(items[0][0].image, key="no-boxes"), np.zeros((0, 4)), np.zeros((0, 2, 4))))
    single = sharpen(SamSegmenter("tiny", seed=5))
    expected = [single.segment(*item) for item in items]
    assert single.encoder_calls == len(items) - 1  # the view without boxes is not encoded
    one = sharpen(SamSegmenter("tiny", seed=5, encoder_batch=1))
    got = one.segment_views(items)
    assert one.encoder_calls == len(items) - 1 and one.decoder_calls == single.decoder_calls
    assert got[3] == []
    for a, b in zip(expected, got):
        assert_same_outputs(a, b)


@pytest.mark.parametrize("batch", [3, 4])
def test_segment_views_in_batches(batch: int) -> None:
    """Masks equal, scores within 1e-6. Measured on this CPU (tiny model, these 9 views, 4.4 M
    pixels of masks, multimasks and jitter masks): no pixel differs at batch 2, 3, 4 or 8,
    iou_pred by at most 6.7e-8, stability not at all. Another set of 9 scenes had 2 of 5.2 M
    pixels flip (logits at the threshold), so the check allows 1e-5 of the pixels."""
    items = view_items()
    single = sharpen(SamSegmenter("tiny", seed=5))
    expected = [single.segment(*item) for item in items]
    seg = sharpen(SamSegmenter("tiny", seed=5, encoder_batch=batch))
    got = seg.segment_views(items)
    assert seg.encoder_calls == math.ceil(len(items) / batch)
    differ = total = 0
    for a, b in zip(expected, got):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            pairs = [(x.mask, y.mask), *zip(x.multimask, y.multimask), *zip(x.jitter_masks, y.jitter_masks)]
            differ += sum(int((p != q).sum()) for p, q in pairs)
            total += sum(p.size for p, _ in pairs)
            assert x.iou_pred == pytest.approx(y.iou_pred, abs=1e-6)
            assert x.stability == pytest.approx(y.stability, abs=1e-6)
    assert differ <= 1e-5 * total
    # the grouping does not matter within one batch size: reversed items, the same results
    again = sharpen(SamSegmenter("tiny", seed=5, encoder_batch=batch)).segment_views(items[::-1])[::-1]
    for a, b in zip(got, again):
        assert_same_outputs(a, b)


def test_segment_views_cache(tmp_path) -> None:
    items = view_items()
    first = SamSegmenter("tiny", seed=5, encoder_batch=4, cache=EmbeddingCache(tmp_path))
    a = first.segment_views(items[:5])
    assert first.encoder_calls == 2 and (first.cache.hits, first.cache.misses) == (0, 5)
    for view, _, _ in items[:5]:  # stored: the view's row of a batch of 4 (any row: the same bits)
        emb, size = first.embed(view)
        resized = first.host_input(view.image)
        assert size == resized.shape[:2]
        assert torch.equal(emb, first._encode(first._input_batch([resized], 4))[:1])
    assert first.encoder_calls == 2 + 5 and first.cache.misses == 5  # embed() took the entries
    second = SamSegmenter("tiny", seed=5, encoder_batch=4, cache=EmbeddingCache(tmp_path))
    b = second.segment_views(items)  # 5 hits, 4 misses: one encoder call
    assert second.encoder_calls == 1 and (second.cache.hits, second.cache.misses) == (5, 4)
    for x, y in zip(a, b):
        assert_same_outputs(x, y)
    third = SamSegmenter("tiny", seed=5, encoder_batch=4, cache=EmbeddingCache(tmp_path))
    third.segment_views(items)
    assert third.encoder_calls == 0 and third.cache.hits == len(items)


def test_segment_views_takes_resized_inputs_and_checks_first() -> None:
    items = view_items()[:5]
    seg = SamSegmenter("tiny", seed=5, encoder_batch=2)
    plain = seg.segment_views(items)
    given = [(v, b, j, seg.host_input(v.image)) for v, b, j in items]
    given[1] = (*given[1][:3], None)  # None: resize here
    for x, y in zip(plain, seg.segment_views(given)):
        assert_same_outputs(x, y)
    calls = seg.encoder_calls
    wrong = [*given[:4], (*given[4][:3], given[0][3])]
    with pytest.raises(ValueError, match="resized input must be uint8"):
        seg.segment_views(wrong)
    bad_jitter = [*items[:4], (items[4][0], items[4][1], np.zeros((1, 2, 4)))]
    with pytest.raises(ValueError, match=r"jitter must be \(N, K, 4\)"):
        seg.segment_views(bad_jitter)
    assert seg.encoder_calls == calls  # refused before anything was encoded
    assert seg.segment_views([]) == []
    with pytest.raises(ValueError, match="encoder_batch"):
        SamSegmenter("tiny", encoder_batch=0)


def test_segment_views_measured_on_the_device_are_the_dense_masks_measured() -> None:
    """``measure=True`` reduces the masks where they were made; the integers are those the host
    measures from the dense masks (so the stage's signals and RLE do not depend on where)."""
    items = view_items()
    seg = SamSegmenter("tiny", seed=5, encoder_batch=3)
    dense = seg.segment_views(items)
    measured = seg.segment_views(items, measure=True)
    assert [len(d) for d in dense] == [len(m) for m in measured]
    for outs, got in zip(dense, measured):
        for out, g in zip(outs, got):
            want = measure(out)
            assert np.array_equal(g.crop, want.crop) and (g.x0, g.y0, g.height, g.width) == (
                want.x0, want.y0, want.height, want.width)
            assert (g.jitter_counts, g.jitter_overlaps) == (want.jitter_counts, want.jitter_overlaps)
            assert (g.multimask_counts, g.multimask_overlaps) == (want.multimask_counts, want.multimask_overlaps)
            assert len(g.multimask_counts) == 3 and len(g.jitter_counts) == len(out.jitter_masks)
            assert (g.iou_pred, g.stability) == (out.iou_pred, out.stability)


def test_bf16_autocast_runs_the_measured_and_dense_paths_alike() -> None:
    """On CUDA the encoder and decoder run under bf16 autocast, which the CPU tests never take. The
    same autocast on the CPU: every op of both paths accepts bf16 activations (a dtype mismatch
    would otherwise first show on a scarce GPU lease), the measured masks are still exactly the
    dense ones measured, and the numbers stay near fp32's."""
    items = view_items()
    seg = sharpen(SamSegmenter("tiny", seed=5, encoder_batch=3))
    fp32 = seg.segment_views(items, measure=True)
    seg._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    dense = seg.segment_views(items)
    measured = seg.segment_views(items, measure=True)
    assert seg.segment(*items[0])[0].mask.dtype == bool
    for outs, got, ref in zip(dense, measured, fp32):
        for out, g, r in zip(outs, got, ref):
            want = measure(out)
            assert np.array_equal(g.crop, want.crop) and (g.x0, g.y0) == (want.x0, want.y0)
            assert (g.jitter_counts, g.multimask_counts) == (want.jitter_counts, want.multimask_counts)
            assert (g.iou_pred, g.stability) == (out.iou_pred, out.stability)
            assert abs(g.iou_pred - r.iou_pred) < 0.02
    areas = [sum(m.area for m in view) for view in measured], [sum(m.area for m in view) for view in fp32]
    assert sum(areas[1]) > 0 and abs(sum(areas[0]) - sum(areas[1])) <= 0.1 * sum(areas[1]), areas


def test_measured_views_come_back_once_per_encoder_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``measure``, a batch of views is brought back from the device in one ``collect`` (two
    host syncs for the batch), not one per view: on a GPU the host then queues a whole batch's
    decoding behind the encoder instead of waiting for each view. Cached views join the count."""
    from risbench_builder.segment import sam as sam_module

    calls: list[int] = []
    real = sam_module.collect

    def counted(reduced):
        calls.append(len(reduced))
        return real(reduced)

    monkeypatch.setattr(sam_module, "collect", counted)
    items = view_items()                                     # 9 views
    seg = SamSegmenter("tiny", seed=5, encoder_batch=4)
    measured = seg.segment_views(items, measure=True)
    assert calls == [4, 4, 1] and seg.encoder_calls == 3
    alone = [SamSegmenter("tiny", seed=5, encoder_batch=4).segment_views([item], measure=True)[0] for item in items]
    for got, want in zip(measured, alone):
        assert [(g.x0, g.y0, g.jitter_counts, g.iou_pred) for g in got] == [
            (w.x0, w.y0, w.jitter_counts, w.iou_pred) for w in want]
        assert all(np.array_equal(g.crop, w.crop) for g, w in zip(got, want))
    calls.clear()
    seg.collect_views = 1                                    # the GPU benchmark's per-view arm
    seg.segment_views(items, measure=True)
    assert calls == [1] * len(items)


class GuideFeatures:
    """Adapter image features: remember each preprocessed input they are given."""

    names = ("guide",)

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, pre: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append(pre.clone())
        return {"guide": pre.mean(dim=1, keepdim=True)}


class GuidedDecoder(CountingDecoder):
    def predict_masks(self, guide=None, **kwargs):
        assert guide is not None and guide.shape[0] == 1
        return super().predict_masks(**kwargs)


def test_segment_views_adapter_features_get_their_own_row(tmp_path) -> None:
    items = view_items()[:5]
    adapter = TrivialAdapter(build_sam_model("tiny").mask_decoder)
    adapter.mask_decoder = GuidedDecoder(adapter.mask_decoder.inner)
    adapter.image_features = GuideFeatures()
    seg = SamSegmenter("tiny", encoder_batch=4, adapter=adapter, cache=EmbeddingCache(tmp_path))
    seg.segment_views(items)
    assert seg.feature_calls == 5 and seg.encoder_calls == 2
    for (view, _, _), pre in zip(items, adapter.image_features.seen):
        assert pre.shape == (1, 3, 256, 256)
        assert torch.equal(pre, seg._input_batch([seg.host_input(view.image)], 1))
    # the embedding cached without the extras: they are computed without the encoder
    plain = SamSegmenter("tiny", encoder_batch=4, cache=EmbeddingCache(tmp_path / "other"))
    plain.segment_views(items)
    plain.set_adapter(adapter)
    plain.segment_views(items)
    assert plain.encoder_calls == 2 and plain.feature_calls == 5
