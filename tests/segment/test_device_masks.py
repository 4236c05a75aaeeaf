"""segment/device_masks.py (counts, boxes and tight-box crops made with torch ops where the
masks live) against the host's numpy measurement (``signals.measure``), the signals and
pycocotools: the RLE built from a device measurement is byte-identical to ``masks.encode``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from risbench_builder import masks
from risbench_builder.segment.base import MaskOutput
from risbench_builder.segment.signals import compute_signals, measure, signals_from, tight_box

torch = pytest.importorskip("torch")

from risbench_builder.segment.device_masks import area_and_box, collect, measure_batch, reduce_masks  # noqa: E402


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


def same_shape(seeds: range, shape: tuple[int, int]) -> np.ndarray:
    """Zoo masks cut or padded to one shape, stacked."""
    group = [mask_zoo(s)[: shape[0], : shape[1]] for s in seeds]
    return np.stack([np.pad(m, ((0, shape[0] - m.shape[0]), (0, shape[1] - m.shape[1]))) for m in group])


def test_area_and_box_of_a_batch_equal_one_at_a_time() -> None:
    for shape in [(37, 53), (1, 1), (200, 3)]:
        stack = torch.from_numpy(same_shape(range(40), shape))
        assert torch.equal(area_and_box(stack), torch.stack([area_and_box(t) for t in stack]))


@pytest.mark.parametrize("shape, k", [((37, 53), 4), ((1, 1), 2), ((200, 3), 0), ((64, 64), 1)])
def test_measure_batch_equals_the_host_measurement(shape: tuple[int, int], k: int) -> None:
    """Device measurements are the host's integers: crops, positions, counts and overlaps; so the
    signals are compute_signals' and the RLE pycocotools'."""
    n = 24
    main = same_shape(range(n), shape)
    multimask = same_shape(range(100, 100 + 3 * n), shape).reshape(n, 3, *shape)
    multimask[::5, 1] = main[::5]                             # alternatives that overlap the main mask
    jitter = same_shape(range(200, 200 + n * k), shape).reshape(n, k, *shape) if k else np.zeros((n, 0, *shape), bool)
    jitter[::3, :1] |= main[::3, None]
    iou, stability = torch.rand(n), torch.rand(n)
    got = measure_batch(torch.from_numpy(main), torch.from_numpy(multimask), torch.from_numpy(jitter), iou, stability)
    assert len(got) == n and any(g.area == 0 for g in got)
    for i, g in enumerate(got):
        out = MaskOutput(main[i], float(iou[i]), float(stability[i]), multimask[i], list(jitter[i]))
        want = measure(out)
        assert np.array_equal(g.crop, want.crop) and g.crop.dtype == bool, i
        assert (g.height, g.width, g.x0, g.y0) == (want.height, want.width, want.x0, want.y0), i
        assert (g.jitter_counts, g.jitter_overlaps) == (want.jitter_counts, want.jitter_overlaps), i
        assert (g.multimask_counts, g.multimask_overlaps) == (want.multimask_counts, want.multimask_overlaps), i
        assert (g.iou_pred, g.stability) == (want.iou_pred, want.stability), i
        box = (0.0, 0.0, shape[1] / 2, shape[0] / 2)
        polygon = np.array([[0, 0], [shape[1], 0], [shape[1] / 2, shape[0]]], float)
        assert signals_from(g, box, polygon) == compute_signals(out, box, polygon), i
        assert masks.encode_window(g.crop, g.x0, g.y0, g.height, g.width) == masks.encode(main[i]), i


def test_collect_many_views_equals_one_at_a_time() -> None:
    """Views of different sizes, box counts, jitter counts and score columns (none at all, one
    with no boxes, one with empty masks) brought back together come back as each alone."""
    rng = np.random.default_rng(3)
    views = []
    for v, (shape, n, k) in enumerate([((37, 53), 5, 2), ((64, 64), 0, 2), ((1, 1), 3, 0), ((80, 20), 4, 3)]):
        main = torch.from_numpy(same_shape(range(10 * v, 10 * v + n), shape) if n else np.zeros((0, *shape), bool))
        multimask = torch.from_numpy(rng.random((n, 3, *shape)) < 0.3) if v != 2 else None
        jitter = torch.from_numpy(rng.random((n, k, *shape)) < 0.4) if k else None
        scores = (torch.rand(n), torch.rand(n)) if v % 2 == 0 else (None, torch.rand(n))
        views.append((main, multimask, jitter, *scores))
    together = collect([reduce_masks(*v) for v in views])
    assert [len(t) for t in together] == [5, 0, 3, 4]
    for got, v in zip(together, views):
        for g, want in zip(got, measure_batch(*v)):
            assert np.array_equal(g.crop, want.crop) and g.__dict__.keys() == want.__dict__.keys()
            assert {a: b for a, b in g.__dict__.items() if a != "crop"} == {
                a: b for a, b in want.__dict__.items() if a != "crop"}
    assert together[3][0].iou_pred is None and together[3][0].stability is not None
    assert collect([]) == []


def test_measure_batch_without_alternatives_or_jitter() -> None:
    main = torch.from_numpy(same_shape(range(6), (30, 40)))
    for g, m in zip(measure_batch(main, None, None), main.numpy()):
        want = measure(MaskOutput(m))
        assert np.array_equal(g.crop, want.crop) and (g.x0, g.y0) == (want.x0, want.y0)
        assert g.iou_pred is None and g.jitter_counts == [] and g.multimask_counts == []
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        measure_batch(main[0], None, None)


def test_placed_moves_a_crop_measurement_into_its_image() -> None:
    m = np.zeros((20, 30), bool)
    m[4:9, 6:10] = True
    g = measure_batch(torch.from_numpy(m)[None], None, None)[0].placed(100, 50, 300, 400)
    frame = np.zeros((300, 400), bool)
    frame[50:70, 100:130] = m
    assert masks.encode_window(g.crop, g.x0, g.y0, g.height, g.width) == masks.encode(frame)
    empty = measure_batch(torch.zeros((1, 20, 30), dtype=torch.bool), None, None)[0].placed(100, 50, 300, 400)
    assert (empty.x0, empty.y0, empty.box) == (0, 0, None)


def test_empty_sizes_and_dtypes() -> None:
    for shape in [(0, 5), (5, 0), (0, 0)]:
        m = torch.zeros(shape, dtype=torch.bool)
        assert area_and_box(m).tolist() == [0, 0, 0, 0, 0]
    u8 = torch.tensor([[0, 3], [1, 0]], dtype=torch.uint8)  # any dtype reads as != 0
    assert area_and_box(u8).tolist() == [2, 0, 0, 2, 2]


def test_strided_inputs() -> None:
    """Non-contiguous views (a crop of a bigger mask, a transposed one) measure as their contents."""
    big = torch.from_numpy(mask_zoo(7))
    for view in (big[5:40, 3:30], big.t(), big[::2, ::3]):
        m = view.numpy()
        assert area_and_box(view)[0].item() == int(m.sum())
        assert np.array_equal(measure_batch(view[None], None, None)[0].crop, measure(MaskOutput(m)).crop)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.bool_, st.tuples(st.integers(0, 24), st.integers(0, 24))))
def test_property_area_box_and_rle(m: np.ndarray) -> None:
    t = torch.from_numpy(m)
    area, *box = area_and_box(t).tolist()
    assert area == int(m.sum())
    assert (tuple(float(v) for v in box) if area else None) == tight_box(m)
    g = measure_batch(t[None], None, None)[0]
    assert masks.encode_window(g.crop, g.x0, g.y0, g.height, g.width) == masks.encode(m)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu() -> None:
    for m in ZOO[:64]:
        t = torch.from_numpy(m)
        assert torch.equal(area_and_box(t.cuda()).cpu(), area_and_box(t))
    main = torch.from_numpy(same_shape(range(16), (50, 70)))
    jitter = torch.from_numpy(same_shape(range(50, 82), (50, 70))).reshape(16, 2, 50, 70)
    for g, c in zip(measure_batch(main.cuda(), None, jitter.cuda()), measure_batch(main, None, jitter)):
        assert np.array_equal(g.crop, c.crop) and (g.x0, g.y0, g.jitter_overlaps) == (c.x0, c.y0, c.jitter_overlaps)
