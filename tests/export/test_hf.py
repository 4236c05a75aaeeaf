"""The hf export read back through `datasets` offline: features equal the schema, masks bit-exact."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from risbench_builder.catalog import Catalog
from risbench_builder.export.schema import features
from risbench_builder.stages.export import run_export

from .conftest import build, truth


@pytest.fixture
def hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf-home"
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(home)}.items():
        monkeypatch.setenv(key, value)
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return home


def card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def test_load_dataset_offline_features_and_bit_exact_masks(built, hub_offline: Path) -> None:
    from datasets import load_dataset

    folder = built.ws.exports / "hf"
    ds = load_dataset(str(folder), cache_dir=str(hub_offline / "cache"))
    want = truth(built.ws)
    with Catalog(built.ws.catalog_path) as cat:
        per_split = dict(cat.conn.execute("SELECT split, COUNT(*) FROM final GROUP BY split"))
        sizes = {r[0]: (r[1], r[2]) for r in cat.conn.execute("SELECT image_id, width, height FROM images")}
    assert set(ds) == set(per_split) == {"train", "val", "test"}
    seen = set()
    for split, part in ds.items():
        assert part.features == features()
        assert part.num_rows == per_split[split]
        for row in part:
            seen.add(row["triplet_id"])
            mask = np.asarray(row["mask"])
            assert row["mask"].mode == "L" and mask.dtype == np.uint8
            assert np.array_equal(mask, want[row["triplet_id"]] * 255), row["triplet_id"]   # bit-exact
            assert row["image"].mode == "RGB" and row["image"].size == sizes[row["image_id"]]
            assert row["area"] == int(want[row["triplet_id"]].sum())
            x1, y1, x2, y2 = row["bbox"]
            assert 0 <= x1 < x2 <= row["width"] and 0 <= y1 < y2 <= row["height"]
    assert seen == set(want) and built.pending not in seen and built.rejected not in seen
    consensus = [r for r in ds["train"].to_list() + ds["val"].to_list() + ds["test"].to_list()
                 if r["mask_origin"] == "consensus"]
    assert {r["triplet_id"] for r in consensus} == set(built.consensus)


def test_shard_names_and_embedded_bytes(built, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    b = build(tmp_path, rows_per_shard=4, targets=["hf"])
    run_export(b.ws, b.ws.load(), progress=False)
    files = sorted(p.name for p in (b.ws.exports / "hf" / "data").glob("*.parquet"))
    for split in ("train", "val", "test"):
        mine = [f for f in files if f.startswith(f"{split}-")]
        n = len(mine)
        assert n >= 1 and mine == [f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    table = pq.read_table(b.ws.exports / "hf" / "data" / files[0])
    assert table.num_rows <= 4
    image = table.column("image")[0].as_py()
    assert isinstance(image["bytes"], bytes) and Image.open(io.BytesIO(image["bytes"])).size == (512, 512)
    assert b"huggingface" in pq.read_schema(b.ws.exports / "hf" / "data" / files[0]).metadata


def test_card_metadata_provenance_review_and_licences(built) -> None:
    meta, body = card(built.ws.exports / "hf")
    assert meta["license"] == "cc-by-4.0" and meta["language"] == ["en"]
    assert meta["task_categories"] == ["image-segmentation"] and meta["size_categories"] == ["n<1K"]
    assert {c["split"] for c in meta["configs"][0]["data_files"]} == {"train", "val", "test"}
    assert [f["name"] for f in meta["dataset_info"]["features"]][:3] == ["image", "mask", "expression"]
    assert "expert-generated" in meta["annotations_creators"]
    assert "statistics stage" in body                       # stats not run: said, not crashed
    assert "agreement, mean | 0.870" in body and "tasks with a consensus | 2" in body
    assert "pending review (not exported) | 1" in body
    with Catalog(built.ws.catalog_path) as cat:
        assert cat.conn.execute("SELECT config_sha256 FROM runs WHERE stage='export'").fetchone()[0] in body
    assert "CC-BY-4.0" in body and "academic purposes only" in body and "DIOR terms" in body


def test_card_carries_stats_table_and_figures(tmp_path: Path) -> None:
    b = build(tmp_path, targets=["hf"])
    (b.ws.reports / "figures").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(b.ws.reports / "figures" / "word_length.png")
    Image.new("RGB", (8, 8), (10, 10, 200)).save(b.ws.reports / "figures" / "categories.png")
    (b.ws.reports / "STATS.md").write_text("# Statistics\n\n| split | triplets |\n|---|---|\n| train | 9 |\n\n"
                                           "![word length](figures/word_length.png)\n")
    run_export(b.ws, b.ws.load(), progress=False)
    folder = b.ws.exports / "hf"
    _, body = card(folder)
    assert "### Statistics" in body and "| train | 9 |" in body
    assert "![word length](figures/word_length.png)" in body and "(figures/categories.png)" in body
    assert (folder / "figures" / "categories.png").is_file()
    import json

    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert {"figures/categories.png", "figures/word_length.png", "README.md"} <= set(files)
    # a stats change alone makes the export stale
    (b.ws.reports / "STATS.md").write_text("# Statistics\n\nchanged\n")
    assert not run_export(b.ws, b.ws.load(), progress=False).up_to_date
    assert "changed" in card(folder)[1]
