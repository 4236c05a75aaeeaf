"""The one schema of an exported triplet: the HF parquet columns, the card and the checker follow it.

:data:`COLUMNS` declares every column once (name, type, meaning). :func:`features` turns it into
a ``datasets.Features`` (needs the ``hub`` extra), :func:`to_row` fills one row from a
:class:`~risbench_builder.finalize.records.FinalRecord`, the card renders its field table from
:data:`COLUMNS`, and ``risbench check`` compares a parquet file's features with :func:`features`.

>>> [c.name for c in COLUMNS][:5]
['image', 'mask', 'expression', 'category', 'bbox']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..finalize.records import FinalRecord
from ..sources.base import RISBENCH_CLASSES


@dataclass(frozen=True)
class Column:
    name: str
    kind: str          # image | string | bool | int32 | float32 | box
    description: str


#: VRSBench per-object attributes promoted to columns ('' or null when a source has none).
ATTRIBUTE_COLUMNS: tuple[str, ...] = ("obj_position", "obj_rel_position", "obj_size", "obj_rel_size")

COLUMNS: tuple[Column, ...] = (
    Column("image", "image", "the image (original file bytes: RGB PNG or JPEG)"),
    Column("mask", "image", "the referred object's mask: single-channel PNG, 0 background / 255 object"),
    Column("expression", "string", "the referring expression (UTF-8, NFC)"),
    Column("category", "string", f"object class, one of the {len(RISBENCH_CLASSES)} RISBench classes"),
    Column("bbox", "box", "object box [x1, y1, x2, y2] in pixels (source box, clipped to the image)"),
    Column("area", "int32", "mask area in pixels"),
    Column("triplet_id", "string", "stable id of the (image, object, expression) triplet"),
    Column("image_id", "string", "image id (source:stem)"),
    Column("scene_id", "string", "source scene the image was cut from; splits never share a scene"),
    Column("width", "int32", "image width in pixels"),
    Column("height", "int32", "image height in pixels"),
    Column("gsd", "float32", "ground sample distance in metres per pixel, when the source gives it"),
    Column("source", "string", "source dataset of the annotation"),
    Column("source_ref", "string", "where in the source the object is described (file#object)"),
    Column("origin_split", "string", "the split the source put the annotation in"),
    Column("mask_origin", "string", "auto (model mask accepted by the quality router) | consensus | adjudicated"),
    Column("is_unique", "bool", "the object is the only one of its class in the image (VRSBench)"),
    Column("obj_position", "string", "absolute position word from the source (VRSBench), or ''"),
    Column("obj_rel_position", "string", "relative position word from the source (VRSBench), or ''"),
    Column("obj_size", "string", "size word from the source (VRSBench), or ''"),
    Column("obj_rel_size", "string", "relative size word from the source (VRSBench, spelling kept), or ''"),
    Column("attributes", "string", "all source attributes as sorted JSON"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
IMAGE_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind == "image")


def features() -> Any:
    """The ``datasets.Features`` of one split (import of ``datasets`` deferred: hub extra)."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the hf export needs the hub extra: pip install 'risbench-builder[hub]' ({exc})") from None
    list_type = getattr(datasets, "List", None) or datasets.Sequence
    kinds = {
        "image": lambda: datasets.Image(),
        "string": lambda: datasets.Value("string"),
        "bool": lambda: datasets.Value("bool"),
        "int32": lambda: datasets.Value("int32"),
        "float32": lambda: datasets.Value("float32"),
        "box": lambda: list_type(datasets.Value("float32"), length=4),
    }
    return datasets.Features({c.name: kinds[c.kind]() for c in COLUMNS})


def arrow_schema() -> Any:
    """The pyarrow schema of :func:`features`, with the ``huggingface`` metadata datasets reads."""
    return features().arrow_schema


def type_names() -> dict[str, str]:
    """Column -> type as the card's field table shows it."""
    shown = {"image": "Image (PNG/JPEG bytes)", "box": "list<float32>[4]"}
    return {c.name: shown.get(c.kind, c.kind) for c in COLUMNS}


def to_row(rec: FinalRecord, image_bytes: bytes, image_name: str, mask_png: bytes, area: int,
           box: tuple[float, float, float, float]) -> dict[str, Any]:
    """One parquet row (Image columns as ``{"bytes", "path"}``, the embedded-bytes form)."""
    attrs = rec.attributes or {}
    unique = attrs.get("is_unique")
    row: dict[str, Any] = {
        "image": {"bytes": image_bytes, "path": image_name},
        "mask": {"bytes": mask_png, "path": f"{rec.triplet_id}.png"},
        "expression": rec.expression,
        "category": rec.category,
        "bbox": [float(v) for v in box],
        "area": int(area),
        "triplet_id": rec.triplet_id,
        "image_id": rec.image_id,
        "scene_id": rec.scene_id,
        "width": int(rec.width),
        "height": int(rec.height),
        "gsd": None if rec.gsd is None else float(rec.gsd),
        "source": rec.source,
        "source_ref": rec.source_ref,
        "origin_split": rec.origin_split or "",
        "mask_origin": rec.mask_origin,
        "is_unique": None if unique is None else bool(unique),
        "attributes": json.dumps(attrs, sort_keys=True, ensure_ascii=False, separators=(",", ":")),
    }
    for name in ATTRIBUTE_COLUMNS:
        value = attrs.get(name)
        row[name] = "" if value is None else str(value)
    return row
