"""DOTA label files (``labelTxt/**/P….txt``): one oriented quad per line, label-only.

A line is ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult`` in pixels. v1.x files open with
``imagesource:`` / ``gsd:`` header lines; DOTA-v2 keeps that metadata in ``meta/P….txt``
instead. Real files use CRLF, some tools write float coordinates, empty patches give empty
files, and a few quads are self-intersecting (clicked in the wrong order), so those are
repaired here with :func:`masks.repair_polygon` rather than dropped.

>>> from risbench_builder.config import SourceConfig
>>> reader = DotaReader(SourceConfig(kind="dota", root="."), Path("/nonexistent"))
>>> reader.units()
[]
"""

from __future__ import annotations

import math
import re
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..config import IngestConfig, SourceConfig
from ..masks import polygon_box, repair_polygon
from ..text import shown
from .base import (
    INVALID_POLYGON, MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, BadInput, ImageIndex, Item,
    PathEscapeError, Rejected, SourceRecord, check_coordinates, guarded, read_text_bounded, read_unit,
    to_float, walk_files,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
META_FOLDERS = ("meta", "dota_meta")     # DOTA-v2 release / VRSBench's extractor
_HEADER = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z ]*?)\s*:(?P<value>.*)$")
_SPLIT_DIR = re.compile(r"(?:^|[_-])(train|val|test)(?:$|[_-])", re.IGNORECASE)
_NULLS = {"", "none", "null", "nan"}
_ROW = "x1 y1 ... x4 y4 class difficult"


def parse_header(lines: list[str]) -> dict[str, str]:
    """``key:value`` metadata lines (``imagesource``, ``gsd``, ``acquisition dates``).

    Keys are lower-cased with spaces as underscores; ``None``/``null`` values are dropped, so
    a missing value never hides one that the meta file has.

    >>> parse_header(["imagesource:GF", "gsd:None", "acquisition dates:2016-01-01", "1 2 3"])
    {'imagesource': 'GF', 'acquisition_dates': '2016-01-01'}
    """
    meta: dict[str, str] = {}
    for line in lines:
        m = _HEADER.match(line)
        if m and m.group("value").strip().lower() not in _NULLS:
            meta[m.group("key").strip().lower().replace(" ", "_")] = m.group("value").strip()
    return meta


def parse_gsd(value: str | None) -> float | None:
    """Metres per pixel, or None when absent, unparseable or not a positive number."""
    try:
        gsd = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return gsd if math.isfinite(gsd) and gsd > 0 else None


def split_from_path(unit: str) -> str | None:
    """The innermost folder of ``unit`` that names a split.

    Matches ``train`` as well as ``DOTA-v2.0_train`` or ``train_hbb``, never ``trainval``.

    >>> split_from_path("labelTxt-v2.0/DOTA-v2.0_val/P0003.txt"), split_from_path("labelTxt/P1.txt")
    ('val', None)
    """
    for part in reversed(PurePosixPath(unit).parts[:-1]):
        m = _SPLIT_DIR.search(part)
        if m:
            return m.group(1).lower()
    return None


class DotaReader:
    """Reads ``root/<labels>/**/*.txt`` (default ``labelTxt``) with images below ``root/<images>``."""

    kind = "dota"

    def __init__(self, cfg: SourceConfig, root: Path, limits: IngestConfig | None = None):
        self.cfg = cfg
        self.root = Path(root)
        self.limits = limits or IngestConfig()
        self.source = cfg.label
        self.labels = cfg.labels or "labelTxt"
        self.images = cfg.images or "images"

    @property
    def expects(self) -> str:
        return f"{self.labels}/**/*.txt"

    def units(self) -> list[str]:
        return walk_files(self.root, self.labels, (".txt",))

    @cached_property
    def image_index(self) -> ImageIndex:
        return ImageIndex(self.root, [self.images])

    @cached_property
    def _meta_files(self) -> dict[str, Path]:
        """Meta files by stem; the first in sorted order wins if a stem repeats."""
        found: dict[str, Path] = {}
        for folder in META_FOLDERS:
            for rel in walk_files(self.root, folder, (".txt",)):
                found.setdefault(PurePosixPath(rel).stem, self.root / rel)
        return found

    def _meta(self, stem: str) -> dict[str, str]:
        path = self._meta_files.get(stem)
        text = read_text_bounded(path, self.limits) if path is not None else None
        # metadata is optional: an unreadable meta file counts as absent, the labels still stand
        return parse_header(text.splitlines()) if text else {}

    def _find_image(self, stem: str) -> tuple[str, Path | None]:
        """Image by label stem with any image extension (DOTA images are PNG)."""
        for ext in IMAGE_EXTENSIONS:
            for name in (stem + ext, stem + ext.upper()):
                path = self.image_index.find(name)
                if path is not None:
                    return path.name, path
        return stem + ".png", None

    def read(self, unit: str) -> Iterator[Item]:
        file_ref = f"{self.source}:{unit}"
        try:
            text = read_unit(self.root, unit, self.limits).decode("utf-8-sig")
        except BadInput as bad:
            yield Rejected(self.source, file_ref, bad.reason, bad.detail)
            return
        except UnicodeDecodeError as exc:
            yield Rejected(self.source, file_ref, MALFORMED_FILE, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            return
        lines = text.splitlines()
        stem = PurePosixPath(unit).stem
        meta = {**self._meta(stem), **parse_header(lines)}     # the file's own header wins
        gsd = parse_gsd(meta.pop("gsd", None))
        escape: str | None = None
        try:
            image_name, image_path = self._find_image(stem)
        except PathEscapeError as exc:
            image_name, image_path, escape = stem + ".png", None, str(exc)
        split = self.cfg.split or split_from_path(unit)

        index = 0
        for lineno, line in enumerate(lines, start=1):
            if not line.strip() or _HEADER.match(line):
                continue
            ref = f"{file_ref}#obj{index}"
            object_ref = f"obj{index}"
            index += 1
            if escape is not None:
                yield Rejected(self.source, ref, PATH_ESCAPE, escape)
                continue
            parsed = guarded(self.source, ref, f"line {lineno}", self._parse_row, line)
            if isinstance(parsed, Rejected):
                yield parsed
                continue
            polygon, category, attributes = parsed
            attributes.update(meta)
            yield SourceRecord(
                source=self.source, unit=unit, object_ref=object_ref, image_name=image_name,
                image_path=image_path, category_raw=category, expression=None,
                box_xyxy=polygon_box(polygon), polygon=polygon, attributes=attributes,
                origin_split=split, expected_size=None, gsd=gsd,
            )

    @staticmethod
    def _parse_row(line: str) -> tuple[list[tuple[float, float]], str, dict]:
        tokens = line.split()
        if len(tokens) not in (9, 10):
            raise BadInput(MALFORMED_RECORD, f"{len(tokens)} tokens, expected 10 ({_ROW})")
        coords = check_coordinates([to_float(tok, "coordinate") for tok in tokens[:8]], "coordinate")
        if len(tokens[8]) > 64:
            raise BadInput(MALFORMED_RECORD, f"class {shown(tokens[8])} is not a class name")
        attributes: dict = {"difficult": 0}
        if len(tokens) == 10:
            if not re.fullmatch(r"[+-]?\d{1,9}", tokens[9]):
                raise BadInput(MALFORMED_RECORD, f"difficult flag {shown(tokens[9])} is not an integer")
            attributes["difficult"] = int(tokens[9])
        quad = list(zip(coords[0::2], coords[1::2]))
        polygon, reason = repair_polygon(quad)
        if polygon is None:
            raise BadInput(INVALID_POLYGON, reason or "invalid polygon")
        if reason:
            attributes["polygon_repaired"] = reason
        return polygon, tokens[8], attributes


READERS = {"dota": DotaReader}
