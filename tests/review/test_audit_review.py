"""Repairing an imported dataset through a real Label Studio: audit flags, push sends the dataset's
mask and a fresh one as two predictions, two annotators correct a mask, pull decides it, and
the export's CHANGES.csv names who did."""

from __future__ import annotations

import csv
import uuid

import numpy as np
import pytest
import yaml

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.review import LabelStudio, pull, push
from risbench_builder.review.sync import load_state
from risbench_builder.stages import run_plan
from risbench_builder.stages.audit import run_audit
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.workspace import init_workspace
from tests.data.refer.data import make_rrsisd
from tests.review.conftest import TOKEN_ENV
from tests.review.test_review_server import answer, make_users

pytestmark = pytest.mark.labelstudio


def test_audited_import_is_repaired_through_label_studio(label_studio, monkeypatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, label_studio.token)
    name = f"audit-{uuid.uuid4().hex[:6]}"
    data = label_studio.document_root / f"{name}-data"
    make_rrsisd(data)
    spec = label_studio.document_root / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({
        "name": name, "sources": [{"kind": "refer", "root": str(data)}],
        "refine": {"segmenter": "box", "jitter_k": 0},
        "review": {"url": label_studio.url, "token_env": TOKEN_ENV, "document_root": str(label_studio.document_root),
                   "annotators_per_task": 2, "min_agreement": 0.6, "project_title": name},
        "finalize": {"min_mask_pixels": 0, "min_mask_box_iou": 0.0, "min_words": 0, "require_distinguisher": False,
                     "dedupe": False, "geometry_check": "flag", "split": {"protocol": "origin"}},
        "export": {"targets": ["refer"], "dataset_name": "rrsisd"}}))
    ws = init_workspace(label_studio.document_root / name, spec)
    run_ingest(ws, ws.load(), progress=False)
    result = run_audit(ws, ws.load(), progress=False)          # the pipeline names a segmenter: fresh masks
    assert result.fresh["compared"] > 0
    flagged = {e["triplet_id"] for e in result.flagged}

    report = push(ws)
    with Catalog(ws.catalog_path) as cat:        # flagged triplets and an audit sample of the accepted ones
        sampled = {t for (t,) in cat.conn.execute("SELECT triplet_id FROM samples")}
    assert report.imported == len(flagged | sampled) and not flagged & sampled
    ls = LabelStudio(label_studio.url, label_studio.token)
    tasks = load_state(ws)["tasks"]
    assert set(tasks) == flagged | sampled
    some = sorted(flagged)[0]
    predictions = ls.get("/api/predictions/", task=tasks[some])
    assert sorted(p["model_version"] for p in predictions) == ["box", "imported"]

    with Catalog(ws.catalog_path) as cat:
        (rle,) = cat.conn.execute("SELECT rle FROM proposals WHERE triplet_id=? AND segmenter='box'",
                                  (some,)).fetchone()
    fresh_mask = masks.decode(masks.loads(rle))
    users = make_users(ls, "a", "b")
    for uid, _ in users.values():
        ls.create_annotation(tasks[some], answer("corrected", fresh_mask), completed_by=uid)
    pulled = pull(ws)
    assert pulled.reviews_new == 2

    run_plan(ws, "finalize", "export", progress=False)
    rows = [r for r in csv.DictReader((ws.exports / "CHANGES.csv").open()) if r["triplet_id"] == some]
    change = next(r for r in rows if r["change"] in ("mask_replaced", "mask_confirmed"))
    assert all(email in change["who"] for _, email in users.values())
    assert change["why"] == "; ".join(f"{r['kind']}: {r['detail']}" for e in result.flagged
                                      if e["triplet_id"] == some for r in e["reasons"])
    with Catalog(ws.catalog_path) as cat:
        (final_rle,) = cat.conn.execute("SELECT rle FROM consensus WHERE triplet_id=?", (some,)).fetchone()
    assert np.array_equal(masks.decode(masks.loads(final_rle)), fresh_mask)
