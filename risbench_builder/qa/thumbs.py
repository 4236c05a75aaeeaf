"""The report's thumbnail cache: one small JPEG per triplet, plus a cropped PNG per mask layer.

A thumbnail's name is a hash of the renderer version, the triplet, its image, its box and
polygon and every mask drawn (proposal, reviews, consensus), so a rerun of `risbench report`
renders only the triplets whose masks changed, and files no triplet names any more are removed.
The layer PNGs (a few hundred bytes each, shown over the full image in the detail view) live in
one SQLite file beside the JPEGs, not as 50k more tiny files: on disk each would take a whole
block, and the report inlines them into its detail data anyway.

Rendering is grouped by image (each image is decoded once for all of its triplets) and split
over a small process pool; the workers only compute, the parent writes files and rows, so a
killed run leaves a consistent cache (a thumbnail counts as done once its row is committed).
A thumbnail is a square crop around the object, not the whole image: remote-sensing objects
are often a few pixels wide and would vanish in a 128 px view of the full scene.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import masks
from .overlay import LayerStyle, compose, decode_sized, line_scale, load_image, mask_layers, outline
from .records import TripletRecord

RENDERER_VERSION = 1
THUMB_SIZE = 128
JPEG_QUALITY = 82
_INLINE_BELOW = 300  # fewer thumbnails than this are rendered in-process (a pool costs ~0.3 s)

Crop = tuple[int, int, int, int]  # x, y, w, h on the full image


@dataclass(frozen=True)
class Layer:
    """A mask layer of the detail view: where its cropped PNG goes on the full image."""

    index: int
    name: str
    color: tuple[int, int, int]
    x: int
    y: int
    w: int
    h: int
    png: bytes


@dataclass
class ThumbPlan:
    """A triplet's thumbnail (path below ``thumbs/``) and its detail layers."""

    key: str
    thumb: str
    layers: list[Layer] = field(default_factory=list)


@dataclass(frozen=True)
class ThumbJob:
    key: str
    box: tuple[float, float, float, float]
    polygon: list[list[float]] | None
    layers: tuple[tuple[LayerStyle, str], ...]
    crops: tuple[Crop | None, ...]  # per layer: its PNG's place, None when the mask is empty


@dataclass
class ThumbStats:
    rendered: int = 0
    reused: int = 0
    removed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"rendered": self.rendered, "reused": self.reused, "removed": self.removed,
                "seconds": round(self.seconds, 3)}


def thumb_key(rec: TripletRecord) -> str:
    """Hash of everything a thumbnail shows: changes to any mask, box or image give a new key."""
    h = hashlib.sha256(f"{RENDERER_VERSION}|{THUMB_SIZE}|{rec.triplet_id}|{rec.image_sha256 or rec.image_path}|"
                       f"{list(rec.box)}|{rec.polygon}".encode())
    for layer in mask_layers(rec):
        h.update(f"|{layer.name}\x1f{layer.rle}".encode())
    return h.hexdigest()[:16]


def rel_thumb(key: str) -> str:
    """Path of a thumbnail below ``reports/thumbs/`` (256 sub-folders keep folders small)."""
    return f"{key[:2]}/{key}.jpg"


def layer_crops(rec: TripletRecord) -> tuple[Crop | None, ...]:
    """Each layer's box on the image, from its RLE (no decode); None for an empty mask."""
    out: list[Crop | None] = []
    for layer in mask_layers(rec):
        rle = masks.loads(layer.rle)
        x1, y1, x2, y2 = masks.bbox_xyxy(rle)
        mh, mw = rle["size"]
        if (mh, mw) != (rec.height, rec.width):  # drawn fitted to the image (decode_sized)
            sx, sy = rec.width / mw, rec.height / mh
            x1, y1, x2, y2 = np.floor(x1 * sx), np.floor(y1 * sy), np.ceil(x2 * sx), np.ceil(y2 * sy)
        out.append((int(x1), int(y1), int(x2 - x1), int(y2 - y1)) if x2 > x1 and y2 > y1 else None)
    return tuple(out)


# --------------------------------------------------------------------------- rendering
def crop_window(box: Sequence[float], height: int, width: int, pad: float = 0.5, minimum: int = 48) -> tuple[int, int, int]:
    """Square ``(x0, y0, side)`` around a box with ``pad`` context on each side; may overhang."""
    x1, y1, x2, y2 = box
    side = int(np.ceil(max(x2 - x1, y2 - y1) * (1 + 2 * pad))) + 8
    side = max(min(side, max(height, width)), minimum)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def _crop(arr: np.ndarray, x0: int, y0: int, side: int, fill: int) -> np.ndarray:
    """A ``side`` square of ``arr`` from (x0, y0); outside the array is ``fill``."""
    out = np.full((side, side) + arr.shape[2:], fill, arr.dtype)
    h, w = arr.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = arr[sy0:sy1, sx0:sx1]
    return out


def render_thumb(image: np.ndarray, job: ThumbJob, decoded: Sequence[np.ndarray]) -> np.ndarray:
    """RGB ``THUMB_SIZE`` square: a crop around the box and its masks, drawn at thumbnail scale.

    The crop and each mask are resized first and the overlay is drawn on the small image:
    drawing on a 128 px square instead of a crop of up to the whole image is what keeps 50k
    thumbnails to about a millisecond each after the image is decoded.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = job.box
    for crop in job.crops:  # a mask that leaks out of its box must still be seen whole
        if crop is not None:
            cx, cy, cw, ch = crop
            x1, y1, x2, y2 = min(x1, cx), min(y1, cy), max(x2, cx + cw), max(y2, cy + ch)
    x0, y0, side = crop_window((x1, y1, x2, y2), h, w)
    s = THUMB_SIZE / side
    interp = cv2.INTER_AREA if side > THUMB_SIZE else cv2.INTER_LINEAR
    small = cv2.resize(_crop(image, x0, y0, side, 60), (THUMB_SIZE, THUMB_SIZE), interpolation=interp)
    layers = []
    for (style, _), m in zip(job.layers, decoded):
        soft = cv2.resize(_crop(m, x0, y0, side, 0) * np.uint8(255), (THUMB_SIZE, THUMB_SIZE), interpolation=interp)
        layers.append((style, (soft >= 128).astype(np.uint8)))
    box = [(job.box[0] - x0) * s, (job.box[1] - y0) * s, (job.box[2] - x0) * s, (job.box[3] - y0) * s]
    polygon = None if job.polygon is None else [[(px - x0) * s, (py - y0) * s] for px, py in job.polygon]
    return compose(small, layers, box, polygon, 1)


def layer_png(mask: np.ndarray, style: LayerStyle, thickness: int, crop: tuple[int, int, int, int]) -> bytes:
    """The mask cropped to ``(x, y, w, h)`` as a palette PNG: fill translucent, outline opaque."""
    x, y, w, h = crop
    m = _crop(mask, x, y, max(w, h), 0)[:h, :w]
    idx = m.astype(np.uint8)
    idx[outline(m, style.line * thickness)] = 2
    img = Image.fromarray(idx, "P")
    img.putpalette([0, 0, 0, *style.color, *style.color])
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=bytes([0, int(round(255 * style.fill_alpha)), 255]))
    return buf.getvalue()


def render_group(image_path: str, width: int, height: int, jobs: Sequence[ThumbJob]) -> list[tuple]:
    """Thumbnails of one image's triplets: ``(key, jpeg, [(index, x, y, w, h, png), ...])`` each."""
    image, _ = load_image(image_path, width, height)
    h, w = image.shape[:2]
    scale = line_scale(h, w)
    out = []
    for job in jobs:
        decoded = [decode_sized(rle, h, w) for _, rle in job.layers]
        layers = [(i, *crop, layer_png(m, style, scale, crop))
                  for i, ((style, _), m, crop) in enumerate(zip(job.layers, decoded, job.crops)) if crop is not None]
        thumb = render_thumb(image, job, decoded)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        out.append((job.key, jpg.tobytes(), layers))
    return out


def _render_chunk(groups: list[tuple[str, int, int, list[ThumbJob]]]) -> list[tuple]:
    return [r for g in groups for r in render_group(*g)]


# --------------------------------------------------------------------------- the cache
class ThumbCache:
    """``thumbs/cache.sqlite``: which thumbnails are complete, and every layer PNG with its place."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.db = sqlite3.connect(root / "cache.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS thumbs (key TEXT PRIMARY KEY)")
        self.db.execute("CREATE TABLE IF NOT EXISTS layers (key TEXT NOT NULL, idx INTEGER NOT NULL, x INTEGER, "
                        "y INTEGER, w INTEGER, h INTEGER, png BLOB NOT NULL, PRIMARY KEY (key, idx))")

    def close(self) -> None:
        self.db.close()

    def done(self) -> set[str]:
        """Keys whose JPEG and layers are all written (the row is committed after the files)."""
        files = _existing(self.root)
        return {k for (k,) in self.db.execute("SELECT key FROM thumbs") if rel_thumb(k) in files}

    def add(self, results: Iterable[tuple]) -> int:
        """Write the JPEGs, then commit their layers and done-rows in one transaction."""
        rows, keys = [], []
        for key, jpg, layers in results:
            folder = self.root / key[:2]
            folder.mkdir(exist_ok=True)
            (folder / f"{key}.jpg").write_bytes(jpg)
            rows += [(key, *layer) for layer in layers]
            keys.append((key,))
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO layers VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT OR IGNORE INTO thumbs VALUES (?)", keys)
        self.db.execute("COMMIT")
        return len(keys)

    def layers(self) -> Iterator[tuple]:
        yield from self.db.execute("SELECT key, idx, x, y, w, h, png FROM layers ORDER BY key, idx")

    def prune(self, keep: set[str]) -> int:
        """Drop every thumbnail and layer no current key names; returns how many thumbnails."""
        stale = {k for (k,) in self.db.execute("SELECT key FROM thumbs")} - keep
        files = {f for f in _existing(self.root) if f.endswith(".jpg") and f[3:-4] not in keep}
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (key TEXT PRIMARY KEY)")
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM keep")
        self.db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", ((k,) for k in keep))
        self.db.execute("DELETE FROM thumbs WHERE key NOT IN (SELECT key FROM keep)")
        self.db.execute("DELETE FROM layers WHERE key NOT IN (SELECT key FROM keep)")
        self.db.execute("COMMIT")
        for name in files:
            (self.root / name).unlink(missing_ok=True)
        return len(stale | {f[3:-4] for f in files})


def _existing(root: Path) -> set[str]:
    """Thumbnail files under ``root``, relative (``ab/abcd….jpg``), in one pass."""
    found: set[str] = set()
    for sub in os.scandir(root):
        if sub.is_dir():
            found.update(f"{sub.name}/{f.name}" for f in os.scandir(sub.path) if f.name.endswith(".jpg"))
    return found


def _chunks(groups: list[tuple[str, int, int, list[ThumbJob]]], size: int) -> Iterable[list]:
    chunk: list = []
    n = 0
    for g in groups:
        chunk.append(g)
        n += len(g[3])
        if n >= size:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def ensure_thumbs(root: Path, records: Sequence[TripletRecord], *, workers: int | None = None,
                  progress: bool = True) -> tuple[ThumbStats, dict[str, ThumbPlan]]:
    """Render the thumbnails ``root`` lacks, drop those no record names; the plan of every record."""
    started = time.perf_counter()
    keys = {r.triplet_id: thumb_key(r) for r in records}
    cache = ThumbCache(root)
    try:
        done = cache.done()
        todo = [r for r in records if keys[r.triplet_id] not in done]
        stats = ThumbStats(reused=len(records) - len(todo))
        ordered = sorted(todo, key=lambda r: (r.image_path, r.triplet_id))
        groups = [(path, w, h, [ThumbJob(keys[r.triplet_id], r.box, r.polygon,
                                         tuple((l.style, l.rle) for l in mask_layers(r)), layer_crops(r)) for r in recs])
                  for (path, w, h), recs in ((k, list(g)) for k, g in groupby(
                      ordered, key=lambda r: (r.image_path, r.width, r.height)))]
        workers = workers or min(2, os.cpu_count() or 1)
        columns = (TextColumn("[bold]report[/] thumbnails"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("", total=len(todo))
            if workers <= 1 or len(todo) < _INLINE_BELOW:
                for g in groups:
                    stats.rendered += cache.add(render_group(*g))
                    bar.update(task, completed=stats.rendered)
            else:
                ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
                size = max(50, min(400, len(todo) // (workers * 8) + 1))
                with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                    futures = [pool.submit(_render_chunk, c) for c in _chunks(groups, size)]
                    for fut in as_completed(futures):
                        stats.rendered += cache.add(fut.result())
                        bar.update(task, completed=stats.rendered)
        stats.removed = cache.prune(set(keys.values()))
        plans = {tid: ThumbPlan(k, rel_thumb(k)) for tid, k in keys.items()}
        by_key = {k: plans[tid] for tid, k in keys.items()}
        named = {r.triplet_id: mask_layers(r) for r in records}
        owner = {k: tid for tid, k in keys.items()}
        for key, idx, x, y, w, h, png in cache.layers():
            layer = named[owner[key]][idx]
            by_key[key].layers.append(Layer(idx, layer.name, layer.style.color, x, y, w, h, png))
    finally:
        cache.close()
    stats.seconds = time.perf_counter() - started
    return stats, plans


