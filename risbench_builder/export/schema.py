"""The one schema of an exported triplet: the HF parquet columns, the card and the checker follow it.

:data:`COLUMNS` declares every column once (name, type, meaning). :func:`features` turns it into
a ``datasets.Features`` (needs the ``hub`` extra), :func:`to_row` fills one row from a
:class:`~risbench_builder.finalize.records.FinalRecord`, the card renders its field table from
:data:`COLUMNS`, and ``risbench check`` compares a parquet file's features with :func:`features`.

What goes *into the files* (the parquet ``huggingface`` metadata, :func:`arrow_schema`, and the
card's ``dataset_info.features``, :func:`yaml_features`) is the legacy form every supported
``datasets`` reads: ``bbox`` as ``Sequence(Value("float32"), length=4)`` (``"_type": "Sequence"``,
YAML ``sequence: float32``), a fixed-size list of 4 float32 in arrow. ``datasets`` >= 4 writes
the same column as ``List`` (``"_type": "List"``, YAML ``list:``), which ``datasets`` < 4 cannot
load (huggingface/datasets#7739); 4 and 5 read ``Sequence`` back as ``List(float32, length=4)``,
so :func:`features` of the installed ``datasets`` equals what either version loads.

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


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the hf export needs the hub extra: pip install 'risbench-builder[hub]' ({exc})") from None
    return datasets


def features() -> Any:
    """The ``datasets.Features`` of one split, as the installed ``datasets`` holds them in memory
    (``bbox``: ``List(Value("float32"), length=4)`` on datasets >= 4, ``Sequence`` before)."""
    return _datasets().Features.from_dict(features_dict())


#: Each column kind as the ``huggingface`` metadata of datasets 2.19-3.x writes it (4 and 5 read it).
_LEGACY_DICT: dict[str, dict[str, Any]] = {
    "image": {"_type": "Image"},
    "string": {"dtype": "string", "_type": "Value"},
    "bool": {"dtype": "bool", "_type": "Value"},
    "int32": {"dtype": "int32", "_type": "Value"},
    "float32": {"dtype": "float32", "_type": "Value"},
    "box": {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "Sequence"},
}
#: The same in the card's YAML (``dataset_info.features``), the legacy ``sequence:`` key for the box.
_LEGACY_YAML: dict[str, dict[str, Any]] = {
    "image": {"dtype": "image"}, "string": {"dtype": "string"}, "bool": {"dtype": "bool"},
    "int32": {"dtype": "int32"}, "float32": {"dtype": "float32"}, "box": {"sequence": "float32", "length": 4},
}


def features_dict() -> dict[str, dict[str, Any]]:
    """The features as the parquet ``huggingface`` metadata carries them (legacy form, no ``datasets`` needed).

    >>> features_dict()["bbox"]
    {'feature': {'dtype': 'float32', '_type': 'Value'}, 'length': 4, '_type': 'Sequence'}
    """
    return {c.name: json.loads(json.dumps(_LEGACY_DICT[c.kind])) for c in COLUMNS}


def yaml_features() -> list[dict[str, Any]]:
    """The card's ``dataset_info.features`` (legacy form).

    >>> yaml_features()[4]
    {'name': 'bbox', 'sequence': 'float32', 'length': 4}
    """
    return [{"name": c.name, **_LEGACY_YAML[c.kind]} for c in COLUMNS]


def arrow_schema() -> Any:
    """The pyarrow schema of :func:`features`, with the legacy ``huggingface`` metadata (see the module doc)."""
    metadata = {b"huggingface": json.dumps({"info": {"features": features_dict()}}).encode()}
    return features().arrow_schema.with_metadata(metadata)


def uses_list_type(metadata: dict[bytes, bytes] | None) -> bool:
    """Whether a parquet schema's ``huggingface`` metadata names the ``List`` type, which
    ``datasets`` < 4 cannot load (exports written before the legacy form was pinned).

    >>> uses_list_type({b"huggingface": b'{"info": {"features": {"bbox": {"_type": "List"}}}}'})
    True
    >>> uses_list_type(arrow_schema().metadata)
    False
    """
    raw = (metadata or {}).get(b"huggingface", b"")
    return b'"_type": "List"' in raw or b'"_type":"List"' in raw


def type_names() -> dict[str, str]:
    """Column -> type as the card's field table shows it."""
    shown = {"image": "Image (PNG/JPEG bytes)", "box": "Sequence(float32, length=4)"}
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
