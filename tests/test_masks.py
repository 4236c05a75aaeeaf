"""masks.py: RLE round trips through pycocotools, geometry, rasterising, PNG."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from shapely.geometry import Polygon

from risbench_builder import masks


def random_mask(seed: int, h: int = 37, w: int = 53) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((h, w)) > 0.6).astype(np.uint8)


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_and_pycocotools_agree(seed: int) -> None:
    m = random_mask(seed)
    rle = masks.encode(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    assert np.array_equal(masks.decode(rle), m)
    assert masks.area(rle) == int(m.sum())
    assert masks.loads(masks.dumps(rle)) == rle
    ref = coco_mask.encode(np.asfortranarray(m))
    assert rle["counts"] == ref["counts"].decode("ascii")


def test_bbox_and_iou() -> None:
    a = np.zeros((10, 10), np.uint8)
    a[2:5, 3:8] = 1
    b = np.zeros((10, 10), np.uint8)
    b[2:5, 5:10] = 1
    assert masks.bbox_xyxy(masks.encode(a)) == (3.0, 2.0, 8.0, 5.0)
    expected = 9 / 21  # inter 3x3, union 15 + 15 - 9
    assert masks.iou(masks.encode(a), masks.encode(b)) == pytest.approx(expected)
    assert masks.mask_iou(a, b) == pytest.approx(expected)
    assert masks.iou(masks.encode(a * 0), masks.encode(a * 0)) == 0.0
    with pytest.raises(ValueError):
        masks.iou(masks.encode(a), masks.encode(np.zeros((5, 5), np.uint8)))


def test_boxes() -> None:
    assert masks.box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert masks.clip_box((-5, 3, 600, 700), 512, 512) == (0.0, 3.0, 512.0, 512.0)
    assert masks.polygon_box([(3, 4), (1, 9), (7, 2)]) == (1.0, 2.0, 7.0, 9.0)


def test_rasterise_box_and_polygon_use_pixel_centres() -> None:
    assert masks.rasterize_box((0, 0, 2, 2), 4, 4).sum() == 4
    assert masks.rasterize_polygon([(0, 0), (2, 0), (2, 2), (0, 2)], 4, 4).sum() == 4
    diamond = masks.rasterize_polygon([(10, 0), (20, 10), (10, 20), (0, 10)], 30, 30)
    assert diamond.sum() == 200  # exact area of the diamond
    assert diamond[10, 10] == 1 and diamond[0, 0] == 0
    # partly outside the image is clipped, not wrapped
    assert masks.rasterize_polygon([(-10, -10), (5, -10), (5, 5), (-10, 5)], 8, 8).sum() == 25


def test_rotated_polygon_area_matches_shapely() -> None:
    theta = np.deg2rad(30)
    r = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    quad = (np.array([[-40, -15], [40, -15], [40, 15], [-40, 15]]) @ r.T + 100).tolist()
    m = masks.rasterize_polygon(quad, 200, 200)
    assert abs(m.sum() - Polygon(quad).area) / Polygon(quad).area < 0.02


def test_repair_bow_tie_quad() -> None:
    # the last row of mmrotate's P0004__1__0___0.txt
    fixed, why = masks.repair_polygon([(126, 191), (128, 171), (123, 178), (221, 199)])
    assert fixed is not None and "self-intersecting" in why
    assert Polygon(fixed).is_valid and len(fixed) == 4 and fixed[0] == (126.0, 191.0)
    assert masks.repair_polygon([(0, 0), (4, 0), (4, 4), (0, 4)]) == ([(0, 0), (4, 0), (4, 4), (0, 4)], None)
    assert masks.repair_polygon([(0, 0), (4, 4), (8, 8), (2, 2)])[0] is None  # collinear


def test_png_round_trip(tmp_path) -> None:
    m = random_mask(7)
    masks.write_png_mask(tmp_path / "m.png", m)
    assert np.array_equal(masks.read_png_mask(tmp_path / "m.png"), m)
    rgb = np.repeat(m[..., None] * 255, 3, axis=2).astype(np.uint8)
    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(masks.read_png_mask(tmp_path / "rgb.png"), m)


def test_repair_refuses_a_non_convex_self_intersection() -> None:
    # a self-intersecting pentagon with one vertex inside the hull: reordering cannot explain it
    fixed, why = masks.repair_polygon([(0, 0), (10, 10), (10, 0), (0, 10), (5, 2)])
    assert fixed is None and "not convex" in why


# ---------------------------------------------------------------- encode_window
@pytest.mark.parametrize("seed", range(8))
def test_encode_window_equals_encode(seed: int) -> None:
    """The RLE of a frame made from its set pixels' tight box (where a device measurement puts
    them) is pycocotools' RLE of the whole frame, byte for byte; also a loose window."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 60)), int(rng.integers(1, 60))
    m = random_mask(seed, h, w)
    m[0, 0] = seed % 2                                        # starting with a 1-run and with a 0-run
    m[-1, -1] = seed % 3 == 0                                 # ending with one
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size:
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        assert masks.encode_window(m[r0:r1, c0:c1], int(c0), int(r0), h, w) == masks.encode(m)
    assert masks.encode_window(m, 0, 0, h, w) == masks.encode(m)
    ref = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
    assert masks.encode_window(m, 0, 0, h, w)["counts"].encode("ascii") == ref["counts"]


def test_encode_window_edges_and_refusals() -> None:
    for shape in [(0, 4), (4, 0), (3, 5)]:
        assert masks.encode_window(np.zeros((0, 0), bool), 0, 0, *shape) == masks.encode(np.zeros(shape, np.uint8))
    full = np.ones((2, 3), bool)
    assert masks.encode_window(full, 0, 0, 2, 3) == masks.encode(full)
    for crop, x0, y0 in [(np.ones((2, 2), bool), 2, 0), (np.ones((1, 1), bool), -1, 0), (np.ones(3, bool), 0, 0)]:
        with pytest.raises(masks.MaskError, match="does not fit"):
            masks.encode_window(crop, x0, y0, 2, 3)
    with pytest.raises(masks.MaskError, match="height"):
        masks.encode_window(np.zeros((0, 0), bool), 0, 0, -1, 3)


