"""A small build of the demo recipe, shared by the QA tests, with review, consensus, final and
reject rows written directly (those stages may not exist yet), so every gallery has content."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.config import recipe_path
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine
from risbench_builder.workspace import Workspace, init_workspace


def demo_pipeline(scenes: int = 4) -> dict:
    """The shipped demo recipe, smaller and with fewer jittered prompts so tests stay fast."""
    data = yaml.safe_load(recipe_path("demo").read_text())
    data["synthetic"]["scenes"] = scenes
    data["refine"]["jitter_k"] = 2
    return data


def add_downstream_rows(ws: Workspace) -> dict[str, list[str]]:
    """Reviews by three annotators, consensus, final, rejects and a geometry.json, on chosen triplets."""
    with Catalog(ws.catalog_path) as cat:
        rows = cat.conn.execute("SELECT p.triplet_id, p.rle FROM proposals p ORDER BY p.triplet_id").fetchall()
        reviewed, finals = rows[:6], rows[6:12]
        with cat.transaction():
            for n, (tid, rle_text) in enumerate(reviewed):
                m = masks.decode(masks.loads(rle_text))
                shifted = np.roll(m, 3 * (n + 1), axis=1)
                for annotator, mask, verdict in (("alice", m, "accept"), ("bob", shifted, "corrected"),
                                                 ("carol", m, "reject-mask")):
                    cat.insert("reviews", ("triplet_id", "task_id", "annotator", "rle", "verdict", "corrected_expression"),
                               [(tid, f"task-{n}", annotator, masks.dumps(masks.encode(mask)), verdict,
                                 "the one on the left" if annotator == "bob" else None)])
                agreement = masks.mask_iou(m, shifted)
                cat.insert("consensus", ("triplet_id", "rle", "agreement", "decision"),
                           [(tid, rle_text, round((agreement + 2) / 3, 4), "consensus")])
            cat.insert("final", ("triplet_id", "split", "mask_origin"),
                       [(tid, "test" if i % 2 else "train", "auto") for i, (tid, _) in enumerate(finals)]
                       + [(reviewed[0][0], "val", "consensus")])
            cat.add_rejects("finalize", [(rows[12][0], "too_few_words", "2 words < 3"),
                                         (rows[13][0], "geometry_contradiction", "'left': centroid in the right third")],
                            "finalize-test")
            cat.add_rejects("ingest", [("vrsbench:Annotations_val/09999_0001.json#obj0", "missing_image",
                                        "09999_0001.png: no such file")], "ingest-test")
    (ws.reports / "geometry.json").write_text(json.dumps([
        {"triplet_id": rows[13][0], "contradictions": [{"word": "left", "reason": "centroid in the right third"}]},
        {"triplet_id": rows[14][0], "contradictions": [{"word": "top", "reason": "centroid in the bottom third"}]}]))
    return {"reviewed": [r[0] for r in reviewed], "final": [r[0] for r in finals] + [reviewed[0][0]],
            "too_few_words": [rows[12][0]], "contradictions": [rows[13][0], rows[14][0]]}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Workspace, dict[str, list[str]]]:
    """An ingested and refined demo workspace (built once per session) and the ids used downstream."""
    root = tmp_path_factory.mktemp("qa")
    spec = root / "demo.yaml"
    spec.write_text(yaml.safe_dump(demo_pipeline()))
    ws = init_workspace(root / "demo", spec)
    cfg = ws.load()
    run_ingest(ws, cfg, progress=False)
    run_refine(ws, cfg, progress=False)
    return ws, add_downstream_rows(ws)


@pytest.fixture
def workspace(built, tmp_path) -> tuple[Workspace, dict[str, list[str]]]:
    """A private copy of the built workspace (tests may change its catalog)."""
    ws, ids = built
    copy = tmp_path / "demo"
    shutil.copytree(ws.path, copy, ignore=shutil.ignore_patterns("thumbs", "data", "index.html"))
    return Workspace(copy), ids
