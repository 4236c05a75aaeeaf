"""Overlay colours and positions, checked pixel by pixel on a hand-made mask."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from risbench_builder import masks
from risbench_builder.qa.overlay import (BOX_COLOR, CONSENSUS, POLYGON_COLOR, PROPOSAL, REVIEWER_COLORS, compose,
                                          outline, render_triplet, reviewer_style)
from risbench_builder.qa.records import Consensus, Proposal, Review, TripletRecord
from risbench_builder.qa.thumbs import THUMB_SIZE, ThumbJob, crop_window, layer_png, render_thumb

GRAY = 100


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    img = np.full((60, 80, 3), GRAY, np.uint8)
    m = np.zeros((60, 80), np.uint8)
    m[20:40, 30:60] = 1            # rows 20..39, cols 30..59
    return img, m


def test_palette_is_fixed_and_distinct() -> None:
    colours = [PROPOSAL.color, CONSENSUS.color, BOX_COLOR, POLYGON_COLOR, *REVIEWER_COLORS]
    assert PROPOSAL.color == (0, 255, 255) and CONSENSUS.color == (0, 220, 0)
    assert BOX_COLOR == (255, 255, 0) and POLYGON_COLOR == (255, 140, 0)
    assert len(set(colours)) == len(colours)
    assert reviewer_style(0).color != reviewer_style(1).color


def test_proposal_fill_outline_and_untouched_background() -> None:
    img, m = hand_made()
    out = compose(img, [(PROPOSAL, m)])
    assert tuple(out[30, 45]) == (60, 162, 162)            # 0.6*100 + 0.4*(0, 255, 255), rounded
    assert tuple(out[20, 45]) == PROPOSAL.color            # top border row of the mask
    assert tuple(out[30, 30]) == PROPOSAL.color            # left border column
    assert tuple(out[30, 59]) == PROPOSAL.color            # right border column (inside the mask)
    assert tuple(out[30, 60]) == (GRAY,) * 3               # one pixel outside: untouched
    assert tuple(out[19, 45]) == (GRAY,) * 3
    assert tuple(out[0, 0]) == (GRAY,) * 3
    assert np.array_equal(img, np.full_like(img, GRAY))    # the input is not modified


def test_consensus_outline_is_two_pixels_and_drawn_over_the_proposal() -> None:
    img, m = hand_made()
    out = compose(img, [(PROPOSAL, m), (CONSENSUS, m)])
    assert tuple(out[20, 45]) == tuple(out[21, 45]) == CONSENSUS.color
    assert tuple(out[22, 45]) == (60, 162, 162)            # inside the 2-px outline: the proposal fill
    assert outline(m, 2).sum() == m.sum() - (20 - 4) * (30 - 4)


def test_reviewer_outline_without_fill() -> None:
    img, m = hand_made()
    style = reviewer_style(0)
    out = compose(img, [(style, m)])
    assert tuple(out[20, 30]) == style.color
    assert tuple(out[30, 45]) == (GRAY,) * 3               # reviewers are outlines only


def test_box_and_polygon_positions() -> None:
    img, _ = hand_made()
    out = compose(img, [], box=(10, 5, 70, 50), polygon=[(2, 2), (8, 2), (8, 8), (2, 8)])
    assert tuple(out[5, 40]) == BOX_COLOR and tuple(out[49, 40]) == BOX_COLOR   # top and bottom edges
    assert tuple(out[25, 10]) == BOX_COLOR and tuple(out[25, 69]) == BOX_COLOR  # left and right edges
    assert tuple(out[25, 70]) == (GRAY,) * 3 and tuple(out[6, 40]) == (GRAY,) * 3
    polygon_px = np.all(out[:12, :12] == POLYGON_COLOR, axis=-1)
    ys, xs = np.nonzero(polygon_px)
    assert ys.size and ys.min() >= 1 and ys.max() <= 8 and xs.min() >= 1 and xs.max() <= 8
    assert tuple(out[5, 5]) == (GRAY,) * 3                 # an outline, not a fill
    assert not np.all(out[30:, 75:] == BOX_COLOR, axis=-1).any()


def test_layer_png_is_cropped_translucent_fill_and_opaque_outline() -> None:
    _, m = hand_made()
    data = layer_png(m, PROPOSAL, 1, (30, 20, 30, 20))
    png = Image.open(io.BytesIO(data))
    assert png.size == (30, 20) and png.mode == "P"
    rgba = np.asarray(png.convert("RGBA"))
    assert tuple(rgba[10, 15]) == (*PROPOSAL.color, 102)   # fill: 40 % opaque
    assert tuple(rgba[0, 15]) == (*PROPOSAL.color, 255)    # outline: opaque
    outside = layer_png(np.pad(m, 5), CONSENSUS, 1, (30, 20, 40, 30))
    rgba = np.asarray(Image.open(io.BytesIO(outside)).convert("RGBA"))
    assert rgba[0, 0, 3] == 0                               # outside the mask: transparent


def test_thumbnail_is_a_square_crop_centred_on_the_object() -> None:
    img, m = hand_made()
    img = np.pad(img, ((0, 200), (0, 200), (0, 0)), constant_values=GRAY)
    m = np.pad(m, ((0, 200), (0, 200)))
    job = ThumbJob("k", (30.0, 20.0, 60.0, 40.0), None, ((PROPOSAL, ""),), ((30, 20, 30, 20),))
    thumb = render_thumb(img, job, [m])
    assert thumb.shape == (THUMB_SIZE, THUMB_SIZE, 3)
    c = THUMB_SIZE // 2
    assert abs(int(thumb[c, c, 0]) - 60) <= 3 and abs(int(thumb[c, c, 1]) - 162) <= 3   # the mask is central
    assert crop_window((30, 20, 60, 40), 260, 280) == (11, 0, 68)                        # shifted inside
    assert crop_window((0, 0, 500, 10), 20, 600)[2] == 600                               # never beyond the image


def test_render_triplet_panel(tmp_path) -> None:
    img, m = hand_made()
    path = tmp_path / "img.png"
    Image.fromarray(img).save(path)
    rle = masks.dumps(masks.encode(m))
    rec = TripletRecord("t1", "i1", str(path), None, 80, 60, "test", "test#1", "ship", "the ship on the left",
                        (28.0, 18.0, 62.0, 42.0), None, {}, "train",
                        proposal=Proposal("box", "", rle, {"box_iou": 0.9, "area": 600.0}, "review"),
                        reviews=[Review("t", "alice", rle, "accept", None)], consensus=Consensus(rle, 0.9, "consensus"))
    panel = np.asarray(render_triplet(rec, ["min_box_iou"]))
    assert panel.shape[1] == 560 and panel.shape[0] > 60 + 100              # image plus a caption panel
    x0 = (560 - 80) // 2
    assert tuple(panel[20, x0 + 45]) == CONSENSUS.color                      # consensus outline on top
    assert tuple(panel[18, x0 + 45]) == BOX_COLOR
    missing = TripletRecord("t2", "i2", str(tmp_path / "gone.png"), None, 80, 60, "test", "test#2", "ship", None,
                            (1.0, 1.0, 5.0, 5.0), None, {}, None)
    assert np.asarray(render_triplet(missing)).shape[1] == 560               # unreadable image: a gray canvas
