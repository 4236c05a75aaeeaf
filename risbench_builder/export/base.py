"""What every export writer shares: the prepared triplet, the file ledger, image placement.

One pass over :func:`~risbench_builder.finalize.records.final_records` feeds every configured
writer, so each mask is decoded and PNG-encoded once per run (in a pool of worker processes on
large exports) and each image is copied once per run: a second use of the same image (another
referent, another export) is a hard link to the first copy. Every file goes through a
:class:`Ledger`, which hashes bytes as they are written, so the manifest needs no second read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Protocol

import numpy as np
from PIL import Image

from .. import masks
from ..finalize.records import FinalRecord
from ..images import open_image

Box = tuple[float, float, float, float]


class ExportError(ValueError):
    """The catalog holds something no export can represent; the message says what and where."""


# ----------------------------------------------------------------------------- masks
def compact_json(obj: Any) -> str:
    """JSON without spaces, UTF-8 kept as is: the COCO and REFER annotation files."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def round_coordinate(v: float) -> float | int:
    """A coordinate at 0.01 px, as an int when whole (``12.0`` -> ``12``), for compact files."""
    r = round(float(v), 2)
    return int(r) if r == int(r) else r


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """Single-channel 0/255 PNG bytes, identical to what :func:`masks.write_png_mask` writes.

    >>> m = np.zeros((4, 4), np.uint8); m[1:3, 1:3] = 1
    >>> mask_png_bytes(m)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    pixels = np.empty(mask.shape, np.uint8)          # C order: PIL takes it without another copy
    np.multiply(mask != 0, 255, out=pixels, casting="unsafe")
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Item:
    """A final record with its mask ready for every writer."""

    rec: FinalRecord
    mask_png: bytes
    area: int
    mask_box: Box          # tight box of the mask, xyxy, pixel edges
    box: Box               # the source box clipped to the image, xyxy
    mask_file: tuple[str, int] | None = None   # (sha256, bytes) when a worker wrote it to the planned path


class Plan(Protocol):
    """File work done beside each mask's encoding (in the worker processes when there is a pool)."""

    def jobs(self, rec: FinalRecord) -> tuple[str | None, list[tuple[str, str]]]:
        """(path to write the mask PNG to, or None; image copies (src, dest) to make)."""

    def done(self, rec: FinalRecord, copies: list[tuple[str, str]], results: list[tuple[str, int]]) -> None:
        """The copies were made; ``results`` are their (sha256, bytes)."""


Task = tuple[dict, "str | None", list[tuple[str, str]]]
Done = tuple[bytes, int, Box, "tuple[str, int] | None", list[tuple[str, int]]]


def _prepare(task: Task) -> Done:
    rle, mask_dest, copies = task
    png = mask_png_bytes(masks.decode(rle))
    written = None
    if mask_dest:
        with open(mask_dest, "wb") as f:
            f.write(png)
        written = (hashlib.sha256(png).hexdigest(), len(png))
    copied = [copy_hashed(Path(src), Path(dest)) for src, dest in copies]
    return png, masks.area(rle), masks.bbox_xyxy(rle), written, copied


def _prepare_batch(tasks: list[Task]) -> list[Done]:
    return [_prepare(t) for t in tasks]


def _validated(rec: FinalRecord) -> FinalRecord:
    if [int(v) for v in rec.rle.get("size", [])] != [rec.height, rec.width]:
        raise ExportError(f"triplet {rec.triplet_id}: mask size {rec.rle.get('size')} differs from its image "
                          f"{rec.image_path} ({rec.width}x{rec.height}); rerun sam-refine for it")
    return rec


def prepared(records: Iterable[FinalRecord], pool: Any = None, plan: Plan | None = None, batch: int = 64,
             ahead: int = 8) -> Iterator[Item]:
    """Items in record order; masks are encoded, and the plan's files written, in ``pool`` (a
    multiprocessing pool) when given. At most ``ahead`` batches are in flight, so memory stays
    flat however large the export.
    """

    def task(rec: FinalRecord) -> Task:
        mask_dest, copies = plan.jobs(rec) if plan is not None else (None, [])
        return rec.rle, mask_dest, copies

    def finish(chunk: list[tuple[FinalRecord, Task]], results: list[Done]) -> Iterator[Item]:
        for (rec, t), (png, area, mask_box, written, copied) in zip(chunk, results):
            if plan is not None and t[2]:
                plan.done(rec, t[2], copied)
            yield Item(rec, png, area, mask_box, masks.clip_box(rec.box_xyxy, rec.width, rec.height), written)

    def batches() -> Iterator[list[tuple[FinalRecord, Task]]]:
        chunk: list[tuple[FinalRecord, Task]] = []
        for rec in records:
            chunk.append((_validated(rec), task(rec)))
            if len(chunk) == batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    if pool is None:
        for chunk in batches():
            yield from finish(chunk, _prepare_batch([t for _, t in chunk]))
        return
    queue: deque = deque()
    for chunk in batches():
        queue.append((chunk, pool.apply_async(_prepare_batch, ([t for _, t in chunk],))))
        if len(queue) >= ahead:
            done_chunk, result = queue.popleft()
            yield from finish(done_chunk, result.get())
    while queue:
        done_chunk, result = queue.popleft()
        yield from finish(done_chunk, result.get())


# ----------------------------------------------------------------------------- files
class HashingFile(io.RawIOBase):
    """A write-only file that hashes what passes through (pyarrow and text writers use it)."""

    def __init__(self, path: Path):
        super().__init__()
        self._f: BinaryIO = open(path, "wb")
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self._f.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def close(self) -> None:
        if not self.closed:
            super().close()      # flushes while the file is still open
            self._f.close()


class Ledger:
    """Files written into one export folder: relative posix path -> (sha256, bytes)."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, tuple[str, int]] = {}

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_bytes(self, rel: str, data: bytes) -> Path:
        p = self.path(rel)
        p.write_bytes(data)
        self.files[rel] = (hashlib.sha256(data).hexdigest(), len(data))
        return p

    def write_text(self, rel: str, text: str) -> Path:
        return self.write_bytes(rel, text.encode("utf-8"))

    def open(self, rel: str) -> HashingFile:
        return HashingFile(self.path(rel))

    def record(self, rel: str, handle: HashingFile) -> None:
        self.files[rel] = (handle.sha.hexdigest(), handle.size)

    def add(self, rel: str, sha: str, size: int) -> None:
        self.files[rel] = (sha, size)


def copy_hashed(src: Path, dest: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while block := fin.read(chunk):
            h.update(block)
            fout.write(block)
            size += len(block)
    return h.hexdigest(), size


# ----------------------------------------------------------------------------- images
AS_IS = "as_is"     # the source file when it is an RGB PNG or JPEG, else an RGB PNG of it
PNG = "png"         # always an RGB PNG (formats whose file names end in .png)


@dataclass
class _Placed:
    path: Path
    sha: str
    size: int


@dataclass
class Images:
    """Decides once per image which file an export gets, and copies it once per run.

    ``staging`` holds RGB PNG conversions of images that cannot be used as they are (grey,
    palette or 16-bit files, or a JPEG where a PNG is required).
    """

    staging: Path
    _usable: dict[str, tuple[str, str]] = field(default_factory=dict)     # image_id -> (format, mode)
    _converted: dict[str, Path] = field(default_factory=dict)
    _placed: dict[tuple[str, str], _Placed] = field(default_factory=dict)      # (image_id, source) -> copy

    def _probe(self, rec: FinalRecord) -> tuple[str, str]:
        if rec.image_id not in self._usable:
            try:
                with open_image(rec.image_path) as im:
                    fmt, mode, size = im.format or "", im.mode, im.size
            except (OSError, ValueError) as exc:
                raise ExportError(f"image {rec.image_path} of {rec.image_id} cannot be read ({exc}): "
                                  "restore it or rerun ingest") from None
            if size != (rec.width, rec.height):
                raise ExportError(f"image {rec.image_path} is {size[0]}x{size[1]} but the catalog says "
                                  f"{rec.width}x{rec.height}: rerun ingest with --force")
            self._usable[rec.image_id] = (fmt, mode)
        return self._usable[rec.image_id]

    def source(self, rec: FinalRecord, kind: str) -> Path:
        """The file to copy for ``kind`` (the original when it qualifies)."""
        fmt, mode = self._probe(rec)
        if mode == "RGB" and (fmt == "PNG" or (kind == AS_IS and fmt == "JPEG")):
            return Path(rec.image_path)
        if rec.image_id not in self._converted:
            out = self.staging / f"{hashlib.sha256(rec.image_id.encode()).hexdigest()[:24]}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open_image(rec.image_path) as im:
                im.convert("RGB").save(out, format="PNG")
            self._converted[rec.image_id] = out
        return self._converted[rec.image_id]

    def extension(self, rec: FinalRecord, kind: str) -> str:
        """The file extension of what :meth:`source` gives (from the format, not the source's name)."""
        fmt, mode = self._probe(rec)
        return ".jpg" if kind == AS_IS and fmt == "JPEG" and mode == "RGB" else ".png"

    def read(self, rec: FinalRecord, kind: str = AS_IS) -> bytes:
        src = self.source(rec, kind)
        placed = self._placed.get((rec.image_id, str(src)))
        return (placed.path if placed else src).read_bytes()

    def key(self, rec: FinalRecord, kind: str) -> tuple[str, str]:
        return rec.image_id, str(self.source(rec, kind))

    def is_placed(self, key: tuple[str, str]) -> bool:
        return key in self._placed

    def register(self, key: tuple[str, str], path: Path, sha: str, size: int) -> None:
        """A copy made elsewhere (a worker process): later placements link to it."""
        self._placed[key] = _Placed(Path(path), sha, size)

    def place(self, ledger: Ledger, rel: str, rec: FinalRecord, kind: str = AS_IS) -> None:
        """Put the image at ``ledger.root / rel``: a copy the first time, then hard links."""
        dest = ledger.path(rel)
        src = self.source(rec, kind)
        key = (rec.image_id, str(src))       # kinds that resolve to one file share one copy
        first = self._placed.get(key)
        if first is None:
            sha, size = copy_hashed(src, dest)
            self._placed[key] = _Placed(dest, sha, size)
        else:
            if dest.exists():
                dest.unlink()
            try:
                os.link(first.path, dest)
            except OSError:
                shutil.copyfile(first.path, dest)
            sha, size = first.sha, first.size
        ledger.add(rel, sha, size)


# ----------------------------------------------------------------------------- writers
@dataclass(frozen=True)
class ImageRef:
    """How the exports name and number one image (shared by hf, refer and coco)."""

    number: int           # 1-based, in image_id order over the whole export
    stem: str             # unique file stem inside an export (the source's, unless two sources clash)


@dataclass
class Context:
    """What writers need besides the items: naming, numbering and the card's material."""

    dataset_name: str
    rows_per_shard: int
    license: str
    images: Images
    image_refs: dict[str, ImageRef]
    split_images: dict[str, list[str]]            # split -> image_ids in order (native imgIdx)
    split_counts: dict[str, int]                  # split -> triplets
    meta: dict[str, Any]                          # provenance, review figures, pending count
    reports: Path                                 # W/reports (STATS.md, figures)

    def file_name(self, rec: FinalRecord) -> str:
        """The image's file name in hf, refer and coco: its stem and the extension of the bytes shipped."""
        return self.image_refs[rec.image_id].stem + self.images.extension(rec, AS_IS)


class Writer(Protocol):
    name: str
    ledger: Ledger

    def begin_split(self, split: str) -> None: ...

    def add(self, item: Item) -> None: ...

    def end_split(self, split: str) -> None: ...

    def finish(self) -> dict[str, Any]:
        """Close everything; return the counts for the manifest."""


class Counts:
    """Triplets and distinct images, overall and per split (the manifest's ``counts``)."""

    def __init__(self) -> None:
        self.triplets: dict[str, int] = {}
        self.images: dict[str, set[str]] = {}

    def add(self, split: str, image_key: str) -> None:
        self.triplets[split] = self.triplets.get(split, 0) + 1
        self.images.setdefault(split, set()).add(image_key)

    def as_dict(self) -> dict[str, Any]:
        return counts_dict(self.triplets, self.images)


def counts_dict(triplets: dict[str, int], images: dict[str, set]) -> dict[str, Any]:
    all_images: set = set().union(*images.values()) if images else set()
    return {"triplets": sum(triplets.values()), "images": len(all_images),
            "splits": {s: {"triplets": triplets[s], "images": len(images.get(s, ()))} for s in triplets}}
