"""Our own exports, ingested back as finished datasets (source kinds ``refer``, ``native``, ``hf``),
give the triplets they were made from: the same expressions, the same masks bit for bit, the
same splits. This is the contract that lets ``risbench audit`` repair a dataset in place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.finalize.records import final_records
from risbench_builder.sources.imported import IMPORTED_SEGMENTER
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.workspace import init_workspace

from .conftest import Built, truth


def _reimport(built: Built, tmp_path: Path, kind: str):
    spec = tmp_path / f"{kind}.yaml"
    spec.write_text(yaml.safe_dump({"sources": [{"kind": kind, "root": str(built.ws.exports / kind)}]}))
    ws = init_workspace(tmp_path / kind, spec)
    report = run_ingest(ws, ws.load(), progress=False)
    return ws, report


@pytest.mark.parametrize("kind", ["refer", "native", "hf"])
def test_an_export_ingested_back_gives_the_same_triplets(built: Built, tmp_path: Path, kind: str) -> None:
    expected_masks = truth(built.ws)
    with Catalog(built.ws.catalog_path) as cat:
        expected = {r.triplet_id: (r.expression, r.split, r.category) for r in final_records(cat)}
    ws, report = _reimport(built, tmp_path, kind)
    assert sum(report.rejected.values()) == 0, report.rejected
    with Catalog(ws.catalog_path) as cat:
        rows = cat.conn.execute(
            "SELECT t.attributes_json, t.expression, t.origin_split, t.category, p.rle, i.width, i.height "
            "FROM triplets t JOIN images i USING (image_id) JOIN proposals p USING (triplet_id) "
            "WHERE p.segmenter = ?", (IMPORTED_SEGMENTER,)).fetchall()
        assert cat.count("triplets") == len(rows) == len(expected)
    seen = set()
    for attrs, expression, split, category, rle, w, h in rows:
        origin = json.loads(attrs)["origin_triplet_id"]
        seen.add(origin)
        want_expression, want_split, want_category = expected[origin]
        assert (expression, split, category) == (want_expression, want_split, want_category)
        mask = masks.decode(masks.loads(rle))
        assert mask.shape == (h, w)
        assert np.array_equal(mask, expected_masks[origin]), origin
    assert seen == set(expected)


def test_reimported_masks_are_the_current_proposals_and_have_signals(built: Built, tmp_path: Path) -> None:
    from risbench_builder.readmodel import current_proposal_set

    ws, report = _reimport(built, tmp_path, "refer")
    assert report.as_dict()["segmenter"] == IMPORTED_SEGMENTER
    with Catalog(ws.catalog_path) as cat:
        assert current_proposal_set(cat) == (IMPORTED_SEGMENTER, "")
        scores = [json.loads(s) for (s,) in cat.conn.execute("SELECT scores_json FROM proposals")]
    assert all({"area", "box_iou", "components", "area_ratio"} <= set(s) for s in scores)
    assert all(s["area"] > 0 for s in scores)
