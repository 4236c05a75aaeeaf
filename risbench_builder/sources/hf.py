"""Our Hugging Face parquet export (or a Hub download of it) read back as records with masks.

Layout: ``data/{split}-{i:05d}-of-{n:05d}.parquet`` (``export/hf.py``); parquet files anywhere
below the root are read, in sorted order, one unit each, so a Hub snapshot or a parquet-converted
branch (``default/train/0000.parquet``) works too. The split comes from the file name, else from
the folder (``validation``, the name our export writes, counts as ``val``). Columns follow ``export/schema.py``; ``image``,
``mask`` and ``expression`` are required, the rest are used when present.

Rows are streamed (``ParquetFile.iter_batches``) rather than loaded, since shards hold the
images. The catalog names image *files*, so each distinct image (by content) is written once to
``<work_dir>/images/<name>``: the row's own file name when it is a safe name no other content
has taken, else ``<sha256[:16]><ext>``. A file already there with the same content is not
rewritten, so a second run over the same work folder writes nothing. Masks stay bytes
(:class:`~.base.ImportedMask` ``data``): ingest decodes them against the image.

The annotation size limit does not apply to parquet files (their size is the images); a file
that pyarrow cannot open, or whose columns are missing or of the wrong type, is one
``malformed_file`` reject, and a file that breaks part way keeps the rows read before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..config import IngestConfig, SourceConfig
from ..paths import name_escape, path_escape
from ..text import shown, unexpected
from .base import (
    MALFORMED_FILE, MALFORMED_RECORD, MISSING_IMAGE, MISSING_MASK, PATH_ESCAPE, BadInput, ImportedMask, Item,
    Rejected, SourceRecord, check_box_order, check_coordinates, guarded, infer_category, to_float, walk_files,
)

REQUIRED = ("image", "mask", "expression")
OPTIONAL = ("category", "bbox", "triplet_id", "image_id", "scene_id", "origin_split", "source_ref",
            "attributes", "width", "height")
BATCH_ROWS = 64
_SHARD = re.compile(r"^(?P<split>[A-Za-z][\w.]*?)(?:-\d+-of-\d+)?\.parquet$")
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}
_SAFE_NAME = re.compile(r"^[\w][\w.\-]{0,200}$")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"),
          (b"BM", ".bmp"))


def split_of(unit: str) -> str | None:
    """The split a parquet file holds, from its name or its folder.

    >>> [split_of(u) for u in ("data/train-00000-of-00001.parquet", "data/validation-00000-of-00002.parquet",
    ...                        "default/test/0000.parquet", "misc/0000.parquet")]
    ['train', 'val', 'test', None]
    """
    path = PurePosixPath(unit)
    m = _SHARD.match(path.name)
    split = m.group("split") if m else None
    if split is None and path.parent.name in ("train", "val", "test", "validation", "valid", "dev"):
        split = path.parent.name
    return _SPLIT_ALIASES.get(split, split) if split else None


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"the hf source reads parquet with pyarrow: pip install 'risbench-builder[hub]' ({exc})") from None
    return pq


def _extension(name: str | None, data: bytes) -> str:
    """The image's extension: from its bytes when they say, else from its name, else ``.img``."""
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    suffix = PurePosixPath(name or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".img"


def _schema_problem(schema: Any) -> str | None:
    """Why an arrow schema is not our export's (missing or mistyped columns), or None."""
    import pyarrow.types as t

    names = set(schema.names)
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        return f"no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} (not a RISBench hf export?)"

    def binary_struct(field: Any) -> bool:
        return t.is_struct(field.type) and field.type.get_field_index("bytes") >= 0 and (
            t.is_binary(field.type.field("bytes").type) or t.is_large_binary(field.type.field("bytes").type))

    def text(field: Any) -> bool:
        return t.is_string(field.type) or t.is_large_string(field.type) or t.is_null(field.type)

    def numbers(field: Any) -> bool:
        kind = field.type
        return (t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind)) and (
            t.is_floating(kind.value_type) or t.is_integer(kind.value_type))

    checks = {"image": binary_struct, "mask": binary_struct, "bbox": numbers,
              "width": lambda f: t.is_integer(f.type), "height": lambda f: t.is_integer(f.type)}
    for name in REQUIRED + OPTIONAL:
        if name in names:
            field = schema.field(name)
            if not checks.get(name, text)(field):
                return f"column {name!r} has type {field.type}, not what the export writes"
    return None


class HfReader:
    """Parquet shards of our hf export; extracts images into ``work_dir/images``."""

    kind = "hf"
    expects = "**/*.parquet"
    needs_work_dir = True

    def __init__(self, cfg: SourceConfig, root: Path, limits: IngestConfig | None = None,
                 work_dir: Path | None = None):
        if work_dir is None:
            raise ValueError("the hf source needs a work folder to extract its images into (make_reader(..., work_dir=))")
        self.cfg, self.root = cfg, Path(root)
        self.limits = limits or IngestConfig()
        self.source = cfg.label
        self.image_dir = Path(work_dir) / "images"
        self._name_of: dict[str, str] = {}      # sha256 -> name written
        self._sha_of: dict[str, str] = {}       # name -> sha256 of its content on disk

    def units(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return walk_files(self.root, ".", (".parquet",))

    # ------------------------------------------------------------ images
    def _on_disk(self, name: str) -> str | None:
        """sha256 of ``image_dir/name`` (None when absent), remembered."""
        if name not in self._sha_of:
            path = self.image_dir / name
            if not path.is_file():
                return None
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            self._sha_of[name] = digest.hexdigest()
        return self._sha_of[name]

    def extract(self, data: bytes, row_name: str | None) -> str:
        """The name under ``image_dir`` holding ``data``, written the first time it is seen."""
        sha = hashlib.sha256(data).hexdigest()
        if sha in self._name_of:
            return self._name_of[sha]
        base = PurePosixPath((row_name or "").replace("\\", "/")).name
        candidates = [base] if base and not name_escape(base) and _SAFE_NAME.match(base) else []
        candidates.append(sha[:16] + _extension(base, data))
        for name in candidates:
            on_disk = self._on_disk(name)
            if on_disk == sha:
                break                                    # already extracted (an earlier run)
            if on_disk is None:
                self._write(name, data)
                self._sha_of[name] = sha
                break
        else:                                            # pragma: no cover - a sha256 prefix collision
            name = sha + _extension(base, data)
            self._write(name, data)
            self._sha_of[name] = sha
        self._name_of[sha] = name
        return name

    def _write(self, name: str, data: bytes) -> None:
        self.image_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.image_dir, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.image_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------ rows
    def read(self, unit: str) -> Iterator[Item]:
        file_ref = f"{self.source}:{unit}"
        reason = path_escape(self.root, self.root, unit)
        if reason:
            yield Rejected(self.source, file_ref, PATH_ESCAPE, f"{unit} {reason}")
            return
        pq = _pyarrow()
        try:
            parquet = pq.ParquetFile(self.root / unit)
            problem = _schema_problem(parquet.schema_arrow)
        except Exception as exc:        # ArrowInvalid (not parquet, truncated footer), OSError
            yield Rejected(self.source, file_ref, MALFORMED_FILE, f"{unit}: not a readable parquet file: {unexpected(exc)}")
            return
        if problem:
            yield Rejected(self.source, file_ref, MALFORMED_FILE, f"{unit}: {problem}")
            return
        columns = [c for c in REQUIRED + OPTIONAL if c in parquet.schema_arrow.names]
        split = self.cfg.split or split_of(unit)
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                for values in batch.to_pylist():
                    yield guarded(self.source, f"{file_ref}#row{row}", f"{unit} row {row}", self._record, unit, row,
                                  values, split)
                    row += 1
        except Exception as exc:        # a corrupt page part way through
            yield Rejected(self.source, file_ref, MALFORMED_FILE, f"{unit}: unreadable after row {row}: {unexpected(exc)}")
        finally:
            parquet.close()

    def _record(self, unit: str, row: int, values: dict[str, Any], split: str | None) -> SourceRecord:
        image = values.get("image") or {}
        data = image.get("bytes")
        if not data:
            raise BadInput(MISSING_IMAGE, "the image column holds no embedded bytes")
        name = self.extract(data, image.get("path") if isinstance(image.get("path"), str) else None)
        expression = values.get("expression")
        category = values.get("category") or (infer_category(expression) if isinstance(expression, str) else "")
        attributes: dict[str, Any] = {"file": unit, "row": row}
        for column, key in (("triplet_id", "origin_triplet_id"), ("origin_split", "upstream_origin_split"),
                            ("image_id", "image_id"), ("source_ref", "upstream_source_ref")):
            if values.get(column):
                attributes[key] = values[column][:500]
        upstream = _attributes(values.get("attributes"))
        if upstream:
            attributes["upstream_attributes"] = upstream
        width, height = values.get("width"), values.get("height")
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            attributes["declared_size"] = [width, height]
        mask_bytes = (values.get("mask") or {}).get("bytes")
        mask = ImportedMask(data=mask_bytes, where=f"{unit} row {row}") if mask_bytes else None
        if mask is None:
            attributes["mask_problem"] = f"{MISSING_MASK}: {unit} row {row}: the mask column holds no bytes"
        scene = values.get("scene_id")
        return SourceRecord(
            source=self.source, unit=unit, object_ref=f"row{row}", image_name=name, image_path=self.image_dir / name,
            category_raw=category[:64], expression=expression, box_xyxy=_bbox(values.get("bbox")),
            attributes=attributes, origin_split=split, mask=mask, scene_id=scene[:200] if scene else None,
        )


def _bbox(value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    if len(value) != 4:
        raise BadInput(MALFORMED_RECORD, f"bbox {shown(value)} is not [x1, y1, x2, y2]")
    box = check_coordinates((to_float(v, "bbox") for v in value), "bbox")
    return check_box_order(tuple(box), "bbox")  # type: ignore[arg-type]


def _attributes(text: Any) -> dict[str, Any] | None:
    """The ``attributes`` column (sorted JSON of the source attributes) as a dict, or None."""
    if not isinstance(text, str) or not text or len(text) > 100_000:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


READERS = {"hf": HfReader}
