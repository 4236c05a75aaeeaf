"""DIOR (horizontal boxes) and DIOR-R (oriented boxes) VOC-style XML, label-only.

Layout: ``Annotations/Horizontal Bounding Boxes/*.xml`` (DIOR) and ``Annotations/Oriented
Bounding Boxes/*.xml`` (DIOR-R), images in ``JPEGImages-trainval/`` and ``JPEGImages-test/``
(or one ``JPEGImages/``), splits in ``ImageSets/Main/{train,val,test}.txt``. DIOR-R puts
``<angle>`` beside ``<robndbox>``, not inside it, and two class names are capitalised
(``Expressway-Service-area``); names pass through raw and ingest normalises them.

XML is parsed with the standard library after refusing any ``<!DOCTYPE``/``<!ENTITY``: without
a DTD expat cannot expand entities, which is the protection defusedxml would give us.
:class:`XmlReader` is shared with DIOR-RSVG, whose files are DIOR HBB files plus descriptions.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..config import SourceConfig
from ..masks import Box, Point, polygon_box, repair_polygon
from .base import (
    INVALID_POLYGON, MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, ImageIndex, Item,
    PathEscapeError, Rejected, SourceRecord, walk_files,
)

SPLITS = ("train", "val", "test")
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
_ROBNDBOX_TAGS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
                  "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")


class BadObject(Exception):
    """One ``<object>`` that cannot become a record; carries the reject reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def parse_xml(data: bytes) -> ET.Element:
    """Parse annotation XML, refusing DTDs so no entity is ever expanded.

    >>> parse_xml(b"<annotation><filename>a.jpg</filename></annotation>").findtext("filename")
    'a.jpg'
    """
    # NULs stripped too, so a UTF-16 file cannot hide its DOCTYPE from the byte search
    if _DTD.search(data) or _DTD.search(data.replace(b"\0", b"")):
        raise ValueError("DOCTYPE/ENTITY declarations are not accepted (no entity expansion)")
    try:
        return ET.fromstring(data)
    except (ET.ParseError, LookupError, ValueError) as exc:    # LookupError: unknown encoding
        raise ValueError(f"not well-formed XML: {exc}") from None


def number(text: str | None, what: str) -> float:
    """A finite float from element text, else :class:`BadObject` (malformed record)."""
    try:
        value = float((text or "").strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadObject(MALFORMED_RECORD, f"{what} {text!r} is not a finite number")
    return value


def optional_int(text: str | None) -> int | None:
    try:
        return int(float((text or "").strip()))
    except (ValueError, OverflowError):
        return None


def parse_bndbox(obj: ET.Element) -> Box:
    """``<bndbox>`` as xyxy: either ``<xmin>…</ymax>`` children or flat ``x1 y1 x2 y2`` text.

    >>> parse_bndbox(ET.fromstring("<object><bndbox>133 237 684 672</bndbox></object>"))
    (133.0, 237.0, 684.0, 672.0)
    """
    box = obj.find("bndbox")
    if box is None:
        raise BadObject(MALFORMED_RECORD, "object has no <bndbox>")
    if len(box) == 0:
        tokens = re.split(r"[\s,]+", (box.text or "").strip())
        if len(tokens) != 4:
            raise BadObject(MALFORMED_RECORD, f"<bndbox> text {box.text!r} is not 4 numbers (xmin ymin xmax ymax)")
        return tuple(number(t, "bndbox value") for t in tokens)  # type: ignore[return-value]
    missing = [t for t in _BOX_TAGS if box.find(t) is None]
    if missing:
        raise BadObject(MALFORMED_RECORD, f"<bndbox> lacks <{'>, <'.join(missing)}>")
    return tuple(number(box.findtext(t), f"<{t}>") for t in _BOX_TAGS)  # type: ignore[return-value]


def image_size(root: ET.Element) -> tuple[int, int] | None:
    """(width, height) the XML claims, or None when absent or not positive integers."""
    width, height = optional_int(root.findtext("size/width")), optional_int(root.findtext("size/height"))
    return (width, height) if width and height and width > 0 and height > 0 else None


def read_split_lists(base: Path) -> dict[str, str]:
    """``{train,val,test}.txt`` under ``base``: entry (one per line) -> split; first file wins.

    Split lists are optional side files, so an unreadable one counts as absent.
    """
    split_of: dict[str, str] = {}
    for split in SPLITS:
        try:
            text = (base / f"{split}.txt").read_text(encoding="utf-8-sig", errors="replace")
        except OSError:
            continue
        for entry in text.split():
            split_of.setdefault(entry, split)
    return split_of


class XmlReader:
    """Shared walk/parse/lookup for one-XML-per-image sources; subclasses parse one object."""

    kind = ""
    default_labels = ""
    default_images: tuple[str, ...] = ()

    def __init__(self, cfg: SourceConfig, root: Path):
        self.cfg = cfg
        self.root = Path(root)
        self.source = cfg.label
        self.labels = cfg.labels or self.default_labels
        self.images = [cfg.images] if cfg.images else list(self.default_images)

    def units(self) -> list[str]:
        return walk_files(self.root, self.labels, (".xml",))

    @cached_property
    def image_index(self) -> ImageIndex:
        return ImageIndex(self.root, self.images)

    def load(self, unit: str) -> ET.Element:
        """The parsed file; ``ValueError`` with a one-line reason when it is unusable."""
        try:
            data = (self.root / unit).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read annotation file: {exc}") from None
        return parse_xml(data)

    def parse_object(self, obj: ET.Element) -> tuple[Box, list[Point] | None, str | None, dict[str, Any]]:
        """(box, polygon, expression, attributes) of one object; raises :class:`BadObject`."""
        raise NotImplementedError

    def split_of(self, unit: str, index: int) -> str | None:
        return None

    def extra_attributes(self, unit: str, index: int) -> dict[str, Any]:
        return {}

    def read(self, unit: str) -> Iterator[Item]:
        file_ref = f"{self.source}:{unit}"
        try:
            tree = self.load(unit)
        except ValueError as exc:
            yield Rejected(self.source, file_ref, MALFORMED_FILE, str(exc))
            return
        image_name = (tree.findtext("filename") or "").strip() or PurePosixPath(unit).stem + ".jpg"
        if not PurePosixPath(image_name.replace("\\", "/")).suffix:
            image_name += ".jpg"         # DIOR images are all JPEG
        escape: str | None = None
        try:
            image_path = self.image_index.find(image_name)
        except PathEscapeError as exc:
            image_path, escape = None, str(exc)
        size = image_size(tree)

        for i, obj in enumerate(tree.findall("object")):
            ref = f"{file_ref}#obj{i}"
            if escape is not None:
                yield Rejected(self.source, ref, PATH_ESCAPE, escape)
                continue
            try:
                name = (obj.findtext("name") or "").strip()
                if not name:
                    raise BadObject(MALFORMED_RECORD, "object has no <name>")
                box, polygon, expression, attributes = self.parse_object(obj)
            except BadObject as bad:
                yield Rejected(self.source, ref, bad.reason, f"object {i}: {bad.detail}")
                continue
            attributes.update(self.extra_attributes(unit, i))
            yield SourceRecord(
                source=self.source, unit=unit, object_ref=f"obj{i}", image_name=image_name,
                image_path=image_path, category_raw=name, expression=expression, box_xyxy=box,
                polygon=polygon, attributes=attributes,
                origin_split=self.cfg.split or self.split_of(unit, i), expected_size=size, gsd=None,
            )


class _DiorSplits(XmlReader):
    default_images = ("JPEGImages-trainval", "JPEGImages-test", "JPEGImages")

    @cached_property
    def _splits(self) -> dict[str, str]:
        return read_split_lists(self.root / "ImageSets" / "Main")

    def split_of(self, unit: str, index: int) -> str | None:
        return self._splits.get(PurePosixPath(unit).stem)


class DiorReader(_DiorSplits):
    """DIOR horizontal boxes: ``<bndbox>`` xyxy in integer pixels, no difficult/truncated."""

    kind = "dior"
    default_labels = "Annotations/Horizontal Bounding Boxes"

    def parse_object(self, obj: ET.Element) -> tuple[Box, None, None, dict[str, Any]]:
        return parse_bndbox(obj), None, None, {}


class DiorRReader(_DiorSplits):
    """DIOR-R oriented boxes: four named corners in ``<robndbox>``, ``<angle>`` beside it."""

    kind = "dior_r"
    default_labels = "Annotations/Oriented Bounding Boxes"

    def parse_object(self, obj: ET.Element) -> tuple[Box, list[Point], None, dict[str, Any]]:
        rob = obj.find("robndbox")
        if rob is None:
            raise BadObject(MALFORMED_RECORD, "object has no <robndbox>")
        missing = [t for t in _ROBNDBOX_TAGS if rob.find(t) is None]
        if missing:
            raise BadObject(MALFORMED_RECORD, f"<robndbox> lacks <{'>, <'.join(missing)}>")
        coords = [number(rob.findtext(t), f"<{t}>") for t in _ROBNDBOX_TAGS]
        polygon, reason = repair_polygon(list(zip(coords[0::2], coords[1::2])))
        if polygon is None:
            raise BadObject(INVALID_POLYGON, reason or "invalid polygon")
        attributes: dict[str, Any] = {}
        angle_text = obj.findtext("angle") if obj.find("angle") is not None else rob.findtext("angle")
        try:
            angle = float((angle_text or "").strip())
        except ValueError:
            angle = math.nan
        if math.isfinite(angle):
            attributes["angle"] = angle
        for tag in ("truncated", "difficult"):
            value = optional_int(obj.findtext(tag))
            if value is not None:
                attributes[tag] = value
        if reason:
            attributes["polygon_repaired"] = reason
        return polygon_box(polygon), polygon, None, attributes


READERS = {"dior": DiorReader, "dior_r": DiorRReader}
