"""Label Studio brush RLE <-> binary mask <-> COCO RLE (masks.py), byte-exact, no server."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from risbench_builder import masks
from tests.review.conftest import label_studio_venv

# label_studio_sdk 2.1.2 converter.brush.mask2rle(mask * 255) for these masks
_SMALL = np.array([[0, 1, 1], [1, 0, 0]], np.uint8)
_SMALL_SDK = [0, 0, 0, 24, 57, 27, 252, 96, 22, 255, 231, 0, 0]
_FULL_SDK = [0, 1, 8, 16, 57, 27, 255, 255, 255, 255, 225, 1, 255, 224]        # 130x130 ones: runs > 65536


def _blob(seed: int, h: int = 61, w: int = 47) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), np.uint8)
    for _ in range(3):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 15)
        m |= ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
    m[rng.random((h, w)) > 0.97] ^= 1                                            # speckle: short runs
    return m


def test_encoding_matches_the_label_studio_sdk_byte_for_byte() -> None:
    assert masks.brush_encode(_SMALL) == _SMALL_SDK
    assert masks.brush_encode(np.ones((130, 130), np.uint8)) == _FULL_SDK
    assert np.array_equal(masks.brush_decode(_SMALL_SDK, 2, 3), _SMALL)
    assert masks.brush_decode(_FULL_SDK, 130, 130).all()


@pytest.mark.parametrize("seed", range(6))
def test_brush_coco_round_trips_are_byte_exact(seed: int) -> None:
    m = _blob(seed)
    brush = masks.brush_encode(m)
    assert all(0 <= b <= 255 for b in brush)
    coco = masks.brush_to_coco(brush, *m.shape)
    assert coco == masks.encode(m)                                          # same COCO string as from pixels
    assert masks.coco_to_brush(coco) == brush                               # brush -> COCO -> brush: same bytes
    assert masks.brush_to_coco(masks.coco_to_brush(coco), *m.shape) == coco  # COCO -> brush -> COCO: same string
    assert json.loads(json.dumps(brush)) == brush                           # survives the JSON API


@pytest.mark.parametrize("seed", range(40))
def test_sparse_coco_encoding_equals_the_plain_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 70, 2))
    m = np.zeros((h, w), np.uint8)
    y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
    m[y:y + int(rng.integers(1, 30)), x:x + int(rng.integers(1, 30))] = 1       # touches borders at times
    if seed % 4 == 0:
        m = (rng.random((h, w)) > 0.5).astype(np.uint8)
    if seed == 1:
        m[:] = 0
    assert masks.encode_sparse(m) == masks.encode(m)


def _literal_stream(alpha: np.ndarray) -> list[int]:
    """What a browser canvas gives: anti-aliased alpha, literal blocks of up to 8 values."""
    rgba = np.zeros(alpha.shape + (4,), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = alpha
    flat = rgba.ravel().tolist()
    bits = f"{len(flat):032b}{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    for i in range(0, len(flat), 8):
        chunk = flat[i:i + 8]
        bits += "0" + "00" + f"{len(chunk) - 1:03b}" + "".join(f"{v:08b}" for v in chunk)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def test_decoder_reads_literal_blocks_and_thresholds_anti_aliased_alpha() -> None:
    alpha = np.array([[0, 40, 127, 128], [200, 255, 90, 0], [255, 255, 255, 1]], np.uint8)
    got = masks.brush_decode(_literal_stream(alpha), 3, 4)
    assert np.array_equal(got, (alpha > 127).astype(np.uint8))


def test_decoder_rejects_wrong_sizes_and_truncated_streams() -> None:
    brush = masks.brush_encode(_blob(1))
    with pytest.raises(ValueError, match="holds"):
        masks.brush_decode(brush, 10, 10)
    with pytest.raises(ValueError):
        masks.brush_decode(brush[:12], 61, 47)


@pytest.mark.labelstudio
def test_encoding_matches_the_installed_sdk_on_random_masks(tmp_path) -> None:
    python = label_studio_venv() / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Label Studio venv at {python.parent.parent} (make test creates it)")
    cases = [_blob(s, 40 + s, 70 - s) for s in range(12)] + [np.zeros((9, 9), np.uint8), np.ones((300, 250), np.uint8)]
    np.savez(tmp_path / "cases.npz", *cases)
    script = ("import json, sys, numpy as np\nfrom label_studio_sdk.converter.brush import mask2rle\n"
              "z = np.load(sys.argv[1])\n"
              "print(json.dumps([mask2rle(z[f'arr_{i}'].astype(np.uint8) * 255) for i in range(len(z.files))]))\n")
    out = subprocess.run([str(python), "-c", script, str(tmp_path / "cases.npz")], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for case, sdk in zip(cases, json.loads(out)):
        assert masks.brush_encode(case) == sdk
        assert np.array_equal(masks.brush_decode(sdk, *case.shape), case)
