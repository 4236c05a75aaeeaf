"""Property tests: masks.py decoders on untrusted input (downloaded JSON, Label Studio answers,
source polygons) either return a well-formed result or raise a ValueError, never anything else
(TypeError, OverflowError, IndexError, KeyError, MemoryError, GEOSException, RecursionError...)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from risbench_builder import masks
from risbench_builder.masks import MAX_MASK_PIXELS, MaskError

CHEAP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- strategies
junk = st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=8), st.binary(max_size=8),
                 st.integers(-2**70, 2**70), st.lists(st.integers(-3, 3), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
# small sizes, or sizes that must be refused before anything is allocated (never 41..MAX: a
# legal 30000 x 30000 mask would allocate 900 MB)
dims = st.one_of(st.integers(-3, 40), st.integers(MAX_MASK_PIXELS + 1, 2**80), st.integers(-2**80, -1),
                 st.sampled_from([2**15 + 1, 2**31, 2**32, 2**63, 2**64]), junk)
small_mask = st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 2**32 - 1)).map(
    lambda t: (np.random.default_rng(t[2]).random((t[0], t[1])) > 0.5).astype(np.uint8))
rle_alphabet = st.characters(min_codepoint=0, max_codepoint=0x80)     # '0'..'o' and beyond


@st.composite
def rle_dicts(draw) -> dict:
    """RLE-like dicts: valid ones, mutated valid ones, and garbage in every field."""
    m = draw(small_mask)
    good = masks.encode(m)
    size = draw(st.one_of(st.just(good["size"]), st.lists(dims, min_size=2, max_size=2),
                          st.lists(dims, max_size=4), st.tuples(dims, dims), junk))
    counts = draw(st.one_of(
        st.just(good["counts"]),
        st.just(good["counts"].encode()),
        st.text(rle_alphabet, max_size=20),
        st.binary(max_size=20),
        st.just(good["counts"]).flatmap(lambda c: st.integers(0, len(c)).map(lambda k: c[:k])),
        st.just(good["counts"]).flatmap(lambda c: st.text(rle_alphabet, max_size=4).map(lambda t: c + t)),
        st.lists(st.integers(-5, 200), max_size=12),
        st.lists(st.one_of(st.integers(), st.floats(), st.none()), max_size=4),
        junk))
    d: dict = {"size": size, "counts": counts}
    drop = draw(st.sampled_from([None, None, None, "size", "counts"]))
    if drop:
        del d[drop]
    return d


anything_rle = st.one_of(rle_dicts(), junk, st.lists(rle_dicts(), max_size=2))


def _is_mask(out: object, shape: tuple[int, int]) -> None:
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == shape
    assert set(np.unique(out).tolist()) <= {0, 1}


# ----------------------------------------------------------------------------- COCO RLE
@CHEAP
@given(anything_rle)
@example({"size": [-1, 5], "counts": "0"})
@example({"size": [2**40, 2**40], "counts": "0"})                         # MemoryError before
@example({"size": [3, 3], "counts": "1"})                                 # runs cover 1 of 9 pixels
@example({"size": [2, 2], "counts": "0" + chr(48 + 0x20)})               # ends inside a value
@example({"size": [2, 2], "counts": "\x00\x00"})
@example({"size": [2, 2], "counts": "0?"})                               # a negative run
@example({"size": [2.0, 2.0], "counts": "04"})
@example({"size": [True, 4], "counts": "04"})
@example({"size": "22", "counts": "04"})
@example({"size": [2, 2], "counts": None})
@example({"counts": "04"})
@example([{"size": [2, 2], "counts": "04"}])
def test_rle_decoders_return_a_mask_or_raise_valueerror(rle) -> None:
    try:
        m = masks.decode(rle)
    except ValueError:
        for fn in (masks.area, masks.bbox_xyxy):        # the same verdict everywhere
            with pytest.raises(ValueError):
                fn(rle)
        return
    h, w = (int(v) for v in rle["size"])
    _is_mask(m, (h, w))
    assert masks.area(rle) == int(m.sum())
    x1, y1, x2, y2 = masks.bbox_xyxy(rle)
    assert all(math.isfinite(v) for v in (x1, y1, x2, y2)) and 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
    assert masks.iou(rle, rle) == (1.0 if m.any() else 0.0)


@CHEAP
@given(small_mask)
def test_valid_rle_decodes_to_its_mask(m) -> None:
    rle = masks.encode(m)
    assert np.array_equal(masks.decode(rle), m) and masks.area(rle) == int(m.sum())
    runs = masks.rle_runs(rle["counts"])
    assert np.array_equal(masks.decode({"size": rle["size"], "counts": runs.tolist()}), m)   # uncompressed
    assert masks.loads(masks.dumps(rle)) == rle


@CHEAP
@given(anything_rle, anything_rle)
def test_iou_returns_a_fraction_or_raises_valueerror(a, b) -> None:
    try:
        v = masks.iou(a, b)
    except ValueError:
        return
    assert 0.0 <= v <= 1.0


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=10)


@CHEAP
@given(st.one_of(rle_dicts().map(lambda d: json.dumps(d, default=str)), json_values.map(json.dumps),
                 st.text(max_size=30), st.binary(max_size=30), junk))
@example("[" * 100_000)                                                   # RecursionError before
@example('{"size": [3, 4], "counts": NaN}')
@example(b'\xff\xfe{"size": [1, 1], "counts": "1"}')
@example(None)
@example('{"size": [1e400, 2], "counts": "0"}')
def test_loads_gives_an_rle_or_raises_valueerror(text) -> None:
    try:
        rle = masks.loads(text)
    except ValueError:
        return
    _is_mask(masks.decode(rle), tuple(int(v) for v in rle["size"]))


def test_rle_errors_are_one_line_mask_errors() -> None:
    with pytest.raises(MaskError, match="over MAX_MASK_PIXELS"):
        masks.decode({"size": [2**20, 2**20], "counts": "0"})
    with pytest.raises(MaskError, match="cover 1 pixels, size 3x3 says 9"):
        masks.decode({"size": [3, 3], "counts": "1"})
    with pytest.raises(MaskError, match="nests too deeply"):
        masks.loads("[" * 100_000)
    with pytest.raises(MaskError, match="must be a dict"):
        masks.area("04")
    for exc in (MaskError("x"),):
        assert isinstance(exc, ValueError)


# ----------------------------------------------------------------------------- brush RLE
@st.composite
def brush_streams(draw) -> tuple[object, object, object]:
    m = draw(small_mask)
    good = masks.brush_encode(m)
    h, w = m.shape
    stream = draw(st.one_of(
        st.just(good),
        st.just(good).flatmap(lambda b: st.integers(0, len(b)).map(lambda k: b[:k])),                # truncated
        st.just(good).flatmap(lambda b: st.lists(st.integers(0, 255), max_size=4).map(lambda t: b + t)),
        st.just(good).flatmap(lambda b: st.tuples(st.integers(0, max(0, len(b) - 1)), st.integers(0, 255)).map(
            lambda t: b[:t[0]] + [t[1]] + b[t[0] + 1:])),                                             # a byte changed
        st.lists(st.integers(0, 255), max_size=40),
        st.lists(st.integers(-300, 300), max_size=12),
        st.lists(st.integers(2**62, 2**80), min_size=1, max_size=3),
        st.lists(st.floats(), max_size=6),
        st.lists(st.one_of(st.integers(0, 255), st.text(max_size=2), st.none()), max_size=6),
        st.lists(st.lists(st.integers(0, 255), max_size=3), max_size=3),
        st.just(np.asarray(good, np.uint8)),
        junk))
    height = draw(st.one_of(st.just(h), dims))
    width = draw(st.one_of(st.just(w), dims))
    return stream, height, width


@CHEAP
@given(brush_streams())
@example(([0, 0, 0, 4, 57, 27, 252, 96, 0], -1, -1))
@example(([0, 0, 0, 4, 57, 27, 252, 96, 0], 2**40, 2**40))
@example(([0, 0, 0, 4, 57, 27, 252, 96, 0], 1.0, 1))
@example(([0, 0, 0, 4, 57, 27, 252, 96, 0, 256], 1, 1))                  # OverflowError before
@example(([0.5] * 9, 1, 1))
@example(("0,0,0,4", 1, 1))
@example(([0, 0, 0, 4, 57, 27, 252], 1, 1))                              # ends inside its only block
@example(([255, 255, 255, 252, 0, 0, 0], 32767, 32767))                  # header claims 2**32 - 4 values
def test_brush_decoders_return_a_mask_or_raise_valueerror(case) -> None:
    stream, height, width = case
    try:
        m = masks.brush_decode(stream, height, width)
    except ValueError:
        with pytest.raises(ValueError):
            masks.brush_to_coco(stream, height, width)
        return
    _is_mask(m, (int(height), int(width)))
    rle = masks.brush_to_coco(stream, height, width)
    assert rle["size"] == [int(height), int(width)] and np.array_equal(masks.decode(rle), m)


@CHEAP
@given(small_mask)
def test_brush_round_trip_stays_byte_compatible(m) -> None:
    b = masks.brush_encode(m)
    assert np.array_equal(masks.brush_decode(b, *m.shape), m)
    assert masks.coco_to_brush(masks.brush_to_coco(b, *m.shape)) == b


# ----------------------------------------------------------------------------- polygons
coord = st.one_of(st.floats(-60, 60), st.integers(-60, 60), st.floats(), st.floats(-1e12, 1e12),
                  st.sampled_from([1e300, -1e300, 2**1100, float("nan"), float("inf")]))
points = st.one_of(
    st.lists(st.tuples(coord, coord), max_size=8),
    st.lists(st.lists(coord, min_size=2, max_size=2), max_size=8),
    st.lists(coord, max_size=12),                                          # flat x, y, x, y...
    st.lists(st.tuples(coord, coord, coord), max_size=4),                  # triples
    st.lists(st.lists(st.tuples(coord, coord), max_size=3), max_size=3),   # one level too deep
    st.lists(st.one_of(st.tuples(coord, coord), st.tuples(coord), st.none(), st.text(max_size=2)), max_size=5),
    st.lists(st.tuples(st.floats(0, 40), st.floats(0, 40)), min_size=3, max_size=8).map(np.asarray),
    junk)


@CHEAP
@given(points, dims, dims)
@example([(0, 0), (2, 0), (2, 2)], -1, 4)
@example([(0, 0), (2, 0), (2, 2)], 2**40, 2**40)
@example([(0, 0), (2, 0), (2, 2)], 4.0, 4)
@example([(0, 0), (float("nan"), 0), (2, 2)], 4, 4)
@example([(0, 0), (float("inf"), 0), (2, 2)], 4, 4)
@example([(0, 0), (2**1100, 0), (2, 2)], 4, 4)
@example([(0, 0, 1), (2, 0, 1), (2, 2, 1)], 4, 4)
@example([[(0, 0), (2, 0)], [(2, 2)]], 4, 4)
@example("0022", 4, 4)
def test_rasterize_polygon_returns_a_mask_or_raises_valueerror(pts, height, width) -> None:
    try:
        m = masks.rasterize_polygon(pts, height, width)
    except ValueError:
        return
    _is_mask(m, (int(height), int(width)))


@CHEAP
@given(points)
@example([(0, 0), (10, 10), (10, 0), (0, 10)])                            # bow tie: repaired
@example([(0, 0), (float("nan"), 1), (1, 1)])
@example([(0, 0), (1e300, 1), (1, 1), (-1e300, 0)])
@example([(0, 0), (1, 1)])
@example([(0, 0), (0, 0), (0, 0)])
@example([[0, 0, 1], [1, 1, 1]])
def test_polygon_helpers_return_or_raise_valueerror(pts) -> None:
    try:
        fixed, why = masks.repair_polygon(pts)
    except ValueError:
        fixed, why = None, None
    else:
        assert (fixed is None) == (why is not None) or (fixed is not None and why is not None)
        if fixed is not None:
            assert len(fixed) >= 3 and all(math.isfinite(v) for p in fixed for v in p)
    try:
        box = masks.polygon_box(pts)
    except ValueError:
        pass
    else:
        assert len(box) == 4 and all(math.isfinite(v) for v in box) and box[0] <= box[2] and box[1] <= box[3]
    try:
        v = masks.polygon_iou(pts, [(0, 0), (30, 0), (30, 30), (0, 30)])
    except ValueError:
        return
    assert 0.0 <= v <= 1.0 + 1e-9


@CHEAP
@given(points, points)
@example([(0, 0), (10, 10), (10, 0), (0, 10)], [(0, 0), (10, 0), (10, 10), (0, 10)])
@example([(0, 0), (1, 1)], [(0, 0), (1, 0), (1, 1)])
@example([], [])
def test_polygon_iou_returns_a_fraction_or_raises_valueerror(a, b) -> None:
    try:
        v = masks.polygon_iou(a, b)
    except ValueError:
        return
    assert 0.0 <= v <= 1.0 + 1e-9


def test_polygon_errors_name_the_problem() -> None:
    with pytest.raises(MaskError, match="non-finite"):
        masks.rasterize_polygon([(0, 0), (float("nan"), 0), (2, 2)], 4, 4)
    with pytest.raises(MaskError, match="height must be an integer"):
        masks.rasterize_polygon([(0, 0), (2, 0), (2, 2)], 4.0, 4)
    with pytest.raises(MaskError, match="needs at least 3"):
        masks.polygon_iou([(0, 0), (1, 1)], [(0, 0), (1, 0), (1, 1)])
    assert masks.repair_polygon([(0, 0), (float("inf"), 0), (2, 2)]) == (None, "non-finite coordinate (NaN or inf)")
    assert masks.polygon_iou([], []) == 0.0


def test_read_png_mask_refuses_what_does_not_decode(tmp_path) -> None:
    import io

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(MaskError, match="does not decode"):
        masks.read_png_mask(bad)
    with pytest.raises(MaskError):
        masks.read_png_mask(io.BytesIO(b""))
    with pytest.raises(FileNotFoundError):
        masks.read_png_mask(tmp_path / "missing.png")
    good = np.zeros((3, 4), np.uint8)
    good[1, 2] = 1
    masks.write_png_mask(tmp_path / "good.png", good)
    assert np.array_equal(masks.read_png_mask(tmp_path / "good.png"), good)
