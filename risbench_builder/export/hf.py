"""The Hugging Face export: ``data/{split}-{i:05d}-of-{n:05d}.parquet`` plus a dataset card.

Splits carry the Hub's names (:func:`hub_split`): the catalog's ``val`` is ``validation`` here,
in the shard names, the card's ``configs`` / ``dataset_info`` and the manifest's counts (loading
a parquet folder would rename ``val`` to ``validation`` anyway); train and test keep theirs.

Rows follow :mod:`.schema` (images and masks embedded as bytes, like ``push_to_hub`` after
``embed_table_storage``), written with pyarrow in row groups of 100 (the Hub viewer's size
for image datasets) so memory stays flat. Rows are grouped by image and the image column is
dictionary-encoded, so an image referred to by several triplets is stored once per row group
(RISBench: 52,472 rows, 29,614 images) while every reader still sees plain bytes per row. The parquet carries the ``huggingface`` features
metadata and the card carries ``configs`` and ``dataset_info``, so ``load_dataset(folder)``
returns exactly :func:`.schema.features`.
"""

from __future__ import annotations

import math
from typing import Any

from . import card, schema
from .base import AS_IS, Context, Counts, HashingFile, Item, Ledger

ROW_GROUP = 100
DICTIONARY_PAGE_LIMIT = 256 << 20     # above any row group's images, so the dictionary never falls back


def _leaf_paths(schema: Any) -> list[str]:
    """Parquet column paths of an arrow schema ("image.bytes", "bbox.list.element", ...)."""
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(schema.empty_table(), buf)
    parquet_schema = pq.ParquetFile(io.BytesIO(buf.getvalue())).schema
    return [parquet_schema.column(i).path for i in range(len(parquet_schema))]


#: Catalog split -> the split name the Hub expects (``datasets.Split.VALIDATION``).
HUB_SPLITS = {"val": "validation"}


def hub_split(split: str) -> str:
    """The hf export's name for a catalog split.

    >>> [hub_split(s) for s in ("train", "val", "test")]
    ['train', 'validation', 'test']
    """
    return HUB_SPLITS.get(split, split)


def shard_name(split: str, index: int, count: int) -> str:
    """The path of one parquet shard inside the export.

    >>> shard_name("validation", 0, 2)
    'data/validation-00000-of-00002.parquet'
    """
    return f"data/{split}-{index:05d}-of-{count:05d}.parquet"


class HFWriter:
    name = "hf"

    def __init__(self, ledger: Ledger, ctx: Context):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa, self._pq = pa, pq
        self.ledger, self.ctx = ledger, ctx
        self.schema = schema.arrow_schema()
        # Rows come grouped by image, so a row group's dictionary stores each image once (the
        # 1-5 triplets of an image share it); mask bytes are distinct per row: no dictionary.
        self._dictionary_columns = ["image.bytes", "image.path"] + [
            c.name for c in schema.COLUMNS if c.kind in ("string", "bool", "int32", "float32")]
        self._last_image: tuple[str, bytes] = ("", b"")
        # PNG/JPEG bytes are compressed already: snappy would only cost time on them
        self._compression = {path: "none" if path.endswith(".bytes") else "snappy" for path in _leaf_paths(self.schema)}
        self.counts = Counts()
        self.split_bytes: dict[str, int] = {}
        self.shards: dict[str, list[str]] = {}
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None
        self._handle: HashingFile | None = None
        self._rel = ""
        self._in_shard = 0
        self._split = ""

    # ------------------------------------------------------------------ shards
    def begin_split(self, split: str) -> None:
        self._split = hub_split(split)
        self._n_shards = max(1, math.ceil(self.ctx.split_counts.get(split, 0) / self.ctx.rows_per_shard))
        self._shard = -1
        self.shards[self._split] = []
        self.split_bytes.setdefault(self._split, 0)

    def _open_next(self) -> None:
        self._close_shard()
        self._shard += 1
        self._rel = shard_name(self._split, self._shard, self._n_shards)
        self._handle = self.ledger.open(self._rel)
        self._writer = self._pq.ParquetWriter(self._handle, self.schema, compression=self._compression,
                                              use_dictionary=self._dictionary_columns,
                                              dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT)
        self._in_shard = 0
        self.shards[self._split].append(self._rel)

    def _flush(self) -> None:
        if not self._rows:
            return
        batch = self._pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
        self._writer.write_batch(batch, row_group_size=ROW_GROUP)
        self.split_bytes[self._split] += batch.nbytes
        self._rows = []

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._flush()
        self._writer.close()
        assert self._handle is not None
        self._handle.close()
        self.ledger.record(self._rel, self._handle)
        self._writer = self._handle = None

    def add(self, item: Item) -> None:
        rec = item.rec
        if self._writer is None or self._in_shard == self.ctx.rows_per_shard:
            self._open_next()
        name = self.ctx.file_name(rec)
        if self._last_image[0] != rec.image_id:      # rows come grouped by image: read each once
            self._last_image = (rec.image_id, self.ctx.images.read(rec, AS_IS))
        self._rows.append(schema.to_row(rec, self._last_image[1], name, item.mask_png, item.area, item.box))
        self._in_shard += 1
        self.counts.add(self._split, rec.image_id)
        if len(self._rows) == ROW_GROUP:
            self._flush()

    def end_split(self, split: str) -> None:
        self._close_shard()
        if self._shard + 1 != self._n_shards:   # pragma: no cover - counts come from the same catalog
            raise RuntimeError(f"hf: split {split} wrote {self._shard + 1} shards, expected {self._n_shards}")

    def finish(self) -> dict[str, Any]:
        self._close_shard()
        counts = self.counts.as_dict()
        card.write_card(self.ledger, self.ctx, counts, self.shards, self.split_bytes)
        return counts
