"""DiorReader / DiorRReader on inline VOC-style XML quirk files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from shapely.geometry import Polygon

from risbench_builder.config import SourceConfig
from risbench_builder.sources.base import (
    INVALID_POLYGON, MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, Rejected, SourceRecord,
    normalize_class,
)
from risbench_builder.sources.dior import READERS, DiorReader, DiorRReader, parse_xml

HBB = "Annotations/Horizontal Bounding Boxes"
OBB = "Annotations/Oriented Bounding Boxes"

# DIOR 00001.xml as quoted by a third party (no real DIOR XML is in a public repo); images are 800x800.
DIOR_00001 = """<annotation>
  <filename>00001.jpg</filename>
  <source><database>DIOR</database></source>
  <size><width>800</width><height>800</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object><name>golffield</name><pose>Unspecified</pose>
    <bndbox><xmin>133</xmin><ymin>237</ymin><xmax>684</xmax><ymax>672</ymax></bndbox></object>
  <object><name>storagetank</name><pose>Unspecified</pose>
    <bndbox><xmin>39</xmin><ymin>281</ymin><xmax>87</xmax><ymax>324</ymax></bndbox></object>
</annotation>
"""


def robject(name: str, corners: list[int], angle: str = "0", extra: str = "") -> str:
    tags = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
            "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")
    inner = "".join(f"<{t}>{v}</{t}>" for t, v in zip(tags, corners))
    return (f"<object><type>robndbox</type><name>{name}</name><pose>Unspecified</pose>"
            f"<truncated>0</truncated><difficult>1</difficult><robndbox>{inner}</robndbox>"
            f"<angle>{angle}</angle>{extra}</object>")


def xml(filename: str, *objects: str, size: str = "<size><width>800</width><height>800</height></size>") -> str:
    return (f"<annotation><filename>{filename}</filename><source><database>Unknown</database></source>"
            f"{size}{''.join(objects)}</annotation>")


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


def cfg(kind: str, root: Path, **kw) -> SourceConfig:
    return SourceConfig(kind=kind, root=str(root), **kw)


def test_registry() -> None:
    assert READERS == {"dior": DiorReader, "dior_r": DiorRReader}
    assert (DiorReader.kind, DiorRReader.kind) == ("dior", "dior_r")


def test_hbb_00001_with_splits(tmp_path: Path) -> None:
    jpg = image(tmp_path / "JPEGImages-trainval" / "00001.jpg")
    write(tmp_path / HBB / "00001.xml", DIOR_00001)
    write(tmp_path / OBB / "00001.xml", xml("00001.jpg"))
    write(tmp_path / "ImageSets" / "Main" / "train.txt", "00001\r\n00002\r\n")
    write(tmp_path / "ImageSets" / "Main" / "val.txt", "00003\n")
    r = DiorReader(cfg("dior", tmp_path), tmp_path)
    assert r.units() == [f"{HBB}/00001.xml"]
    common = dict(source="dior", unit=f"{HBB}/00001.xml", image_name="00001.jpg", image_path=jpg,
                  expression=None, polygon=None, attributes={}, origin_split="train",
                  expected_size=(800, 800), gsd=None)
    assert list(r.read(f"{HBB}/00001.xml")) == [
        SourceRecord(object_ref="obj0", category_raw="golffield", box_xyxy=(133.0, 237.0, 684.0, 672.0), **common),
        SourceRecord(object_ref="obj1", category_raw="storagetank", box_xyxy=(39.0, 281.0, 87.0, 324.0), **common),
    ]
    (rec, _) = DiorReader(cfg("dior", tmp_path, split="test"), tmp_path).read(f"{HBB}/00001.xml")
    assert rec.origin_split == "test"


def test_dior_r_angle_sibling_capitalised_names_and_bowtie(tmp_path: Path) -> None:
    jpg = image(tmp_path / "JPEGImages-test" / "11726.jpg")
    write(tmp_path / OBB / "11726.xml", xml(
        "11726.jpg",
        robject("Expressway-Service-area", [10, 20, 110, 20, 110, 70, 10, 70], angle="0"),
        robject("Expressway-toll-station", [0, 0, 10, 10, 10, 0, 0, 10], angle="45.5"),   # bow-tie
        robject("ship", [0, 0, 10, 0, 5, 5, 10, 10]),                                       # unrepairable
        "<object><type>robndbox</type><name>dam</name><robndbox><x_left_top>1</x_left_top></robndbox></object>",
        robject("bridge", [0, 0, 10, 0, 10, "ten", 0, 10]),                                 # non-numeric
    ))
    r = DiorRReader(cfg("dior_r", tmp_path), tmp_path)
    assert r.units() == [f"{OBB}/11726.xml"]
    items = list(r.read(f"{OBB}/11726.xml"))
    esa, toll = items[:2]
    assert esa == SourceRecord(
        source="dior_r", unit=f"{OBB}/11726.xml", object_ref="obj0", image_name="11726.jpg", image_path=jpg,
        category_raw="Expressway-Service-area", expression=None, box_xyxy=(10.0, 20.0, 110.0, 70.0),
        polygon=[(10.0, 20.0), (110.0, 20.0), (110.0, 70.0), (10.0, 70.0)],
        attributes={"angle": 0.0, "truncated": 0, "difficult": 1}, origin_split=None,
        expected_size=(800, 800), gsd=None)
    assert normalize_class(esa.category_raw) == "expressway-service-area"
    assert (toll.category_raw, toll.attributes["angle"]) == ("Expressway-toll-station", 45.5)
    assert normalize_class(toll.category_raw) == "expressway-toll-station"
    assert toll.attributes["polygon_repaired"].startswith("self-intersecting")
    assert Polygon(toll.polygon).is_valid
    ref = f"dior_r:{OBB}/11726.xml#obj"
    assert [(i.ref, i.reason, i.detail) for i in items[2:]] == [
        (ref + "2", INVALID_POLYGON, "object 2: self-intersecting and not convex (3 of 4 vertices on hull)"),
        (ref + "3", MALFORMED_RECORD, "object 3: <robndbox> lacks <y_left_top>, <x_right_top>, <y_right_top>, "
                                      "<x_right_bottom>, <y_right_bottom>, <x_left_bottom>, <y_left_bottom>"),
        (ref + "4", MALFORMED_RECORD, "object 4: <y_right_bottom> 'ten' is not a finite number"),
    ]


def test_angle_inside_robndbox_also_read(tmp_path: Path) -> None:
    obj = robject("dam", [0, 0, 10, 0, 10, 10, 0, 10]).replace("<angle>0</angle>", "")
    obj = obj.replace("</robndbox>", "<angle>12</angle></robndbox>")
    write(tmp_path / OBB / "00002.xml", xml("00002.jpg", obj))
    (rec,) = DiorRReader(cfg("dior_r", tmp_path), tmp_path).read(f"{OBB}/00002.xml")
    assert rec.attributes["angle"] == 12.0


def test_bad_files(tmp_path: Path) -> None:
    write(tmp_path / HBB / "bad.xml", "<annotation><object><name>dam</name></annotation>")
    write(tmp_path / HBB / "doctype.xml",
          '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "boom">]>' + xml("&x;.jpg"))
    write(tmp_path / HBB / "binary.xml", b"\xff\xfe\x00\x00<annotation>")
    write(tmp_path / HBB / "encoding.xml", '<?xml version="1.0" encoding="bogus"?>' + xml("a.jpg"))
    write(tmp_path / HBB / "utf16.xml", ('<!DOCTYPE a [<!ENTITY x "boom">]>' + xml("&x;.jpg")).encode("utf-16"))
    r = DiorReader(cfg("dior", tmp_path), tmp_path)
    rejects = [i for u in r.units() for i in r.read(u)]
    assert [(i.ref, i.reason) for i in rejects] == [
        (f"dior:{HBB}/bad.xml", MALFORMED_FILE),
        (f"dior:{HBB}/binary.xml", MALFORMED_FILE),
        (f"dior:{HBB}/doctype.xml", MALFORMED_FILE),
        (f"dior:{HBB}/encoding.xml", MALFORMED_FILE),
        (f"dior:{HBB}/utf16.xml", MALFORMED_FILE),
    ]
    assert rejects[0].detail.startswith("not well-formed XML: mismatched tag")
    assert rejects[2].detail == "DOCTYPE/ENTITY declarations are not accepted (no entity expansion)"
    assert rejects[3].detail == "not well-formed XML: unknown encoding: bogus"
    assert rejects[4].detail == rejects[2].detail
    assert all("\n" not in i.detail for i in rejects)


def test_path_escape_rejects_every_object(tmp_path: Path) -> None:
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
    write(tmp_path / HBB / "00003.xml", xml("../../escape.jpg", f"<object><name>dam</name>{box}</object>",
                                            "<object><name>dam</name></object>"))
    items = list(DiorReader(cfg("dior", tmp_path), tmp_path).read(f"{HBB}/00003.xml"))
    assert [(i.ref, i.reason) for i in items] == [
        (f"dior:{HBB}/00003.xml#obj0", PATH_ESCAPE), (f"dior:{HBB}/00003.xml#obj1", PATH_ESCAPE)]
    assert "../../escape.jpg" in items[0].detail


def test_bad_objects_missing_filename_and_plain_jpegimages(tmp_path: Path) -> None:
    jpg = image(tmp_path / "JPEGImages" / "00004.jpg")
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
    write(tmp_path / HBB / "00004.xml",
          "<annotation><size><width>x</width></size>"
          "<object><name>dam</name></object>"
          "<object><name>dam</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox></object>"
          "<object><name>dam</name><bndbox><xmin>1</xmin><ymin>one</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
          f"<object>{box}</object>"
          f"<object><name> airport </name>{box}</object>"
          "</annotation>")
    items = list(DiorReader(cfg("dior", tmp_path), tmp_path).read(f"{HBB}/00004.xml"))
    ref = f"dior:{HBB}/00004.xml#obj"
    assert [(i.ref, i.reason, i.detail) for i in items if isinstance(i, Rejected)] == [
        (ref + "0", MALFORMED_RECORD, "object 0: object has no <bndbox>"),
        (ref + "1", MALFORMED_RECORD, "object 1: <bndbox> lacks <ymax>"),
        (ref + "2", MALFORMED_RECORD, "object 2: <ymin> 'one' is not a finite number"),
        (ref + "3", MALFORMED_RECORD, "object 3: object has no <name>"),
    ]
    rec = items[-1]
    assert (rec.object_ref, rec.category_raw, rec.box_xyxy) == ("obj4", "airport", (1.0, 1.0, 5.0, 5.0))
    assert (rec.image_name, rec.image_path, rec.expected_size) == ("00004.jpg", jpg, None)


def test_missing_image_and_custom_images_folder(tmp_path: Path) -> None:
    write(tmp_path / HBB / "00005.xml", DIOR_00001.replace("00001.jpg", "00005.jpg"))
    (rec, _) = DiorReader(cfg("dior", tmp_path), tmp_path).read(f"{HBB}/00005.xml")
    assert (rec.image_name, rec.image_path, rec.origin_split) == ("00005.jpg", None, None)
    jpg = image(tmp_path / "imgs" / "00005.jpg")
    (rec, _) = DiorReader(cfg("dior", tmp_path, images="imgs"), tmp_path).read(f"{HBB}/00005.xml")
    assert rec.image_path == jpg


def test_parse_xml_refuses_entities() -> None:
    with pytest.raises(ValueError, match="DOCTYPE/ENTITY"):
        parse_xml(b'<!ENTITY x "y"><a/>')
