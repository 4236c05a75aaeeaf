"""Fake Hugging Face export (parquet shards in the layout ``export/hf.py`` writes) for tests.

``data/train-00000-of-00001.parquet`` and ``data/validation-00000-of-00001.parquet`` (a Hub
download of another repo may name the split ``validation``), with the columns and types of
``export/schema.py`` built with pyarrow alone (the real files also carry the ``datasets``
features metadata, which readers do not need). Images are embedded PNG bytes; real shards hold
800x800 or 512x512 images, 32x32 here.

Planted: two rows on one image (stored once per row, as in the real files), one image's bytes
under a second file name (extracted once), two different images under the same file name
(the second needs another name), a file name with ``..`` (never used as a path) and a row
without mask bytes. :func:`make_hf` returns ``{kind: [(image path column, expression), ...]}``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SIZE = 32


def _png(array: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def _image(seed: int) -> bytes:
    return _png(np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8), "RGB")


def _mask(x1: int, y1: int, x2: int, y2: int) -> bytes:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y1:y2, x1:x2] = 255
    return _png(mask, "L")


def schema() -> pa.Schema:
    """The export's columns (``export/schema.py`` COLUMNS) as pyarrow types."""
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    strings = ("expression", "category", "triplet_id", "image_id", "scene_id", "source", "source_ref", "origin_split",
               "mask_origin", "obj_position", "obj_rel_position", "obj_size", "obj_rel_size", "attributes")
    fields = [("image", image), ("mask", image), ("bbox", pa.list_(pa.float32(), 4)), ("area", pa.int32()),
              ("width", pa.int32()), ("height", pa.int32()), ("gsd", pa.float32()), ("is_unique", pa.bool_())]
    return pa.schema(fields + [(name, pa.string()) for name in strings])


def _row(k: int, image: bytes, path: str, expression: str, category: str, box: tuple[int, int, int, int],
         mask: bytes | None, scene: str, origin_split: str) -> dict:
    return {
        "image": {"bytes": image, "path": path},
        "mask": None if mask is None else {"bytes": mask, "path": f"t{k:04d}.png"},
        "expression": expression, "category": category, "bbox": [float(v) for v in box], "area": 0,
        "width": SIZE, "height": SIZE, "gsd": None, "is_unique": None, "triplet_id": f"t{k:04d}",
        "image_id": f"vrsbench:{Path(path).stem}", "scene_id": scene, "source": "vrsbench",
        "source_ref": f"vrsbench:Annotations_val/{Path(path).stem}.json#obj{k}", "origin_split": origin_split,
        "mask_origin": "auto", "obj_position": "", "obj_rel_position": "", "obj_size": "", "obj_rel_size": "",
        "attributes": json.dumps({"obj_id": k, "is_unique": False}, sort_keys=True),
    }


def make_hf(root: Path) -> dict[str, list[tuple[str, str]]]:
    """Write ``root/data/*.parquet``: train 5 rows, validation 2 rows, 5 distinct images."""
    root = Path(root)
    a, b, c, d = _image(1), _image(2), _image(3), _image(4)
    train = [
        _row(0, a, "P0001_0001.png", "the ship on the left", "ship", (2, 10, 10, 20), _mask(2, 10, 10, 20), "P0001", "train"),
        _row(1, a, "P0001_0001.png", "the ship on the right", "ship", (20, 10, 30, 20), _mask(20, 10, 30, 20), "P0001", "train"),
        _row(2, a, "copy_of_P0001_0001.png", "the large ship", "ship", (20, 10, 30, 20), _mask(20, 10, 30, 20), "P0001", "train"),
        _row(3, b, "P0002_0001.png", "the vehicle at the top", "vehicle", (5, 0, 15, 6), None, "P0002", "val"),
        _row(4, c, "../../etc/P0003_0001.png", "the bridge in the middle", "bridge", (0, 14, 32, 18), _mask(0, 14, 32, 18),
             "P0003", "val"),
    ]
    val = [
        _row(5, d, "P0001_0001.png", "the storage tank at the bottom", "storage-tank", (10, 24, 16, 30),
             _mask(10, 24, 16, 30), "P0004", "train"),
        _row(6, _image(5), "P0005_0001.png", "the airplane in the center", "airplane", (8, 8, 24, 24),
             _mask(8, 8, 24, 24), "P0005", "train"),
    ]
    (root / "data").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("validation", val)):
        pq.write_table(pa.Table.from_pylist(rows, schema=schema()), root / "data" / f"{name}-00000-of-00001.parquet",
                       row_group_size=2)
    return {
        "missing_mask": [("P0002_0001.png", "the vehicle at the top")],
        "path_escape_name": [("../../etc/P0003_0001.png", "the bridge in the middle")],
        "same_image_other_name": [("copy_of_P0001_0001.png", "the large ship")],
        "same_name_other_image": [("P0001_0001.png", "the storage tank at the bottom")],
    }
