"""What every format's check shares: :class:`Failure` and its :data:`KINDS`, :class:`CheckReport`,
:class:`SplitEntry`, the primitives (expressions, categories, masks, RLEs, images, splits, counts,
duplicate ids), the REFER / COCO segmentation check, the image check that reads each inode once,
and :class:`Runner`, which maps them over a pool of worker processes on large exports.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from ... import masks
from ...images import open_image
from ...sources.base import OTHER_CATEGORY, RISBENCH_CLASSES, normalize_class
from ...parallel import make_pool
from ..manifest import inode

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


@dataclass
class SeenFiles:
    """Image files already found good in this run, by inode: exports of one build hard-link their
    images to one copy, so each is decoded and hashed once however many exports hold it."""

    images: dict[tuple[int, int], tuple[tuple[int, int], str]] = field(default_factory=dict)  # -> (size, sha)
    masks: dict[str, tuple[int, int]] = field(default_factory=dict)   # sha256 of a good mask PNG -> (w, h)


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
    ok = name == OTHER_CATEGORY or (name in RISBENCH_CLASSES if exact else
                                     (isinstance(name, str) and normalize_class(name) is not None))
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
        with open_image(src) as im:
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


def fast_grey_png(data: bytes) -> np.ndarray | None:
    """8-bit greyscale PNG (our masks) decoded with OpenCV, faster than PIL; None for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x00":
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def mask_file_failures(data: bytes | Path, size_wh: tuple[int, int] | None, where: str) -> list[Failure]:
    if isinstance(data, (bytes, bytearray)) and (arr := fast_grey_png(bytes(data))) is not None:
        return mask_array_failures(arr, size_wh, where)
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with open_image(src) as im:
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


def known_mask(sha256: str) -> tuple[int, int] | None:
    """The (w, h) of a mask PNG with this sha256 that another export already proved good, or None."""
    return _KNOWN_MASKS.get(sha256)


class Runner:
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


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ============================================================================ segmentations, images
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


def seg_batch(tasks: list[tuple[str, Any, tuple[int, int] | None]]) -> list[Failure]:
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


def check_images(report: CheckReport, runner: Runner, tasks: list[tuple[str, str, tuple[int, int] | None]]
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
    flat = [r for part in runner.map(_image_batch, chunks(batch, 32), len(batch)) for r in part]
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


def load_json(path: Path, rel: str, report: CheckReport) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        report.failures.append(Failure("missing_file", rel, "file does not exist"))
    except (ValueError, UnicodeDecodeError) as exc:
        report.failures.append(Failure("unreadable_file", rel, str(exc)[:200]))
    return None
