"""Readers of finished datasets (refer, native, hf) over fake trees in the real layouts.

They pass each dataset's own mask through undecoded and never raise on bad content: a hostile
pickle, an escaping path or a broken parquet file becomes a reject with its reason.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from risbench_builder.config import SourceConfig
from risbench_builder.sources import make_reader
from risbench_builder.sources.base import (
    MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, ImportedMask, Rejected, SourceRecord,
)
from risbench_builder.sources.hf import HfReader
from risbench_builder.sources.refer import ReferReader
from tests.data.hf.data import make_hf
from tests.data.native.data import make_refsegrs, make_risbench_native
from tests.data.refer.data import DIOR_CATEGORIES, make_rrsisd


def read_all(reader) -> list:
    return [item for unit in reader.units() for item in reader.read(unit)]


def records(items: list) -> list[SourceRecord]:
    return [i for i in items if isinstance(i, SourceRecord)]


def rejects(items: list) -> list[Rejected]:
    return [i for i in items if isinstance(i, Rejected)]


def refer_reader(root: Path) -> ReferReader:
    return make_reader(SourceConfig(kind="refer", root=str(root)), root)


# ------------------------------------------------------------------ refer
def test_refer_reads_every_sentence_of_rrsisd(tmp_path: Path) -> None:
    planted = make_rrsisd(tmp_path)
    reader = refer_reader(tmp_path)
    assert reader.units() == ["rrsisd/refs(unc).p"]
    items = read_all(reader)
    assert not rejects(items)
    recs = records(items)
    from_refs = [r for r in recs if r.mask is not None]
    lost = [r for r in recs if r.attributes.get("lost_mask")]
    assert (len(recs), len(from_refs), len(lost)) == (25, 23, 2)
    assert Counter(r.origin_split for r in recs) == {"train": 12, "val": 6, "test": 7}
    assert {r.category_raw for r in recs} <= set(DIOR_CATEGORIES)      # raw DIOR names; ingest normalises

    first = from_refs[0]
    assert first.object_ref == "ref1.sent1" and first.image_name == "00001.jpg"
    assert first.image_path == tmp_path / "images/rrsisd/JPEGImages/00001.jpg" and first.image_path.is_file()
    assert (first.expression, first.category_raw, first.box_xyxy) == ("The ship on the left", "ship", (5.0, 38.0, 24.0, 58.0))
    assert first.attributes == {"file": "rrsisd/refs(unc).p", "ref_id": 1, "ann_id": 1, "sent_id": 1,
                                "image_file": "00001.jpg", "declared_size": [96, 96]}
    assert first.expected_size is None and first.scene_id is None
    assert isinstance(first.mask, ImportedMask) and first.mask.path is None and first.mask.data is None
    assert set(first.mask.rle) == {"size", "counts"} and isinstance(first.mask.rle["counts"], str)
    assert first.mask.where == "rrsisd/instances.json annotation 1"

    # the reader judges nothing: planted mask defects pass through for ingest to find
    by_text = {(r.image_name, r.expression): r for r in from_refs}
    (bad,) = planted["undecodable_mask"]
    assert by_text[bad].mask.rle["counts"].startswith("garbage")
    (leaky_train, leaky_test) = planted["split_leak_image"]
    assert (by_text[leaky_train].origin_split, by_text[leaky_test].origin_split) == ("train", "test")
    (tall_image, _) = planted["size_mismatch"][0]
    assert Image.open(tmp_path / "images/rrsisd/JPEGImages" / tall_image).size == (96, 97)
    assert by_text[planted["size_mismatch"][0]].attributes["declared_size"] == [96, 96]

    # RMSIN#32: the XML's other descriptions, without masks, with the split of the image's refs
    assert sorted((r.image_name, r.expression) for r in lost) == sorted(planted["missing_mask"])
    assert lost[0].object_ref == "00002.xml.obj0" and lost[0].box_xyxy == (2.0, 2.0, 14.0, 10.0)
    assert lost[0].attributes == {"file": "images/rrsisd/ann_split/00002.xml", "object_index": 0, "lost_mask": True}
    assert {r.origin_split for r in lost} == {"train"} and lost[0].category_raw == "vehicle"


def test_refer_clean_tree_has_no_lost_expressions(tmp_path: Path) -> None:
    assert make_rrsisd(tmp_path, defects=False) == {}
    items = read_all(refer_reader(tmp_path))
    assert not rejects(items) and len(records(items)) == 23
    assert all(r.mask is not None for r in records(items))


def _rewrite(root: Path, refs=None, instances=None) -> None:
    if refs is not None:
        (root / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=4))
    if instances is not None:
        (root / "rrsisd" / "instances.json").write_text(json.dumps(instances))


def _load(root: Path) -> tuple[list, dict]:
    refs = pickle.loads((root / "rrsisd" / "refs(unc).p").read_bytes())
    return refs, json.loads((root / "rrsisd" / "instances.json").read_text())


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["reduce", "global"])
def test_refer_pickle_with_a_class_reference_is_refused_unexecuted(tmp_path: Path, payload: str) -> None:
    make_rrsisd(tmp_path)
    marker = tmp_path / "pwned"
    evil = [_Evil(marker)] if payload == "reduce" else [os.system]
    (tmp_path / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(evil, protocol=4))
    items = read_all(refer_reader(tmp_path))
    assert [(r.reason, r.ref) for r in items] == [(MALFORMED_FILE, "refer:rrsisd/refs(unc).p")]
    assert "system" in items[0].detail and "\n" not in items[0].detail
    assert not marker.exists()


def test_refer_bad_files_are_one_reject(tmp_path: Path) -> None:
    make_rrsisd(tmp_path)
    (tmp_path / "rrsisd" / "instances.json").write_text('{"images": [')
    (reject,) = read_all(refer_reader(tmp_path))
    assert reject.reason == MALFORMED_FILE and "instances.json" in reject.detail
    (tmp_path / "rrsisd" / "refs(unc).p").write_bytes(b"\x80\x04garbage")
    (reject,) = read_all(refer_reader(tmp_path))
    assert reject.reason == MALFORMED_FILE and "refs(unc).p" in reject.detail


def test_refer_paths_are_confined(tmp_path: Path) -> None:
    root = tmp_path / "refer"
    make_rrsisd(root)
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (96, 96)).save(outside)
    link = root / "images/rrsisd/JPEGImages/00001.jpg"
    link.unlink()
    link.symlink_to(outside)
    refs, inst = _load(root)
    inst["images"][3]["file_name"] = "../../../../outside.jpg"
    inst["images"][4]["file_name"] = str(outside)
    _rewrite(root, instances=inst)
    items = read_all(refer_reader(root))
    escaped = {r.ref.split("#")[1]: r.detail for r in rejects(items) if r.reason == PATH_ESCAPE}
    # image 1 (a link out): refs 1, 2; image 4 ('..'): refs 6, 7; image 5 (absolute): refs 8, 9
    assert sorted(escaped) == ["ref1", "ref2", "ref6", "ref7", "ref8", "ref9"]
    assert "outside the dataset folder" in escaped["ref1"] and "'..'" in escaped["ref6"]
    assert "absolute" in escaped["ref8"]
    assert len(records(items)) == 25 - 6


def test_refer_shapes_and_dangling_references(tmp_path: Path) -> None:
    make_rrsisd(tmp_path, defects=False)
    refs, inst = _load(tmp_path)
    anns = {a["id"]: a for a in inst["annotations"]}
    rle = anns[1]["segmentation"][0]
    anns[1]["segmentation"] = rle                                        # bare dict
    anns[2]["segmentation"] = [rle, anns[2]["segmentation"][0]]          # several RLEs
    anns[3]["segmentation"] = [[10, 10, 30, 10, 30, 30], [50, 50, 60, 50, 60, 60]]   # polygons
    anns[4]["segmentation"] = []                                         # none
    anns[5]["segmentation"] = [rle, [1, 2, 3, 4]]                        # mixed
    refs[5]["ann_id"] = 999                                              # dangling annotation
    refs[6]["image_id"] = anns[7]["image_id"] = 999                      # dangling image
    del refs[7]["category_id"]                                           # falls back to categories_id
    refs[8]["sentences"][0]["raw"] = ""                                  # falls back to sent
    refs[9]["sentences"][0].pop("raw")
    refs[9]["sentences"][0].pop("sent")                                  # then to tokens
    refs[10].update(triplet_id="t-0010", mask_origin="consensus")       # what our own export adds
    inst["images"][5]["scene_id"] = "P0042"
    refs.append("not a ref")
    _rewrite(tmp_path, refs, inst)
    items = read_all(refer_reader(tmp_path))
    recs = {r.object_ref: r for r in records(items)}
    assert recs["ref1.sent1"].mask.rle == rle
    assert recs["ref2.sent2"].mask.rle == {"size": [96, 96], "parts": [rle, anns[2]["segmentation"][1]]}
    assert recs["ref3.sent3"].mask.rle == {"size": [96, 96], "polygons": [[10, 10, 30, 10, 30, 30], [50, 50, 60, 50, 60, 60]]}
    assert recs["ref4.sent4"].mask is None
    assert recs["ref4.sent4"].attributes["mask_problem"].startswith("missing_mask: rrsisd/instances.json annotation 4")
    assert recs["ref5.sent5"].mask is None and recs["ref5.sent5"].attributes["mask_problem"].startswith("undecodable_mask")
    assert recs["ref8.sent8"].category_raw == DIOR_CATEGORIES[anns[8]["categories_id"]]
    assert recs["ref9.sent9"].expression == refs[8]["sentences"][0]["sent"]
    assert recs["ref10.sent10"].expression == " ".join(refs[9]["sentences"][0]["tokens"])
    assert recs["ref11.sent11"].attributes["origin_triplet_id"] == "t-0010"
    assert recs["ref11.sent11"].attributes["mask_origin"] == "consensus"
    assert recs["ref11.sent11"].scene_id == "P0042"
    bad = {r.ref.split("#")[1]: r for r in rejects(items)}
    assert set(bad) == {"ref6", "ref7", "idx23"}
    assert all(r.reason == MALFORMED_RECORD and "\n" not in r.detail for r in bad.values())
    assert "ann_id 999 is not in rrsisd/instances.json annotations" in bad["ref6"].detail
    assert "image_id 999 is not in rrsisd/instances.json images" in bad["ref7"].detail


# ------------------------------------------------------------------ native
def native_reader(root: Path):
    return make_reader(SourceConfig(kind="native", root=str(root)), root)


def test_native_reads_refsegrs_names_without_extension(tmp_path: Path) -> None:
    planted = make_refsegrs(tmp_path)
    reader = native_reader(tmp_path)
    assert reader.units() == ["output_phrase_test.txt", "output_phrase_train.txt", "output_phrase_val.txt"]
    items = read_all(reader)
    assert not rejects(items)
    recs = records(items)
    assert len(recs) == 16 and Counter(r.origin_split for r in recs) == {"train": 9, "val": 4, "test": 3}
    assert all(r.expression == r.expression.strip() and "\r" not in r.expression for r in recs)
    first = next(r for r in recs if r.unit == "output_phrase_train.txt")
    assert (first.object_ref, first.image_name, first.expression) == ("line1", "10001.tif", "the road in the middle")
    assert first.image_path == tmp_path / "images/10001.tif"
    assert first.mask == ImportedMask(path=tmp_path / "masks/10001.tif", where="output_phrase_train.txt line 1")
    assert first.attributes == {"file": "output_phrase_train.txt", "line": 1, "image_file": "10001",
                                "mask_file": "masks/10001.tif"}
    assert first.box_xyxy is None and first.scene_id is None and first.category_raw == "other"
    assert {r.category_raw for r in recs} == {"other", "vehicle"}         # roads and buildings: other
    (missing,) = [r for r in recs if r.mask is None]
    assert [(missing.image_name, missing.expression)] == planted["missing_mask"]
    assert missing.attributes["mask_problem"].startswith("missing_mask: no mask file for 20004")


def test_native_reads_risbench_with_and_without_index(tmp_path: Path) -> None:
    planted = make_risbench_native(tmp_path / "plain")
    recs = records(read_all(native_reader(tmp_path / "plain")))
    assert len(recs) == 15 and Counter(r.origin_split for r in recs) == {"train": 10, "val": 2, "test": 3}
    val = [r for r in recs if r.origin_split == "val"]
    assert [r.image_name for r in val] == ["train_7_0.png", "train_8_0.png"]
    assert [r.scene_id for r in val] == ["train_7", "train_8"]               # one RISBench image per imgIdx
    assert [(r.image_name, r.expression) for r in recs if r.mask is None] == planted["missing_mask"]
    assert {r.category_raw for r in recs if r.image_name.startswith("train_0")} == {"airplane"}  # inferred

    make_risbench_native(tmp_path / "ours", index=True)
    recs = records(read_all(native_reader(tmp_path / "ours")))
    first = next(r for r in recs if r.image_name == "train_0_0.png")
    assert (first.category_raw, first.scene_id) == ("airplane", "scene-train_0")
    assert first.attributes["origin_triplet_id"] == "t0000"
    assert next(r for r in recs if r.image_name == "test_2_0.png").category_raw == "soccer-ball-field"


def test_native_paths_are_confined_and_bad_lines_rejected(tmp_path: Path) -> None:
    root = tmp_path / "native"
    make_risbench_native(root)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    (root / "img_rgb" / "linked_0_0.png").symlink_to(outside)
    (root / "output_phrase_test.txt").write_bytes(
        b"../outside.png the ship\n/etc/passwd the ship\nlinked_0_0.png the ship\n\xff\xfe.png bad bytes\n"
        b"test_0_0.png the baseball diamond in the center\n")
    items = list(native_reader(root).read("output_phrase_test.txt"))
    assert [(getattr(i, "reason", "record"), i.ref.split("#")[1]) for i in items] == [
        (PATH_ESCAPE, "line1"), (PATH_ESCAPE, "line2"), (PATH_ESCAPE, "line3"), (MALFORMED_RECORD, "line4"),
        ("record", "line5")]
    assert "'..'" in items[0].detail and "absolute" in items[1].detail and "outside" in items[2].detail


# ------------------------------------------------------------------ hf
def hf_reader(root: Path, work: Path) -> HfReader:
    return make_reader(SourceConfig(kind="hf", root=str(root)), root, None, work)


def test_hf_extracts_each_distinct_image_once(tmp_path: Path) -> None:
    planted = make_hf(tmp_path / "src")
    reader = hf_reader(tmp_path / "src", tmp_path / "work")
    assert reader.units() == ["data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"]
    items = read_all(reader)
    assert not rejects(items)
    recs = records(items)
    assert len(recs) == 7 and Counter(r.origin_split for r in recs) == {"train": 5, "val": 2}
    images = sorted(p.name for p in (tmp_path / "work/images").iterdir())
    assert len(images) == 5 and not any(n.startswith(".part") for n in images)
    first = recs[0]
    assert first.image_name == "P0001_0001.png" and first.image_path == tmp_path / "work/images/P0001_0001.png"
    assert first.box_xyxy == (2.0, 10.0, 10.0, 20.0) and first.category_raw == "ship" and first.scene_id == "P0001"
    assert isinstance(first.mask.data, bytes) and first.mask.path is None and first.mask.rle is None
    assert {k: first.attributes[k] for k in ("file", "row", "origin_triplet_id", "upstream_origin_split", "image_id")} == {
        "file": "data/train-00000-of-00001.parquet", "row": 0, "origin_triplet_id": "t0000",
        "upstream_origin_split": "train", "image_id": "vrsbench:P0001_0001"}
    by_text = {r.expression: r for r in recs}
    assert by_text["the large ship"].image_name == "P0001_0001.png"          # same bytes, other name: one file
    renamed = by_text["the storage tank at the bottom"].image_name           # same name, other bytes
    assert renamed != "P0001_0001.png" and len(renamed) == len("0123456789abcdef.png")
    assert by_text["the bridge in the middle"].image_name == "P0003_0001.png"   # '..' never used as a path
    (missing,) = planted["missing_mask"]
    assert by_text[missing[1]].mask is None and "missing_mask" in by_text[missing[1]].attributes["mask_problem"]

    stamps = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "work/images").iterdir()}
    again = records(read_all(hf_reader(tmp_path / "src", tmp_path / "work")))
    assert [r.image_name for r in again] == [r.image_name for r in recs]
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "work/images").iterdir()} == stamps


@pytest.mark.parametrize("split_name, list_type", [("validation", False), ("val", True)])
def test_hf_reads_current_and_older_exports(tmp_path: Path, split_name: str, list_type: bool) -> None:
    """Our export as written now (``validation`` shards, bbox as the legacy ``Sequence``) and as
    written before (``val`` shards, bbox declared ``List``): both give the catalog split ``val``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from risbench_builder.export.schema import arrow_schema

    make_hf(tmp_path / "made")
    data = tmp_path / "src" / "data"
    data.mkdir(parents=True)
    for shard in sorted((tmp_path / "made" / "data").glob("*.parquet")):
        table = pa.Table.from_pylist(pq.read_table(shard).to_pylist(), schema=arrow_schema())
        meta = table.schema.metadata[b"huggingface"]
        if list_type:
            meta = meta.replace(b'"_type": "Sequence"', b'"_type": "List"')
        pq.write_table(table.replace_schema_metadata({b"huggingface": meta}),
                       data / shard.name.replace("validation", split_name))
    recs = records(read_all(hf_reader(tmp_path / "src", tmp_path / "work")))
    assert len(recs) == 7 and Counter(r.origin_split for r in recs) == {"train": 5, "val": 2}
    assert recs[0].box_xyxy == (2.0, 10.0, 10.0, 20.0)


def test_hf_broken_parquet_is_malformed_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    make_hf(tmp_path / "src")
    data = tmp_path / "src/data"
    whole = (data / "train-00000-of-00001.parquet").read_bytes()
    (data / "train-00000-of-00001.parquet").write_bytes(whole[: len(whole) // 2])       # truncated
    (data / "test-00000-of-00001.parquet").write_bytes(b"PAR1 this is not parquet")     # garbage
    pq.write_table(pa.table({"expression": ["x"]}), data / "zmissing-00000-of-00001.parquet")
    pq.write_table(pa.table({"image": [1], "mask": [2], "expression": ["x"]}), data / "zodd-00000-of-00001.parquet")
    items = read_all(hf_reader(tmp_path / "src", tmp_path / "work"))
    bad = {r.ref: r for r in rejects(items)}
    assert set(bad) == {f"hf:data/{n}-00000-of-00001.parquet" for n in ("train", "test", "zmissing", "zodd")}
    assert all(r.reason == MALFORMED_FILE and "\n" not in r.detail for r in bad.values())
    assert "no image, mask column" in bad["hf:data/zmissing-00000-of-00001.parquet"].detail
    assert "column 'image'" in bad["hf:data/zodd-00000-of-00001.parquet"].detail
    assert len(records(items)) == 2                                          # validation is intact


def test_hf_needs_a_work_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="work folder"):
        make_reader(SourceConfig(kind="hf", root=str(tmp_path)), tmp_path)
