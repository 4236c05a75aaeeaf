"""``risbench check PATH``: validate an export of ours or a third-party download in one of its formats.

The format is detected from the layout: ``hf`` (``data/*.parquet``), ``refer`` (``*/refs(*).p``
with ``instances.json``, e.g. a downloaded RRSIS-D), ``native`` (``output_phrase_*.txt``, e.g.
a RISBench or RefSegRS download) or ``coco`` (``annotations/*.json``). A folder holding several
exports (``W/exports``) or a workspace is checked export by export.

Every problem becomes a :class:`Failure` of one of the :data:`KINDS`, with where it is and
what is wrong; nothing stops at the first problem. A download is untrusted input: every path
named inside it (an image ``file_name``, a phrase-file name, an ``index.csv`` row, a manifest
entry, an HF image ``path``) must stay inside the export folder; one that is absolute, has a
``..`` component or resolves outside it through a symlink is a ``path_escape`` failure and is
never opened. Masks, RLEs and images are checked in a
pool of worker processes on large exports, and manifest hashes in threads beside them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
from PIL import Image

from .. import masks
from ..paths import PathEscapeError, confine_path, name_escape, path_escape
from ..sources.base import RISBENCH_CLASSES, normalize_class, scene_id_from_name
from .base import make_pool
from .manifest import MANIFEST, hash_files, inode, walk
from .refer import load_plain_pickle

#: Failure kinds, each with what it means (tests assert on these names).
KINDS: dict[str, str] = {
    "unreadable_file": "an annotation file (parquet, pickle, JSON, text, CSV) cannot be parsed",
    "missing_file": "a referenced image or mask file does not exist",
    "unreadable_image": "an image file or image bytes cannot be decoded",
    "image_size_mismatch": "an image's size differs from the size its annotation declares",
    "unreadable_mask": "a mask cannot be decoded",
    "mask_not_binary": "a mask holds values other than 0 and one foreground value (1 or 255)",
    "mask_size_mismatch": "a mask's size differs from its image's",
    "empty_mask": "a mask has no foreground pixel",
    "rle_roundtrip": "an RLE does not decode and re-encode to itself (malformed or non-canonical counts)",
    "expression_empty": "an expression is empty or only whitespace",
    "expression_not_utf8": "an expression is not valid UTF-8",
    "expression_not_nfc": "an expression is not in Unicode NFC",
    "expression_control_char": "an expression contains a control character",
    "unknown_category": "a category is not one of the RISBench classes (after the DOTA/DIOR name mapping)",
    "bad_split_name": "a REFER split other than train / val / test (loaders match these exactly)",
    "split_image_overlap": "an image is in more than one split",
    "split_scene_overlap": "a source scene is in more than one split",
    "duplicate_id": "an id (triplet, image, annotation, ref, sentence, file name) occurs twice",
    "dangling_reference": "a ref or annotation points at an annotation, image or category that does not exist",
    "format_violation": "the layout breaks a rule of the format (a REFER pitfall, a shard name, a bbox)",
    "schema_mismatch": "parquet features differ from the RISBench schema",
    "card_mismatch": "the dataset card's features or split sizes differ from the parquet files",
    "manifest_invalid": "manifest.json cannot be read",
    "manifest_missing_file": "a file listed in the manifest does not exist",
    "manifest_unlisted_file": "a file exists that the manifest does not list",
    "manifest_sha256": "a file's sha256 differs from the manifest's",
    "manifest_count": "a count in the manifest differs from the data",
    "path_escape": "a path named in the dataset is absolute, has a '..' component or resolves (through a "
                   "symlink) outside the export folder; it is not opened",
}

FORMATS = ("hf", "refer", "native", "coco")
REFER_SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
POOL_MIN_ITEMS = 2000      # below this many images / masks / rows, starting workers costs more than it saves


@dataclass(frozen=True)
class Failure:
    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.detail}"


@dataclass(frozen=True)
class SplitEntry:
    """One triplet as the split and count checks see it."""

    split: str
    image: str
    scene: str


@dataclass
class CheckReport:
    path: Path
    format: str
    failures: list[Failure] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    digests: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)   # inode -> sha256 seen
    seen: Any = field(default=None, repr=False)                                        # SeenFiles

    @property
    def ok(self) -> bool:
        return not self.failures

    def kinds(self) -> Counter:
        return Counter(f.kind for f in self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "ok": self.ok, "counts": self.counts,
                "notes": self.notes, "failures_by_kind": dict(sorted(self.kinds().items())),
                "failures": [{"kind": f.kind, "where": f.where, "detail": f.detail} for f in self.failures]}

    def render(self, limit: int = 10) -> str:
        c = self.counts
        splits = ", ".join(f"{s} {v['triplets']}" for s, v in c.get("splits", {}).items())
        head = (f"{self.format} {self.path}: " + ("OK" if self.ok else f"FAILED ({len(self.failures)} failures)")
                + f"  [{c.get('triplets', 0)} triplets, {c.get('images', 0)} images; {splits}]")
        lines = [head] + [f"  note: {n}" for n in self.notes]
        grouped: dict[str, list[Failure]] = defaultdict(list)
        for f in self.failures:
            grouped[f.kind].append(f)
        for kind in sorted(grouped):
            items = grouped[kind]
            lines.append(f"  {kind} ({len(items)}): {KINDS.get(kind, '')}")
            lines += [f"    {f.where}: {f.detail}" for f in items[:limit]]
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")
        return "\n".join(lines)


# ============================================================================ primitives
def expression_failures(text: Any, where: str) -> list[Failure]:
    """UTF-8, not empty, NFC, no control characters.

    >>> [f.kind for f in expression_failures("cafe\\u0301 on the left", "x")]
    ['expression_not_nfc']
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [Failure("expression_not_utf8", where, f"byte {exc.start}: {exc.reason}")]
    if not isinstance(text, str):
        return [Failure("expression_empty", where, f"expression is {type(text).__name__}, not text")]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return [Failure("expression_not_utf8", where, f"character {exc.start}: {exc.reason}")]
    out = []
    if not text.strip():
        out.append(Failure("expression_empty", where, "empty expression"))
    if unicodedata.normalize("NFC", text) != text:
        out.append(Failure("expression_not_nfc", where, f"{text[:60]!r} changes under NFC"))
    bad = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cc"})
    if bad:
        out.append(Failure("expression_control_char", where, f"{', '.join(bad)} in {text[:60]!r}"))
    return out


def category_failures(name: Any, where: str, exact: bool = False) -> list[Failure]:
    ok = name in RISBENCH_CLASSES if exact else (isinstance(name, str) and normalize_class(name) is not None)
    return [] if ok else [Failure("unknown_category", where, f"{name!r} is not a RISBench class")]


def mask_array_failures(arr: np.ndarray, size_wh: tuple[int, int] | None, where: str) -> list[Failure]:
    """Binary (one foreground value: 1 or 255), the image's size, not empty."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        if arr.shape[2] > 1 and not all(np.array_equal(arr[..., 0], arr[..., i]) for i in range(1, arr.shape[2])):
            return [Failure("mask_not_binary", where, f"{arr.shape[2]}-channel mask whose channels differ")]
        arr = arr[..., 0]
    if arr.ndim != 2:
        return [Failure("unreadable_mask", where, f"mask has shape {arr.shape}")]
    out = []
    top = int(arr.max()) if arr.size else 0
    stray = int(np.count_nonzero((arr != 0) & (arr != top)))
    if top not in (0, 1, 255) or stray:
        values = np.unique(arr)
        out.append(Failure("mask_not_binary", where, f"values {values[:6].tolist()}{'...' if len(values) > 6 else ''}"))
    if size_wh is not None and (arr.shape[1], arr.shape[0]) != tuple(size_wh):
        out.append(Failure("mask_size_mismatch", where, f"mask {arr.shape[1]}x{arr.shape[0]}, image "
                                                        f"{size_wh[0]}x{size_wh[1]}"))
    if top == 0:
        out.append(Failure("empty_mask", where, "mask has no foreground pixel"))
    return out


def rle_counts(counts: str | bytes) -> np.ndarray | None:
    """The run lengths of a COCO compressed-RLE string (pycocotools ``rleFrString``), or None if
    malformed (:func:`masks.rle_runs`, which refuses a corrupt string before pycocotools sees it).

    >>> rle_counts(masks.encode(np.eye(3, dtype=np.uint8))["counts"]).tolist()
    [0, 1, 3, 1, 3, 1]
    """
    try:
        return masks.rle_runs(counts)
    except ValueError:
        return None


def rle_string(runs: np.ndarray) -> str:
    """The COCO compressed-RLE string of run lengths (pycocotools ``rleToString``), vectorised.

    >>> rle_string(np.array([0, 1, 3, 1, 3, 1])) == masks.encode(np.eye(3, dtype=np.uint8))["counts"]
    True
    """
    runs = np.asarray(runs, np.int64)
    x = runs.copy()
    x[3:] = runs[3:] - runs[1:-2]
    chars = np.zeros((len(x), 8), np.int64)
    valid = np.zeros((len(x), 8), bool)
    more = np.ones(len(x), bool)
    for k in range(8):
        c = x & 0x1F
        x = x >> 5
        nxt = np.where((c & 0x10) != 0, x != -1, x != 0)
        valid[:, k] = more
        chars[:, k] = np.where(nxt, c | 0x20, c) + 48
        more &= nxt
    return chars[valid].astype(np.uint8).tobytes().decode("ascii")


def rle_failures(rle: Any, size_hw: tuple[int, int] | None, where: str) -> list[Failure]:
    """A COCO RLE dict: well formed, the image's size, round-trips exactly, not empty.

    Checked on the run lengths alone (no pixels): an RLE decodes and re-encodes to itself exactly
    when its runs cover H*W pixels, none but the first is zero, and its string is the canonical
    encoding of those runs.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        return [Failure("format_violation", where, f"segmentation is not an RLE dict: {str(rle)[:80]}")]
    try:
        h, w = (int(v) for v in rle["size"])
    except (TypeError, ValueError):
        return [Failure("format_violation", where, f"RLE size {rle['size']!r} is not [H, W]")]
    counts = rle["counts"]
    out = []
    if size_hw is not None and (h, w) != tuple(size_hw):
        out.append(Failure("mask_size_mismatch", where, f"RLE size {h}x{w} (HxW), image {size_hw[0]}x{size_hw[1]}"))
    if isinstance(counts, list):          # uncompressed RLE (COCO iscrowd style)
        runs = np.asarray(counts, dtype=np.int64) if all(isinstance(c, int) for c in counts) else None
        text = None
    elif isinstance(counts, (str, bytes)):
        runs, text = rle_counts(counts), counts if isinstance(counts, str) else counts.decode("ascii", "replace")
    else:
        return out + [Failure("format_violation", where, f"RLE counts is {type(counts).__name__}")]
    if runs is None:
        return out + [Failure("rle_roundtrip", where, "counts string is malformed")]
    if (runs < 0).any() or int(runs.sum()) != h * w:
        return out + [Failure("rle_roundtrip", where, f"runs cover {int(runs.sum())} pixels, size says {h * w}"
                                                      + (" (negative run)" if (runs < 0).any() else ""))]
    if (runs[1:] == 0).any():
        out.append(Failure("rle_roundtrip", where, "zero-length run: decode + encode gives different counts"))
    elif text is not None and rle_string(runs) != text:
        out.append(Failure("rle_roundtrip", where, "decode + encode gives different counts (non-canonical RLE)"))
    if not runs[1::2].any():
        out.append(Failure("empty_mask", where, "mask has no foreground pixel"))
    return out


Digest = tuple[tuple[int, int], str]


def read_hashed(path: Path) -> tuple[bytes | None, Digest | None]:
    """A file's bytes and (inode, sha256), so a file is read once for its check and its hash."""
    try:
        if not path.is_file():                  # a FIFO or device would block or never end
            return None, None
        data = path.read_bytes()
        return data, (inode(path), hashlib.sha256(data).hexdigest())
    except OSError:
        return None, None


def image_failures(data: bytes | Path, declared_wh: tuple[int, int] | None, where: str
                   ) -> tuple[list[Failure], tuple[int, int] | None]:
    """Readable (all chunks verified) and of the declared size; returns (failures, size)."""
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with Image.open(src) as im:
            size = im.size
            im.verify()
    except FileNotFoundError:
        return [Failure("missing_file", where, "image file does not exist")], None
    except Exception as exc:  # noqa: BLE001 - any decoder error means unreadable
        return [Failure("unreadable_image", where, f"{type(exc).__name__}: {str(exc)[:120]}")], None
    if declared_wh is not None and tuple(size) != tuple(declared_wh):
        return [Failure("image_size_mismatch", where, f"image is {size[0]}x{size[1]}, annotation says "
                                                      f"{declared_wh[0]}x{declared_wh[1]}")], size
    return [], size


def _fast_grey_png(data: bytes) -> np.ndarray | None:
    """8-bit greyscale PNG (our masks) decoded with OpenCV, faster than PIL; None for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x00":
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def mask_file_failures(data: bytes | Path, size_wh: tuple[int, int] | None, where: str) -> list[Failure]:
    if isinstance(data, (bytes, bytearray)) and (arr := _fast_grey_png(bytes(data))) is not None:
        return mask_array_failures(arr, size_wh, where)
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with Image.open(src) as im:
            arr = np.asarray(im)
    except FileNotFoundError:
        return [Failure("missing_file", where, "mask file does not exist")]
    except Exception as exc:  # noqa: BLE001
        return [Failure("unreadable_mask", where, f"{type(exc).__name__}: {str(exc)[:120]}")]
    return mask_array_failures(arr, size_wh, where)


def split_failures(samples: Iterable[SplitEntry]) -> list[Failure]:
    images: dict[str, set[str]] = defaultdict(set)
    scenes: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        images[s.image].add(s.split)
        scenes[s.scene].add(s.split)
    out = [Failure("split_image_overlap", f"image {k}", f"in splits {', '.join(sorted(v))}")
           for k, v in sorted(images.items()) if len(v) > 1]
    out += [Failure("split_scene_overlap", f"scene {k}", f"in splits {', '.join(sorted(v))}")
            for k, v in sorted(scenes.items()) if len(v) > 1]
    return out


def counts_of(samples: list[SplitEntry]) -> dict[str, Any]:
    triplets: dict[str, int] = {}
    images: dict[str, set[str]] = {}
    for s in samples:
        triplets[s.split] = triplets.get(s.split, 0) + 1
        images.setdefault(s.split, set()).add(s.image)
    all_images = set().union(*images.values()) if images else set()
    return {"triplets": len(samples), "images": len(all_images),
            "splits": {k: {"triplets": triplets[k], "images": len(images[k])} for k in triplets}}


def duplicate_failures(ids: Iterable[Any], what: str, where: str) -> list[Failure]:
    seen = Counter(ids)
    return [Failure("duplicate_id", where, f"{what} {k!r} occurs {n} times") for k, n in sorted(
        seen.items(), key=lambda kv: str(kv[0])) if n > 1]


# ============================================================================ parallel map
_KNOWN_MASKS: dict[str, tuple[int, int]] = {}   # in a worker: mask PNGs another export already proved good


def _set_known_masks(known: dict[str, tuple[int, int]]) -> None:
    global _KNOWN_MASKS
    _KNOWN_MASKS = known


class _Runner:
    """map() over tasks, in a process pool when it pays (results in task order).

    ``workers=None``: a pool of up to 2 for batches of at least ``POOL_MIN_ITEMS`` items; an
    explicit ``workers`` >= 2 always uses a pool (when there are 2+ tasks).
    """

    def __init__(self, workers: int | None):
        self.auto = workers is None
        self.workers = (min(2, os.cpu_count() or 1) if workers is None else workers)
        self._pool: Any = None
        self.known_masks: dict[str, tuple[int, int]] = {}

    def map(self, fn: Callable[[Any], Any], tasks: list[Any], items: int | None = None) -> list[Any]:
        small = self.auto and (items if items is not None else len(tasks)) < POOL_MIN_ITEMS
        if self.workers <= 1 or len(tasks) < 2 or small:
            saved = _KNOWN_MASKS
            _set_known_masks(self.known_masks)
            try:
                return [fn(t) for t in tasks]
            finally:
                _set_known_masks(saved)
        if self._pool is None:
            self._pool = make_pool(self.workers, initializer=_set_known_masks, initargs=(self.known_masks,))
            if self._pool is None:
                self.workers = 0
                return self.map(fn, tasks)
        return self._pool.map(fn, tasks, chunksize=1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ============================================================================ detection
def detect(path: Path) -> str | None:
    """The export format of the folder ``path``, or None."""
    if (path / "data").is_dir() and any((path / "data").glob("*.parquet")):
        return "hf"
    if any(path.glob("*/refs(*).p")):
        return "refer"
    if any(path.glob("output_phrase_*.txt")):
        return "native"
    if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
        return "coco"
    return None


def find_exports(path: Path) -> list[tuple[Path, str]]:
    """``path`` itself, or the exports inside it (``W/exports/*`` or a workspace's ``exports/``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    fmt = detect(path)
    if fmt:
        return [(path, fmt)]
    for base in (path, path / "exports"):
        found = [(p, f) for p in sorted(base.iterdir()) if p.is_dir() and not p.name.startswith(".")
                 and (f := detect(p))] if base.is_dir() else []
        if found:
            return found
    raise ValueError(f"{path}: no export found (looked for hf data/*.parquet, refer */refs(*).p, native "
                     "output_phrase_*.txt, coco annotations/*.json, here and in its subfolders)")


@dataclass
class SeenFiles:
    """Image files already found good in this run, by inode: exports of one build hard-link their
    images to one copy, so each is decoded and hashed once however many exports hold it."""

    images: dict[tuple[int, int], tuple[tuple[int, int], str]] = field(default_factory=dict)  # -> (size, sha)
    masks: dict[str, tuple[int, int]] = field(default_factory=dict)   # sha256 of a good mask PNG -> (w, h)


def check_path(path: Path | str, workers: int | None = None) -> list[CheckReport]:
    """Check every export found at ``path`` (see :func:`find_exports`)."""
    seen = SeenFiles()
    return [check_export(p, fmt, workers, seen) for p, fmt in find_exports(Path(path))]


def check_export(root: Path, fmt: str, workers: int | None = None, seen: SeenFiles | None = None) -> CheckReport:
    report = CheckReport(root, fmt)
    report.seen = seen or SeenFiles()
    runner = _Runner(workers)
    runner.known_masks = report.seen.masks if fmt == "native" else {}
    manifest = _load_manifest(root, report)
    try:
        samples = {"hf": _check_hf, "refer": _check_refer, "native": _check_native, "coco": _check_coco}[fmt](
            root, report, runner)
    finally:
        runner.close()
    report.counts = counts_of(samples)
    report.failures += split_failures(samples)
    if manifest is not None:
        listed = sorted(_manifest_files(root, manifest, report))
        hashes = hash_files(root, listed, 2, report.digests)
        _check_manifest(root, manifest, hashes, report)
    report.failures.sort(key=lambda f: (f.kind, f.where, f.detail))
    return report


# ============================================================================ manifest
def _load_manifest(root: Path, report: CheckReport) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        report.notes.append("no manifest.json: file hashes and counts not checked (third-party download?)")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("files"), dict) or not isinstance(data.get("counts"), dict):
            raise ValueError("needs 'files' and 'counts' objects")
        return data
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        report.failures.append(Failure("manifest_invalid", MANIFEST, str(exc)[:200]))
        return None


def _manifest_files(root: Path, manifest: dict[str, Any], report: CheckReport) -> list[str]:
    """The manifest's files that may be hashed: inside the export and regular files."""
    out = []
    for rel in manifest["files"]:
        reason = path_escape(root, root, rel)
        if reason:
            report.failures.append(Failure("path_escape", f"{MANIFEST} {rel!r}", f"listed file {reason}; not read"))
        elif (root / rel).exists() and not (root / rel).is_file():
            report.failures.append(Failure("manifest_missing_file", rel, "listed in manifest.json, not a regular file"))
        else:
            out.append(rel)
    return out


def _check_manifest(root: Path, manifest: dict[str, Any], hashes: dict[str, str | None], report: CheckReport) -> None:
    for rel, entry in sorted(manifest["files"].items()):
        if rel not in hashes:                    # refused by _manifest_files
            continue
        got = hashes.get(rel)
        if got is None:
            report.failures.append(Failure("manifest_missing_file", rel, "listed in manifest.json, not on disk"))
        elif got != entry.get("sha256"):
            report.failures.append(Failure("manifest_sha256", rel, f"sha256 {got[:16]}..., manifest says "
                                                                   f"{str(entry.get('sha256'))[:16]}..."))
    for rel in walk(root):
        if rel not in manifest["files"]:
            report.failures.append(Failure("manifest_unlisted_file", rel, "on disk, not in manifest.json"))
    want, got_counts = manifest["counts"], report.counts
    for key in ("triplets", "images"):
        if want.get(key) != got_counts.get(key):
            report.failures.append(Failure("manifest_count", key, f"manifest says {want.get(key)}, data has "
                                                                  f"{got_counts.get(key)}"))
    splits = set(want.get("splits", {})) | set(got_counts.get("splits", {}))
    for split in sorted(splits):
        for key in ("triplets", "images"):
            a = want.get("splits", {}).get(split, {}).get(key)
            b = got_counts.get("splits", {}).get(split, {}).get(key)
            if a != b:
                report.failures.append(Failure("manifest_count", f"{split}.{key}", f"manifest says {a}, data has {b}"))


# ============================================================================ hf
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")
_HF_COLUMNS = ("image", "mask", "expression", "category", "triplet_id", "image_id", "scene_id", "width",
               "height", "bbox", "area")


HF_GROUPS_PER_TASK = 10      # row groups (of 100 rows) per task: small enough to balance two workers


def _hf_task(task: tuple) -> tuple[list[Failure], list[tuple], Digest | None]:
    """("hash", path): one sequential read of the file for its sha256; ("rows", path, rel, first,
    last, offset): the rows of row groups first..last-1. A file's hash task is queued just before
    its row tasks, so they read it from the page cache and each byte comes off the disk once."""
    if task[0] == "hash":
        from .manifest import sha256_file

        return [], [], (inode(Path(task[1])), sha256_file(Path(task[1])))
    _, path, rel, first, last, offset = task
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    out: list[Failure] = []
    rows: list[tuple] = []
    for g in range(first, last):
        table = pf.read_row_group(g, columns=list(_HF_COLUMNS))
        failures, got = _hf_rows(table.to_pylist(), rel, offset)
        out += failures
        rows += got
        offset += table.num_rows
    return out, rows, None


def _hf_rows(pylist: list[dict[str, Any]], rel: str, offset: int) -> tuple[list[Failure], list[tuple]]:
    out: list[Failure] = []
    rows = []
    last: tuple[bytes, tuple[int, int]] | None = None     # rows come grouped by image
    for i, r in enumerate(pylist):
        where = f"{rel} row {offset + i} (triplet {r['triplet_id']})"
        out += expression_failures(r["expression"], where)
        out += category_failures(r["category"], where, exact=True)
        image = (r["image"] or {}).get("bytes")
        size = None
        for col in ("image", "mask"):
            named = (r[col] or {}).get("path")
            if not (r[col] or {}).get("bytes") and named is not None and name_escape(named):
                out.append(Failure("path_escape", f"{where} {col}", f"path {named!r} {name_escape(named)}; not read"))
        if image is None:
            out.append(Failure("unreadable_image", where, "image has no embedded bytes"))
        elif last is not None and last[0] == image and last[1] == (r["width"], r["height"]):
            size = last[1]                                   # the same bytes passed just before
        else:
            bad, size = image_failures(image, (r["width"], r["height"]), where)
            out += bad
            last = (image, size) if not bad and size else None
        mask_sha = None
        mask = (r["mask"] or {}).get("bytes")
        if mask is None:
            out.append(Failure("unreadable_mask", where, "mask has no embedded bytes"))
            rows.append((r["triplet_id"], r["image_id"], r["scene_id"], None, None))
            continue
        try:
            arr = _fast_grey_png(mask)
            if arr is None:
                with Image.open(io.BytesIO(mask)) as im:
                    arr = np.asarray(im)
        except Exception:  # noqa: BLE001 - any decoder error means unreadable
            arr = None
        if arr is None:
            out.append(Failure("unreadable_mask", where, "mask bytes do not decode"))
            rows.append((r["triplet_id"], r["image_id"], r["scene_id"], None, None))
            continue
        bad = mask_array_failures(arr, size or (r["width"], r["height"]), where)
        out += bad
        if not bad:
            area = int(np.count_nonzero(arr if arr.ndim == 2 else arr[..., 0]))
            if r["area"] is not None and area != r["area"]:
                out.append(Failure("format_violation", where, f"area column says {r['area']}, mask has {area} pixels"))
            mask_sha = hashlib.sha256(mask).hexdigest()
        rows.append((r["triplet_id"], r["image_id"], r["scene_id"], mask_sha, (arr.shape[1], arr.shape[0])))
        x1, y1, x2, y2 = r["bbox"] or (0, 0, 0, 0)
        if not (0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"]):
            out.append(Failure("format_violation", where, f"bbox {r['bbox']} is not x1<x2, y1<y2 inside the image"))
    return out, rows


def _check_hf(root: Path, report: CheckReport, runner: _Runner) -> list[SplitEntry]:
    import pyarrow.parquet as pq
    from .schema import features

    want = features()
    files = sorted((root / "data").glob("*.parquet"))
    tasks = []
    shards: dict[str, list[tuple[int, int]]] = defaultdict(list)
    split_of: dict[str, str] = {}
    rows_per_split: Counter = Counter()
    for path in files:
        rel = path.relative_to(root).as_posix()
        m = _SHARD.match(path.name)
        if not m:
            report.failures.append(Failure("format_violation", rel, "name is not {split}-{i:05d}-of-{n:05d}.parquet"))
            continue
        split = m["split"]
        shards[split].append((int(m["i"]), int(m["n"])))
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001
            report.failures.append(Failure("unreadable_file", rel, f"{type(exc).__name__}: {str(exc)[:120]}"))
            continue
        from datasets import Features

        got = Features.from_arrow_schema(pf.schema_arrow)
        if got != want:
            diff = sorted(set(got) ^ set(want)) or [k for k in want if k in got and got[k] != want[k]]
            report.failures.append(Failure("schema_mismatch", rel, f"columns differ from the schema: {diff[:8]}"))
            if not set(_HF_COLUMNS) <= set(got):
                continue
        tasks.append(("hash", str(path)))
        offset = 0
        for first in range(0, pf.num_row_groups, HF_GROUPS_PER_TASK):
            last = min(first + HF_GROUPS_PER_TASK, pf.num_row_groups)
            tasks.append(("rows", str(path), rel, first, last, offset))
            offset += sum(pf.metadata.row_group(g).num_rows for g in range(first, last))
        rows_per_split[split] += pf.metadata.num_rows
        split_of[rel] = split
    for split, got_shards in sorted(shards.items()):
        ns = {n for _, n in got_shards}
        idx = sorted(i for i, _ in got_shards)
        if len(ns) != 1 or idx != list(range(next(iter(ns)))):
            report.failures.append(Failure("format_violation", f"data/{split}-*", f"shards {idx} of {sorted(ns)}: "
                                                                                 "numbering has gaps or disagrees"))
    samples: list[SplitEntry] = []
    triplet_ids: list[str] = []
    for task, (failures, rows, digest) in zip(tasks, runner.map(_hf_task, tasks, sum(rows_per_split.values()))):
        report.failures += failures
        if digest is not None:
            report.digests[digest[0]] = digest[1]
            continue
        split = split_of[task[2]]
        for tid, image_id, scene, mask_sha, mask_wh in rows:
            triplet_ids.append(tid)
            samples.append(SplitEntry(split, image_id, scene))
            if mask_sha is not None:
                report.seen.masks[mask_sha] = mask_wh
    report.failures += duplicate_failures(triplet_ids, "triplet_id", "data/")
    _check_card(root, want, rows_per_split, report)
    return samples


def _check_card(root: Path, want: Any, rows: Counter, report: CheckReport) -> None:
    readme = root / "README.md"
    if not readme.is_file():
        report.failures.append(Failure("card_mismatch", "README.md", "no dataset card"))
        return
    try:
        from datasets.info import DatasetInfosDict
        from huggingface_hub import DatasetCard

        card = DatasetCard.load(str(readme))
        infos = DatasetInfosDict.from_dataset_card_data(card.data)
    except Exception as exc:  # noqa: BLE001
        report.failures.append(Failure("card_mismatch", "README.md", f"YAML metadata unreadable: {str(exc)[:160]}"))
        return
    info = infos.get("default") or (next(iter(infos.values())) if infos else None)
    if info is None or info.features is None:
        report.failures.append(Failure("card_mismatch", "README.md", "no dataset_info features"))
        return
    if info.features != want:
        report.failures.append(Failure("card_mismatch", "README.md", "dataset_info features differ from the schema"))
    card_splits = set(info.splits) if info.splits else set()
    for split in sorted(card_splits | set(rows)):
        declared = info.splits[split].num_examples if split in card_splits else None
        n = rows.get(split, 0)
        if declared != n:
            report.failures.append(Failure("card_mismatch", "README.md", f"split {split}: card says {declared} "
                                                                         f"examples, parquet has {n}"))
    configs = (card.data.to_dict().get("configs") or [])
    listed = {f.get("split") for c in configs for f in (c.get("data_files") or []) if isinstance(f, dict)}
    if set(rows) - listed:
        report.failures.append(Failure("card_mismatch", "README.md", f"configs lack data_files for "
                                                                     f"{sorted(set(rows) - listed)}"))


# ============================================================================ refer
def _seg_task(task: tuple[str, Any, tuple[int, int] | None]) -> list[Failure]:
    where, seg, hw = task
    if isinstance(seg, dict):
        return [Failure("format_violation", where, "segmentation is a bare RLE dict; REFER getMask needs a list "
                                                   "(KeyError 0)")] + rle_failures(seg, hw, where)
    if not isinstance(seg, list) or not seg:
        return [Failure("format_violation", where, f"segmentation is {type(seg).__name__}, not a non-empty list")]
    out: list[Failure] = []
    layers = []
    for k, part in enumerate(seg):
        w = f"{where} segment {k}"
        if isinstance(part, dict):
            bad = rle_failures(part, hw, w)
            out += [f for f in bad if f.kind != "empty_mask" or len(seg) == 1]
            if not any(f.kind in ("rle_roundtrip", "format_violation", "mask_size_mismatch") for f in bad):
                try:
                    layers.append(masks.decode(part))
                except ValueError as exc:        # e.g. a size over masks.MAX_MASK_PIXELS
                    out.append(Failure("unreadable_mask", w, str(exc)[:160]))
        elif isinstance(part, list) and len(part) >= 6 and all(isinstance(v, (int, float)) for v in part):
            if hw is not None:
                try:
                    layers.append(masks.rasterize_polygon(np.asarray(part, float).reshape(-1, 2), hw[0], hw[1]))
                except ValueError as exc:        # NaN / huge coordinates, a height that is not an integer
                    out.append(Failure("unreadable_mask", w, f"polygon: {str(exc)[:160]}"))
        else:
            out.append(Failure("format_violation", w, "segment is neither an RLE dict nor a polygon list"))
    if len(layers) > 1:
        stack = np.sum(layers, axis=0)
        if (stack > 1).any():
            out.append(Failure("format_violation", where, f"{int((stack > 1).sum())} pixels covered by two segments "
                                                          "(REFER loaders set them to background)"))
        if not stack.any():
            out.append(Failure("empty_mask", where, "mask has no foreground pixel"))
    elif len(layers) == 1 and len(seg) > 1 and not layers[0].any():
        out.append(Failure("empty_mask", where, "mask has no foreground pixel"))
    return out


def _seg_batch(tasks: list[tuple[str, Any, tuple[int, int] | None]]) -> list[Failure]:
    return [f for t in tasks for f in _seg_task(t)]


def _image_batch(tasks: list[tuple[str, str, tuple[int, int] | None]]
                 ) -> list[tuple[list[Failure], tuple[int, int] | None, Digest | None]]:
    out = []
    for path, where, wh in tasks:
        data, digest = read_hashed(Path(path))
        if data is None:
            out.append(([Failure("missing_file", where, "image file does not exist")], None, None))
            continue
        bad, size = image_failures(data, wh, where)
        out.append((bad, size, digest))
    return out


def _check_images(report: CheckReport, runner: _Runner, tasks: list[tuple[str, str, tuple[int, int] | None]]
                  ) -> list[tuple[tuple[int, int] | None, str | None]]:
    """(size, sha256) per task (None where unreadable); each inode is read once per run."""
    seen: SeenFiles = report.seen
    results: list[tuple[tuple[int, int] | None, str | None]] = [(None, None)] * len(tasks)
    todo: dict[tuple[int, int], list[int]] = {}
    for i, (path, where, wh) in enumerate(tasks):
        try:
            key = inode(Path(path))
        except OSError:
            report.failures.append(Failure("missing_file", where, "image file does not exist"))
            continue
        if key in seen.images:
            size, sha = seen.images[key]
            results[i] = (size, sha)
            report.digests[key] = sha
            if wh is not None and tuple(wh) != tuple(size):
                report.failures.append(Failure("image_size_mismatch", where, f"image is {size[0]}x{size[1]}, "
                                                                             f"annotation says {wh[0]}x{wh[1]}"))
        else:
            todo.setdefault(key, []).append(i)
    keys = list(todo)
    batch = [tasks[todo[k][0]] for k in keys]
    flat = [r for part in runner.map(_image_batch, _chunks(batch, 32), len(batch)) for r in part]
    for key, (failures, size, digest) in zip(keys, flat):
        report.failures += failures
        first, *others = todo[key]
        results[first] = (size, digest[1] if digest else None)
        if digest:
            report.digests[digest[0]] = digest[1]
        if size is not None and digest and not failures:
            seen.images[key] = (size, digest[1])
        for i in others:      # hard links to the same file inside one export
            path, where, wh = tasks[i]
            results[i] = results[first]
            if failures:
                report.failures += [Failure(f.kind, where, f.detail) for f in failures]
            elif wh is not None and size is not None and tuple(wh) != tuple(size):
                report.failures.append(Failure("image_size_mismatch", where, f"image is {size[0]}x{size[1]}, "
                                                                             f"annotation says {wh[0]}x{wh[1]}"))
    return results


def _load_json(path: Path, rel: str, report: CheckReport) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        report.failures.append(Failure("missing_file", rel, "file does not exist"))
    except (ValueError, UnicodeDecodeError) as exc:
        report.failures.append(Failure("unreadable_file", rel, str(exc)[:200]))
    return None


def _check_refer(root: Path, report: CheckReport, runner: _Runner) -> list[SplitEntry]:
    samples: list[SplitEntry] = []
    for refs_path in sorted(root.glob("*/refs(*).p")):
        samples += _check_refer_dataset(root, refs_path, report, runner)
    return samples


def _check_refer_dataset(root: Path, refs_path: Path, report: CheckReport, runner: _Runner) -> list[SplitEntry]:
    name = refs_path.parent.name
    rel_refs = refs_path.relative_to(root).as_posix()
    raw = refs_path.read_bytes()
    if raw[:1] == b"\x80" and len(raw) > 1 and raw[1] > 4:
        report.failures.append(Failure("format_violation", rel_refs, f"pickle protocol {raw[1]} > 4: the loaders' "
                                                                     "Python 3.7 cannot read it"))
    try:
        refs = load_plain_pickle(raw)
    except Exception as exc:  # noqa: BLE001
        report.failures.append(Failure("unreadable_file", rel_refs, f"{type(exc).__name__}: {str(exc)[:160]}"))
        return []
    inst = _load_json(refs_path.parent / "instances.json", f"{name}/instances.json", report)
    if not isinstance(refs, list) or not isinstance(inst, dict):
        if not isinstance(refs, list):
            report.failures.append(Failure("format_violation", rel_refs, "refs must be a list of dicts"))
        return []
    image_dir = root / "images" / name / "JPEGImages"
    rel_inst = f"{name}/instances.json"
    images = [im for im in inst.get("images", []) if isinstance(im, dict)]
    anns = [a for a in inst.get("annotations", []) if isinstance(a, dict)]
    cats = {c.get("id"): c.get("name") for c in inst.get("categories", []) if isinstance(c, dict)}
    report.failures += duplicate_failures([im.get("id") for im in images], "image id", rel_inst)
    report.failures += duplicate_failures([a.get("id") for a in anns], "annotation id", rel_inst)
    report.failures += duplicate_failures(list(cats), "category id", rel_inst) if len(cats) < len(
        inst.get("categories", [])) else []
    by_image = {im.get("id"): im for im in images}
    by_ann = {a.get("id"): a for a in anns}
    for cid, cname in sorted(cats.items(), key=lambda kv: str(kv[0])):
        report.failures += category_failures(cname, f"{rel_inst} category {cid}")
    # images
    image_tasks = []
    for im in images:
        fn = im.get("file_name")
        where = f"{rel_inst} image {im.get('id')} ({fn})"
        if not isinstance(fn, str):
            report.failures.append(Failure("format_violation", where, "image has no file_name"))
            continue
        reason = path_escape(root, image_dir, fn)
        if reason:
            report.failures.append(Failure("path_escape", where, f"file_name {fn!r} {reason}; not read"))
            continue
        wh = (im.get("width"), im.get("height")) if im.get("width") and im.get("height") else None
        image_tasks.append((str(image_dir / fn), where, wh))
    _check_images(report, runner, image_tasks)
    # annotations
    seg_tasks = []
    for a in anns:
        where = f"{rel_inst} annotation {a.get('id')}"
        im = by_image.get(a.get("image_id"))
        if im is None:
            report.failures.append(Failure("dangling_reference", where, f"image_id {a.get('image_id')} not in images"))
        cid, cids = a.get("category_id"), a.get("categories_id")
        if cid is None and cids is None:
            report.failures.append(Failure("format_violation", where, "neither category_id nor categories_id"))
        elif cid is not None and cids is not None and cid != cids:
            report.failures.append(Failure("format_violation", where, f"category_id {cid} != categories_id {cids}"))
        for c in {cid, cids} - {None}:
            if c not in cats:
                report.failures.append(Failure("dangling_reference", where, f"category {c} not in categories"))
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
                and bbox[0] < bbox[2] and bbox[1] < bbox[3]):
            report.failures.append(Failure("format_violation", where, f"bbox {bbox} is not x1,y1,x2,y2 with x1<x2, y1<y2"))
        hw = (im.get("height"), im.get("width")) if im and im.get("height") and im.get("width") else None
        seg_tasks.append((where, a.get("segmentation"), hw))
    for failures in runner.map(_seg_batch, _chunks(seg_tasks, 256), len(seg_tasks)):
        report.failures += failures
    # refs
    samples = []
    required = ("ref_id", "ann_id", "image_id", "category_id", "split", "sent_ids", "sentences")
    sent_ids: list[Any] = []
    for i, ref in enumerate(refs):
        where = f"{rel_refs} ref {ref.get('ref_id', f'#{i}') if isinstance(ref, dict) else f'#{i}'}"
        if not isinstance(ref, dict):
            report.failures.append(Failure("format_violation", where, "ref is not a dict"))
            continue
        missing = [k for k in required if k not in ref]
        if missing:
            report.failures.append(Failure("format_violation", where, f"missing {', '.join(missing)}"))
        split = ref.get("split")
        if split not in REFER_SPLITS:
            report.failures.append(Failure("bad_split_name", where, f"split {split!r}, not train/val/test"))
        ann = by_ann.get(ref.get("ann_id"))
        if ann is None:
            report.failures.append(Failure("dangling_reference", where, f"ann_id {ref.get('ann_id')} not in annotations"))
        else:
            if ann.get("image_id") != ref.get("image_id"):
                report.failures.append(Failure("format_violation", where, f"image_id {ref.get('image_id')} != its "
                                                                          f"annotation's {ann.get('image_id')}"))
            ann_cat = ann.get("category_id", ann.get("categories_id"))
            if "category_id" in ref and ref["category_id"] != ann_cat:
                report.failures.append(Failure("format_violation", where, f"category_id {ref['category_id']} != "
                                                                          f"its annotation's {ann_cat}"))
        im = by_image.get(ref.get("image_id"))
        if im is None:
            report.failures.append(Failure("dangling_reference", where, f"image_id {ref.get('image_id')} not in images"))
        sentences = ref.get("sentences") if isinstance(ref.get("sentences"), list) else []
        ids = [s.get("sent_id") for s in sentences if isinstance(s, dict)]
        sent_ids += ids
        if "sent_ids" in ref and list(ref["sent_ids"]) != ids:
            report.failures.append(Failure("format_violation", where, f"sent_ids {ref['sent_ids']} != sentence ids {ids}"))
        if not sentences:
            report.failures.append(Failure("expression_empty", where, "ref has no sentences"))
        for s in sentences:
            if not isinstance(s, dict) or "raw" not in s or not isinstance(s.get("tokens"), list):
                report.failures.append(Failure("format_violation", where, "sentence lacks raw or tokens"))
                continue
            report.failures += expression_failures(s["raw"], f"{where} sentence {s.get('sent_id')}")
        scene = (im or {}).get("scene_id") or scene_id_from_name(str((im or {}).get("file_name") or ref.get("image_id")))
        samples.append(SplitEntry(str(split), str(ref.get("image_id")), str(scene)))
    report.failures += duplicate_failures([r.get("ref_id") for r in refs if isinstance(r, dict)], "ref_id", rel_refs)
    report.failures += duplicate_failures(sent_ids, "sent_id", rel_refs)
    return samples


# ============================================================================ native
def _resolve(root: Path, folder_candidates: list[Path], name: str) -> Path | None:
    """The file for ``name`` in the first folder that has it; PathEscapeError when a candidate
    resolves outside ``root`` (checked before the file is looked at)."""
    has_ext = Path(name).suffix.lower() in IMAGE_EXTENSIONS
    for folder in folder_candidates:
        for cand in [name] if has_ext else [name + ext for ext in IMAGE_EXTENSIONS]:
            if confine_path(root, folder, cand).is_file():
                return folder / cand
    return None


def _merge(report: CheckReport, results: list[tuple[list[Failure], list[Digest]]]) -> None:
    for failures, digests in results:
        report.failures += failures
        report.digests.update(digests)


def _native_masks(tasks: list[tuple[str, str, tuple[int, int] | None]]) -> tuple[list[Failure], list[Digest]]:
    out, digests = [], []
    for path, where, size in tasks:
        data, digest = read_hashed(Path(path))
        if data is None:
            out.append(Failure("missing_file", where, "mask file does not exist"))
            continue
        digests.append(digest)
        known = _KNOWN_MASKS.get(digest[1])        # the same bytes already decoded and passed (hf export)
        if known is None:
            out += mask_file_failures(data, size, where)
        elif size is not None and tuple(known) != tuple(size):
            out.append(Failure("mask_size_mismatch", where, f"mask {known[0]}x{known[1]}, image {size[0]}x{size[1]}"))
    return out, digests


def _check_native(root: Path, report: CheckReport, runner: _Runner) -> list[SplitEntry]:
    image_dirs = [root / d for d in ("img_rgb", "images") if (root / d).is_dir()]
    mask_dirs = [root / d for d in ("mask", "masks") if (root / d).is_dir()]
    if not image_dirs or not mask_dirs:
        report.failures.append(Failure("format_violation", str(root), "needs img_rgb/ (or images/) and mask/ (or masks/)"))
    index: dict[str, dict[str, str]] = {}
    if (root / "index.csv").is_file():
        try:
            with open(root / "index.csv", newline="", encoding="utf-8") as f:
                index = {row["file_name"]: row for row in csv.DictReader(f)}
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            report.failures.append(Failure("unreadable_file", "index.csv", str(exc)[:200]))
    else:
        report.notes.append("no index.csv: images identified by content hash, scenes from file names, "
                            "categories not checked")
    lines: list[tuple[str, str]] = []     # (split, name)
    for path in sorted(root.glob("output_phrase_*.txt")):
        split = path.stem[len("output_phrase_"):]
        for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            where = f"{path.name} line {n}"
            name_b, _, expr = raw.partition(b" ")
            try:
                name = name_b.decode("utf-8")
            except UnicodeDecodeError:
                report.failures.append(Failure("unreadable_file", where, "file name is not UTF-8"))
                continue
            report.failures += expression_failures(expr, f"{where} ({name})")
            lines.append((split, name))
    report.failures += duplicate_failures([n for _, n in lines], "file name", "output_phrase_*.txt")
    for name in index:
        if name and name_escape(name):
            report.failures.append(Failure("path_escape", f"index.csv {name!r}", f"file_name {name_escape(name)}"))
    names = []
    for n in sorted({n for _, n in lines}):
        if n and name_escape(n):
            report.failures.append(Failure("path_escape", n, f"file name {n!r} {name_escape(n)}; not read"))
        else:
            names.append(n)
    paths: dict[str, Path | None] = {}
    escaped: set[str] = set()
    for n in names:
        try:
            paths[n] = _resolve(root, image_dirs, n)
        except PathEscapeError as exc:
            paths[n] = None
            escaped.add(n)
            report.failures.append(Failure("path_escape", f"{n} (image)", f"{exc}; not read"))
    for n in names:
        if paths[n] is None and n not in escaped:
            report.failures.append(Failure("missing_file", n, "no image file for it"))
    found = [n for n in names if paths[n] is not None]
    # per-referent copies are hard links to one file: _check_images decodes each inode once
    checked = dict(zip(found, _check_images(report, runner, [(str(paths[n]), f"{n} (image)", None) for n in found])))
    mask_tasks = []
    for n in names:
        try:
            q = _resolve(root, mask_dirs, n)
        except PathEscapeError as exc:
            report.failures.append(Failure("path_escape", f"{n} (mask)", f"{exc}; not read"))
            continue
        if q is None:
            report.failures.append(Failure("missing_file", n, "no mask file for it"))
            continue
        mask_tasks.append((str(q), f"{n} (mask)", checked[n][0] if n in checked else None))
    _merge(report, runner.map(_native_masks, _chunks(mask_tasks, 64), len(mask_tasks)))
    results = {n: checked[n][1] if n in checked else None for n in names}    # sha256 identifies an image
    samples = []
    for split, name in lines:
        row = index.get(name)
        if row is not None:
            report.failures += category_failures(row.get("category"), f"index.csv {name}", exact=True)
            if row.get("split") and row["split"] != split:
                report.failures.append(Failure("format_violation", f"index.csv {name}", f"split {row['split']} but "
                                                                                        f"listed in {split}"))
            samples.append(SplitEntry(split, row.get("image_id") or name, row.get("scene_id") or scene_id_from_name(name)))
        else:
            samples.append(SplitEntry(split, results.get(name) or name, scene_id_from_name(name)))
    return samples


# ============================================================================ coco
def _check_coco(root: Path, report: CheckReport, runner: _Runner) -> list[SplitEntry]:
    samples: list[SplitEntry] = []
    all_ann_ids: list[Any] = []
    image_tasks, seg_tasks = [], []
    no_expression = 0
    for path in sorted((root / "annotations").glob("*.json")):
        rel = path.relative_to(root).as_posix()
        split = path.stem[len("instances_"):] if path.stem.startswith("instances_") else path.stem
        data = _load_json(path, rel, report)
        if not isinstance(data, dict):
            continue
        images = [im for im in data.get("images", []) if isinstance(im, dict)]
        anns = [a for a in data.get("annotations", []) if isinstance(a, dict)]
        cats = {c.get("id"): c.get("name") for c in data.get("categories", []) if isinstance(c, dict)}
        report.failures += duplicate_failures([im.get("id") for im in images], "image id", rel)
        for cid, cname in sorted(cats.items(), key=lambda kv: str(kv[0])):
            report.failures += category_failures(cname, f"{rel} category {cid}")
        by_image = {im.get("id"): im for im in images}
        for im in images:
            fn = str(im.get("file_name"))
            reason = path_escape(root, root / "images", fn) or path_escape(root, root, fn)
            if reason:
                report.failures.append(Failure("path_escape", f"{rel} image {im.get('id')} ({fn})",
                                               f"file_name {fn!r} {reason}; not read"))
                continue
            p = root / "images" / fn if (root / "images" / fn).exists() else root / fn
            wh = (im.get("width"), im.get("height")) if im.get("width") and im.get("height") else None
            image_tasks.append((str(p), f"{rel} image {im.get('id')} ({fn})", wh))
        for a in anns:
            where = f"{rel} annotation {a.get('id')}"
            all_ann_ids.append(a.get("id"))
            im = by_image.get(a.get("image_id"))
            if im is None:
                report.failures.append(Failure("dangling_reference", where, f"image_id {a.get('image_id')} not in "
                                                                            "this file's images"))
            if a.get("category_id") not in cats:
                report.failures.append(Failure("dangling_reference", where, f"category {a.get('category_id')} not "
                                                                            "in categories"))
            hw = (im.get("height"), im.get("width")) if im else None
            seg = a.get("segmentation")
            seg_tasks.append((where, seg if isinstance(seg, list) else [seg], hw))
            if "expression" in a:
                report.failures += expression_failures(a["expression"], where)
            else:
                no_expression += 1
            scene = (im or {}).get("scene_id") or scene_id_from_name(str((im or {}).get("file_name", a.get("image_id"))))
            samples.append(SplitEntry(split, str((im or {}).get("file_name", a.get("image_id"))), str(scene)))
    if no_expression:
        report.notes.append(f"{no_expression} annotations carry no expression (plain COCO instances?)")
    report.failures += duplicate_failures(all_ann_ids, "annotation id", "annotations/")
    _check_images(report, runner, image_tasks)
    for failures in runner.map(_seg_batch, _chunks(seg_tasks, 256), len(seg_tasks)):
        report.failures += failures
    return samples
