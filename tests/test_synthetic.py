"""Synthetic sources: determinism, truth masks, loose boxes and the real-format quirks."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.placeholders import write_vrsbench_placeholders
from risbench_builder import masks
from risbench_builder import synthetic as syn
from risbench_builder.config import BoxNoiseConfig, SyntheticConfig
from risbench_builder.sources.base import RISBENCH_CLASSES, scene_id_from_name
from tests.data.dior.data import generate as generate_dior
from tests.data.dior_rsvg.data import generate as generate_dior_rsvg
from tests.data.dota.data import generate as generate_dota
from tests.data.vrsbench.data import generate as generate_vrsbench

BOXY = {"tennis-court", "basketball-court", "soccer-ball-field", "expressway-service-area",
        "swimming-pool", "vehicle"}
ROUND = {"storage-tank", "roundabout"}
REL_SIZES = {"", "larger", "largeest", "smaller", "smallest"}
REL_POSITIONS = {"", "top-most", "bottom-most", "left-most", "right-most"}
POSITIONS = {p for row in syn.GRID_POSITIONS for p in row}


def signed_area(quad: np.ndarray) -> float:
    """Shoelace in image coordinates: > 0 means clockwise on screen."""
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@pytest.fixture(scope="module")
def scenes() -> list[syn.Scene]:
    return [syn.render_scene(np.random.default_rng(seed)) for seed in range(10)]


@pytest.fixture(scope="module")
def vrs(tmp_path_factory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("vrs")
    info = generate_vrsbench(base / "vrsbench")
    return base / "vrsbench", base / "vrsbench_truth", info


def annotations(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("Annotations_*/*.json"))]


# ------------------------------------------------------------------ scenes
def test_scene_objects_are_well_formed(scenes: list[syn.Scene]) -> None:
    for scene in scenes:
        assert scene.image.shape == (512, 512, 3) and scene.image.dtype == np.uint8
        for o in scene.objects:
            assert o.category in RISBENCH_CLASSES
            assert o.mask.dtype == np.uint8 and o.mask.shape == (512, 512) and o.mask.sum() >= 30
            assert o.quad.shape == (4, 2) and signed_area(o.quad) > 0          # clockwise, DOTA
            assert o.position in POSITIONS and o.rel_position in REL_POSITIONS
            assert o.size in {"", "small", "large"} and o.rel_size in {"", "larger", "largest", "smaller", "smallest"}
            assert o.category != "vehicle" or o.size == ""
            assert o.is_unique == (sum(q.category == o.category for q in scene.objects) == 1)
            assert o.colour


def test_at_least_six_classes_in_a_small_batch(scenes: list[syn.Scene]) -> None:
    assert len({o.category for s in scenes for o in s.objects}) >= 6


def test_truth_masks_match_their_objects(scenes: list[syn.Scene]) -> None:
    checked = 0
    for scene in scenes:
        stack = np.stack([o.mask for o in scene.objects]).astype(np.int32)
        assert stack.sum(axis=0).max() <= 1                  # visible masks never overlap
        for o in scene.objects:
            quad = masks.rasterize_polygon(o.quad, 512, 512)
            assert (o.mask & quad).sum() / o.mask.sum() >= 0.97
            if o.occluded or o.truncated:
                continue
            iou = masks.mask_iou(o.mask, quad)
            if o.category in BOXY:
                assert iou >= 0.85, (o.category, iou)
                checked += 1
            elif o.category in ROUND:
                assert 0.6 <= iou <= 0.9, (o.category, iou)          # pi/4 for a disc
    assert checked >= 5


def test_occlusion_removes_the_occluders_pixels() -> None:
    occluded = [o for seed in range(40) for o in syn.render_scene(np.random.default_rng(seed)).objects
                if o.occluded and not o.truncated]
    assert occluded, "no partly hidden object in 40 scenes"
    for o in occluded:
        assert 0.5 <= o.visible_fraction < 0.98
        assert o.mask.sum() < masks.rasterize_polygon(o.quad, 512, 512).sum()


def test_render_scene_is_deterministic() -> None:
    a, b = (syn.render_scene(np.random.default_rng(42)) for _ in range(2))
    assert np.array_equal(a.image, b.image)
    assert [o.category for o in a.objects] == [o.category for o in b.objects]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects))


def test_vrsbench_files_do_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    cfg = SyntheticConfig(seed=5, scenes=3, patches_per_scene=2)

    def tree(workers: int) -> tuple[dict[str, bytes], dict]:
        root = tmp_path / f"w{workers}"
        info = syn.write_vrsbench(root / "vrsbench", cfg, root / "truth", workers=workers)
        files = {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}
        return files, {k: v for k, v in info.items() if k not in ("root", "truth_dir")}

    serial, pooled = tree(0), tree(2)
    assert len(serial[0]) == 2 * 6 + 2                      # image + annotation per patch, eval file, truth
    assert serial == pooled


def test_colour_names() -> None:
    assert syn.colour_name((235, 235, 232)) == "white"
    assert syn.colour_name((120, 120, 124)) == "gray"
    assert syn.colour_name((170, 40, 36)) == "red"
    assert syn.colour_name((40, 72, 150)) == "blue"
    assert syn.colour_name((74, 132, 64)) == "green"


# ------------------------------------------------------------------ loose boxes
def test_box_noise_moves_boxes_but_keeps_them_usable(scenes: list[syn.Scene]) -> None:
    rng = np.random.default_rng(0)
    quads = [o.quad for s in scenes for o in s.objects]
    ious = [masks.box_iou(masks.polygon_box(syn.noisy_quad(q, BoxNoiseConfig(), rng)), masks.polygon_box(q))
            for q in quads]
    assert 0.4 < float(np.mean(ious)) < 0.95
    still = syn.noisy_quad(quads[0], BoxNoiseConfig(shift=0, scale=0, aspect=0), rng)
    assert np.allclose(still, quads[0])


def test_written_boxes_are_loose_versions_of_the_truth(vrs) -> None:
    root, truth_dir, _ = vrs
    truth = syn.load_truth(truth_dir)
    ious, covered = [], []
    for doc in annotations(root):
        for obj in doc["objects"]:
            row = truth[(doc["image"], obj["obj_id"])]
            noisy = masks.polygon_box(np.array(obj["obj_corner"]).reshape(4, 2) * 512)
            ious.append(masks.box_iou(noisy, masks.polygon_box(row["quad"])))
            m = masks.decode(row["rle"])
            covered.append((m & masks.rasterize_box(noisy, 512, 512)).sum() / m.sum())
    assert 0.4 < float(np.mean(ious)) < 0.95
    assert float(np.mean(covered)) > 0.85


# ------------------------------------------------------------------ VRSBench files
def test_vrsbench_layout_and_nested_val_images(vrs) -> None:
    root, _, info = vrs
    assert not list((root / "Images_val").glob("*.png"))
    nested = sorted((root / "Images_val" / "Images_val").glob("*.png"))
    train = sorted((root / "Images_train").glob("*.png"))
    assert len(nested) == info["images"]["val"] > 0 and len(train) == info["images"]["train"] > 0
    with Image.open(nested[0]) as im:
        assert im.size == (512, 512) and im.mode == "RGB"
    name = re.compile(r"^(P\d{4}|\d{5})_\d{4}\.png$")
    splits: dict[str, set[str]] = {}
    for split in ("train", "val"):
        for path in (root / f"Annotations_{split}").glob("*.json"):
            doc = json.loads(path.read_text())
            assert doc["image"] == path.stem + ".png" and name.match(doc["image"])
            assert set(doc) == {"image", "caption", "objects", "qa_pairs"} and 1 <= len(doc["objects"]) <= 5
            splits.setdefault(scene_id_from_name(doc["image"]), set()).add(split)
    assert all(len(s) == 1 for s in splits.values())          # a scene never straddles splits
    assert any(k.startswith("P") for k in splits) and any(not k.startswith("P") for k in splits)


def test_vrsbench_object_schema_and_corner_conventions(vrs) -> None:
    root, _, _ = vrs
    keys = {"obj_id", "referring_sentence", "obj_cls", "obj_corner", "obj_coord", "is_unique",
            "obj_position", "obj_rel_position", "obj_size", "obj_rel_size", "flag"}
    for doc in annotations(root):
        for obj in doc["objects"]:
            assert set(obj) == keys and obj["flag"] is False and obj["obj_cls"] in RISBENCH_CLASSES
            px = np.array(obj["obj_corner"]) * 512
            assert np.allclose(px, np.round(px), atol=1e-9)          # x 512 gives pixel corners
            x0, y0, x1, y1 = px[0::2].min(), px[1::2].min(), px[0::2].max(), px[1::2].max()
            if not doc["image"].startswith("P"):                     # DIOR on VRSBench main: HBB
                assert px.tolist() == [x0, y0, x1, y0, x1, y1, x0, y1]
            assert obj["obj_coord"] == [round(max(x0, 0) / 512, 2), round(max(y0, 0) / 512, 2),
                                        round(x1 / 512, 2), round(y1 / 512, 2)]
            assert obj["obj_rel_size"] in REL_SIZES and obj["obj_rel_position"] in REL_POSITIONS
            assert obj["obj_position"] in POSITIONS
            assert obj["obj_size"] in {"", "small", "large"}
            assert obj["obj_cls"] != "vehicle" or obj["obj_size"] == ""
        for qa in doc["qa_pairs"]:
            assert set(qa) == {"ques_id", "question", "answer", "type"}


def test_referring_sentences_tell_objects_apart(vrs) -> None:
    root, _, _ = vrs
    for doc in annotations(root):
        for obj in doc["objects"]:
            s = obj["referring_sentence"]
            assert s[0].isupper() and s.endswith(".") and "  " not in s
            if not obj["is_unique"]:
                assert obj["obj_position"] or obj["obj_rel_position"] or obj["obj_rel_size"]
            else:
                assert obj["obj_rel_position"] == ""


def test_eval_records_follow_the_notebook(vrs) -> None:
    root, _, info = vrs
    records = json.loads((root / "VRSBench_EVAL_referring.json").read_text())
    val = {(d["image"], o["referring_sentence"]): o
           for d in (json.loads(p.read_text()) for p in (root / "Annotations_val").glob("*.json"))
           for o in d["objects"]}
    assert len(records) == len(val) == info["eval_records"]
    for k, rec in enumerate(records):
        assert set(rec) == {"image_id", "question", "ground_truth", "dataset", "question_id", "type", "unique",
                            "obj_corner", "obj_cls", "obj_ids", "size_group"}
        assert rec["question_id"] == k and rec["dataset"] == "RSBench" and rec["type"] == "ref"
        assert rec["obj_ids"] == [0]
        obj = val[(rec["image_id"], rec["question"])]
        assert rec["unique"] == obj["is_unique"] and rec["size_group"] == obj["obj_size"]
        assert rec["obj_corner"] == obj["obj_corner"] and rec["obj_cls"] == obj["obj_cls"]
        c = rec["obj_corner"]
        hbb = [min(c[0::2]), min(c[1::2]), max(c[0::2]), max(c[1::2])]
        tokens = [int(np.floor(100 * min(max(v, 0.0), 1.0))) for v in hbb]
        assert rec["ground_truth"] == "{" + "".join(f"<{t}>" for t in tokens) + "}"


def test_truth_file_matches_annotations(vrs) -> None:
    root, truth_dir, _ = vrs
    truth = syn.load_truth(truth_dir)
    expected = {(d["image"], o["obj_id"]) for d in annotations(root) for o in d["objects"]}
    assert set(truth) == expected
    for (image, _), row in truth.items():
        m = masks.decode(row["rle"])
        assert m.shape == (512, 512) and m.sum() >= 30
        assert tuple(row["box_xyxy"]) == masks.bbox_xyxy(row["rle"])
        assert len(row["quad"]) == 4 and row["category"] in RISBENCH_CLASSES
    assert not (root / "masks.jsonl").exists() and "rle" not in (root / "VRSBench_EVAL_referring.json").read_text()


def test_write_vrsbench_is_byte_identical(tmp_path: Path) -> None:
    cfg = SyntheticConfig(seed=1, scenes=2, patches_per_scene=2)
    a, b = tmp_path / "a" / "vrsbench", tmp_path / "b" / "vrsbench"
    syn.write_vrsbench(a, cfg)
    syn.write_vrsbench(b, cfg)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix == ".png":
            assert np.array_equal(np.asarray(Image.open(a / rel)), np.asarray(Image.open(b / rel)))
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (tmp_path / "a" / "vrsbench_truth" / "masks.jsonl").read_bytes() == \
        (tmp_path / "b" / "vrsbench_truth" / "masks.jsonl").read_bytes()


def test_generate_sources_skips_when_config_unchanged(tmp_path: Path) -> None:
    cfg = SyntheticConfig(seed=2, scenes=2, patches_per_scene=1)
    first = syn.generate_sources(tmp_path, cfg)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert syn.generate_sources(tmp_path, cfg) == first
    assert stamp == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert first["vrsbench"]["root"] == "vrsbench" and (tmp_path / "vrsbench_truth" / "masks.jsonl").is_file()
    other = syn.generate_sources(tmp_path, cfg.model_copy(update={"seed": 3}))
    assert other["config_hash"] != first["config_hash"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == other


# ------------------------------------------------------------------ DOTA, DIOR, DIOR-RSVG
def test_dota_tree_quirks(tmp_path: Path) -> None:
    info = generate_dota(tmp_path)
    files = sorted((tmp_path / "labelTxt").glob("*.txt"))
    assert len(files) == info["images"] == len(list((tmp_path / "images").glob("*.png")))
    raw = {p.name: p.read_bytes() for p in files}
    assert all(b"\n" not in data.replace(b"\r\n", b"") for data in raw.values())      # CRLF only
    assert [n for n, d in raw.items() if not d] == ["P0004.txt"] == [Path(p).name for p in info["empty_label_files"]]
    headed = [n for n, d in raw.items() if d.startswith(b"imagesource:GoogleEarth\r\ngsd:")]
    assert headed and len(headed) < len(raw)
    rows = [line.split() for d in raw.values() for line in d.decode().splitlines() if len(line.split()) == 10]
    assert len(rows) == info["objects"] > 0
    assert {r[8] for r in rows} <= set(syn.DOTA_NAMES.values()) | {"large-vehicle"}
    assert {r[9] for r in rows} <= {"0", "1"}
    floats = [all("." in v for v in r[:8]) for r in rows]
    assert any(floats) and not all(floats)


def test_dior_and_dior_r_xml(tmp_path: Path) -> None:
    info = generate_dior(tmp_path)
    hbb = sorted((tmp_path / "Annotations" / "Horizontal Bounding Boxes").glob("*.xml"))
    obb = sorted((tmp_path / "Annotations" / "Oriented Bounding Boxes").glob("*.xml"))
    assert [p.name for p in hbb] == [p.name for p in obb] and len(hbb) == sum(info["images"].values())
    listed = {s: (tmp_path / "ImageSets" / "Main" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(sum(listed.values(), [])) == [p.stem for p in hbb]
    for stem in listed["test"]:
        assert (tmp_path / "JPEGImages-test" / f"{stem}.jpg").is_file() and int(stem) >= 11726
    for stem in listed["train"] + listed["val"]:
        assert (tmp_path / "JPEGImages-trainval" / f"{stem}.jpg").is_file()
    names = set()
    for path in hbb:
        root = ET.parse(path).getroot()
        assert root.findtext("source/database") == "DIOR" and root.findtext("filename") == path.stem + ".jpg"
        for obj in root.iter("object"):
            assert obj.find("difficult") is None and obj.find("truncated") is None
            box = [int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert box[0] < box[2] and box[1] < box[3]
            names.add(obj.findtext("name"))
    assert names <= set(syn.DIOR_NAMES.values()) and "Expressway-Service-area" in names
    for path in obb:
        root = ET.parse(path).getroot()
        assert root.findtext("source/database") == "Unknown"
        for obj in root.iter("object"):
            assert [c.tag for c in obj] == ["type", "name", "pose", "truncated", "difficult", "robndbox", "angle"]
            assert obj.findtext("type") == "robndbox" and obj.find("robndbox/angle") is None
            assert len(list(obj.find("robndbox"))) == 8


def test_dior_rsvg_global_indices(tmp_path: Path) -> None:
    info = generate_dior_rsvg(tmp_path, tmp_path.parent / (tmp_path.name + "_truth"))
    descriptions = []
    for path in sorted((tmp_path / "Annotations").glob("*.xml")):
        for obj in ET.parse(path).getroot().findall("object"):
            assert [c.tag for c in obj] == ["name", "pose", "bndbox", "description"]
            descriptions.append(obj[3].text)
    splits = {s: [int(x) for x in (tmp_path / f"{s}.txt").read_text().split()] for s in ("train", "val", "test")}
    everything = sorted(sum(splits.values(), []))
    assert everything == list(range(len(descriptions))) == list(range(info["objects"]))
    assert all(splits.values())
    truth = syn.load_truth(tmp_path.parent / (tmp_path.name + "_truth"))
    assert sorted(r["global_index"] for r in truth.values()) == everything


def test_placeholder_tree_counts(tmp_path: Path) -> None:
    info = write_vrsbench_placeholders(tmp_path, n_files=30, objects_total=52, seed=0)
    docs = annotations(tmp_path)
    assert len(docs) == 30 and sum(len(d["objects"]) for d in docs) == 52
    assert all(1 <= len(d["objects"]) <= 5 for d in docs)
    images = [*(tmp_path / "Images_train").glob("*.png"), *(tmp_path / "Images_val" / "Images_val").glob("*.png")]
    assert len(images) == 30 and sum(info["images"].values()) == 30
    with Image.open(images[0]) as im:
        assert im.size == (512, 512)
    val_objects = sum(len(json.loads(p.read_text())["objects"]) for p in (tmp_path / "Annotations_val").glob("*.json"))
    assert info["eval_records"] == val_objects == info["objects"]["val"]
    with pytest.raises(ValueError, match="objects_total"):
        write_vrsbench_placeholders(tmp_path / "bad", n_files=10, objects_total=60)
