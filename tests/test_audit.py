"""``risbench audit`` on fake RRSIS-D, RefSegRS and RISBench trees in their real layouts, with every
defect kind planted: each planted defect is found, flagged triplets (and only they) wait for
review, and the repair loop writes the dataset back in its layout with CHANGES.csv."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.readmodel import current_proposal_set, review_queue
from risbench_builder.sources.imported import IMPORTED_SEGMENTER
from risbench_builder.stages import run_plan
from risbench_builder.stages.audit import run_audit
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.sources.refer import load_plain_pickle

from .data.native.data import make_refsegrs, make_risbench_native
from .data.refer.data import make_rrsisd

REPAIR = {"finalize": {"min_mask_pixels": 0, "min_mask_box_iou": 0.0, "min_words": 0, "require_distinguisher": False,
                       "dedupe": False, "geometry_check": "flag", "split": {"protocol": "origin"}}}


def _audited(make_workspace, tmp_path: Path, kind: str, make, **extra):
    planted = make(tmp_path / "data")
    ws = make_workspace({"sources": [{"kind": kind, "root": str(tmp_path / "data"), "name": kind}],
                         "refine": {"segmenter": "box", "jitter_k": 0}, **extra})
    run_ingest(ws, ws.load(), progress=False)
    result = run_audit(ws, ws.load(), fresh=False, progress=False)
    return ws, planted, result


def _found(result, kind: str) -> set[tuple[str, str]]:
    """(file stem, expression) of the triplets flagged with ``kind`` (RefSegRS names have no extension)."""
    return {(Path(e["file_name"]).stem, e["expression"]) for e in result.flagged
            if any(r["kind"] == kind for r in e["reasons"])}


# A native set has no boxes: a sentence whose mask is missing or empty has nothing that locates
# its object, so it cannot become a triplet; ingest rejects it with that reason and audit counts it.
CANNOT_BE_TRIPLETS = {"missing_mask", "empty_mask"}


def _check_planted(result, planted: dict, native: bool = False) -> None:
    assert planted, "the fake tree planted nothing"
    missed = {}
    for kind, pairs in planted.items():
        if native and kind in CANNOT_BE_TRIPLETS:
            if result.rejected_at_ingest.get(kind, 0) < len(set(pairs)):
                missed[kind] = pairs
            continue
        missed[kind] = sorted({(Path(f).stem, e) for f, e in pairs} - _found(result, kind))
    assert {k: v for k, v in missed.items() if v} == {}


def test_audit_finds_every_defect_planted_in_a_fake_rrsisd(make_workspace, tmp_path: Path) -> None:
    ws, planted, result = _audited(make_workspace, tmp_path, "refer", make_rrsisd)
    assert set(planted) >= {"size_mismatch", "missing_mask", "undecodable_mask", "empty_mask", "mask_outside_box",
                            "mask_box_disagreement", "many_components", "duplicate_expression", "duplicate_mask",
                            "split_leak_image", "position_contradiction"}
    _check_planted(result, planted)
    data = json.loads((ws.reports / "audit.json").read_text())
    assert data["flagged_triplets"] == len(result.flagged) and data["counts"]["size_mismatch"] >= 1
    assert {"triplet_id", "expression", "file_name", "reasons"} <= set(data["flagged"][0])
    assert "## `size_mismatch`" in (ws.reports / "AUDIT.md").read_text()
    # the flagged triplets (and only they) are the review queue; the rest are accepted as they are
    with Catalog(ws.catalog_path) as cat:
        assert current_proposal_set(cat) == (IMPORTED_SEGMENTER, "")
        queued = {q.triplet_id for q in review_queue(cat)}
        routes = dict(cat.conn.execute("SELECT route, COUNT(*) FROM proposals GROUP BY route"))
    assert queued == {e["triplet_id"] for e in result.flagged}
    assert routes == {"review": len(result.flagged), "accept": result.triplets - len(result.flagged)}


def test_a_clean_rrsisd_has_no_findings(make_workspace, tmp_path: Path) -> None:
    _, planted, result = _audited(make_workspace, tmp_path, "refer", lambda root: make_rrsisd(root, defects=False))
    assert planted == {} and result.flagged == [] and result.triplets > 0


def test_an_800x801_image_with_an_800x800_mask_is_reported_and_fitted(make_workspace, tmp_path: Path) -> None:
    """RRSIS-D's real quirk at its real size (Lsan2401/RMSIN#12): found, fitted, never a crash."""
    make_rrsisd(tmp_path / "data", defects=False, size=800)
    jpeg = sorted((tmp_path / "data/images/rrsisd/JPEGImages").iterdir())[0]
    with Image.open(jpeg) as im:
        taller = Image.new("RGB", (800, 801))
        taller.paste(im.convert("RGB"), (0, 0))
    taller.save(jpeg, quality=90)
    ws = make_workspace({"sources": [{"kind": "refer", "root": str(tmp_path / "data")}]})
    run_ingest(ws, ws.load(), progress=False)
    result = run_audit(ws, ws.load(), fresh=False, progress=False)
    hits = [e for e in result.flagged if e["file_name"] == jpeg.name]
    assert hits and all(r["kind"] == "size_mismatch" for e in hits for r in e["reasons"])
    assert any("mask 800x800 on a 800x801 image" in r["detail"] for e in hits for r in e["reasons"])
    with Catalog(ws.catalog_path) as cat:
        sizes = {tuple(masks.loads(r)["size"]) for (r,) in cat.conn.execute(
            "SELECT p.rle FROM proposals p JOIN triplets t USING (triplet_id) JOIN images i USING (image_id) "
            "WHERE i.height = 801")}
    assert sizes == {(801, 800)}


@pytest.mark.parametrize("make", [make_refsegrs, make_risbench_native], ids=["refsegrs", "risbench-native"])
def test_audit_finds_the_defects_planted_in_native_trees(make_workspace, tmp_path: Path, make) -> None:
    _, planted, result = _audited(make_workspace, tmp_path, "native", make)
    _check_planted(result, planted, native=True)


def test_fresh_masks_are_compared_and_offered_to_reviewers(make_workspace, tmp_path: Path) -> None:
    """With a segmenter, every imported mask meets a fresh one; the review tasks carry both
    masks as predictions; the fresh set does not replace the imported one."""
    from risbench_builder.review.tasks import export_import_file

    ws, planted, result = _audited(make_workspace, tmp_path, "refer", make_rrsisd,
                                   review={"image_root": str(tmp_path)})
    fresh = run_audit(ws, ws.load(), fresh=True, progress=False)
    assert fresh.fresh["segmenter"] == "box" and fresh.fresh["compared"] > 0
    assert _found(fresh, "fresh_mask_disagreement") >= {(Path(f).stem, e) for f, e in planted["mask_box_disagreement"]}
    with Catalog(ws.catalog_path) as cat:
        assert current_proposal_set(cat) == (IMPORTED_SEGMENTER, "")
    tasks = json.loads(export_import_file(ws).path.read_text())
    with Catalog(ws.catalog_path) as cat:        # the flagged triplets, and an audit sample of the accepted ones
        sampled = {t for (t,) in cat.conn.execute("SELECT triplet_id FROM samples")}
    assert sampled and not sampled & {e["triplet_id"] for e in fresh.flagged}
    assert {t["data"]["triplet_id"] for t in tasks} == {e["triplet_id"] for e in fresh.flagged} | sampled
    assert all([p["model_version"] for p in t["predictions"]] == ["imported", "box"] for t in tasks)


def test_the_repair_loop_writes_the_dataset_back_with_changes(make_workspace, tmp_path: Path) -> None:
    """Reviewers' decisions (written as the review loop stores them) replace flagged masks; the
    refer export is the RRSIS-D layout again, unflagged masks bit for bit as imported."""
    ws, planted, result = _audited(make_workspace, tmp_path, "refer", make_rrsisd,
                                   export={"targets": ["refer"], "dataset_name": "rrsisd"}, **REPAIR)
    flagged = [e["triplet_id"] for e in result.flagged]
    with Catalog(ws.catalog_path) as cat, cat.transaction():
        imported = dict(cat.conn.execute("SELECT triplet_id, rle FROM proposals"))
        sizes = {tid: masks.loads(rle)["size"] for tid, rle in imported.items()}
        fixed, dropped = flagged[0], flagged[1]
        h, w = sizes[fixed]
        repaired = np.zeros((h, w), np.uint8)
        repaired[h // 4: h // 2, w // 4: w // 2] = 1
        rle = masks.dumps(masks.encode(repaired))
        for annotator in ("ann1", "ann2"):
            cat.conn.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (fixed, "task-1", annotator, rle, "fixed", None, None))
        cat.conn.execute("INSERT INTO consensus VALUES (?, ?, ?, ?, ?)", (fixed, rle, 0.97, "consensus", None))
        cat.conn.execute("INSERT INTO consensus VALUES (?, ?, ?, ?, ?)", (dropped, None, 1.0, "reject", None))
    run_plan(ws, "finalize", "export", progress=False)
    rows = list(csv.DictReader((ws.exports / "CHANGES.csv").open()))
    by_tid = {(r["triplet_id"], r["change"]): r for r in rows}
    assert by_tid[(fixed, "mask_replaced")]["who"] == "consensus of ann1, ann2"
    assert by_tid[(fixed, "mask_replaced")]["why"]
    assert (dropped, "removed") in by_tid
    assert {r["change"] for r in rows} <= {"mask_replaced", "mask_confirmed", "removed", "mask_fitted",
                                           "awaiting_review"}
    refs = load_plain_pickle((ws.exports / "refer/rrsisd/refs(unc).p").read_bytes())
    instances = json.loads((ws.exports / "refer/rrsisd/instances.json").read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    exported = {r["triplet_id"]: (r, anns[r["ann_id"]]) for r in refs}
    assert fixed in exported and dropped not in exported
    assert np.array_equal(masks.decode(exported[fixed][1]["segmentation"][0]), repaired)
    unflagged = set(imported) - set(flagged)
    assert unflagged and unflagged <= set(exported)
    for tid in unflagged:
        assert masks.decode(exported[tid][1]["segmentation"][0]).tobytes() == \
            masks.decode(masks.loads(imported[tid])).tobytes()
    # the splits are the dataset's own
    with Catalog(ws.catalog_path) as cat:
        origin = dict(cat.conn.execute("SELECT triplet_id, origin_split FROM triplets"))
    assert all(r["split"] == origin[t] for t, (r, _) in exported.items())
    assert pickle.loads((ws.exports / "refer/rrsisd/refs(unc).p").read_bytes()) == refs


def test_a_repaired_refsegrs_exports_in_every_layout_and_passes_check(make_workspace, tmp_path: Path) -> None:
    """RefSegRS names roads and buildings, no RISBench class: they stay as ``other`` and every
    export (native as it came, refer, coco, hf) lists that category and passes ``risbench check``."""
    from risbench_builder.export.check.run import check_path

    ws, _, result = _audited(make_workspace, tmp_path, "native", make_refsegrs,
                             export={"targets": ["native", "refer", "coco", "hf"]}, **REPAIR)
    run_plan(ws, "finalize", "export", progress=False)
    reports = check_path(ws.exports, workers=0)
    assert reports and all(not r.failures for r in reports), [f for r in reports for f in r.failures][:5]
    instances = json.loads(next((ws.exports / "refer").glob("*/instances.json")).read_text())
    assert "other" in {c["name"] for c in instances["categories"]}
    lines = [ln for p in sorted((ws.exports / "native").glob("output_phrase_*.txt")) for ln in p.read_text().splitlines()]
    assert len(lines) == result.triplets - len(result.flagged)       # flagged ones wait for review


def test_split_leaks_by_image_bytes_and_by_scene() -> None:
    from risbench_builder.audit.findings import AuditRow, split_leaks

    def row(tid: str, sha: str, scene: str, split: str) -> AuditRow:
        return AuditRow(tid, f"img-{sha}", f"/x/{sha}.png", scene, sha, "native", "ship", "a ship", (0, 0, 4, 4),
                        {}, split, 8, 8, "")

    rows = [row("a", "s1", "P1", "train"), row("b", "s1", "P1", "test"),      # one image in two splits
            row("c", "s2", "P2", "train"), row("d", "s3", "P2", "val"),       # two patches of one scene
            row("e", "s4", "P3", "train"), row("f", "s5", "P3", "train")]     # one scene, one split: fine
    found = {tid: [k for k, _ in v] for tid, v in split_leaks(rows).items()}
    assert found == {"a": ["split_leak_image"], "b": ["split_leak_image"],
                     "c": ["split_leak_scene"], "d": ["split_leak_scene"]}


def test_a_tiny_object_whose_box_is_a_pixel_off_is_not_flagged() -> None:
    """A 4x4 vehicle whose box is one pixel short on each side: 44 % of its pixels lie outside the
    box and the box IoU is 0.25, yet nothing is wrong with the mask (bench_audit found such cases)."""
    from risbench_builder.audit.findings import AuditRow, measure, single_findings
    from risbench_builder.config import AuditConfig

    mask = np.zeros((32, 32), np.uint8)
    mask[10:14, 10:14] = 1
    rle = masks.dumps(masks.encode(mask))
    tiny = AuditRow("t", "i", "/x/i.png", "i", "s", "refer", "vehicle", "a car", (11.0, 11.0, 13.0, 13.0), {},
                    "train", 32, 32, rle)
    assert single_findings(measure(tiny), AuditConfig()) == []
    far = AuditRow("f", "i", "/x/i.png", "i", "s", "refer", "vehicle", "a car", (20.0, 20.0, 24.0, 24.0), {},
                   "train", 32, 32, rle)
    assert {k for k, _ in single_findings(measure(far), AuditConfig())} == {"mask_outside_box", "mask_box_disagreement"}
