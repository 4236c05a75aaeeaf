"""Measured quality: the Wilson estimator's coverage on a planted router error rate, the
measurement on a small real catalog with planted reviews, and the same numbers in
QUALITY.md, stats.json, the dataset card, the HTML report summary and `risbench quality`."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from risbench_builder.finalize.quality import measure_quality, quality_markdown, rate, shares, wilson
from risbench_builder.qa.report import load_quality, summary_html
from risbench_builder.stages.export import run_export
from risbench_builder.stages.stats import run_stats
from risbench_builder.workspace import Workspace
from tests.export.conftest import build


# ------------------------------------------------------------------ the estimator
def test_wilson_known_values_and_edges() -> None:
    lo, hi = wilson(94, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.8752, 0.9722)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 25)[0] == 0.0 and wilson(25, 25)[1] == 1.0
    for k, n in ((3, 7), (1, 40), (55, 60)):
        a, b = wilson(k, n), wilson(n - k, n)
        assert a[0] == pytest.approx(1 - b[1]) and a[0] < k / n < a[1]
    assert rate(0, 0) == {"k": 0, "n": 0, "share": None, "ci95": [0.0, 1.0]}


@pytest.mark.parametrize("p", [0.6, 0.85, 0.93, 0.97])
def test_interval_covers_a_planted_router_precision(p: float) -> None:
    """A router whose auto-accepted masks are right (IoU >= 0.9) with probability ``p``: in 100
    seeded trials of a 100-mask audit sample, the Wilson 95 % interval of the measured share holds
    ``p`` at least 90 times, and it is narrow enough to mean something."""
    rng = np.random.default_rng(int(p * 1000))
    n, covered, widths = 100, 0, []
    for _ in range(100):
        good = rng.random(n) < p
        ious = np.where(good, rng.uniform(0.9, 1.0, n), rng.uniform(0.0, 0.9, n))
        lo, hi = shares(ious.tolist())["iou90"]["ci95"]
        covered += lo <= p <= hi
        widths.append(hi - lo)
    assert covered >= 90, f"p={p}: covered in {covered} of 100 trials"
    assert max(widths) < 0.3 and statistics.fmean(widths) < 0.2


# ------------------------------------------------------------------ a small real catalog
def _cut(rle_text: str, fraction: float) -> str:
    """The mask's first ``fraction`` of pixels in raster order: a subset, so its IoU is that fraction."""
    m = masks.decode(masks.loads(rle_text))
    flat = m.reshape(-1).copy()
    on = np.flatnonzero(flat)
    flat[on[max(1, round(fraction * on.size)):]] = 0
    return masks.dumps(masks.encode(flat.reshape(m.shape)))


@dataclass
class Planted:
    ws: Workspace
    unsampled: dict           # quality before any sample
    unreviewed: dict          # samples drawn, none reviewed
    card_before: str
    q: dict
    ious: dict[str, float]
    card: str
    stats: dict
    agreements: list[float]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    b = build(tmp_path_factory.mktemp("quality"), targets=["hf"])
    ws, cfg = b.ws, b.ws.load()
    with Catalog(ws.catalog_path) as cat:
        unsampled = measure_quality(cat, cfg)
    run_stats(ws, cfg)
    run_export(ws, cfg, progress=False)
    card_before = (ws.exports / "hf" / "README.md").read_text(encoding="utf-8")

    with Catalog(ws.catalog_path) as cat:
        ids = [t for (t,) in cat.conn.execute("SELECT triplet_id FROM final ORDER BY triplet_id")
               if t not in b.consensus]
        rle = dict(cat.conn.execute("SELECT triplet_id, rle FROM proposals"))
        s, r = ids[:9], ids[9:15]            # sampled (auto-accepted), routed to review
        with cat.transaction():
            cat.conn.executemany("INSERT INTO samples (triplet_id, round, stratum) VALUES (?, ?, ?)",
                                 [(t, 1 if i < 5 else 2, "x") for i, t in enumerate(s)])
            cat.conn.executemany("UPDATE proposals SET route='review', round=2 WHERE triplet_id=?", [(t,) for t in r])
        unreviewed = measure_quality(cat, cfg)

        same = lambda t: rle[t]  # noqa: E731
        plan = [  # (triplet, consensus rle, agreement, decision)
            (s[0], same(s[0]), 0.95, "consensus"), (s[1], same(s[1]), 0.90, "consensus"),
            (s[2], same(s[2]), 0.85, "adjudicated"), (s[3], _cut(rle[s[3]], 0.82), 0.80, "consensus"),
            (s[4], _cut(rle[s[4]], 0.5), 0.70, "consensus"), (s[5], None, 0.60, "reject-mask"),
            (s[6], None, 0.90, "expression-wrong"), (s[7], rle[s[7]], 0.50, "adjudicate"),
            # s[8]: sampled, not reviewed yet
            (r[0], same(r[0]), 0.95, "consensus"), (r[1], _cut(rle[r[1]], 0.5), 0.80, "consensus"),
            (r[2], _cut(rle[r[2]], 0.5), 0.70, "consensus"), (r[3], same(r[3]), 0.50, "adjudicated"),
            (r[4], _cut(rle[r[4]], 0.82), 0.55, "adjudicated"), (r[5], None, 0.90, "reject-mask"),
        ]
        with cat.transaction():
            for tid, mask, agreement, decision in plan:
                cat.conn.execute("INSERT OR REPLACE INTO consensus (triplet_id, rle, agreement, decision) "
                                 "VALUES (?, ?, ?, ?)", (tid, mask, agreement, decision))
                for annotator in ("ann1", "ann2"):
                    cat.conn.execute("INSERT INTO reviews (triplet_id, task_id, annotator, rle, verdict) "
                                     "VALUES (?, ?, ?, ?, ?)", (tid, f"task-{tid}", annotator, mask, "accept"))
            (run_id, counts), = cat.conn.execute("SELECT run_id, counts_json FROM runs WHERE stage='sam-refine'")
            counts = {**json.loads(counts), "round": 1, "round_routes": {"accept": 20, "review": 10}}
            cat.conn.execute("UPDATE runs SET counts_json=? WHERE run_id=?", (json.dumps(counts), run_id))
            counts2 = {**counts, "round": 2, "round_routes": {"accept": 4, "review": 6}}
            cat.conn.execute("INSERT INTO runs VALUES ('sam-refine-r2', 'sam-refine', '', '', '9999-01-01T00:00:00', "
                             "'9999-01-01T00:00:01', ?)", (json.dumps(counts2),))
        ious = {tid: masks.iou(masks.loads(rle[tid]), masks.loads(m)) for tid, m, _, d in plan if m}
        agreements = [a for (a,) in cat.conn.execute("SELECT agreement FROM consensus WHERE agreement IS NOT NULL")]
    assert 0.75 <= ious[s[3]] < 0.9 and ious[s[4]] < 0.75 and 0.75 <= ious[r[4]] < 0.9 and ious[r[1]] < 0.75

    run_stats(ws, cfg)                    # not forced: the measured quality changed, so stats.json is rewritten
    report = run_export(ws, cfg, progress=False)
    assert not report.up_to_date
    stats = json.loads((ws.reports / "stats.json").read_text())
    q = json.loads((ws.reports / "quality.json").read_text())
    card = (ws.exports / "hf" / "README.md").read_text(encoding="utf-8")
    return Planted(ws, unsampled, unreviewed, card_before, q, ious, card, stats, agreements)


def test_auto_accepted_block_counts_failures_exclusions_and_pending(planted: Planted) -> None:
    a = planted.q["auto_accepted"]
    assert (a["population"], a["sampled"], a["reviewed"], a["awaiting_review"]) == (24, 9, 8, 1)
    assert (a["pending_adjudication"], a["expression_rejected"], a["mask_rejected"], a["corrected"]) == (1, 1, 1, 2)
    # measured: three identical masks, one at ~0.82, one at ~0.5, one reject-mask (IoU 0)
    assert a["n"] == 6 and a["iou90"] == rate(3, 6) and a["iou75"] == rate(4, 6)
    lo, hi = wilson(3, 6)
    assert a["iou90"]["ci95"] == [round(lo, 6), round(hi, 6)]
    assert sum(v["n"] for v in a["by_category"].values()) == 6
    assert sum(v["n"] for v in a["by_size"].values()) == 6 and set(a["by_size"]) <= {"small", "medium", "large"}
    assert sum(v["iou90"]["k"] for v in a["by_category"].values()) == 3


def test_review_routes_and_agreement(planted: Planted) -> None:
    q = planted.q
    assert q["consensus"]["triplets"] == 3 and q["consensus"]["iou90"] == q["consensus"]["iou75"] == rate(1, 3)
    assert q["adjudicated"]["triplets"] == 2 and q["adjudicated"]["iou90"] == rate(1, 2)
    assert q["adjudicated"]["iou75"] == rate(2, 2)
    assert q["review"] == {"routed": 6, "decided": 6, "decisions": {"adjudicated": 2, "consensus": 3, "reject-mask": 1}}
    ag = q["agreement"]
    values = planted.agreements
    assert ag["tasks"] == len(values) == 16 and ag["reviews_per_task"] == 2.0
    assert ag["mean"] == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert ag["at_least_min"] == rate(sum(v >= 0.75 for v in values), 16)


def test_rounds_and_their_comparison(planted: Planted) -> None:
    r1, r2 = planted.q["rounds"]
    assert (r1["round"], r1["decided"], r1["accepted"], r1["sampled"], r1["review_tasks"]) == (1, 30, 20, 5, 15)
    assert r1["auto_accept_share"] == pytest.approx(20 / 30, abs=1e-6) and r1["precision"] == rate(3, 5)
    assert (r2["round"], r2["decided"], r2["review_tasks"], r2["precision"]) == (2, 10, 10, rate(0, 1))
    c = planted.q["round_comparison"]
    assert c["fewer_tasks"] is True and c["precision_not_lower"] is False
    assert "Round 2 sent 10 tasks to people (round 1: 15)" in planted.q["statement"]
    assert "a lower measured precision" in planted.q["statement"]


def test_statement_says_the_numbers_or_that_nothing_was_measured(planted: Planted) -> None:
    text = planted.q["statement"]
    assert text.startswith("Auto-accepted masks: 50.0 % at IoU >= 0.9 against the reviewers' consensus")
    lo, hi = wilson(3, 6)
    assert f"95 % CI {100 * lo:.1f}-{100 * hi:.1f} %" in text and "6 measured of 9 sampled" in text
    assert "66.7 % at IoU >= 0.75" in text
    assert "not measured yet" in planted.unsampled["statement"] and "no audit sample" in planted.unsampled["statement"]
    assert "not measured yet" in planted.unreviewed["statement"]
    assert "has not been reviewed" in planted.unreviewed["statement"]
    md = quality_markdown(planted.q)
    assert md.startswith("# Mask quality") and text in md and "| auto-accepted (audit sample) | 6 |" in md
    assert (planted.ws.reports / "QUALITY.md").read_text(encoding="utf-8") == md


def test_stats_card_report_and_cli_carry_the_same_numbers(planted: Planted) -> None:
    assert planted.stats["quality"] == planted.q
    assert "## Mask quality" in planted.card and planted.q["statement"] in planted.card
    assert "| auto-accepted (audit sample) | 6 | 50.0 %" in planted.card
    assert "## Mask quality" in planted.card_before and "not measured yet" in planted.card_before
    assert "| auto-accepted (audit sample)" not in planted.card_before
    quality = load_quality(planted.ws.reports)
    assert quality == planted.q
    with Catalog(planted.ws.catalog_path) as cat:
        page = summary_html(cat.summary(), [], planted.ws.reports, None, quality)
    assert "Mask quality" in page and "auto-accepted (audit sample)" in page and "quality.json" in page
    result = CliRunner().invoke(app, ["quality", "-w", str(planted.ws.path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == planted.q
    result = CliRunner().invoke(app, ["quality", "-w", str(planted.ws.path)])
    assert result.exit_code == 0 and "Auto-accepted masks: 50.0 %" in result.output and "QUALITY.md" in result.output


def test_report_without_quality_json_has_no_table(tmp_path: Path) -> None:
    assert load_quality(tmp_path) is None
    (tmp_path / "quality.json").write_text("[1, 2]")
    assert load_quality(tmp_path) is None
