"""DiorRsvgReader: descriptions, flat ``<bndbox>`` text, global object indices and splits."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from risbench_builder.config import SourceConfig
from risbench_builder.sources.base import MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, SourceRecord
from risbench_builder.sources.dior_rsvg import READERS, DiorRsvgReader

# ZhanYang-nwpu/RSVG-pytorch RSVGD/Annotations/00001.xml @ 459c21b (flat bndbox text).
RSVG_00001 = """<annotation>
  <filename>00001.jpg</filename>
  <size><width>800</width><height>800</height><depth>3</depth></size>
  <object>
    <name>golffield</name>
    <pose>Unspecified</pose>
    <bndbox>133 237 684 672</bndbox>
    <description>A green and brown golf field</description>
  </object>
  <object>
    <name>storagetank</name>
    <pose>Unspecified</pose>
    <bndbox><xmin>39</xmin><ymin>281</ymin><xmax>87</xmax><ymax>324</ymax></bndbox>
    <description>   </description>
  </object>
</annotation>
"""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def obj(name: str, box: str, description: str | None = "a thing") -> str:
    desc = "" if description is None else f"<description>{description}</description>"
    return f"<object><name>{name}</name><pose>Unspecified</pose><bndbox>{box}</bndbox>{desc}</object>"


def ann(filename: str, *objects: str) -> str:
    return f"<annotation><filename>{filename}</filename>{''.join(objects)}</annotation>"


def make_tree(root: Path) -> Path:
    """00001 (2 objects), 00002 (broken XML), 00003 (3 objects), 00004 (1 object, no image)."""
    jpg = root / "JPEGImages" / "00001.jpg"
    jpg.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(jpg)
    Image.new("RGB", (8, 8)).save(root / "JPEGImages" / "00003.jpg")
    write(root / "Annotations" / "00001.xml", RSVG_00001)
    write(root / "Annotations" / "00002.xml", "<annotation><object><name>dam</name>")
    write(root / "Annotations" / "00003.xml", ann(
        "00003.jpg",
        obj("Expressway-Service-area", "1 2 30 40", "the service area on the left"),
        obj("dam", "1 2 30", "a dam"),
        obj("dam", "1 2 30 40", None),
    ))
    write(root / "Annotations" / "00004.xml", ann("00004.jpg", obj("ship", "5,5,9,9", "<![CDATA[a ship]]>")))
    write(root / "train.txt", "0\r\n2\r\n")
    write(root / "val.txt", "1\n3\n")
    write(root / "test.txt", "4\n5\nnot-an-index\n")
    return jpg


def reader(root: Path, **kw) -> DiorRsvgReader:
    return DiorRsvgReader(SourceConfig(kind="dior_rsvg", root=str(root), **kw), root)


def test_registry() -> None:
    assert READERS == {"dior_rsvg": DiorRsvgReader}
    assert DiorRsvgReader.kind == "dior_rsvg"


def test_records_descriptions_and_flat_bndbox(tmp_path: Path) -> None:
    jpg = make_tree(tmp_path)
    r = reader(tmp_path)
    assert r.units() == [f"Annotations/0000{i}.xml" for i in (1, 2, 3, 4)]
    common = dict(source="dior_rsvg", unit="Annotations/00001.xml", image_name="00001.jpg", image_path=jpg,
                  polygon=None, expected_size=(800, 800), gsd=None)
    assert list(r.read("Annotations/00001.xml")) == [
        SourceRecord(object_ref="obj0", category_raw="golffield", expression="A green and brown golf field",
                     box_xyxy=(133.0, 237.0, 684.0, 672.0), attributes={"global_index": 0},
                     origin_split="train", **common),
        SourceRecord(object_ref="obj1", category_raw="storagetank", expression="   ",   # ingest rejects it
                     box_xyxy=(39.0, 281.0, 87.0, 324.0), attributes={"global_index": 1},
                     origin_split="val", **common),
    ]


def test_global_indices_skip_malformed_file(tmp_path: Path) -> None:
    make_tree(tmp_path)
    r = reader(tmp_path)
    # read out of order first: indices must not depend on which unit is read first
    (ship,) = r.read("Annotations/00004.xml")
    assert (ship.attributes, ship.origin_split, ship.image_path) == ({"global_index": 5}, "test", None)
    assert ship.expression == "a ship" and ship.box_xyxy == (5.0, 5.0, 9.0, 9.0)
    (bad,) = r.read("Annotations/00002.xml")
    assert (bad.ref, bad.reason) == ("dior_rsvg:Annotations/00002.xml", MALFORMED_FILE)
    items = list(r.read("Annotations/00003.xml"))
    assert items[0].category_raw == "Expressway-Service-area"
    assert (items[0].attributes, items[0].origin_split) == ({"global_index": 2}, "train")
    assert [(i.ref, i.reason, i.detail) for i in items[1:]] == [
        ("dior_rsvg:Annotations/00003.xml#obj1", MALFORMED_RECORD,
         "object 1: <bndbox> text '1 2 30' is not 4 numbers (xmin ymin xmax ymax)"),
        ("dior_rsvg:Annotations/00003.xml#obj2", MALFORMED_RECORD, "object 2: object has no <description>"),
    ]
    assert r.offsets == {"Annotations/00001.xml": 0, "Annotations/00002.xml": 2,
                         "Annotations/00003.xml": 2, "Annotations/00004.xml": 5}


def test_split_override_no_split_files_and_escape(tmp_path: Path) -> None:
    write(tmp_path / "Annotations" / "a.xml", ann("a.jpg", obj("dam", "1 1 5 5")))
    write(tmp_path / "Annotations" / "b.xml", ann("../../escape.jpg", obj("dam", "1 1 5 5"), obj("dam", "x")))
    (rec,) = reader(tmp_path).read("Annotations/a.xml")
    assert (rec.origin_split, rec.attributes, rec.expected_size) == (None, {"global_index": 0}, None)
    (rec,) = reader(tmp_path, split="val").read("Annotations/a.xml")
    assert rec.origin_split == "val"
    assert [(i.ref, i.reason) for i in reader(tmp_path).read("Annotations/b.xml")] == [
        ("dior_rsvg:Annotations/b.xml#obj0", PATH_ESCAPE), ("dior_rsvg:Annotations/b.xml#obj1", PATH_ESCAPE)]


def test_doctype_file_rejected_once_and_counts_zero(tmp_path: Path) -> None:
    write(tmp_path / "Annotations" / "a.xml", '<!DOCTYPE x [<!ENTITY e "boom">]>' + ann("a.jpg", obj("dam", "1 1 5 5")))
    write(tmp_path / "Annotations" / "b.xml", ann("b.jpg", obj("dam", "1 1 5 5")))
    r = reader(tmp_path)
    assert [(i.ref, i.reason) for i in r.read("Annotations/a.xml")] == [("dior_rsvg:Annotations/a.xml", MALFORMED_FILE)]
    (rec,) = r.read("Annotations/b.xml")
    assert rec.attributes == {"global_index": 0}
