"""hf / refer / native readers agree on the same triplets; the controls; the restricted unpickler."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from risbench_builder.crobim.data import (RefSegDataset, available_splits, detect_layout, load_split,
                                          multi_object_images, rotate_masks, shuffle_expressions,
                                          subset_by_images)
from tests.crobim.exports import vrsbench_triplets, write_native, write_refer


@pytest.fixture(scope="module")
def rows(small_export: Path) -> list[dict]:
    base = small_export.parent
    return vrsbench_triplets(base / "vrsbench", base / "vrsbench_truth")


def test_hf_export_reads_back(small_export: Path, rows: list[dict]) -> None:
    assert detect_layout(small_export) == "hf"
    assert available_splits(small_export) == ["train", "val"]
    train = load_split(small_export, "train")
    want = [r for r in rows if r["split"] == "train"]
    assert [s.expression for s in train] == [r["expression"] for r in want]
    for s, r in zip(train, want):
        assert np.array_equal(s.mask(), r["mask"])
        assert np.array_equal(np.asarray(s.image()), r["image"])
        assert s.image_id == r["image_id"] and s.is_unique == r["is_unique"] and s.category == r["category"]
    shared = [s for s in train if s.image_id == train[0].image_id]
    assert all(s.image_src is shared[0].image_src for s in shared)          # one copy per image


def test_refer_and_native_layouts(tmp_path: Path, small_export: Path, rows: list[dict]) -> None:
    hf = {s.expression: s for s in load_split(small_export, "val")}
    refer = write_refer(rows, tmp_path / "refer")
    assert detect_layout(refer) == "refer"
    native = write_native(rows, tmp_path / "native")
    assert detect_layout(native) == "native"
    for root in (refer, native):
        got = load_split(root, "val")
        assert len(got) == len(hf)
        for s in got:
            ref = hf[s.expression]
            assert np.array_equal(s.mask(), ref.mask()), root
            assert np.array_equal(np.asarray(s.image()), np.asarray(ref.image()))
        assert len({s.image_id for s in got}) == len({s.image_id for s in hf.values()})


def test_refer_overlapping_segments_become_background(tmp_path: Path, rows: list[dict]) -> None:
    import json

    root = write_refer(rows[:1], tmp_path / "refer")
    inst_path = root / "risbench" / "instances.json"
    inst = json.loads(inst_path.read_text())
    seg = inst["annotations"][0]["segmentation"]
    h, w = rows[0]["mask"].shape
    inst["annotations"][0]["segmentation"] = seg + [[0, 0, w, 0, w, h, 0, h]]    # + a full-image polygon
    inst_path.write_text(json.dumps(inst))
    m = load_split(root, rows[0]["split"])[0].mask()
    assert np.array_equal(m, 1 - rows[0]["mask"])              # covered twice -> background


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refer_pickle_is_restricted(tmp_path: Path, rows: list[dict]) -> None:
    root = write_refer(rows[:2], tmp_path / "refer")
    path = root / "risbench" / "refs(unc).p"
    refs = pickle.loads(path.read_bytes())
    refs[0]["payload"] = Evil()
    path.write_bytes(pickle.dumps(refs))
    with pytest.raises(pickle.UnpicklingError, match="only plain"):
        load_split(root, rows[0]["split"])


def test_native_refsegrs_style_names(tmp_path: Path, rows: list[dict]) -> None:
    from PIL import Image

    root = tmp_path / "refsegrs"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(rows[0]["image"]).save(root / "images" / "12.tif")
    Image.fromarray((rows[0]["mask"] * 255).astype(np.uint8)).save(root / "masks" / "12.tif")
    (root / "output_phrase_test.txt").write_text(f"12 {rows[0]['expression']}\n")
    s = load_split(root, "test")[0]
    assert s.expression == rows[0]["expression"] and np.array_equal(s.mask(), rows[0]["mask"])


def test_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an export"):
        load_split(tmp_path, "train")


def test_shuffle_control_keeps_images_and_breaks_links(small_export: Path) -> None:
    samples = load_split(small_export, "train") + load_split(small_export, "val")
    shuffled = shuffle_expressions(samples, seed=3)
    assert [s.mask_src for s in shuffled] == [s.mask_src for s in samples]
    assert sorted(s.expression for s in shuffled) == sorted(s.expression for s in samples)
    multi = multi_object_images(samples)
    assert multi
    for a, b in zip(samples, shuffled):
        assert b.expression != a.expression or sum(s.expression == a.expression for s in samples) > 1
        if a.image_id in multi:                                # permuted inside the image
            assert b.expression in {s.expression for s in samples if s.image_id == a.image_id}


def test_rotate_masks_and_subsets(small_export: Path) -> None:
    samples = load_split(small_export, "train")
    rot = rotate_masks(samples)
    assert rot[0].mask_src is samples[1].mask_src and rot[-1].mask_src is samples[0].mask_src
    sub = subset_by_images(samples, 5, seed=0)
    ids = {s.image_id for s in sub}
    assert all(sum(s.image_id == i for s in sub) == sum(s.image_id == i for s in samples) for i in ids)


def test_dataset_resizes_with_nearest_masks(small_export: Path) -> None:
    samples = load_split(small_export, "val")[:2]
    ds = RefSegDataset(samples, 64)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
    assert set(item["mask"].unique().tolist()) <= {0, 1}


# ----------------------------------------------------------------------------- untrusted paths
ESCAPES = ("absolute", "dotdot", "symlink")


def _secret(tmp_path: Path, rows: list[dict]) -> Path:
    from PIL import Image

    (tmp_path / "outside").mkdir(exist_ok=True)
    path = tmp_path / "outside" / "secret.png"
    Image.fromarray(rows[0]["image"]).save(path)            # a readable image: were it opened, it would load
    return path


@pytest.mark.parametrize("how", ESCAPES)
def test_refer_file_name_outside_the_dataset_is_refused(tmp_path: Path, rows: list[dict], how: str) -> None:
    import json

    from risbench_builder.crobim.data import DatasetRefused

    root = write_refer(rows[:2], tmp_path / "refer")
    secret = _secret(tmp_path, rows)
    inst_path = root / "risbench" / "instances.json"
    inst = json.loads(inst_path.read_text())
    im = inst["images"][-1]
    if how == "absolute":
        im["file_name"] = str(secret)
    elif how == "dotdot":
        im["file_name"] = "../../../../outside/secret.png"
    else:
        (root / "images" / "risbench" / "JPEGImages" / im["file_name"]).unlink()
        (root / "images" / "risbench" / "JPEGImages" / im["file_name"]).symlink_to(secret)
    inst_path.write_text(json.dumps(inst))
    with pytest.raises(DatasetRefused) as info:
        load_split(root, rows[0]["split"])
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in msg
    assert str(inst_path) in msg and repr(im["file_name"]) in msg and "refusing this dataset" in msg


@pytest.mark.parametrize("how", ESCAPES)
def test_native_name_outside_the_dataset_is_refused(tmp_path: Path, rows: list[dict], how: str) -> None:
    from risbench_builder.crobim.data import DatasetRefused

    root = write_native(rows[:2], tmp_path / "native")
    secret = _secret(tmp_path, rows)
    phrases = next(root.glob("output_phrase_*.txt"))
    split = phrases.stem[len("output_phrase_"):]
    name, expr = phrases.read_text().splitlines()[0].split(" ", 1)
    bad = {"absolute": str(secret), "dotdot": "../../outside/secret.png", "symlink": name}[how]
    if how == "symlink":
        (root / "mask" / name).unlink()
        (root / "mask" / name).symlink_to(secret)
    else:
        phrases.write_text(f"{bad} {expr}\n")
    with pytest.raises(DatasetRefused, match="refusing this dataset") as info:
        load_split(root, split)
    assert str(phrases) in str(info.value) and repr(bad) in str(info.value)


@pytest.mark.parametrize("how", ESCAPES)
def test_hf_path_without_bytes_outside_the_dataset_is_refused(tmp_path: Path, rows: list[dict], how: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from risbench_builder.crobim.data import DatasetRefused
    from tests.crobim.exports import write_hf

    root = write_hf(rows[:2], tmp_path / "hf")
    secret = _secret(tmp_path, rows)
    shard = sorted((root / "data").glob(f"{rows[0]['split']}-*.parquet"))[0]
    table = pq.read_table(shard)
    cells = table.to_pylist()
    bad = {"absolute": str(secret), "dotdot": "../outside/secret.png", "symlink": "linked.png"}[how]
    if how == "symlink":
        (root / "linked.png").symlink_to(secret)
    cells[0]["image"] = {"bytes": None, "path": bad}
    pq.write_table(pa.Table.from_pylist(cells, schema=table.schema), shard)
    with pytest.raises(DatasetRefused, match="refusing this dataset") as info:
        load_split(root, rows[0]["split"])
    assert str(shard) in str(info.value) and repr(bad) in str(info.value)


def test_paths_inside_the_dataset_still_load(tmp_path: Path, rows: list[dict]) -> None:
    import json

    root = write_refer(rows[:2], tmp_path / "refer")
    image_dir = root / "images" / "risbench" / "JPEGImages"
    inst_path = root / "risbench" / "instances.json"
    inst = json.loads(inst_path.read_text())
    (image_dir / "sub").mkdir()
    im = inst["images"][0]
    (image_dir / im["file_name"]).rename(image_dir / "sub" / im["file_name"])
    (image_dir / im["file_name"]).symlink_to(Path("sub") / im["file_name"])   # a link inside: fine
    inst_path.write_text(json.dumps(inst))
    got = load_split(root, rows[0]["split"])
    assert got and all(np.asarray(s.image()).shape[2] == 3 for s in got)
