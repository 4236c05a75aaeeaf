"""Untrusted Label Studio answers, offline: every malformed answer is an invalid review that
neither raises out of a pull nor counts toward the quorum (a stand-in server feeds the pull)."""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
import pytest

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.review import pull, review_queue, review_status
from risbench_builder.review.answers import (
    DECODE_ERRORS, INVALID_REVIEW, MAX_ANNOTATOR_CHARS, annotator_name, clean_name, read_annotation, reason,
)
from risbench_builder.review.sync import save_state
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine

H, W = 6, 5


def verdict(choice: Any = "accept") -> dict:
    return {"from_name": "verdict", "to_name": "image", "type": "choices", "value": {"choices": [choice]}}


def brush(rle: Any, h: Any = H, w: Any = W, **extra: Any) -> dict:
    return {"from_name": "mask", "to_name": "image", "type": "brushlabels", "original_height": h,
            "original_width": w, "value": {"format": "rle", "rle": rle, "brushlabels": ["target"], **extra}}


def fix(text: Any) -> dict:
    return {"from_name": "expression_fix", "to_name": "image", "type": "textarea", "value": {"text": text}}


GOOD = np.zeros((H, W), np.uint8)
GOOD[1:4, 1:3] = 1
GOOD_RLE = masks.brush_encode(GOOD)


def malformed(h: int, w: int) -> dict[str, Any]:
    """Anything an annotator can post through the API instead of a good answer, for an h x w image."""
    good = np.zeros((h, w), np.uint8)
    good[1:4, 1:3] = 1
    rle = masks.brush_encode(good)
    b = lambda value, hh=h, ww=w, **extra: brush(value, hh, ww, **extra)  # noqa: E731
    deep: list = [1]
    for _ in range(900):                  # about as deep as the server's JSON parser lets through
        deep = [deep]
    cases: dict[str, Any] = {
        "rle 1,2,3": [verdict(), b([1, 2, 3])],
        "rle 300s": [verdict(), b([300] * 10)],
        "rle negative": [verdict(), b([-1] * 60)],
        "rle text": [verdict(), b(["a"])],
        "rle mixed": [verdict(), b([1, "a"] * 40)],
        "rle string": [verdict(), b("abc")],
        "rle dict": [verdict(), b({"a": 1})],
        "rle null": [verdict(), b(None)],
        "rle empty": [verdict(), b([])],
        "rle number": [verdict(), b(7)],
        "rle huge": [verdict(), b([10 ** 30] * 3)],
        "rle very huge": [verdict(), b([10 ** 5000])],
        "rle floats": [verdict(), b([1.5] * 60)],
        "rle bools": [verdict(), b([True] * 60)],
        "rle ragged": [verdict(), b([[1], [2, 3]])],
        "rle nested": [verdict(), b([[1, 2]] * 30)],
        "rle nested deep": [verdict(), b(deep)],
        "rle of another size": [verdict(), b(masks.brush_encode(np.ones((3, 3), np.uint8)))],
        "rle cut short": [verdict(), b(rle[:-2])],
        "rle header only": [verdict(), b(rle[:7])],
        "wrong height": [verdict(), b(rle, hh=h + 1)],
        "wrong width": [verdict(), b(rle, ww=w * 1000)],
        "height text": [verdict(), b(rle, hh="six")],
        "height huge": [verdict(), b(rle, hh=10 ** 400)],
        "height nan": [verdict(), b(rle, hh=float("nan"))],
        "height inf": [verdict(), b(rle, hh=float("inf"))],
        "value without rle": [verdict(), {"from_name": "mask", "type": "brushlabels", "value": {"format": "rle"}}],
        "value a list": [verdict(), {"from_name": "mask", "type": "brushlabels", "value": [1, 2]}],
        "mask of another type": [verdict(), {"from_name": "mask", "type": "choices", "value": {"rle": rle}}],
        "verdict without choices": [{"from_name": "verdict", "value": {}}],
        "verdict value null": [{"from_name": "verdict", "value": None}],
        "verdict not in the config": [verdict("maybe")],
        "verdict a number": [verdict(3)],
        "verdict a dict": [verdict({"accept": 1})],
        "choices a string": [{"from_name": "verdict", "value": {"choices": "accept"}}],
        "two choices": [{"from_name": "verdict", "value": {"choices": ["accept", "reject-mask"]}}],
        "two verdicts": [verdict("accept"), verdict("reject-mask")],
        "no verdict": [b(rle)],
        "empty result": [],
        "result item text": [verdict(), "brush"],
        "result item null": [None],
        "text not text": [verdict("expression-wrong"), fix([1, 2])],
        "text a dict": [verdict("expression-wrong"), fix({"a": "b"})],
        "text without text": [verdict("expression-wrong"), {"from_name": "expression_fix", "value": {}}],
        "text too long": [verdict("expression-wrong"), fix(["word " * 400])],
        "result a string": "accept",
        "result a dict": {"verdict": "accept"},
        "result null": None,
        "result a number": 12,
    }
    if h * w < 10_000:
        cases["rle too long"] = [verdict(), b([0] * (40 * h * w))]
    return cases


MALFORMED = malformed(H, W)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_answer_raises_only_a_decode_error_with_a_short_reason(name: str) -> None:
    with pytest.raises(DECODE_ERRORS) as caught:
        read_annotation(MALFORMED[name], H, W)
    why = reason(caught.value)
    assert why and len(why) <= 200 and "\n" not in why and why.isprintable()


def test_good_answers_still_read() -> None:
    ans = read_annotation([verdict("corrected"), brush(GOOD_RLE), fix(["  the red\n car "])], H, W)
    assert ans.verdict == "corrected" and np.array_equal(ans.mask, GOOD) and ans.corrected == "the red car"
    # image size as floats, no size at all, a second region, controls the config lacks are fine
    two = read_annotation([verdict(), brush(GOOD_RLE, h=float(H), w=float(W)), brush(GOOD_RLE, h=None, w=None),
                           {"type": "relation", "from_id": "a", "to_id": "b"}, {"from_name": "other", "value": 1}],
                          H, W)
    assert two.verdict == "accept" and np.array_equal(two.mask, GOOD) and two.corrected is None
    assert read_annotation([verdict("reject-mask"), verdict("reject-mask")], H, W).mask is None


def test_annotator_names_are_bounded_one_line_keys() -> None:
    users = {1: "a@x.org", 2: "evil\n\x00name\u202e@x.org", 3: "x" * 5000 + "@x.org", 4: "   "}
    assert annotator_name(1, users) == "a@x.org"
    assert annotator_name("1", users) == "a@x.org"
    assert annotator_name(2, users) == "evil name@x.org"
    long = annotator_name(3, users)
    assert len(long) == MAX_ANNOTATOR_CHARS and long != annotator_name({"email": "x" * 5001 + "@x.org"}, users)
    assert annotator_name(4, users) == "user-4" and annotator_name(99, users) == "user-99"
    assert annotator_name({"id": 1}, users) == "a@x.org"
    assert annotator_name({"id": 5, "email": "\ud800b@x.org"}, users) == "b@x.org"   # a lone surrogate
    for junk in (None, True, -1, 1.5, 10 ** 40, "x", [1], {"id": "x"}):
        assert annotator_name(junk, users) == "unknown"
    assert clean_name(None) == "unknown"


# ----------------------------------------------------------------------------- pull, offline
class FakeLabelStudio:
    """What pull asks of the server: users and pages of tasks with their annotations."""

    url = "http://127.0.0.1:8080"

    def __init__(self, users: dict[int, str], tasks: list[dict]):
        self._users, self.tasks = users, tasks

    def users(self) -> dict[int, str]:
        return dict(self._users)

    def task_pages(self, project_id: int, *, annotations: bool, page_size: int = 100) -> Iterator[tuple[int, list]]:
        for start in range(0, len(self.tasks), page_size):
            yield len(self.tasks), self.tasks[start:start + page_size]


@pytest.fixture
def refined(make_workspace):
    ws = make_workspace({"synthetic": {"out": "sources", "seed": 3, "scenes": 2, "patches_per_scene": 2},
                         "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                         "refine": {"segmenter": "box", "jitter_k": 0, "route": {"min_area_ratio": 5.0}},
                         "review": {"annotators_per_task": 2, "page_size": 2}})
    run_ingest(ws, ws.load(), progress=False)
    run_refine(ws, ws.load(), progress=False)
    return ws


def _ann(uid: Any, result: Any) -> dict:
    return {"id": 1000 + uid, "completed_by": uid, "result": result, "was_cancelled": False}


def test_pull_records_invalid_reviews_and_keeps_their_tasks_open(refined) -> None:
    ws = refined
    with Catalog(ws.catalog_path) as cat:
        queue = review_queue(cat)
    t_ok, t_open, t_fixed = queue[:3]
    good = {q.triplet_id: [verdict("accept"), brush(masks.brush_encode(masks.decode(q.rle)), q.height, q.width)]
            for q in (t_ok, t_open, t_fixed)}
    bad_cases = list(malformed(t_ok.height, t_ok.width).values())
    users = {1: "good-a@x.org", 2: "good-b@x.org", 3: "bad@x.org"}
    users.update({10 + i: f"bad-{i}@x.org" for i in range(len(bad_cases))})
    # t_ok: two good answers and every malformed one; t_open: one good, one malformed (wrong size)
    # t_fixed: one good, and the same annotator answers twice (malformed, then good)
    tasks = [
        {"id": 11, "data": {"triplet_id": t_ok.triplet_id}, "annotations": [
            _ann(1, good[t_ok.triplet_id]), _ann(2, good[t_ok.triplet_id]),
            *[_ann(10 + i, result) for i, result in enumerate(bad_cases)]]},
        {"id": 12, "data": {"triplet_id": t_open.triplet_id}, "annotations": [
            _ann(1, good[t_open.triplet_id]),
            _ann(3, [verdict("corrected"), brush(GOOD_RLE)])]},                     # drawn on a 6x5 canvas
        {"id": 13, "data": {"triplet_id": t_fixed.triplet_id}, "annotations": [
            _ann(1, good[t_fixed.triplet_id]), _ann(2, [verdict("perhaps")]), _ann(2, good[t_fixed.triplet_id])]},
        # tasks and annotations that are not even shaped right are skipped, not raised
        {"id": "14", "data": {"triplet_id": t_ok.triplet_id}}, "junk", {"id": 15, "data": "x", "annotations": 3},
        {"id": 16, "data": {"triplet_id": t_ok.triplet_id, "proposal": "x"}, "annotations": ["junk", None]},
    ]
    fake = FakeLabelStudio(users, tasks)
    save_state(ws, {"url": fake.url, "project_id": 1,
                    "tasks": {t_ok.triplet_id: 11, t_open.triplet_id: 12, t_fixed.triplet_id: 13}})
    report = pull(ws, client=fake)

    n_bad = len(bad_cases) + 2
    assert report.invalid == n_bad and report.invalid_new == n_bad - 1    # good-b on 13 also answered well
    assert report.reviews_new == 5 and report.decisions == {"consensus": 2}
    assert report.skipped == {"malformed task": 2, "malformed annotation": 2}
    with Catalog(ws.catalog_path) as cat:
        decided = {t for (t,) in cat.conn.execute("SELECT triplet_id FROM consensus")}
        invalid = cat.conn.execute("SELECT ref, detail FROM rejects WHERE stage='review' AND reason=?",
                                   (INVALID_REVIEW,)).fetchall()
        assert cat.conn.execute("SELECT COUNT(*) FROM reviews WHERE verdict NOT IN ('accept')").fetchone() == (0,)
    assert decided == {t_ok.triplet_id, t_fixed.triplet_id}          # t_open: one usable answer of two
    refs = dict(invalid)
    assert "12/bad@x.org" in refs and "brush drawn on 6x5" in refs["12/bad@x.org"]
    assert "13/good-b@x.org" not in refs
    assert all(d.startswith("task ") and "\n" not in d and len(d) < 600 for d in refs.values())

    saved = json.loads((ws.reports / "review-pull.json").read_text())
    assert saved["invalid_reviews"] == n_bad and len(saved["invalid_review_details"]) == n_bad
    line = next(d for d in saved["invalid_review_details"] if d.startswith("task 12 "))
    assert line == refs["12/bad@x.org"] and line.startswith(f"task 12 (triplet {t_open.triplet_id}) by bad@x.org: ")

    info = review_status(ws)
    assert info["invalid_reviews"] == n_bad - 1 and info["invalid_by_annotator"]["bad@x.org"] == 1
    assert info["annotators"]["bad@x.org"] == {"reviews": 0, "invalid": 1, "verdicts": {"invalid": 1},
                                               "compared": 0, "mean_iou_vs_consensus": None}
    assert info["annotators"]["good-a@x.org"]["invalid"] == 0
    assert info["annotations_per_task"] == {"1": 1, "2": 2} and "invalid_review" not in info["rejected"]
    with Catalog(ws.catalog_path) as cat:
        assert t_open.triplet_id in {q.triplet_id for q in review_queue(cat)}                # still open

    # pulling again records nothing twice; the annotator fixes the answer: it counts, the row goes
    again = pull(ws, client=fake)
    assert again.invalid == n_bad and again.invalid_new == 0 and again.reviews_new == 0 and not again.decisions
    tasks[1]["annotations"][1]["result"] = [verdict("corrected"), good[t_open.triplet_id][1]]
    fixed = pull(ws, client=fake)
    assert fixed.decisions == {"consensus": 1} and fixed.reviews_new == 1 and fixed.invalid == n_bad - 1
    info = review_status(ws)
    assert "bad@x.org" not in info["invalid_by_annotator"] and info["annotators"]["bad@x.org"]["reviews"] == 1


def test_the_pull_report_lists_a_bounded_number_of_invalid_answers() -> None:
    from risbench_builder.review.sync import MAX_INVALID_DETAILS, PullReport

    report = PullReport("run")
    for i in range(MAX_INVALID_DETAILS + 5):
        report.add_invalid(f"task {i} (triplet t) by a@x.org: no verdict")
    out = report.as_dict()
    assert out["invalid_reviews"] == MAX_INVALID_DETAILS + 5
    assert len(out["invalid_review_details"]) == MAX_INVALID_DETAILS + 1
    assert out["invalid_review_details"][-1].startswith("... and 5 more")
