"""VRSBench per-image annotations: the published first eval record, json5, quirks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from risbench_builder.catalog import Catalog
from risbench_builder.config import IngestConfig, SourceConfig
from risbench_builder.sources.base import BadInput, Rejected, SourceRecord, load_json_bounded
from risbench_builder.sources.base import SourceLayoutError
from risbench_builder.sources.vrsbench import VrsbenchReader, grid_box, parse_grid_box
from risbench_builder.stages.ingest import run_ingest

# The first record of VRSBench_EVAL_referring.json (HF xiang709/VRSBench), as quoted by third-party fixtures.
FIRST_EVAL_RECORD = {
    "image_id": "P0003_0002.png", "question": "The large yellow vehicle situated closest to the green area.",
    "ground_truth": "{<25><40><33><60>}", "dataset": "RSBench", "question_id": 0, "type": "ref", "unique": False,
    "obj_corner": [0.333984375, 0.58984375, 0.287109375, 0.603515625, 0.255859375, 0.416015625, 0.2890625,
                   0.400390625],
    "obj_cls": "vehicle", "obj_ids": [0], "size_group": "",
}


def write_p0003_tree(root: Path) -> Path:
    """A VRSBench tree holding only P0003_0002, built from the published eval record."""
    ann = {
        "image": "P0003_0002.png", "caption": "A group of large yellow buses.",
        "objects": [{
            "obj_id": 0, "referring_sentence": FIRST_EVAL_RECORD["question"], "obj_cls": "vehicle",
            "obj_corner": FIRST_EVAL_RECORD["obj_corner"], "obj_coord": [0.26, 0.4, 0.33, 0.6],
            "is_unique": False, "obj_position": "", "obj_rel_position": "", "obj_size": "",
            "obj_rel_size": "", "flag": False}],
        "qa_pairs": [{"ques_id": "1", "question": "How many buses?", "type": "object quantity", "answer": "5"}],
    }
    (root / "Annotations_val").mkdir(parents=True)
    (root / "Annotations_val" / "P0003_0002.json").write_text(json.dumps(ann))
    images = root / "Images_val" / "Images_val"  # the release nests the val zip one level deeper
    images.mkdir(parents=True)
    Image.fromarray(np.full((512, 512, 3), 90, np.uint8)).save(images / "P0003_0002.png")
    (root / "VRSBench_EVAL_referring.json").write_text(json.dumps([FIRST_EVAL_RECORD]))
    return root


def test_grid_helpers_follow_the_notebook() -> None:
    assert parse_grid_box("{<25><40><33><60>}") == (25, 40, 33, 60)
    assert parse_grid_box("{<1><2><3><4>|<45>}") == (1, 2, 3, 4)
    assert parse_grid_box("<25><40>") is None
    assert grid_box((0.29, 0.0, 0.5, 1.0)) == (28, 0, 50, 100)  # int(0.29*100) == 28: float error kept
    assert grid_box((-0.01, 0.2, 1.02, 0.5), clamp=True) == (0, 20, 100, 50)


def test_json5_fallback() -> None:
    limits = IngestConfig()
    assert load_json_bounded(b'{"a": 1}', limits, "f") == {"a": 1}
    assert load_json_bounded(b"{a: 1, // comment\n b: [1, 2,],}", limits, "f") == {"a": 1, "b": [1, 2]}
    with pytest.raises(BadInput, match="not readable as JSON/JSON5"):
        load_json_bounded(b'{"objects": [', limits, "f")
    # json5 only below its size limit; nesting refused before any parser runs
    with pytest.raises(BadInput, match="too large for the json5 fallback"):
        load_json_bounded(b"{a: 1}", IngestConfig(json5_max_bytes=4), "f")
    with pytest.raises(BadInput, match="nested 100000 deep"):
        load_json_bounded(b"[" * 100_000, limits, "f")
    assert load_json_bounded(b'["[[[[[[[[[["]', IngestConfig(max_json_depth=2), "f") == ["[[[[[[[[[["]


def test_first_eval_record_ingests_to_its_pixel_box(make_workspace, tmp_path: Path) -> None:
    root = write_p0003_tree(tmp_path / "vrsbench")
    ws = make_workspace({"sources": [{"kind": "vrsbench", "root": str(root)}]})
    report = run_ingest(ws, ws.load(), progress=False)
    assert report.accepted == 1 and not report.rejected
    with Catalog(ws.catalog_path) as cat:
        row = cat.conn.execute("SELECT category, expression, box_xyxy, polygon, attributes_json, origin_split, "
                               "image_id FROM triplets").fetchone()
        scene = cat.conn.execute("SELECT scene_id, width, height FROM images").fetchone()
    category, expression, box, polygon, attrs, split, image_id = row
    corners = np.array(FIRST_EVAL_RECORD["obj_corner"]).reshape(4, 2) * 512
    assert json.loads(box) == [131.0, 205.0, 171.0, 309.0]
    assert json.loads(box) == [corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()]
    assert sorted(map(tuple, json.loads(polygon))) == sorted(map(tuple, corners.tolist()))
    # the pixel box on VRSBench's 0-100 grid is the published ground truth
    assert tuple(int(v / 512 * 100) for v in json.loads(box)) == parse_grid_box(FIRST_EVAL_RECORD["ground_truth"])
    attrs = json.loads(attrs)
    assert attrs["eval_grid_agrees"] is True and attrs["eval_grid"] == [25, 40, 33, 60]
    assert attrs["eval_question_id"] == 0 and attrs["is_unique"] is False
    assert (category, expression, split) == ("vehicle", FIRST_EVAL_RECORD["question"], "val")
    assert image_id == "vrsbench:P0003_0002" and scene == ("P0003", 512, 512)
    assert report.eval_checked == 1 and report.eval_agree == 1


def test_reader_quirks(tmp_path: Path) -> None:
    root = write_p0003_tree(tmp_path / "vrsbench")
    ann_path = root / "Annotations_val" / "P0003_0002.json"
    ann = json.loads(ann_path.read_text())
    extra = dict(ann["objects"][0], obj_id=1, referring_sentence="A truncated ship at the right edge.",
                 obj_cls="ship", obj_corner=None, obj_coord=[0.9, 0.5, 1.02, 0.6])
    ann["objects"].append(extra)
    ann_path.write_text(json.dumps(ann))
    (root / "Annotations_val" / "__MACOSX").mkdir()
    (root / "Annotations_val" / "__MACOSX" / "P0003_0002.json").write_text("junk")
    (root / "Annotations_val" / "._P0003_0002.json").write_text("junk")
    reader = VrsbenchReader(SourceConfig(kind="vrsbench", root=str(root)), root)
    assert reader.units() == ["Annotations_val/P0003_0002.json"]
    first, second = list(reader.read(reader.units()[0]))
    assert isinstance(first, SourceRecord) and isinstance(second, SourceRecord)
    assert first.image_path == root / "Images_val" / "Images_val" / "P0003_0002.png"
    assert second.attributes["box_from"] == "obj_coord" and second.attributes["obj_coord_over_1"] is True
    assert second.box_xyxy == pytest.approx((0.9 * 512, 0.5 * 512, 512.0, 0.6 * 512))


def test_missing_annotations_folder_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "Annotations_train.zip").write_bytes(b"PK")
    with pytest.raises(SourceLayoutError, match="unzip Annotations_train.zip"):
        VrsbenchReader(SourceConfig(kind="vrsbench", root=str(tmp_path)), tmp_path)


def test_bad_file_is_one_reject(tmp_path: Path) -> None:
    root = write_p0003_tree(tmp_path / "vrsbench")
    (root / "Annotations_val" / "P0003_0002.json").write_text('{"objects": [')
    reader = VrsbenchReader(SourceConfig(kind="vrsbench", root=str(root)), root)
    items = list(reader.read("Annotations_val/P0003_0002.json"))
    assert len(items) == 1 and isinstance(items[0], Rejected) and items[0].reason == "malformed_file"
