"""RISBench native and RefSegRS: text files of "<image name> <expression>" lines beside image and mask folders.

Layouts (FIANet ``data/refsegrs_refer_bert.py``; RSRefSeg2's RISBench converter)::

    RefSegRS                               RISBench native (and our ``native`` export)
    images/<name>.tif                      img_rgb/<split>_<imgIdx>_<objIdx>.png   one file per referent
    masks/<name>.tif  (grey 0/255)         mask/<same name>.png  (sometimes 3-channel)
    output_phrase_{train,val,test}.txt     output_phrase_{train,val,test}.txt
                                           index.csv (ours only: file_name, split, triplet_id,
                                                      image_id, scene_id, category)

One unit per ``output_phrase_*.txt``, one record per non-empty line, parsed as FIANet does: the
first space separates the name from the expression (``\\r``, the trailing newline and outer
whitespace stripped). RefSegRS names carry no extension (the loader appends ``.tif``), so a
name without one is tried with ``.tif``, ``.tiff``, ``.png``, ``.jpg``, ``.jpeg``; every
candidate is confined below the root before it is looked at (a symlink out is ``path_escape``).

Neither dataset has boxes (``box_xyxy=None``: ingest takes the mask's tight box) or class labels:
the class comes from ``index.csv`` when our export wrote one, else from the expression
(:func:`~.base.infer_category`; RefSegRS's roads and buildings become ``other``). RISBench names
one image per referent, so ``<split>_<imgIdx>`` is the scene that keeps one image's referents in
one split (val lines name ``train_*`` files, and so keep the train scene). A line whose mask file
is missing is still yielded, with ``mask=None`` and ``attributes["mask_problem"]``: ingest keeps it
as a triplet whose mask is to be repaired.
"""

from __future__ import annotations

import csv
import re
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..config import IngestConfig, SourceConfig
from ..paths import PathEscapeError, confine_path, name_escape
from ..text import shown
from .base import (
    MALFORMED_RECORD, MISSING_MASK, PATH_ESCAPE, BadInput, ImportedMask, Item, Rejected, SourceRecord,
    guarded, infer_category, read_text_bounded, read_unit,
)

IMAGE_FOLDERS = ("img_rgb", "images")
MASK_FOLDERS = ("mask", "masks")
#: tried, in this order, after a name that has none of them (RefSegRS's loader appends .tif)
EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
INDEX = "index.csv"
_PHRASES = re.compile(r"^output_phrase_(?P<split>.+)\.txt$")
_RISBENCH_NAME = re.compile(r"^(?P<scene>[A-Za-z]+_\d+)_\d+\.[A-Za-z0-9]+$")


def parse_line(line: str) -> tuple[str, str]:
    """(name, expression) of one line, split on its first space as FIANet does.

    >>> parse_line("train_2_0.png The ship on the left\\r\\n")
    ('train_2_0.png', 'The ship on the left')
    >>> parse_line("10023")
    ('10023', '')
    """
    name, _, expression = line.strip().partition(" ")
    return name, expression.strip()


def scene_of(name: str) -> str | None:
    """The RISBench image a per-referent file belongs to (``<split>_<imgIdx>``), or None.

    >>> scene_of("train_12_3.png"), scene_of("10023.tif")
    ('train_12', None)
    """
    m = _RISBENCH_NAME.match(PurePosixPath(name).name)
    return m.group("scene") if m else None


def find_file(root: Path, folders: list[Path], name: str) -> Path | None:
    """The file ``name`` names in the first folder that has it, trying :data:`EXTENSIONS` when it
    has none of them; :class:`PathEscapeError` when a candidate resolves outside ``root`` (checked
    before the file is looked at)."""
    has_ext = PurePosixPath(name).suffix.lower() in EXTENSIONS + (".bmp",)
    for folder in folders:
        for candidate in [name] if has_ext else [name + ext for ext in EXTENSIONS]:
            path = confine_path(root, folder, candidate)
            if path.is_file():
                return path
    return None


class NativeReader:
    """``output_phrase_*.txt`` files: one unit per file, one record per line."""

    kind = "native"
    expects = "output_phrase_{split}.txt"

    def __init__(self, cfg: SourceConfig, root: Path, limits: IngestConfig | None = None):
        self.cfg, self.root = cfg, Path(root)
        self.limits = limits or IngestConfig()
        self.source = cfg.label
        names = [cfg.images] if cfg.images else IMAGE_FOLDERS
        masks = [cfg.labels] if cfg.labels else MASK_FOLDERS
        self.image_dirs = [self.root / n for n in names if (self.root / n).is_dir()]
        self.mask_dirs = [self.root / n for n in masks if (self.root / n).is_dir()]

    def units(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _PHRASES.match(p.name))

    @cached_property
    def index(self) -> dict[str, dict[str, str]]:
        """``index.csv`` rows by file name; an absent or unreadable index counts as none."""
        text = read_text_bounded(self.root / INDEX, self.limits)
        if text is None:
            return {}
        try:
            rows = {row["file_name"]: row for row in csv.DictReader(text.splitlines())
                    if isinstance(row.get("file_name"), str)}
        except (csv.Error, KeyError, TypeError):
            return {}
        return rows

    def read(self, unit: str) -> Iterator[Item]:
        file_ref = f"{self.source}:{unit}"
        try:
            raw = read_unit(self.root, unit, self.limits)
        except BadInput as bad:
            yield Rejected(self.source, file_ref, bad.reason, bad.detail)
            return
        m = _PHRASES.match(unit)
        split = self.cfg.split or (m.group("split") if m else None)
        for n, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            yield guarded(self.source, f"{file_ref}#line{n}", f"{unit} line {n}", self._record, unit, n, line, split)

    def _record(self, unit: str, n: int, line: bytes, split: str | None) -> SourceRecord:
        try:
            text = line.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(MALFORMED_RECORD, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        name, expression = parse_line(text)
        reason = name_escape(name)
        if reason:
            raise BadInput(PATH_ESCAPE, f"file name {shown(name)} {reason}")
        try:
            image = find_file(self.root, self.image_dirs, name)
            mask = find_file(self.root, self.mask_dirs, name)
        except PathEscapeError as exc:
            raise BadInput(PATH_ESCAPE, str(exc)) from None
        attributes: dict[str, Any] = {"file": unit, "line": n, "image_file": name,
                                      "mask_file": mask.relative_to(self.root).as_posix() if mask else None}
        imported = None
        if mask is None:
            folders = " or ".join(f"{p.name}/" for p in self.mask_dirs) or f"{' or '.join(MASK_FOLDERS)} (none exists)"
            attributes["mask_problem"] = f"{MISSING_MASK}: no mask file for {name} in {folders}"
        else:
            imported = ImportedMask(path=mask, where=f"{unit} line {n}")
        row = self.index.get(name, {})
        if row.get("triplet_id"):
            attributes["origin_triplet_id"] = row["triplet_id"][:200]
        category = (row.get("category") or "").strip()[:64] or infer_category(expression)
        image_name = image.name if image else (name if PurePosixPath(name).suffix else name + EXTENSIONS[0])
        return SourceRecord(
            source=self.source, unit=unit, object_ref=f"line{n}", image_name=image_name, image_path=image,
            category_raw=category, expression=expression, box_xyxy=None, attributes=attributes,
            origin_split=split, mask=imported, scene_id=(row.get("scene_id") or "")[:200] or scene_of(name),
        )


READERS = {"native": NativeReader}
