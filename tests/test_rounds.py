"""Data-engine rounds: ``sam-refine --round N`` re-decides only the triplets still waiting for
review; with a new model the decided triplets' masks are carried into its set unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from risbench_builder.catalog import Catalog
from risbench_builder.readmodel import current_proposal_set
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.review.sample import current_round
from risbench_builder.stages.refine import run_refine, undecided
from risbench_builder.workspace import init_workspace


def _workspace(tmp_path: Path):
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump({"synthetic": {"out": "sources", "seed": 4, "scenes": 3, "patches_per_scene": 2},
                                    "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                                    "refine": {"segmenter": "box", "jitter_k": 0,
                                               "route": {"min_area_ratio": 5.0}}}))        # box masks: all to review
    ws = init_workspace(tmp_path / "ws", spec)
    run_ingest(ws, ws.load(), progress=False)
    report = run_refine(ws, ws.load(), progress=False, round_no=1)
    assert report.round_routes == {"review": report.proposals}
    with Catalog(ws.catalog_path) as cat, cat.transaction():
        ids = [t for (t,) in cat.conn.execute("SELECT triplet_id FROM proposals ORDER BY triplet_id")]
        decided = ids[: len(ids) // 2]                      # people decided the first half in round 1
        for tid in decided:
            rle = cat.conn.execute("SELECT rle FROM proposals WHERE triplet_id=?", (tid,)).fetchone()[0]
            cat.conn.execute("INSERT INTO consensus VALUES (?, ?, ?, ?, ?)", (tid, rle, 0.95, "consensus", None))
    return ws, ids, decided


def _set_route(ws, **route) -> None:
    data = yaml.safe_load(ws.pipeline_path.read_text())
    data["refine"]["route"] = route
    ws.pipeline_path.write_text(yaml.safe_dump(data))


def test_round_two_with_new_thresholds_re_decides_only_undecided(tmp_path: Path) -> None:
    ws, ids, decided = _workspace(tmp_path)
    with Catalog(ws.catalog_path) as cat:
        assert undecided(cat) == set(ids) - set(decided)
    _set_route(ws, min_area_ratio=0.0)                      # recalibrated: box masks now pass
    report = run_refine(ws, ws.load(), progress=False, round_no=2)
    assert report.round == 2 and report.proposals == 0 and report.rerouted == len(ids) - len(decided)
    assert report.round_routes == {"accept": len(ids) - len(decided)}
    with Catalog(ws.catalog_path) as cat:
        rows = {t: (route, rnd) for t, route, rnd in cat.conn.execute("SELECT triplet_id, route, round FROM proposals")}
        counts = json.loads(cat.conn.execute("SELECT counts_json FROM runs WHERE stage='sam-refine' "
                                             "ORDER BY started DESC, rowid DESC").fetchone()[0])
    assert all(rows[t] == ("review", 1) for t in decided)             # decided in round 1: untouched
    assert all(rows[t] == ("accept", 2) for t in set(ids) - set(decided))
    assert counts["round"] == 2 and counts["round_routes"] == {"accept": len(ids) - len(decided)}

    # a plain rerun (`build --stage all` after the round) goes on with round 2: it changes nothing,
    # where as "round 1" it re-routed round 1's decided masks under round 2's thresholds
    again = run_refine(ws, ws.load(), progress=False)
    assert again.round == 2 and again.rerouted == 0
    with Catalog(ws.catalog_path) as cat:
        assert {t: (route, rnd) for t, route, rnd in cat.conn.execute(
            "SELECT triplet_id, route, round FROM proposals")} == rows
        assert current_round(cat) == 2


def test_round_two_with_a_new_model_carries_the_decided_masks(tmp_path: Path) -> None:
    ws, ids, decided = _workspace(tmp_path)
    data = yaml.safe_load(ws.pipeline_path.read_text())
    data["refine"].update(segmenter="grabcut", route={"min_area_ratio": 0.0})
    ws.pipeline_path.write_text(yaml.safe_dump(data))
    report = run_refine(ws, ws.load(), progress=False, round_no=2)
    assert report.carried == len(decided) and report.proposals == len(ids) - len(decided)
    with Catalog(ws.catalog_path) as cat:
        assert current_proposal_set(cat) == ("grabcut", "")
        box = dict(cat.conn.execute("SELECT triplet_id, rle FROM proposals WHERE segmenter='box'"))
        cut = {t: (rle, rnd) for t, rle, rnd in cat.conn.execute(
            "SELECT triplet_id, rle, round FROM proposals WHERE segmenter='grabcut'")}
    assert set(cut) == set(ids)                                          # the new set is complete
    assert all(cut[t] == (box[t], 1) for t in decided)                   # carried as they were
    assert all(cut[t][1] == 2 for t in set(ids) - set(decided))          # re-segmented in round 2
