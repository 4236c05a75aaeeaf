"""The one schema: features, rows and the mask PNG bytes agree with each other and with masks.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from risbench_builder import masks
from risbench_builder.export import schema
from risbench_builder.export.base import mask_png_bytes
from risbench_builder.finalize.records import FinalRecord


def record(**attrs) -> FinalRecord:
    rle = masks.encode(np.pad(np.ones((2, 3), np.uint8), 1))
    return FinalRecord("t1", "train", "auto", rle, "vrsbench:P0001_0000", "/x/P0001_0000.png", "P0001", 5, 4, None,
                       "vrsbench", "vrsbench:a.json#obj0", "ship", "the ship on the left", (1, 1, 4, 3), attrs, "train")


def test_features_follow_columns_and_rows_fill_every_column() -> None:
    feats = schema.features()
    assert list(feats) == list(schema.COLUMN_NAMES)
    assert [c for c in schema.COLUMN_NAMES if type(feats[c]).__name__ == "Image"] == list(schema.IMAGE_COLUMNS)
    row = schema.to_row(record(is_unique=True, obj_position="left", obj_rel_size="largeest"), b"img", "P.png",
                        b"png", 6, (1.0, 1.0, 4.0, 3.0))
    assert set(row) == set(schema.COLUMN_NAMES)
    assert row["is_unique"] is True and row["obj_position"] == "left" and row["obj_rel_size"] == "largeest"
    assert row["obj_size"] == "" and row["gsd"] is None and row["attributes"].startswith("{")
    bare = schema.to_row(record(), b"", "P.png", b"", 0, (0.0, 0.0, 1.0, 1.0))
    assert bare["is_unique"] is None
    # the arrow schema is what datasets writes: features survive the metadata round trip
    from datasets import Features

    assert Features.from_arrow_schema(schema.arrow_schema()) == feats


def test_mask_png_bytes_equal_the_toolbox_writer(tmp_path: Path) -> None:
    m = np.zeros((37, 53), np.uint8)
    m[5:20, 7:40] = 1
    masks.write_png_mask(tmp_path / "m.png", m)
    assert mask_png_bytes(m) == (tmp_path / "m.png").read_bytes()
    assert np.array_equal(masks.read_png_mask(tmp_path / "m.png"), m)


#: What datasets 2.19.2 writes for ``Sequence(Value("float32"), length=4)`` (its arrow metadata and card YAML).
DATASETS_2_19_BBOX = {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "Sequence"}
DATASETS_2_19_BBOX_YAML = {"name": "bbox", "sequence": "float32", "length": 4}


def test_features_written_are_the_legacy_sequence_form() -> None:
    """The files carry bbox as the legacy ``Sequence`` every datasets from 2.19 to 5 reads, never
    ``List`` (datasets>=4's name, unknown before 4: huggingface/datasets#7739)."""
    import json

    import pyarrow as pa
    from datasets import Features

    arrow = schema.arrow_schema()
    assert arrow.field("bbox").type == pa.list_(pa.float32(), 4)               # fixed_size_list<float>[4]
    written = json.loads(arrow.metadata[b"huggingface"])["info"]["features"]
    assert written == schema.features_dict() and written["bbox"] == DATASETS_2_19_BBOX
    assert '"List"' not in arrow.metadata[b"huggingface"].decode() and not schema.uses_list_type(arrow.metadata)
    assert next(f for f in schema.yaml_features() if f["name"] == "bbox") == DATASETS_2_19_BBOX_YAML
    assert not any("list" in f for f in schema.yaml_features())
    # the installed datasets reads both back as the features it holds in memory
    assert Features.from_dict(written) == schema.features() == Features._from_yaml_list(schema.yaml_features())
    assert [f.name for f in arrow] == list(schema.COLUMN_NAMES)
    assert arrow.remove_metadata() == schema.features().arrow_schema.remove_metadata()   # same arrow types


def test_a_real_shard_carries_the_legacy_form(built) -> None:
    import json

    import pyarrow.parquet as pq

    for shard in sorted((built.ws.exports / "hf" / "data").glob("*.parquet")):
        meta = pq.read_schema(shard).metadata
        assert json.loads(meta[b"huggingface"])["info"]["features"]["bbox"] == DATASETS_2_19_BBOX, shard.name
