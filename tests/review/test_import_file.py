"""The review queue and the Label Studio import file, offline (what `make demo` shows)."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.review import ReviewError, export_import_file, review_queue, review_status
from risbench_builder.readmodel import confidence
from risbench_builder.review.tasks import model_version, resolve_roots, resource_text
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine


@pytest.fixture
def refined(make_workspace):
    ws = make_workspace({"synthetic": {"out": "sources", "seed": 3, "scenes": 2, "patches_per_scene": 2},
                         "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                         "refine": {"segmenter": "box", "jitter_k": 0, "route": {"min_area_ratio": 5.0}}})
    run_ingest(ws, ws.load(), progress=False)
    run_refine(ws, ws.load(), progress=False)
    return ws


def test_import_file_holds_the_queue_most_uncertain_first(refined) -> None:
    out = export_import_file(refined)
    tasks = json.loads(out.path.read_text())
    with Catalog(refined.catalog_path) as cat:
        queue = review_queue(cat)
        proposals = dict(cat.conn.execute("SELECT triplet_id, rle FROM proposals"))
        paths = dict(cat.conn.execute("SELECT t.triplet_id, i.path FROM triplets t JOIN images i USING (image_id)"))
    assert out.tasks == len(tasks) == len(queue) > 0
    assert out.path == refined.path / "review" / "import-tasks.json"
    assert out.document_root == refined.path / "sources"               # parent of the image folder
    scores = [t["predictions"][0]["score"] for t in tasks]
    assert scores == sorted(scores)
    for task in tasks:
        tid = task["data"]["triplet_id"]
        assert task["data"]["image"].startswith("/data/local-files/?d=vrsbench/")
        assert out.document_root / unquote(task["data"]["image"].split("?d=", 1)[1]) == refined.resolve(paths[tid])
        pred = task["predictions"][0]
        assert pred["model_version"] == "box" and {"expression", "category", "note"} <= task["data"].keys()
        (region,) = pred["result"]
        h, w = region["original_height"], region["original_width"]
        assert masks.brush_to_coco(region["value"]["rle"], h, w) == masks.loads(proposals[tid])
    # a triplet with a review decision leaves the queue
    with Catalog(refined.catalog_path) as cat, cat.transaction():
        cat.insert("consensus", ("triplet_id", "decision"), [(tasks[0]["data"]["triplet_id"], "adjudicate")])
    assert export_import_file(refined).tasks == out.tasks - 1


def test_labeling_config_and_guidelines_ship(refined) -> None:
    cfg = resource_text("labeling_config.xml")
    for name in ('name="image"', 'name="expression"', 'name="category"', 'name="mask"', 'name="verdict"',
                 'name="expression_fix"', 'required="true"'):
        assert name in cfg
    for verdict in ("accept", "corrected", "reject-mask", "expression-ambiguous", "expression-wrong"):
        assert f'value="{verdict}"' in cfg and f"`{verdict}`" in resource_text("GUIDELINES.md")


def test_helpers(refined) -> None:
    assert confidence({"box_iou": 0.5, "iou_pred": 1.4, "forced_review": "geometry", "area": 30.0}) == 0.75
    assert confidence({}) == 0.0
    version = model_version("sam:vit_b", "ab" * 32, "adapters/rsis-v1.safetensors")
    assert version == "sam:vit_b@abababababab+adapter:rsis-v1"
    cfg = refined.load().review.model_copy(update={"image_root": "sources", "document_root": "sources"})
    with pytest.raises(ReviewError, match="must be a subfolder"):
        resolve_roots(refined, cfg, [])
    cfg = refined.load().review.model_copy(update={"image_root": "sources/vrsbench/Images_val"})
    with Catalog(refined.catalog_path) as cat:
        paths = [p for (p,) in cat.conn.execute("SELECT path FROM images")]
    with pytest.raises(ReviewError, match="outside review.image_root"):
        resolve_roots(refined, cfg, paths)
    info = review_status(refined)                                     # nothing pushed yet: still answers
    assert info["tasks_pushed"] == 0 and info["queue_not_pushed"] > 0 and info["agreement"] == {"n": 0}
