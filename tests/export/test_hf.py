"""The hf export read back through `datasets` offline: features equal the schema, masks bit-exact."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from risbench_builder.catalog import Catalog
from risbench_builder.export.base import Context, Ledger
from risbench_builder.export.card import write_card
from risbench_builder.export.hf import hub_split
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
        per_split = {hub_split(s): n for s, n in cat.conn.execute("SELECT split, COUNT(*) FROM final GROUP BY split")}
        sizes = {r[0]: (r[1], r[2]) for r in cat.conn.execute("SELECT image_id, width, height FROM images")}
    assert set(ds) == set(per_split) == {"train", "validation", "test"}           # the catalog's val, Hub-named
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
    consensus = [r for r in ds["train"].to_list() + ds["validation"].to_list() + ds["test"].to_list()
                 if r["mask_origin"] == "consensus"]
    assert {r["triplet_id"] for r in consensus} == set(built.consensus)


def test_shard_names_and_embedded_bytes(built, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    b = build(tmp_path, rows_per_shard=4, targets=["hf"])
    run_export(b.ws, b.ws.load(), progress=False)
    files = sorted(p.name for p in (b.ws.exports / "hf" / "data").glob("*.parquet"))
    assert not any(f.startswith("val-") for f in files)
    for split in ("train", "validation", "test"):
        mine = [f for f in files if f.startswith(f"{split}-")]
        n = len(mine)
        assert n >= 1 and mine == [f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    table = pq.read_table(b.ws.exports / "hf" / "data" / files[0])
    assert table.num_rows <= 4
    image = table.column("image")[0].as_py()
    assert isinstance(image["bytes"], bytes) and Image.open(io.BytesIO(image["bytes"])).size == (512, 512)
    assert b"huggingface" in pq.read_schema(b.ws.exports / "hf" / "data" / files[0]).metadata


def test_card_metadata_provenance_review_and_licences(built) -> None:
    folder = built.ws.exports / "hf"
    meta, body = card(folder)
    assert meta["language"] == ["en"]
    assert meta["task_categories"] == ["image-segmentation"] and meta["size_categories"] == ["n<1K"]
    assert {c["split"] for c in meta["configs"][0]["data_files"]} == {"train", "validation", "test"}
    assert {s["name"] for s in meta["dataset_info"]["splits"]} == {"train", "validation", "test"}
    assert [f["name"] for f in meta["dataset_info"]["features"]][:3] == ["image", "mask", "expression"]
    assert "statistics stage" in body                       # stats not run: said, not crashed
    assert "agreement, mean | 0.870" in body and "tasks with a consensus | 2" in body
    assert "pending review (not exported) | 1" in body
    with Catalog(built.ws.catalog_path) as cat:
        assert cat.conn.execute("SELECT config_sha256 FROM runs WHERE stage='export'").fetchone()[0] in body
    # the fixture's sources are synthetic: once the stage passes meta["synthetic"] the card says so;
    # either way its licence metadata is one of the two forms below (both are tested on their own next)
    if "synthetic" in meta["tags"]:
        assert meta["license"] == "cc-by-4.0" and meta["annotations_creators"] == ["machine-generated"]
        assert "Synthetic data" in body and not (folder / "LICENSE.md").exists()
    else:
        assert meta["license"] == "other" and meta["license_link"] == "LICENSE.md"
        assert meta["license_name"] == "vrsbench-cc-by-4.0-dota-academic-dior-terms"
        assert "expert-generated" in meta["annotations_creators"]
        assert "CC-BY-4.0" in body and "academic purposes only" in body and "DIOR terms" in body
        text = (folder / "LICENSE.md").read_text()
        assert "CC-BY-4.0" in text and "academic purposes only" in text and "DIOR" in text
        assert "LICENSE.md" in json.loads((folder / "manifest.json").read_text())["files"]


def _card_ctx(tmp_path: Path, license: str = "cc-by-4.0", **meta) -> Context:
    """What card.py reads of a Context: name, licence, meta (sources, review figures) and the reports folder."""
    meta = {"sources": ["vrsbench"], "review": {"consensus": 4, "reviews": 12, "annotators": 3,
                                                "reviews_per_task": 3.0, "agreement_mean": 0.9}, **meta}
    return Context("risbench", 10, license, None, {}, {}, {}, meta, tmp_path / "reports")   # type: ignore[arg-type]


def _write(ctx: Context, tmp_path: Path) -> tuple[dict, str, Path]:
    counts = {"triplets": 3, "images": 2, "splits": {"train": {"triplets": 2, "images": 1},
                                                     "validation": {"triplets": 1, "images": 1}}}
    shards = {s: [f"data/{s}-00000-of-00001.parquet"] for s in counts["splits"]}
    ledger = Ledger(tmp_path / "out")
    for files in shards.values():
        ledger.write_bytes(files[0], b"x")
    write_card(ledger, ctx, counts, shards, {"train": 10, "validation": 5})
    meta, body = card(tmp_path / "out")
    return meta, body, tmp_path / "out"


def test_card_on_real_sources_is_license_other_naming_the_upstream_terms(tmp_path: Path) -> None:
    meta, body, out = _write(_card_ctx(tmp_path), tmp_path)
    assert meta["license"] == "other" and meta["license_link"] == "LICENSE.md"
    assert meta["license_name"] == "vrsbench-cc-by-4.0-dota-academic-dior-terms"
    assert re.fullmatch(r"[a-z0-9.-]+", meta["license_name"])                 # a Hub licence id
    assert meta["annotations_creators"] == ["machine-generated", "expert-generated"]
    assert meta["source_datasets"] == ["xiang709/VRSBench"] and "synthetic" not in meta["tags"]
    text = (out / "LICENSE.md").read_text()
    assert "CC-BY-4.0" in text and "captain-whu.github.io/DOTA" in text and "academic purposes only" in text
    assert "DIOR terms" in text and "[LICENSE.md](LICENSE.md)" in body and "Synthetic" not in body
    dota = _write(_card_ctx(tmp_path / "d", sources=["dota", "dior_rsvg"]), tmp_path / "d")[0]
    assert dota["license"] == "other" and dota["license_name"] == "dota-academic-dior-terms"
    imported = _write(_card_ctx(tmp_path / "i", sources=["refer"]), tmp_path / "i")[0]
    assert imported["license"] == "other" and imported["license_name"] == "upstream-terms"


def test_a_synthetic_card_says_so_and_names_no_upstream_or_experts(tmp_path: Path) -> None:
    meta, body, out = _write(_card_ctx(tmp_path, synthetic=True), tmp_path)
    assert meta["license"] == "cc-by-4.0" and "license_name" not in meta and not (out / "LICENSE.md").exists()
    assert meta["annotations_creators"] == ["machine-generated"]              # simulated reviewers are programs
    assert "source_datasets" not in meta and "synthetic" in meta["tags"]
    assert "synthetic referring remote-sensing" in body and "**Synthetic data.**" in body
    assert "simulated reviewers" in body and "not by people" in body
    assert "xiang709" not in body and "li2024vrsbench" not in body and "academic purposes only" not in body


def test_an_explicit_export_license_is_kept(tmp_path: Path) -> None:
    nc = _write(_card_ctx(tmp_path / "a", license="cc-by-nc-4.0"), tmp_path / "a")
    assert nc[0]["license"] == "cc-by-nc-4.0" and "license_name" not in nc[0] and not (nc[2] / "LICENSE.md").exists()
    assert "set by the pipeline's `export.license`" in nc[1] and "academic purposes only" in nc[1]  # upstream still said
    # the stage says whether the pipeline set it: then even the default value is kept, also on a synthetic build
    same = _write(_card_ctx(tmp_path / "b", license="cc-by-4.0", license_explicit=True), tmp_path / "b")[0]
    assert same["license"] == "cc-by-4.0" and "license_name" not in same
    unset = _write(_card_ctx(tmp_path / "c", license="cc-by-4.0", license_explicit=False), tmp_path / "c")[0]
    assert unset["license"] == "other"
    other = _write(_card_ctx(tmp_path / "e", license="other", license_explicit=True), tmp_path / "e")
    assert other[0]["license"] == "other" and other[0]["license_link"] == "LICENSE.md"


def test_card_features_are_the_legacy_sequence_form(tmp_path: Path) -> None:
    meta, _, _ = _write(_card_ctx(tmp_path), tmp_path)
    bbox = next(f for f in meta["dataset_info"]["features"] if f["name"] == "bbox")
    assert bbox == {"name": "bbox", "sequence": "float32", "length": 4}
    from datasets import Features

    assert Features._from_yaml_list(meta["dataset_info"]["features"]) == features()


OLD_PYTHON = os.environ.get("RISBENCH_OLD_DATASETS_PYTHON")
LOADER = Path(__file__).with_name("load_hf_export.py")


def _load_with(python: str, folder: Path, home: Path) -> dict:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([python, str(LOADER), str(folder)], capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-2000:]
    result = json.loads(lines[-1])
    assert done.returncode == 0, result
    return result


def _assert_loaded(result: dict, built) -> None:
    counts = json.loads((built.ws.exports / "hf" / "manifest.json").read_text())["counts"]["splits"]
    for way in ("folder", "streaming", "parquet"):
        assert set(result[way]) == {"train", "validation", "test"}, (way, result[way])
        for split, got in result[way].items():
            assert got["rows"] == counts[split]["triplets"], (way, split)
            assert "length=4" in got["bbox_feature"] and got["bbox_len"] and len(got["bbox"]) == 4, (way, got)
            assert got["mask_mode"] == "L" and got["image_mode"] == "RGB"


def test_the_loader_script_loads_the_export_with_the_installed_datasets(built, tmp_path: Path) -> None:
    result = _load_with(sys.executable, built.ws.exports / "hf", tmp_path / "home")
    _assert_loaded(result, built)


@pytest.mark.skipif(not OLD_PYTHON, reason="RISBENCH_OLD_DATASETS_PYTHON unset: the python of a venv with the oldest "
                                           "supported datasets (tests/export/load_hf_export.py says how to make one)")
def test_the_export_loads_with_the_oldest_supported_datasets(built, tmp_path: Path) -> None:
    result = _load_with(str(OLD_PYTHON), built.ws.exports / "hf", tmp_path / "home")
    _assert_loaded(result, built)
    assert result["folder"]["train"]["bbox_feature"].startswith(("Sequence(", "List("))


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
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert {"figures/categories.png", "figures/word_length.png", "README.md"} <= set(files)
    # a stats change alone makes the export stale
    (b.ws.reports / "STATS.md").write_text("# Statistics\n\nchanged\n")
    assert not run_export(b.ws, b.ws.load(), progress=False).up_to_date
    assert "changed" in card(folder)[1]


def test_an_explicit_other_on_a_synthetic_build_names_no_upstream(tmp_path: Path) -> None:
    meta, body, out = _write(_card_ctx(tmp_path, license="other", license_explicit=True, synthetic=True), tmp_path)
    assert meta["license"] == "other" and "license_name" not in meta and not (out / "LICENSE.md").exists()
    assert "xiang709" not in body


def test_the_crobim_reader_reads_the_validation_split_as_val(built) -> None:
    """The export names the split `validation` (Hub); the trainer and smoke verdict ask for `val`."""
    from risbench_builder.crobim.data import available_splits, load_split

    export = built.ws.exports / "hf"
    assert any(p.name.startswith("validation-") for p in (export / "data").glob("*.parquet"))
    assert "val" in available_splits(export) and "validation" not in available_splits(export)
    assert len(load_split(export, "val")) > 0
