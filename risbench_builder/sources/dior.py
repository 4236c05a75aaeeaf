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

from ..config import IngestConfig, SourceConfig
from ..masks import Box, Point, polygon_box, repair_polygon
from ..text import shown, unexpected
from .base import (
    INVALID_POLYGON, MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, BadInput, ImageIndex, Item,
    PathEscapeError, Rejected, SourceRecord, check_box_order, check_coordinates, read_text_bounded,
    guarded, read_unit, walk_files,
)

SPLITS = ("train", "val", "test")
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
_ROBNDBOX_TAGS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
                  "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")


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
    """A pixel coordinate from element text: :class:`BadInput` with ``malformed_record`` for text
    that is not a number, ``non_finite_coordinate`` for nan, inf or an absurd magnitude."""
    try:
        value = float((text or "").strip())
    except ValueError:
        raise BadInput(MALFORMED_RECORD, f"{what} {shown(text)} is not a finite number") from None
    return check_coordinates([value], what)[0]


def optional_int(text: str | None) -> int | None:
    try:
        return int(float((text or "").strip()))
    except (ValueError, OverflowError):
        return None


def parse_bndbox(obj: ET.Element) -> Box:
    """``<bndbox>`` as xyxy: either ``<xmin>…</ymax>`` children or flat ``x1 y1 x2 y2`` text;
    ``xmax < xmin`` is an ``inverted_box`` reject, never a silent swap.

    >>> parse_bndbox(ET.fromstring("<object><bndbox>133 237 684 672</bndbox></object>"))
    (133.0, 237.0, 684.0, 672.0)
    """
    box = obj.find("bndbox")
    if box is None:
        raise BadInput(MALFORMED_RECORD, "object has no <bndbox>")
    if len(box) == 0:
        tokens = re.split(r"[\s,]+", (box.text or "").strip())
        if len(tokens) != 4:
            raise BadInput(MALFORMED_RECORD, f"<bndbox> text {shown(box.text)} is not 4 numbers (xmin ymin xmax ymax)")
        values = tuple(number(t, "bndbox value") for t in tokens)
    else:
        missing = [t for t in _BOX_TAGS if box.find(t) is None]
        if missing:
            raise BadInput(MALFORMED_RECORD, f"<bndbox> lacks <{'>, <'.join(missing)}>")
        values = tuple(number(box.findtext(t), f"<{t}>") for t in _BOX_TAGS)
    return check_box_order(values, "<bndbox>")  # type: ignore[arg-type]


def image_size(root: ET.Element) -> tuple[int, int] | None:
    """(width, height) the XML claims, or None when absent or not positive integers."""
    width, height = optional_int(root.findtext("size/width")), optional_int(root.findtext("size/height"))
    return (width, height) if width and height and width > 0 and height > 0 else None


def read_split_lists(base: Path, limits: IngestConfig) -> dict[str, str]:
    """``{train,val,test}.txt`` under ``base``: entry (one per line) -> split; first file wins.

    Split lists are optional side files, so an unreadable one counts as absent.
    """
    split_of: dict[str, str] = {}
    for split in SPLITS:
        text = read_text_bounded(base / f"{split}.txt", limits)
        for entry in (text or "").split():
            split_of.setdefault(entry, split)
    return split_of


class XmlReader:
    """Shared walk/parse/lookup for one-XML-per-image sources; subclasses parse one object."""

    kind = ""
    default_labels = ""
    default_images: tuple[str, ...] = ()

    def __init__(self, cfg: SourceConfig, root: Path, limits: IngestConfig | None = None):
        self.cfg = cfg
        self.root = Path(root)
        self.limits = limits or IngestConfig()
        self.source = cfg.label
        self.labels = cfg.labels or self.default_labels
        self.images = [cfg.images] if cfg.images else list(self.default_images)

    @property
    def expects(self) -> str:
        return f"{self.labels}/**/*.xml"

    def units(self) -> list[str]:
        return walk_files(self.root, self.labels, (".xml",))

    @cached_property
    def image_index(self) -> ImageIndex:
        return ImageIndex(self.root, self.images)

    def load(self, unit: str) -> ET.Element:
        """The parsed file; :class:`BadInput` with the reason and a one-line detail when unusable."""
        data = read_unit(self.root, unit, self.limits)
        try:
            return parse_xml(data)
        except ValueError as exc:
            raise BadInput(MALFORMED_FILE, str(exc)) from None
        except Exception as exc:        # expat on hostile input (e.g. nesting past its limits)
            raise BadInput(MALFORMED_FILE, f"not usable XML: {unexpected(exc)}") from None

    def parse_object(self, obj: ET.Element) -> tuple[Box, list[Point] | None, str | None, dict[str, Any]]:
        """(box, polygon, expression, attributes) of one object; raises :class:`BadInput`."""
        raise NotImplementedError

    def _named_object(self, obj: ET.Element) -> tuple[str, tuple[Box, list[Point] | None, str | None, dict[str, Any]]]:
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise BadInput(MALFORMED_RECORD, "object has no <name>")
        if len(name) > 64:
            raise BadInput(MALFORMED_RECORD, f"<name> {shown(name)} is not a class name")
        return name, self.parse_object(obj)

    def split_of(self, unit: str, index: int) -> str | None:
        return None

    def extra_attributes(self, unit: str, index: int) -> dict[str, Any]:
        return {}

    def read(self, unit: str) -> Iterator[Item]:
        file_ref = f"{self.source}:{unit}"
        try:
            tree = self.load(unit)
        except BadInput as bad:
            yield Rejected(self.source, file_ref, bad.reason, bad.detail)
            return
        image_name = (tree.findtext("filename") or "").strip()[:255] or PurePosixPath(unit).stem + ".jpg"
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
            parsed = guarded(self.source, ref, f"object {i}", self._named_object, obj)
            if isinstance(parsed, Rejected):
                yield parsed
                continue
            name, (box, polygon, expression, attributes) = parsed
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
        return read_split_lists(self.root / "ImageSets" / "Main", self.limits)

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
            raise BadInput(MALFORMED_RECORD, "object has no <robndbox>")
        missing = [t for t in _ROBNDBOX_TAGS if rob.find(t) is None]
        if missing:
            raise BadInput(MALFORMED_RECORD, f"<robndbox> lacks <{'>, <'.join(missing)}>")
        coords = [number(rob.findtext(t), f"<{t}>") for t in _ROBNDBOX_TAGS]
        polygon, reason = repair_polygon(list(zip(coords[0::2], coords[1::2])))
        if polygon is None:
            raise BadInput(INVALID_POLYGON, reason or "invalid polygon")
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
