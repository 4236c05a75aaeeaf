"""segment/device_masks.py (run lengths, area and box computed with torch ops) against masks.py
and pycocotools: the COCO RLE built from device runs is byte-identical to ``masks.encode``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from risbench_builder import masks
from risbench_builder.segment.signals import tight_box

torch = pytest.importorskip("torch")

from risbench_builder.segment.device_masks import (  # noqa: E402
    area_and_box,
    column_runs,
    column_runs_batch,
    split_runs,
)


def mask_zoo(seed: int) -> np.ndarray:
    """One of: empty, full, a single pixel, row/column stripes, random rectangles, thresholded
    noise, smooth blobs; sizes 1x1 .. 300x200, corners and edges included."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 301)), int(rng.integers(1, 201))
    if seed % 23 == 0:
        h, w = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kind = seed % 8
    m = np.zeros((h, w), bool)
    if kind == 0:
        pass
    elif kind == 1:
        m[:] = True
    elif kind == 2:
        m[rng.integers(0, h), rng.integers(0, w)] = True
    elif kind == 3:
        period = int(rng.integers(1, 6))
        m[::period] = True
    elif kind == 4:
        period = int(rng.integers(1, 6))
        m[:, int(rng.integers(0, period))::period] = True
    elif kind == 5:
        for _ in range(int(rng.integers(1, 6))):
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y0 : y0 + int(rng.integers(1, h + 1)), x0 : x0 + int(rng.integers(1, w + 1))] ^= True
    elif kind == 6:
        m = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    else:  # blobs: low-frequency noise thresholded
        small = rng.random((max(1, h // 16), max(1, w // 16)))
        m = np.kron(small, np.ones((16, 16)))[:h, :w] > 0.6
        m = np.pad(m, ((0, h - m.shape[0]), (0, w - m.shape[1])))
    return m


ZOO = [mask_zoo(s) for s in range(320)]


def test_zoo_covers_the_cases() -> None:
    assert {m.shape for m in ZOO} >= {(1, 1)}
    assert any(not m.any() for m in ZOO) and any(m.all() and m.size > 1 for m in ZOO)
    assert any(m.sum() == 1 and m.size > 1 for m in ZOO)
    assert any(m[0, 0] for m in ZOO) and any(m[-1, -1] and not m.all() for m in ZOO)
    assert max(m.shape[0] for m in ZOO) > 250 and max(m.shape[1] for m in ZOO) > 180


def test_runs_give_the_pycocotools_bytes() -> None:
    for i, m in enumerate(ZOO):
        runs = column_runs(torch.from_numpy(m))
        assert runs.dtype == torch.int64 and int(runs.sum()) == m.size
        rle = masks.rle_from_runs(runs.numpy(), *m.shape)
        ref = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle == masks.encode(m), i
        assert rle["counts"].encode("ascii") == ref["counts"] and rle["size"] == list(ref["size"]), i
        assert np.array_equal(runs.numpy(), masks.rle_runs(rle["counts"])), i


def test_area_and_box_equal_the_numpy_versions() -> None:
    for i, m in enumerate(ZOO):
        area, *box = area_and_box(torch.from_numpy(m)).tolist()
        assert area == int(m.sum()), i
        want = tight_box(m)
        assert (tuple(float(v) for v in box) if area else None) == want, i
        if area:
            assert tuple(float(v) for v in box) == masks.bbox_xyxy(masks.encode(m)), i
        else:
            assert box == [0, 0, 0, 0]


def test_batches_equal_one_at_a_time() -> None:
    for shape in [(37, 53), (1, 1), (200, 3)]:
        group = [mask_zoo(s)[: shape[0], : shape[1]] for s in range(40)]
        group = [np.pad(m, ((0, shape[0] - m.shape[0]), (0, shape[1] - m.shape[1]))) for m in group]
        stack = torch.from_numpy(np.stack(group))
        runs, counts = column_runs_batch(stack)
        assert counts.tolist() == [len(column_runs(t)) for t in stack]
        for m, r in zip(group, split_runs(runs, counts)):
            assert masks.rle_from_runs(r.numpy(), *shape) == masks.encode(m)
        assert torch.equal(area_and_box(stack), torch.stack([area_and_box(t) for t in stack]))


def test_empty_sizes_and_dtypes() -> None:
    for shape in [(0, 5), (5, 0), (0, 0)]:
        m = torch.zeros(shape, dtype=torch.bool)
        assert column_runs(m).tolist() == [0]
        assert masks.rle_from_runs(column_runs(m).numpy(), *shape) == masks.encode(m.numpy())
        assert area_and_box(m).tolist() == [0, 0, 0, 0, 0]
    runs, counts = column_runs_batch(torch.zeros((0, 4, 4), dtype=torch.bool))
    assert runs.numel() == 0 and counts.numel() == 0
    u8 = torch.tensor([[0, 3], [1, 0]], dtype=torch.uint8)  # any dtype reads as != 0
    assert column_runs(u8).tolist() == [1, 2, 1] and area_and_box(u8).tolist() == [2, 0, 0, 2, 2]
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        column_runs(torch.zeros(2, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        column_runs_batch(torch.zeros(2, 2, dtype=torch.bool))


def test_strided_inputs() -> None:
    """Non-contiguous views (a crop of a bigger mask, a transposed one) give the crop's runs."""
    big = torch.from_numpy(mask_zoo(7))
    for view in (big[5:40, 3:30], big.t(), big[::2, ::3]):
        m = view.numpy()
        assert masks.rle_from_runs(column_runs(view).numpy(), *m.shape) == masks.encode(m)
        assert area_and_box(view)[0].item() == int(m.sum())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.bool_, st.tuples(st.integers(0, 24), st.integers(0, 24))))
def test_property_runs_and_area_box(m: np.ndarray) -> None:
    t = torch.from_numpy(m)
    assert masks.rle_from_runs(column_runs(t).numpy(), *m.shape) == masks.encode(m)
    area, *box = area_and_box(t).tolist()
    assert area == int(m.sum())
    assert (tuple(float(v) for v in box) if area else None) == tight_box(m)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu() -> None:
    for m in ZOO[:64]:
        t = torch.from_numpy(m)
        assert torch.equal(column_runs(t.cuda()).cpu(), column_runs(t))
        assert torch.equal(area_and_box(t.cuda()).cpu(), area_and_box(t))
