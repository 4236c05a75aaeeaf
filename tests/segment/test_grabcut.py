"""GrabCut and box backends on images whose true mask is known."""

from __future__ import annotations

import numpy as np

from risbench_builder import masks
from risbench_builder.segment.base import View
from risbench_builder.segment.box import BoxSegmenter
from risbench_builder.segment.grabcut import GrabCutSegmenter, largest_component_filled


def disk_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(90, 12, (160, 200, 3)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:160, :200]
    truth = (yy - 80) ** 2 + (xx - 100) ** 2 < 30 ** 2
    image[truth] = rng.normal([200, 190, 60], 10, (truth.sum(), 3)).clip(0, 255).astype(np.uint8)
    return image, truth


def test_grabcut_beats_the_box_and_is_deterministic() -> None:
    image, truth = disk_scene()
    loose = np.array([[62.0, 44.0, 136.0, 112.0]])          # shifted, cuts the disk's bottom off
    jitter = np.array([[[60.0, 46.0, 134.0, 114.0], [66.0, 48.0, 138.0, 110.0]]])
    view = View(image, "k", [None])
    cut = GrabCutSegmenter().segment(view, loose, jitter)[0]
    box = BoxSegmenter().segment(view, loose, jitter)[0]
    assert masks.mask_iou(cut.mask, truth) > 0.85 > masks.mask_iou(box.mask, truth)
    assert cut.mask[105:112].any() and not cut.mask[:40].any()   # grew past the loose box edge, stayed local
    again = GrabCutSegmenter().segment(view, loose, jitter)[0]
    assert np.array_equal(cut.mask, again.mask) and len(cut.jitter_masks) == 2


def test_obb_polygon_prompts() -> None:
    image, truth = disk_scene(1)
    polygon = np.array([[100, 48], [132, 80], [100, 112], [68, 80]], float)   # a diamond inside the disk
    box_mask = BoxSegmenter().segment(View(image, "k", [polygon]), np.array([[68.0, 48, 132, 112]]),
                                      np.zeros((1, 0, 4)))[0].mask
    assert np.array_equal(box_mask, masks.rasterize_polygon(polygon, 160, 200).astype(bool))
    cut = GrabCutSegmenter().segment(View(image, "k", [polygon]), np.array([[68.0, 48, 132, 112]]),
                                     np.zeros((1, 0, 4)))[0].mask
    assert masks.mask_iou(cut, truth) > 0.8


def test_largest_component_filled() -> None:
    m = np.zeros((10, 10), bool)
    m[1:6, 1:6] = True
    m[3, 3] = False          # a hole
    m[8, 8] = True           # a speck
    out = largest_component_filled(m)
    assert out.sum() == 25 and out[3, 3] and not out[8, 8]
    ring = np.zeros((9, 9), bool)
    ring[0:5, 0:5] = True
    ring[1:4, 1:4] = False   # a hole touching nothing but the ring
    assert largest_component_filled(ring)[2, 2]
