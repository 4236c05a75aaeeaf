"""DotaReader on inline quirk files (CRLF, headers, meta files, floats, bad rows) and real files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from shapely.geometry import Polygon

from risbench_builder.config import SourceConfig
from risbench_builder.sources.base import (
    INVALID_POLYGON, MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, Rejected, SourceRecord,
    normalize_class,
)
from risbench_builder.sources.dota import READERS, DotaReader, split_from_path

from tests.conftest import real_fixtures_dir

REAL = real_fixtures_dir()


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def image(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)
    return path


def reader(root: Path, **kw) -> DotaReader:
    return DotaReader(SourceConfig(kind="dota", root=str(root), **kw), root)


def read(r: DotaReader, unit: str) -> list:
    return list(r.read(unit))


def test_registry() -> None:
    assert READERS == {"dota": DotaReader}
    assert DotaReader.kind == "dota"


def test_crlf_header_floats_and_nine_tokens(tmp_path: Path) -> None:
    png = image(tmp_path / "images" / "part1" / "P0001.png")
    write(tmp_path / "labelTxt" / "P0001.txt",
          "imagesource:GoogleEarth\r\ngsd:0.5\r\n"
          "10 20 30 20 30 40 10 40 plane 0\r\n"
          "\r\n"
          "1.5 2.0 11.5 2.0 11.5 12.0 1.5 12.0 large-vehicle 1\r\n"
          "0 0 4 0 4 4 0 4 ship\r\n")
    r = reader(tmp_path)
    assert r.units() == ["labelTxt/P0001.txt"]
    items = read(r, "labelTxt/P0001.txt")
    common = dict(source="dota", unit="labelTxt/P0001.txt", image_name="P0001.png", image_path=png,
                  expression=None, origin_split=None, expected_size=None, gsd=0.5)
    assert items == [
        SourceRecord(object_ref="obj0", category_raw="plane", box_xyxy=(10.0, 20.0, 30.0, 40.0),
                     polygon=[(10.0, 20.0), (30.0, 20.0), (30.0, 40.0), (10.0, 40.0)],
                     attributes={"difficult": 0, "imagesource": "GoogleEarth"}, **common),
        SourceRecord(object_ref="obj1", category_raw="large-vehicle", box_xyxy=(1.5, 2.0, 11.5, 12.0),
                     polygon=[(1.5, 2.0), (11.5, 2.0), (11.5, 12.0), (1.5, 12.0)],
                     attributes={"difficult": 1, "imagesource": "GoogleEarth"}, **common),
        SourceRecord(object_ref="obj2", category_raw="ship", box_xyxy=(0.0, 0.0, 4.0, 4.0),
                     polygon=[(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)],
                     attributes={"difficult": 0, "imagesource": "GoogleEarth"}, **common),
    ]
    assert items[0].ref == "dota:labelTxt/P0001.txt#obj0"


def test_meta_file_used_when_header_absent(tmp_path: Path) -> None:
    write(tmp_path / "labelTxt" / "P0002.txt", "0 0 4 0 4 4 0 4 ship 0\n")
    write(tmp_path / "labelTxt" / "P0003.txt", "imagesource:GF\ngsd:2\n0 0 4 0 4 4 0 4 ship 0\n")
    write(tmp_path / "labelTxt" / "P0004.txt", "0 0 4 0 4 4 0 4 ship 0\n")
    write(tmp_path / "meta" / "P0002.txt",
          "acquisition dates:2016-05-01\r\nimagesource:GoogleEarth\r\ngsd:0.3\r\n")
    write(tmp_path / "meta" / "P0003.txt", "acquisition dates:None\nimagesource:JL-1\ngsd:0.7\n")
    write(tmp_path / "meta" / "P0004.txt", "acquisition dates:null\nimagesource:None\ngsd:None\n")
    r = reader(tmp_path)
    (a,), (b,), (c,) = (read(r, f"labelTxt/{s}.txt") for s in ("P0002", "P0003", "P0004"))
    assert (a.gsd, a.attributes) == (0.3, {"difficult": 0, "acquisition_dates": "2016-05-01",
                                           "imagesource": "GoogleEarth"})
    assert (b.gsd, b.attributes) == (2.0, {"difficult": 0, "imagesource": "GF"})   # header wins
    assert (c.gsd, c.attributes) == (None, {"difficult": 0})                        # None/null dropped
    assert r.units() == ["labelTxt/P0002.txt", "labelTxt/P0003.txt", "labelTxt/P0004.txt"]


def test_bad_rows_are_rejected_and_counted(tmp_path: Path) -> None:
    write(tmp_path / "labelTxt" / "P0005.txt",
          "gsd:1\n"
          "0 0 4 0 4 plane 0\n"                            # 7 tokens
          "0 0 4 0 4 x 0 4 plane 0\n"                      # non-numeric coordinate
          "0 0 4 0 4 4 0 4 plane hard\n"                   # difficult not an int
          "0 0 4 0 4 4 0 4 plane 0 extra\n"                # 11 tokens
          "0 0 10 10 10 0 0 10 ship 0\n"                   # bow-tie: repaired
          "0 0 10 0 5 5 10 10 ship 0\n"                    # concave crossing: unrepairable
          "0 0 4 0 4 4 0 4 harbor 0\n")
    items = read(reader(tmp_path), "labelTxt/P0005.txt")
    ref = "dota:labelTxt/P0005.txt#obj"
    assert [(i.ref, i.reason, i.detail) for i in items if isinstance(i, Rejected)] == [
        (ref + "0", MALFORMED_RECORD, "line 2: 7 tokens, expected 10 (x1 y1 ... x4 y4 class difficult)"),
        (ref + "1", MALFORMED_RECORD, "line 3: coordinate 'x' is not a finite number"),
        (ref + "2", MALFORMED_RECORD, "line 4: difficult flag 'hard' is not an integer"),
        (ref + "3", MALFORMED_RECORD, "line 5: 11 tokens, expected 10 (x1 y1 ... x4 y4 class difficult)"),
        (ref + "5", INVALID_POLYGON, "line 7: self-intersecting and not convex (3 of 4 vertices on hull)"),
    ]
    bowtie, harbor = [i for i in items if isinstance(i, SourceRecord)]
    assert (bowtie.object_ref, harbor.object_ref, harbor.category_raw) == ("obj4", "obj6", "harbor")
    assert bowtie.polygon == [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    assert bowtie.box_xyxy == (0.0, 0.0, 10.0, 10.0)
    assert bowtie.attributes["polygon_repaired"].startswith("self-intersecting")
    assert Polygon(bowtie.polygon).is_valid


def test_empty_header_only_and_undecodable_files(tmp_path: Path) -> None:
    write(tmp_path / "labelTxt" / "empty.txt", b"")
    write(tmp_path / "labelTxt" / "header.txt", "imagesource:GF\r\ngsd:1\r\n\r\n")
    write(tmp_path / "labelTxt" / "binary.txt", b"\xff\xfe\x00garbage\x80\x81")
    r = reader(tmp_path)
    assert read(r, "labelTxt/empty.txt") == []
    assert read(r, "labelTxt/header.txt") == []
    (bad,) = read(r, "labelTxt/binary.txt")
    assert (bad.ref, bad.reason) == ("dota:labelTxt/binary.txt", MALFORMED_FILE)
    assert bad.detail == "not UTF-8 text (invalid start byte at byte 0)"
    (gone,) = read(r, "labelTxt/missing.txt")
    assert gone.reason == MALFORMED_FILE


def test_missing_image_other_extension_and_hygiene(tmp_path: Path) -> None:
    jpg = image(tmp_path / "images" / "P0007.jpg")
    write(tmp_path / "labelTxt" / "P0006.txt", "0 0 4 0 4 4 0 4 ship 0\n")
    write(tmp_path / "labelTxt" / "P0007.txt", "0 0 4 0 4 4 0 4 ship 0\n")
    write(tmp_path / "labelTxt" / "._P0007.txt", b"\x00\x05\x16\x07")
    write(tmp_path / "labelTxt" / "__MACOSX" / "P0008.txt", "0 0 4 0 4 4 0 4 ship 0\n")
    r = reader(tmp_path)
    assert r.units() == ["labelTxt/P0006.txt", "labelTxt/P0007.txt"]
    (missing,) = read(r, "labelTxt/P0006.txt")
    assert (missing.image_name, missing.image_path) == ("P0006.png", None)
    (found,) = read(r, "labelTxt/P0007.txt")
    assert (found.image_name, found.image_path) == ("P0007.jpg", jpg)


def test_v2_layout_split_from_path_and_override(tmp_path: Path) -> None:
    png = image(tmp_path / "train" / "images" / "P0009.png")
    write(tmp_path / "labelTxt-v2.0" / "DOTA-v2.0_train" / "P0009.txt", "0 0 4 0 4 4 0 4 helipad 0\n")
    r = reader(tmp_path, labels="labelTxt-v2.0", images="train/images")
    assert r.units() == ["labelTxt-v2.0/DOTA-v2.0_train/P0009.txt"]
    (rec,) = read(r, r.units()[0])
    assert (rec.origin_split, rec.image_path, rec.category_raw) == ("train", png, "helipad")
    (rec,) = read(reader(tmp_path, labels="labelTxt-v2.0", split="val"), r.units()[0])
    assert rec.origin_split == "val"
    assert split_from_path("val/labelTxt/P1.txt") == "val"
    assert split_from_path("trainval/labelTxt/P1.txt") is None
    assert split_from_path("labelTxt/train.txt") is None


def test_image_link_outside_root_is_path_escape(tmp_path: Path) -> None:
    outside = image(tmp_path / "outside" / "secret.png")
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    try:
        (root / "images" / "P0010.png").symlink_to(outside)
    except OSError:
        pytest.skip("symlinks not available")
    write(root / "labelTxt" / "P0010.txt", "0 0 4 0 4 4 0 4 ship 0\n0 0 4 0 plane 0\n")
    items = read(reader(root), "labelTxt/P0010.txt")
    assert [(i.ref, i.reason) for i in items] == [
        ("dota:labelTxt/P0010.txt#obj0", PATH_ESCAPE), ("dota:labelTxt/P0010.txt#obj1", PATH_ESCAPE)]


def test_image_index_built_once(tmp_path: Path) -> None:
    write(tmp_path / "labelTxt" / "a.txt", "0 0 4 0 4 4 0 4 ship 0\n")
    write(tmp_path / "labelTxt" / "b.txt", "0 0 4 0 4 4 0 4 ship 0\n")
    r = reader(tmp_path, name="dota-v1")
    first = r.image_index
    for unit in r.units():
        (rec,) = read(r, unit)
        assert rec.source == "dota-v1"
    assert r.image_index is first


# ------------------------------------------------------------------ real files
real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real fixtures not found at {REAL}")


@pytest.mark.real_fixtures
@real
def test_real_p1888_vehicles_and_image() -> None:
    root = REAL / "dota_devkit"
    items = read(reader(root), "labelTxt/P1888.txt")
    assert all(isinstance(i, SourceRecord) for i in items)
    assert len(items) == 64
    assert Counter(i.category_raw for i in items) == {"large-vehicle": 50, "small-vehicle": 14}
    assert {normalize_class(i.category_raw) for i in items} == {"vehicle"}
    assert {i.image_path for i in items} == {root / "images" / "P1888.png"}
    assert items[0].gsd == pytest.approx(0.266170468393)
    assert items[0].attributes["imagesource"] == "GoogleEarth"


@pytest.mark.real_fixtures
@real
def test_real_p1234_gf_header() -> None:
    items = read(reader(REAL / "dota_devkit"), "labelTxt/P1234.txt")
    assert len(items) == 144 and all(isinstance(i, SourceRecord) for i in items)
    assert {i.gsd for i in items} == {1.0}
    assert {i.attributes["imagesource"] for i in items} == {"GF"}
    assert sum(i.attributes["difficult"] for i in items) == 44
    assert {i.image_path for i in items} == {None}


@pytest.mark.real_fixtures
@real
def test_real_mmrotate_empty_and_bowtie() -> None:
    r = reader(REAL / "mmrotate_tests")
    assert r.units() == ["labelTxt/P0004__1__0___0.txt", "labelTxt/P0004__1__0___1024.txt"]
    assert read(r, "labelTxt/P0004__1__0___1024.txt") == []
    items = read(r, "labelTxt/P0004__1__0___0.txt")
    assert [i.object_ref for i in items if isinstance(i, SourceRecord)] == ["obj0", "obj1", "obj2", "obj3"]
    last = items[-1]
    assert last.attributes["polygon_repaired"].startswith("self-intersecting")
    assert Polygon(last.polygon).is_valid and Polygon(last.polygon).area > 0
    assert sorted(last.polygon) == sorted([(126.0, 191.0), (128.0, 171.0), (123.0, 178.0), (221.0, 199.0)])
    assert last.box_xyxy == (123.0, 171.0, 221.0, 199.0)
    assert [i.attributes.get("polygon_repaired") for i in items[:3]] == [None, None, None]
    assert items[0].gsd is None and "imagesource" not in items[0].attributes
