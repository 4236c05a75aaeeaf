"""What every source reader yields, and the helpers they share.

A reader walks one source tree in a deterministic order of *units* (annotation files) and
yields, per unit, :class:`SourceRecord` objects for good objects and :class:`Rejected` objects
for anything it could not read. The ingest stage validates images and geometry, so readers
stay about parsing.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar, Union

import numpy as np

from ..config import IngestConfig
from ..masks import Box, Point
from ..paths import PathEscapeError, path_escape
from ..text import shown, unexpected

# Reject reasons (one vocabulary for the catalog, the report and the tests).
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
IMAGE_SIZE_MISMATCH = "image_size_mismatch"
ZERO_AREA_BOX = "zero_area_box"
BOX_OUTSIDE_IMAGE = "box_outside_image"
EMPTY_EXPRESSION = "empty_expression"
UNKNOWN_CLASS = "unknown_class"
DUPLICATE = "duplicate"
MALFORMED_FILE = "malformed_file"
MALFORMED_RECORD = "malformed_record"
INVALID_POLYGON = "invalid_polygon"
PATH_ESCAPE = "path_escape"
IMAGE_NAME_MISMATCH = "image_name_mismatch"
NON_FINITE_COORDINATE = "non_finite_coordinate"
INVERTED_BOX = "inverted_box"
EXPRESSION_TOO_LONG = "expression_too_long"
FILE_TOO_LARGE = "file_too_large"
# imports of finished datasets (refer / native / hf)
MISSING_MASK = "missing_mask"
UNDECODABLE_MASK = "undecodable_mask"
MASK_SIZE_MISMATCH = "mask_size_mismatch"
EMPTY_MASK = "empty_mask"

REJECT_REASONS = (
    MISSING_IMAGE, UNREADABLE_IMAGE, IMAGE_SIZE_MISMATCH, ZERO_AREA_BOX, BOX_OUTSIDE_IMAGE,
    EMPTY_EXPRESSION, UNKNOWN_CLASS, DUPLICATE, MALFORMED_FILE, MALFORMED_RECORD,
    INVALID_POLYGON, PATH_ESCAPE, IMAGE_NAME_MISMATCH, NON_FINITE_COORDINATE, INVERTED_BOX,
    EXPRESSION_TOO_LONG, FILE_TOO_LARGE, MISSING_MASK, UNDECODABLE_MASK, MASK_SIZE_MISMATCH,
    EMPTY_MASK,
)

#: Source kinds that read a finished dataset (expression + mask) rather than build one.
IMPORT_KINDS = ("refer", "native", "hf")
#: The category of an imported object whose dataset names no class and whose expression names
#: none of the 26 (RefSegRS's roads and buildings): kept, not rejected.
OTHER_CATEGORY = "other"

# No real source image is a million pixels wide (DOTA's largest is ~20,000): a coordinate beyond
# this is junk, and letting it through would overflow integer rasterisation later.
MAX_COORDINATE_PX = 1e6


@dataclass
class ImportedMask:
    """A finished dataset's own mask for one record (import kinds only), exactly one of: a COCO
    RLE as the dataset stores it (``{"size": [h, w], "counts": str | list}``), a mask image file
    (already confined below the source root), or mask image bytes (PNG/TIFF, e.g. from parquet).

    The reader does not decode it: ingest does, against the image, so that an undecodable RLE or
    a mask of another size becomes a reject or a finding with a reason, never a crash.
    """

    rle: dict[str, Any] | None = None
    path: Path | None = None
    data: bytes | None = None
    where: str = ""                # provenance for reject details (file, annotation id)


@dataclass
class SourceRecord:
    """One referred (or labelled) object as a source describes it, in pixel coordinates.

    ``polygon`` is the oriented outline when the source has one (DOTA quad, DIOR-R robndbox,
    VRSBench corners), unclipped; ``box_xyxy`` is the axis-aligned box, unclipped. Label-only
    sources (DOTA, DIOR, DIOR-R) have ``expression=None``.

    Imports of finished datasets also give ``mask`` (the dataset's own mask) and may leave
    ``box_xyxy`` as None when the dataset has no boxes (RefSegRS, RISBench): ingest then uses
    the mask's tight box. ``scene_id`` overrides the scene guessed from the image name (our own
    exports record it).
    """

    source: str
    unit: str                      # annotation file, relative to the source root (posix)
    object_ref: str                # stable id of the object inside the unit, e.g. "obj3"
    image_name: str                # file name as the annotation names it
    image_path: Path | None        # resolved path (None when it could not be found)
    category_raw: str
    expression: str | None
    box_xyxy: Box | None
    polygon: list[Point] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    origin_split: str | None = None
    expected_size: tuple[int, int] | None = None   # (width, height) the annotation claims
    gsd: float | None = None
    mask: ImportedMask | None = None
    scene_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.unit}#{self.object_ref}"


@dataclass
class Rejected:
    """Something a reader could not turn into a record; goes to ``rejects`` with its reason."""

    source: str
    ref: str
    reason: str
    detail: str


class SourceLayoutError(FileNotFoundError):
    """A source root that does not look like the documented layout: the whole source is unusable,
    so this stops ingest with one line (unlike :class:`BadInput`, one record's reject)."""


class BadInput(ValueError):
    """One file or record that cannot be used, with the reject reason it earns."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def guarded(source: str, ref: str, where: str, parse: Callable[..., T], *args: Any) -> T | Rejected:
    """``parse(*args)``, or the :class:`Rejected` it earns: its :class:`BadInput` reason, or
    ``malformed_record`` for any error nobody foresaw. One odd record never stops its file."""
    try:
        return parse(*args)
    except BadInput as bad:
        return Rejected(source, ref, bad.reason, f"{where}: {bad.detail}")
    except Exception as exc:
        return Rejected(source, ref, MALFORMED_RECORD, f"{where}: {unexpected(exc)}")


def to_float(value: Any, what: str) -> float:
    """A source number as a float: :class:`BadInput` for text, bools and values no float holds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, bytes)):
        raise BadInput(MALFORMED_RECORD, f"{what} {shown(value)} is not a number")
    try:
        return float(value)
    except OverflowError:                     # a 400-digit JSON integer
        raise BadInput(NON_FINITE_COORDINATE, f"{what} {shown(value)} does not fit a float") from None
    except ValueError:
        raise BadInput(MALFORMED_RECORD, f"{what} {shown(value)} is not a finite number") from None


def check_coordinates(values: Iterable[float], what: str) -> list[float]:
    """Pixel coordinates (after any scaling): finite and within ±:data:`MAX_COORDINATE_PX`.

    >>> check_coordinates([1.0, 2.5], "box")
    [1.0, 2.5]
    >>> check_coordinates([-1e308 * 512], "corner")
    Traceback (most recent call last):
    ...
    risbench_builder.sources.base.BadInput: corner -inf is not a finite pixel coordinate within ±1e+06
    """
    out = list(values)
    for v in out:
        if not (math.isfinite(v) and abs(v) <= MAX_COORDINATE_PX):
            raise BadInput(NON_FINITE_COORDINATE, f"{what} {v:g} is not a finite pixel coordinate within ±{MAX_COORDINATE_PX:g}")
    return out


def check_box_order(box: Box, what: str) -> Box:
    """An xyxy box as written: ``x2 < x1`` or ``y2 < y1`` is refused, never silently swapped."""
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise BadInput(INVERTED_BOX, f"{what} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] has x2 < x1 or y2 < y1")
    return box


# ------------------------------------------------------------------ bounded reading
def read_unit(root: Path, unit: str, limits: IngestConfig) -> bytes:
    """The bytes of an annotation file, refused (:class:`BadInput`) when it resolves outside
    ``root`` (a symlink out), is not a regular file (a FIFO would block) or is over the size limit."""
    reason = path_escape(root, root, unit)              # the one confinement rule (paths.py)
    if reason:
        raise BadInput(PATH_ESCAPE, f"{unit} {reason}")
    try:
        resolved = (root / unit).resolve()
        info = resolved.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(MALFORMED_FILE, f"{unit} is not a regular file")
        if info.st_size > limits.max_annotation_bytes:
            raise BadInput(FILE_TOO_LARGE, f"{unit} is {info.st_size:,} bytes, over ingest.max_annotation_bytes "
                                           f"({limits.max_annotation_bytes:,})")
        with resolved.open("rb") as fh:
            data = fh.read(limits.max_annotation_bytes + 1)
    except OSError as exc:
        raise BadInput(MALFORMED_FILE, f"{unit}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limits.max_annotation_bytes:          # grew while we read it
        raise BadInput(FILE_TOO_LARGE, f"{unit} is over ingest.max_annotation_bytes ({limits.max_annotation_bytes:,})")
    return data


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(raw: bytes) -> int:
    """How deeply brackets nest in JSON text (brackets inside double-quoted strings ignored),
    counted without recursion so that a file of 100,000 ``[`` cannot blow the stack.

    >>> json_depth(b'{"a": [[1], {"b": "[[["}]}')
    3
    """
    codes = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def load_json_bounded(raw: bytes, limits: IngestConfig, what: str) -> Any:
    """Strict JSON first (fast), json5 only for files under ``json5_max_bytes`` (VRSBench reads
    json5, and json5 is a slow pure-Python parser); nesting bounded before either parser runs.
    Raises :class:`BadInput` (``malformed_file``) with a one-line reason."""
    depth = json_depth(raw)
    if depth > limits.max_json_depth:
        raise BadInput(MALFORMED_FILE, f"{what}: JSON nested {depth} deep, over ingest.max_json_depth "
                                       f"({limits.max_json_depth})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(MALFORMED_FILE, f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        strict_error = unexpected(exc)
    if len(raw) > limits.json5_max_bytes:
        raise BadInput(MALFORMED_FILE, f"{what}: not strict JSON ({strict_error}) and too large for the "
                                       f"json5 fallback ({len(raw):,} > {limits.json5_max_bytes:,} bytes)")
    import json5

    try:
        return json5.loads(text)
    except Exception as exc:        # json5 raises ValueError, but also others on odd input
        raise BadInput(MALFORMED_FILE, f"{what}: not readable as JSON/JSON5: {unexpected(exc)}") from None


def read_text_bounded(path: Path, limits: IngestConfig) -> str | None:
    """An optional side file (split list, meta file) as text, or None when absent, not a regular
    file or over the annotation size limit: side files never stop a source."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > limits.max_annotation_bytes:
            return None
        return path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError:
        return None


Item = Union[SourceRecord, Rejected]
T = TypeVar("T")


class SourceReader(Protocol):
    kind: str
    root: Path
    expects: str    # the files ``units`` looks for, below root (named when a root holds none)

    def units(self) -> list[str]:
        """Annotation files to read, relative to ``root``, in a deterministic order."""

    def read(self, unit: str) -> Iterator[Item]:
        """Records and rejects of one unit. Must never raise on bad content."""


# ------------------------------------------------------------------ vocabulary
RISBENCH_CLASSES: tuple[str, ...] = (
    "airplane", "airport", "baseball-diamond", "basketball-court", "bridge", "chimney",
    "container-crane", "dam", "expressway-service-area", "expressway-toll-station", "golffield",
    "ground-track-field", "harbor", "helicopter", "helipad", "overpass", "roundabout", "ship",
    "soccer-ball-field", "stadium", "storage-tank", "swimming-pool", "tennis-court",
    "trainstation", "vehicle", "windmill",
)

_ALIASES = {
    # DOTA
    "plane": "airplane",
    "large-vehicle": "vehicle",
    "small-vehicle": "vehicle",
    # DIOR (compared lower-case, so the capitalised Expressway names land here too)
    "baseballfield": "baseball-diamond",
    "basketballcourt": "basketball-court",
    "groundtrackfield": "ground-track-field",
    "storagetank": "storage-tank",
    "tenniscourt": "tennis-court",
    "expressway-service-area": "expressway-service-area",
    "expressway-toll-station": "expressway-toll-station",
    # spellings seen in free text and third-party conversions
    "golf-field": "golffield",
    "golf-course": "golffield",
    "train-station": "trainstation",
    "soccerballfield": "soccer-ball-field",
    "swimmingpool": "swimming-pool",
    "containercrane": "container-crane",
    "groundtrack-field": "ground-track-field",
}


def normalize_class(raw: str) -> str | None:
    """Map a source class name to one of the 26 RISBench classes, or None if unknown.

    >>> normalize_class("Expressway-Service-area"), normalize_class("plane"), normalize_class("sheep")
    ('expressway-service-area', 'airplane', None)
    """
    key = re.sub(r"[\s_]+", "-", str(raw).strip().lower())
    key = _ALIASES.get(key, key)
    return key if key in RISBENCH_CLASSES else None


# words of free text that name a class (the class names themselves, with spaces or hyphens, also do)
_CLASS_WORDS = {
    "car": "vehicle", "cars": "vehicle", "truck": "vehicle", "trucks": "vehicle", "bus": "vehicle",
    "vehicles": "vehicle", "van": "vehicle", "plane": "airplane", "planes": "airplane", "aircraft": "airplane",
    "airplanes": "airplane", "boat": "ship", "boats": "ship", "ships": "ship", "vessel": "ship",
    "tank": "storage-tank", "tanks": "storage-tank", "pool": "swimming-pool", "bridges": "bridge",
    "crane": "container-crane", "cranes": "container-crane", "chimneys": "chimney", "windmills": "windmill",
    "golf": "golffield", "port": "harbor", "harbour": "harbor", "helicopters": "helicopter",
    "stadiums": "stadium", "dams": "dam", "airports": "airport", "overpasses": "overpass",
    "roundabouts": "roundabout", "helipads": "helipad", "baseball": "baseball-diamond",
    "basketball": "basketball-court", "tennis": "tennis-court", "soccer": "soccer-ball-field",
    "football": "soccer-ball-field", "track": "ground-track-field",
}
_CLASS_PHRASES = sorted(((c.replace("-", " "), c) for c in RISBENCH_CLASSES), key=lambda p: -len(p[0]))


def infer_category(expression: str) -> str:
    """The RISBench class an expression names, for datasets that ship no class labels (RefSegRS,
    RISBench native): the longest class name it contains, else the first class word, else
    :data:`OTHER_CATEGORY`.

    >>> infer_category("The large storage tank at the top"), infer_category("a white car"), infer_category("the road")
    ('storage-tank', 'vehicle', 'other')
    """
    text = " " + " ".join(re.findall(r"[a-z]+", expression.lower())) + " "
    for phrase, cls in _CLASS_PHRASES:
        if f" {phrase} " in text:
            return cls
    for word in text.split():
        if word in _CLASS_WORDS:
            return _CLASS_WORDS[word]
        if word in RISBENCH_CLASSES:
            return word
    return OTHER_CATEGORY


def normalize_expression(text: str) -> str:
    """What two expressions must share to count as duplicates (case, spacing, end punctuation).

    >>> normalize_expression("  The Ship  on the left. ")
    'the ship on the left'
    """
    return " ".join(text.lower().split()).rstrip(".!?;, ")


# ------------------------------------------------------------------ names
_DEVKIT_TILE = re.compile(r"^(?P<scene>.+?)__\d")           # P0004__1__0___0
_WINDOW = re.compile(r"^(?P<scene>.+)_\d{4}$")               # P0003_0002, 00001_0003


def scene_id_from_name(name: str) -> str:
    """The large source image a patch was cut from, used for leak-free splits.

    >>> [scene_id_from_name(n) for n in ("P0003_0002.png", "00001_0003", "P0004__1__0___0.txt", "P1888")]
    ['P0003', '00001', 'P0004', 'P1888']
    """
    stem = Path(name).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    for pattern in (_DEVKIT_TILE, _WINDOW):
        m = pattern.match(stem)
        if m:
            return m.group("scene")
    return stem


# ------------------------------------------------------------------ paths
def walk_tree(base: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Files below ``base`` whose names end with one of ``suffixes`` (any case), in sorted order,
    skipping macOS zip debris (``__MACOSX/`` folders, ``._*`` resource forks); links to folders
    are not followed."""
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX")
        for fn in sorted(filenames):
            if not fn.startswith("._") and fn.lower().endswith(suffixes):
                yield Path(dirpath) / fn


class ImageIndex:
    """Find images by basename anywhere below some folders (zip nesting varies by release)."""

    def __init__(self, root: Path, folders: list[str] | None = None,
                 extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")):
        self.root = root.resolve()
        self._by_name: dict[str, Path] = {}
        self.duplicates: dict[str, list[Path]] = {}
        bases = [root / f for f in folders] if folders else [root]
        for base in bases:
            for path in walk_tree(base, extensions):
                if path.name in self._by_name:
                    self.duplicates.setdefault(path.name, [self._by_name[path.name]]).append(path)
                    continue
                self._by_name[path.name] = path

    def __len__(self) -> int:
        return len(self._by_name)

    def find(self, name: str) -> Path | None:
        """Resolve an image named by an annotation; raises PathEscapeError for escapes.

        A name with folders in it must stay inside the root; it is looked up by basename.
        A symlinked image that points outside the root also counts as an escape.
        """
        if not name or os.path.isabs(name) or ".." in Path(name.replace("\\", "/")).parts:
            raise PathEscapeError(f"image name {name!r} points outside the source root")
        path = self._by_name.get(Path(name.replace("\\", "/")).name)
        if path is None:
            return None
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise PathEscapeError(f"image {name!r} is a link to {resolved}, outside {self.root}")
        return path


def walk_files(root: Path, folder: str, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted posix paths (relative to root) of files below ``root/folder`` with a suffix."""
    return sorted(path.relative_to(root).as_posix() for path in walk_tree(root / folder, suffixes))
