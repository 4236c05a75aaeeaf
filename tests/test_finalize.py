"""The finalize stage: every filter rule, the expression-geometry check, leak-free splits."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.config import SplitConfig
from risbench_builder.finalize.geometry import check, parse
from risbench_builder.finalize.records import final_records
from risbench_builder.finalize.splits import Item, assign, grouped_split, scene_leaks
from risbench_builder.stages.finalize import run_finalize
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.synthetic import load_truth
from risbench_builder.workspace import Workspace

W = H = 120


class Hand:
    """A catalog written by hand: one 120x120 image per scene, triplets with chosen masks."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.cat = Catalog(ws.catalog_path)
        self.images: set[str] = set()

    def image(self, image_id: str, scene: str) -> None:
        if image_id in self.images:
            return
        path = self.ws.path / f"{image_id}.png"
        Image.new("RGB", (W, H)).save(path)
        with self.cat.transaction():
            self.cat.insert("images", ("image_id", "path", "source", "scene_id", "width", "height"),
                            [(image_id, str(path), "hand", scene, W, H)])
        self.images.add(image_id)

    def add(self, tid: str, expression: str | None, box, mask_box=None, *, image: str = "img0", scene: str = "s0",
            category: str = "ship", is_unique: bool = True, route: str = "accept", decision: str | None = None,
            origin_split: str = "train") -> None:
        self.image(image, scene)
        mask = np.zeros((H, W), np.uint8)
        if mask_box is not None:
            x1, y1, x2, y2 = mask_box
            mask[y1:y2, x1:x2] = 1
        rle = masks.dumps(masks.encode(mask))
        with self.cat.transaction():
            self.cat.insert("triplets", ("triplet_id", "image_id", "source", "source_ref", "category", "expression",
                                         "box_xyxy", "attributes_json", "origin_split"),
                            [(tid, image, "hand", f"hand#{tid}", category, expression, json.dumps(box),
                              json.dumps({"is_unique": is_unique}), origin_split)])
            self.cat.insert("proposals", ("triplet_id", "segmenter", "model_sha256", "rle", "scores_json", "route",
                                          "run_id"), [(tid, "box", "", rle, json.dumps({"area": 1}), route, "r1")])
            if decision:
                self.cat.insert("consensus", ("triplet_id", "rle", "agreement", "decision"),
                                [(tid, rle if decision in ("consensus", "adjudicated") else None, 0.9, decision)])


@pytest.fixture
def hand(make_workspace) -> Hand:
    ws = make_workspace({"sources": [], "finalize": {"geometry_check": "drop", "min_mask_pixels": 20}})
    h = Hand(ws)
    yield h
    h.cat.close()


def outcome(ws: Workspace) -> tuple[dict[str, str], dict[str, str]]:
    with Catalog(ws.catalog_path) as cat:
        final = dict(cat.conn.execute("SELECT triplet_id, mask_origin FROM final"))
        rejects = dict(cat.conn.execute("SELECT ref, reason FROM rejects WHERE stage='finalize'"))
    return final, rejects


def test_every_filter_rule(hand: Hand) -> None:
    hand.add("good", "The ship in the top left corner.", [5, 5, 35, 35], (5, 5, 35, 35))
    hand.add("reviewed", "The large ship at the bottom.", [40, 80, 80, 115], (42, 82, 80, 115), decision="consensus")
    hand.add("adjudicated", "The small ship on the right side.", [90, 40, 115, 70], (90, 40, 115, 70),
             decision="adjudicated")
    hand.add("empty", "The ship near the top of the image.", [5, 5, 35, 35], None)
    hand.add("tiny", "The tiny boat in the top left corner.", [5, 5, 35, 35], (5, 5, 8, 8))
    hand.add("leaky", "The ship in the top left corner of the image.", [5, 5, 35, 35], (60, 60, 110, 110))
    hand.add("rejected", "The ship moored at the left pier.", [5, 40, 30, 70], (5, 40, 30, 70), decision="reject-mask")
    hand.add("wrong-words", "The ship that is badly described.", [5, 40, 30, 70], (5, 40, 30, 70),
             decision="expression-wrong")
    hand.add("zdup", "  the ship in the TOP left corner ", [5, 5, 35, 35], (5, 5, 35, 35))
    hand.add("short", "Ship.", [5, 5, 35, 35], (5, 5, 35, 35), image="img1", scene="s1")
    hand.add("vague", "The gray ship in the harbour.", [5, 5, 35, 35], (5, 5, 35, 35), image="img1", scene="s1",
             is_unique=False)
    hand.add("clear", "The gray ship in the lower right corner.", [80, 80, 115, 115], (80, 80, 115, 115),
             image="img1", scene="s1", is_unique=False)
    hand.add("contradiction", "The white boat on the left side of the image.", [85, 10, 115, 40],
             (85, 10, 115, 40), image="img2", scene="s2")
    hand.add("waiting", "The ship waiting for a reviewer at the top.", [5, 5, 35, 35], (5, 5, 35, 35),
             image="img3", scene="s3", route="review")
    hand.add("label-only", None, [5, 5, 35, 35], (5, 5, 35, 35), image="img3", scene="s3")
    report = run_finalize(hand.ws, hand.ws.load(), progress=False)
    final, rejects = outcome(hand.ws)
    assert final == {"good": "auto", "reviewed": "consensus", "adjudicated": "adjudicated", "clear": "auto"}
    assert rejects == {"empty": "empty_mask", "tiny": "tiny_mask", "leaky": "mask_box_mismatch",
                       "rejected": "reviewer_rejected", "wrong-words": "reviewer_rejected",
                       "zdup": "duplicate_expression", "short": "too_few_words", "vague": "not_distinguished",
                       "contradiction": "geometry_contradiction"}
    assert report.pending == {"awaiting review": 1}
    # rerunning recomputes the same result (and keeps a single set of finalize rejects)
    run_finalize(hand.ws, hand.ws.load(), progress=False)
    assert outcome(hand.ws) == (final, rejects)
    recs = list(final_records(hand.cat))
    assert [r.triplet_id for r in recs] == sorted(final) and recs[0].mask_origin == "adjudicated"
    assert masks.area(next(r for r in recs if r.triplet_id == "good").rle) == 900


def test_geometry_review_mode_sends_auto_masks_back_to_review(hand: Hand) -> None:
    hand.add("contradiction", "The white boat on the left side of the image.", [85, 10, 115, 40], (85, 10, 115, 40))
    hand.add("reviewed", "The white boat on the left side of the picture.", [85, 50, 115, 80], (85, 50, 115, 80),
             decision="consensus")
    data = hand.ws.pipeline_path.read_text().replace("geometry_check: drop", "geometry_check: review")
    hand.ws.pipeline_path.write_text(data)
    report = run_finalize(hand.ws, hand.ws.load(), progress=False)
    final, rejects = outcome(hand.ws)
    assert final == {"reviewed": "consensus"} and rejects == {}     # people already saw the reviewed one
    assert report.pending["geometry contradiction sent to review"] == 1 and report.geometry["contradictions"] == 2
    route, scores = hand.cat.conn.execute("SELECT route, scores_json FROM proposals WHERE triplet_id='contradiction'"
                                          ).fetchone()
    assert route == "review" and json.loads(scores)["forced_review"] == "geometry"
    records = json.loads((hand.ws.reports / "geometry.json").read_text())
    assert {r["triplet_id"]: r["action"] for r in records} == {"contradiction": "review", "reviewed": "flag"}


@pytest.mark.parametrize("expression, centroid, others, words", [
    ("The car on the left.", (100, 50), [], ["left"]),
    ("The car on the left.", (50, 50), [], []),                          # middle third: no contradiction
    ("A plane in the bottom-right corner.", (20, 20), [], ["bottom", "right"]),
    ("The tank in the center of the image.", (5, 60), [], ["center"]),
    ("The court at the top middle.", (60, 10), [], []),                   # top middle: x centred, y top
    ("The car to the left of the truck.", (110, 50), [], []),             # relational, not absolute
    ("The left-most car.", (60, 50), [(20, 50, 100)], ["left-most"]),
    ("The car furthest to the right.", (100, 50), [(20, 50, 100)], []),
    ("The largest tank.", (60, 60), [(20, 20, 900)], ["largest"]),
    ("The smaller of the two ships.", (60, 60), [(20, 20, 900)], []),
])
def test_geometry_words(expression: str, centroid, others, words: list[str]) -> None:
    found = check(parse(expression), centroid, (120, 120), 300.0, others)
    assert [f.word for f in found] == words


_FLIPS = {"left": "right", "right": "left", "top": "bottom", "bottom": "top", "upper": "lower", "lower": "upper"}
_FLIP = re.compile(r"\b(left|right|top|bottom|upper|lower)\b(?!\s+of\b)")


def test_geometry_check_catches_planted_contradictions(make_workspace, capsys) -> None:
    """Synthetic expressions with their true masks. Half of the expressions whose position words
    can be checked get them flipped (left <-> right, top <-> bottom): absolute words always, relative
    words ("left-most", "furthest to the right") where another object of the class is known.
    Precision and recall of the flags over all triplets."""
    ws = make_workspace({"synthetic": {"out": "sources", "seed": 11, "scenes": 40, "patches_per_scene": 2},
                         "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                         "finalize": {"geometry_check": "flag", "require_distinguisher": False, "min_words": 0,
                                      "dedupe": False, "min_mask_pixels": 0, "min_mask_box_iou": 0}})
    run_ingest(ws, ws.load(), progress=False)
    truth = load_truth(ws.path / "sources" / "vrsbench_truth")
    rng = np.random.default_rng(0)
    planted: dict[str, str] = {}
    with Catalog(ws.catalog_path) as cat:
        rows = cat.conn.execute("SELECT t.triplet_id, i.path, t.attributes_json, t.expression, t.image_id, t.category "
                                "FROM triplets t JOIN images i USING (image_id) ORDER BY t.triplet_id").fetchall()
        peers = Counter((r[4], r[5]) for r in rows)
        with cat.transaction():
            for tid, path, attrs, expression, image_id, category in rows:
                rle = truth[(Path(path).name, json.loads(attrs)["obj_id"])]["rle"]
                cat.insert("proposals", ("triplet_id", "segmenter", "model_sha256", "rle", "scores_json", "route"),
                           [(tid, "truth", "", masks.dumps(rle), "{}", "accept")])
                words = parse(expression)
                kind = "absolute" if words.absolute else "relative" if words.relative and peers[(image_id, category)] > 1 \
                    else None
                if kind and _FLIP.search(expression) and rng.random() < 0.5:
                    flipped = _FLIP.sub(lambda m: _FLIPS[m.group(1)], expression)
                    cat.conn.execute("UPDATE triplets SET expression=? WHERE triplet_id=?", (flipped, tid))
                    planted[tid] = kind
    report = run_finalize(ws, ws.load(), progress=False)
    flagged = {r["triplet_id"] for r in json.loads((ws.reports / "geometry.json").read_text())}
    tp = len(flagged & set(planted))
    precision, recall = tp / max(len(flagged), 1), tp / len(planted)
    by_kind = {k: sum(t in flagged for t, v in planted.items() if v == k) / max(list(planted.values()).count(k), 1)
               for k in ("absolute", "relative")}
    with capsys.disabled():
        print(f"\ngeometry check on {report.geometry['checked']} synthetic triplets, {len(planted)} planted "
              f"contradictions ({Counter(planted.values())}): precision {precision:.3f}, recall {recall:.3f} "
              f"(absolute {by_kind['absolute']:.3f}, relative {by_kind['relative']:.3f})")
    assert len(planted) >= 30
    assert precision >= 0.9 and recall >= 0.9


def _items(n_scenes: int = 60, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    cats = ["ship", "vehicle", "airplane", "storage-tank"]
    items = []
    for s in range(n_scenes):
        for k in range(int(rng.integers(1, 8))):
            items.append(Item(f"t{s}-{k}", f"S{s}", cats[int(rng.integers(0, 4))], "train" if s % 3 else "val"))
    return items


def test_grouped_split_is_scene_disjoint_stratified_and_seeded() -> None:
    items = _items()
    ratios = {"train": 0.7, "val": 0.1, "test": 0.2}
    a = grouped_split(items, ratios, seed=1)
    assert a == grouped_split(items, ratios, seed=1) and a != grouped_split(items, ratios, seed=2)
    assert scene_leaks(a, {it.triplet_id: it.scene_id for it in items}) == {}
    share = Counter(a.values())
    for name, r in ratios.items():
        assert abs(share[name] / len(items) - r) < 0.05
    for cat in ("ship", "vehicle"):
        of_cat = [it.triplet_id for it in items if it.category == cat]
        assert abs(sum(a[t] == "train" for t in of_cat) / len(of_cat) - 0.7) < 0.12


def test_risbench_protocol_and_upstream_leaks() -> None:
    items = _items(90)
    items.append(Item("leak", "S1", "ship", "val"))   # scene S1 is in upstream train too
    out = assign(items, SplitConfig(protocol="risbench", seed=3))
    assert {t for t, s in out.items() if s == "test"} == {it.triplet_id for it in items if it.origin_split == "val"}
    pool = Counter(s for s in out.values() if s != "test")
    assert abs(pool["train"] / (pool["train"] + pool["val"]) - 26300 / 36313) < 0.05
    scene_of = {it.triplet_id: it.scene_id for it in items}
    assert scene_leaks({it.triplet_id: it.origin_split for it in items}, scene_of) == {"S1": ["train", "val"]}
    kept = {it.scene_id: out[it.triplet_id] for it in items if it.origin_split == "train"}
    grown = assign(items[5:] + [Item("new", "S999", "ship", "train")], SplitConfig(protocol="risbench", seed=3), kept)
    assert all(grown[t] == out[t] for t in grown if t != "new") and grown["new"] in ("train", "val")


def test_a_later_finalize_keeps_every_scene_in_its_split(hand: Hand) -> None:
    """One triplet more or less moved a quarter of the scenes to another split (yesterday's test
    scenes in tomorrow's training); now only new scenes are drawn, and another seed redraws all."""
    def add_scenes(first: int, count: int) -> None:
        for s in range(first, first + count):
            for k in range(1 + s % 3):
                x = 10 + 30 * k
                hand.add(f"t{s}-{k}", f"The ship tagged {k} in this image.", [x, 10, x + 20, 30], (x, 10, x + 20, 30), image=f"i{s}",
                         scene=f"S{s}", category=("ship", "plane", "vehicle")[s % 3])

    def splits() -> dict[str, str]:
        return dict(hand.cat.conn.execute("SELECT triplet_id, split FROM final"))

    add_scenes(0, 60)
    cfg = hand.ws.load()
    run_finalize(hand.ws, cfg, progress=False)
    before = splits()
    assert len(before) == 120 and set(before.values()) == {"train", "val", "test"}
    with hand.cat.transaction():           # a reviewer drops one mask; a new source brings 20 scenes
        hand.cat.insert("consensus", ("triplet_id", "rle", "agreement", "decision"), [("t5-2", None, 0.1, "reject")])
    add_scenes(60, 20)
    report = run_finalize(hand.ws, cfg, progress=False)
    after = splits()
    assert "t5-2" not in after and all(after[t] == split for t, split in before.items() if t in after)
    assert report.scenes == Counter({"kept their split": 60, "drawn now": 20})
    new = Counter(split for t, split in after.items() if t not in before)
    assert new["train"] > new["test"] > 0                     # drawn towards the ratios around the kept scenes
    assert scene_leaks(after, {t: t.split("-")[0] for t in after}) == {}

    # a catalog from before scene_splits keeps what its final table holds
    with hand.cat.transaction():
        hand.cat.conn.execute("DELETE FROM scene_splits")
    run_finalize(hand.ws, cfg, progress=False)
    assert splits() == after and hand.cat.count("scene_splits") == 80

    reseeded = cfg.model_copy(update={"finalize": cfg.finalize.model_copy(
        update={"split": cfg.finalize.split.model_copy(update={"seed": 7})})})
    report = run_finalize(hand.ws, reseeded, progress=False)
    assert splits() != after and report.scenes["drawn again: the split config changed"] == 80
    assert report.scenes["drawn now"] == 80 and hand.cat.count("scene_splits") == 80


def test_stats_stage_counts_and_figures(hand: Hand) -> None:
    from risbench_builder.stages.stats import run_stats

    hand.add("a", "The ship in the top left corner.", [5, 5, 35, 35], (5, 5, 35, 35))                 # 900 px
    hand.add("b", "The large ship at the bottom of the image.", [10, 70, 120, 120], (10, 70, 110, 120),
             image="img1", scene="s1", category="vehicle")                                           # 5000 px
    hand.add("c", "A long boat moored on the right.", [80, 10, 120, 110], (80, 10, 120, 110),
             image="img2", scene="s1")                                                               # 4000 px
    run_finalize(hand.ws, hand.ws.load(), progress=False)
    first = run_stats(hand.ws, hand.ws.load())
    data = json.loads((hand.ws.reports / "stats.json").read_text())["overall"]
    assert first["triplets"] == data["triplets"] == 3
    assert (data["images"], data["scenes"], data["categories"]) == (3, 2, 2)
    assert data["mean_words"] == round((7 + 9 + 7) / 3, 2)
    assert data["object_sizes"] == {"small": 1, "medium": 2, "large": 0}
    assert data["image_size"] == [120, 120] and data["category_counts"] == {"ship": 2, "vehicle": 1}
    figures = sorted((hand.ws.reports / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["categories.png", "object_sizes.png", "word_lengths.png", "wordcloud.png"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    table = (hand.ws.reports / "STATS.md").read_text()
    assert "| triplets |" in table and "![wordcloud](figures/wordcloud.png)" in table
    before = {f.name: f.read_bytes() for f in figures}
    mtimes = {f.name: f.stat().st_mtime_ns for f in figures}
    assert run_stats(hand.ws, hand.ws.load()) == first                 # unchanged final: nothing rewritten
    assert {f.name: f.stat().st_mtime_ns for f in figures} == mtimes
    assert run_stats(hand.ws, hand.ws.load(), force=True) == first     # --force: rewritten, same bytes
    assert {f.name: f.read_bytes() for f in figures} == before
    assert {f.name: f.stat().st_mtime_ns for f in figures} != mtimes
