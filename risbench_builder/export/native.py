"""The RISBench native layout (RefSegRS-style text files, as read by FIANet / RSRefSeg2 loaders).

::

    native/img_rgb/<split>_<imgIdx>_<objIdx>.png   RGB image, ONE FILE PER REFERENT (hard links to one copy)
    native/mask/<same name>.png                     single-channel 0/255 mask
    native/output_phrase_<split>.txt                "<file_name.png> <expression>" per line
    native/index.csv                                file_name, split, triplet_id, image_id, scene_id, category

``imgIdx`` numbers the split's images in image_id order and ``objIdx`` the image's triplets
in triplet_id order, so names are stable. The folder names are those the loaders of the
original release read (``img_rgb``, ``mask``; RSRefSeg2, geogrounder); ``index.csv`` is ours:
loaders ignore it, ``risbench check`` reads scenes and categories from it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..finalize.records import FinalRecord
from .base import PNG, Context, Counts, HashingFile, Item, Ledger

IMAGE_DIR, MASK_DIR = "img_rgb", "mask"
INDEX = "index.csv"
INDEX_COLUMNS = ("file_name", "split", "triplet_id", "image_id", "scene_id", "category")


def phrase_file(split: str) -> str:
    return f"output_phrase_{split}.txt"


def one_line(text: str) -> str:
    """Expressions go on one line of a text file: runs of whitespace become one space."""
    return " ".join(text.split())


class NativeWriter:
    name = "native"

    def __init__(self, ledger: Ledger, ctx: Context):
        self.ledger, self.ctx = ledger, ctx
        self.counts = Counts()
        self._index_rows: list[tuple[str, ...]] = []
        self._phrases: HashingFile | None = None
        self._rel = ""
        self._names: dict[str, str] = {}

    def plan(self, split: str, records: list[FinalRecord]) -> None:
        """Name the split's files before its masks are encoded, so workers can write them in place.

        ``imgIdx`` = the image's rank in the split, ``objIdx`` = the triplet's rank in its image,
        in the order the stage feeds records (image_id, then triplet_id).
        """
        img_idx = {image_id: i for i, image_id in enumerate(self.ctx.split_images.get(split, []))}
        objects: dict[str, int] = {}
        self._names = {}
        for rec in records:
            j = objects.get(rec.image_id, 0)
            objects[rec.image_id] = j + 1
            self._names[rec.triplet_id] = f"{split}_{img_idx[rec.image_id]}_{j}.png"
        (self.ledger.root / MASK_DIR).mkdir(parents=True, exist_ok=True)

    def mask_path(self, rec: FinalRecord) -> Path:
        return self.ledger.root / MASK_DIR / self._names[rec.triplet_id]

    def begin_split(self, split: str) -> None:
        self._rel = phrase_file(split)
        self._phrases = self.ledger.open(self._rel)

    def add(self, item: Item) -> None:
        rec = item.rec
        name = self._names[rec.triplet_id]      # KeyError: the stage must call plan() for the split first
        self.ctx.images.place(self.ledger, f"{IMAGE_DIR}/{name}", rec, PNG)
        if item.mask_file is not None:           # a worker wrote it to mask_path(rec)
            self.ledger.add(f"{MASK_DIR}/{name}", *item.mask_file)
        else:
            self.ledger.write_bytes(f"{MASK_DIR}/{name}", item.mask_png)
        assert self._phrases is not None
        self._phrases.write(f"{name} {one_line(rec.expression)}\n".encode("utf-8"))
        self._index_rows.append((name, rec.split, rec.triplet_id, rec.image_id, rec.scene_id, rec.category))
        self.counts.add(rec.split, rec.image_id)

    def end_split(self, split: str) -> None:
        assert self._phrases is not None
        self._phrases.close()
        self.ledger.record(self._rel, self._phrases)
        self._phrases = None

    def finish(self) -> dict[str, Any]:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        writer.writerows(self._index_rows)
        self.ledger.write_text(INDEX, buf.getvalue())
        return self.counts.as_dict()
