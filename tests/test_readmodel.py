"""One read-model: after two sam-refine runs with different segmenters, finalize, calibrate,
review pull and the QA report all take the same proposal of each triplet."""

from __future__ import annotations

import yaml

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.finalize.records import final_records
from risbench_builder.qa.records import load_records
from risbench_builder.readmodel import current_proposal_set, proposal_rle, review_queue, unmasked_count
from risbench_builder.review.sync import _Triplets
from risbench_builder.segment.calibrate import collect
from risbench_builder.stages.finalize import run_finalize
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine


def _refine_with(ws, segmenter: str) -> None:
    spec = yaml.safe_load(ws.pipeline_path.read_text())
    spec["refine"]["segmenter"] = segmenter
    ws.pipeline_path.write_text(yaml.safe_dump(spec))
    run_refine(ws, ws.load(), progress=False)


def _seen_by_everyone(ws) -> dict[str, set]:
    """The proposal set each former call site reads, and the masks they take."""
    with Catalog(ws.catalog_path) as cat:
        current = current_proposal_set(cat)
        rles = dict(cat.conn.execute("SELECT triplet_id, rle FROM proposals WHERE segmenter=? AND model_sha256=?",
                                     current))
        trusted = {tid: masks.loads(rle) for tid, rle in rles.items()}
        name, sha, samples = collect(cat, trusted)
        qa = load_records(cat)
        triplets = _Triplets(cat)
        final = {r.triplet_id: masks.dumps(r.rle) for r in final_records(cat) if r.mask_origin == "auto"}
        return {
            "current": {current},
            "calibrate": {(name, sha)},
            "qa": {(r.proposal.segmenter, r.proposal.model_sha256) for r in qa.values() if r.proposal},
            "queue": {(q.segmenter, q.model_sha256) for q in review_queue(cat)} or {current},
            "qa_masks_match": {all(r.proposal.rle == rles[t] for t, r in qa.items() if r.proposal)},
            "pull_masks_match": {all(triplets.proposal(t, None) == rles[t] for t in rles)},
            "final_masks_match": {bool(final) and all(final[t] == masks.dumps(masks.loads(rles[t])) for t in final)},
            "calibrate_covers": {len(samples) == len(rles)},
        }


def test_four_readers_agree_after_two_segmenters(make_workspace) -> None:
    ws = make_workspace({"synthetic": {"out": "sources", "seed": 5, "scenes": 2, "patches_per_scene": 2},
                         "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                         "refine": {"segmenter": "grabcut", "jitter_k": 1}})
    run_ingest(ws, ws.load(), progress=False)
    _refine_with(ws, "grabcut")
    _refine_with(ws, "box")
    with Catalog(ws.catalog_path) as cat:
        assert {s for (s,) in cat.conn.execute("SELECT DISTINCT segmenter FROM proposals")} == {"grabcut", "box"}
        tid, grabcut_rle = cat.conn.execute("SELECT triplet_id, rle FROM proposals WHERE segmenter='grabcut' "
                                            "ORDER BY triplet_id LIMIT 1").fetchone()
        # a task that showed the GrabCut mask is read against that mask, whatever is current
        assert _Triplets(cat).proposal(tid, {"segmenter": "grabcut", "model_sha256": ""}) == grabcut_rle
        assert proposal_rle(cat, tid) != grabcut_rle
    run_finalize(ws, ws.load(), progress=False)
    seen = _seen_by_everyone(ws)
    assert seen["current"] == {("box", "")}
    assert all(v == {("box", "")} for k, v in seen.items() if k in ("calibrate", "qa", "queue")), seen
    assert all(v == {True} for k, v in seen.items() if k.endswith(("match", "covers"))), seen

    # the newest finished run decides: GrabCut again (nothing recomputed) makes it current everywhere
    _refine_with(ws, "grabcut")
    run_finalize(ws, ws.load(), progress=False, force=True)
    seen = _seen_by_everyone(ws)
    assert all(v == {("grabcut", "")} for k, v in seen.items() if k in ("current", "calibrate", "qa", "queue")), seen
    assert all(v == {True} for k, v in seen.items() if k.endswith(("match", "covers"))), seen


def test_unmasked_counts_only_triplets_nothing_decides(make_workspace) -> None:
    """A proposal of the set, a sam-refine reject, a consensus mask or a review reject each settle
    a triplet; a proposal of another set does not."""
    ws = make_workspace({"synthetic": {"out": "sources", "seed": 7, "scenes": 2, "patches_per_scene": 2},
                         "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                         "refine": {"segmenter": "box", "jitter_k": 0}})
    run_ingest(ws, ws.load(), progress=False)
    run_refine(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        box = current_proposal_set(cat)
        ids = [t for (t,) in cat.conn.execute("SELECT triplet_id FROM triplets ORDER BY triplet_id")]
        assert len(ids) >= 5 and unmasked_count(cat, box) == 0
        assert unmasked_count(cat, ("grabcut", "")) == len(ids)
        with cat.transaction():
            cat.conn.execute("DELETE FROM proposals WHERE triplet_id IN (?, ?, ?, ?)", ids[:4])
            cat.add_rejects("sam-refine", [(ids[0], "degenerate_box", "")], None)
            cat.add_rejects("review", [(ids[1], "unusable", "")], None)
            cat.conn.execute("INSERT INTO consensus (triplet_id, rle, agreement, decision) "
                             "SELECT triplet_id, ?, 1.0, 'accept' FROM triplets WHERE triplet_id = ?",
                             (proposal_rle(cat, ids[4]), ids[2]))
        assert unmasked_count(cat, box) == 1          # ids[3]: its mask is gone and nothing decided it
