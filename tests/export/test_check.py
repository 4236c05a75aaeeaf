"""`risbench check`: passes on our exports and third-party layouts, fails precisely on corruption."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from risbench_builder.cli import app
from risbench_builder.export.check import KINDS, check_path, detect, rle_counts, rle_failures, rle_string
from risbench_builder.export.refer import dump_pickle
from risbench_builder import masks


def kinds(path: Path) -> dict[str, set[str]]:
    return {r.format: set(r.kinds()) for r in check_path(path, workers=0)}


def test_our_exports_pass_and_are_detected(built) -> None:
    reports = check_path(built.ws.path, workers=0)                 # a workspace: every export inside
    assert [r.format for r in reports] == ["coco", "hf", "native", "refer"]
    for r in reports:
        assert r.ok, r.render()
        # hf carries the Hub's split names, the other layouts the catalog's
        val = "validation" if r.format == "hf" else "val"
        assert r.counts["triplets"] > 0 and set(r.counts["splits"]) == {"train", val, "test"}
    assert detect(built.ws.exports / "refer") == "refer" and detect(built.ws.path) is None


def test_an_hf_export_from_before_the_hub_names_still_passes(exports_copy: Path) -> None:
    """An older export: ``val`` shards and bbox declared as datasets>=4 ``List``: it passes, with notes."""
    hf = exports_copy / "hf"
    manifest = json.loads((hf / "manifest.json").read_text())
    for shard in sorted((hf / "data").glob("validation-*.parquet")):
        table = pq.read_table(shard)
        meta = table.schema.metadata[b"huggingface"].replace(b'"_type": "Sequence"', b'"_type": "List"')
        old = shard.with_name(shard.name.replace("validation-", "val-"))
        pq.write_table(table.replace_schema_metadata({b"huggingface": meta}), old)
        shard.unlink()
        rel_new, rel_old = f"data/{shard.name}", f"data/{old.name}"
        entry = manifest["files"].pop(rel_new)
        manifest["files"][rel_old] = {**entry, "sha256": hashlib.sha256(old.read_bytes()).hexdigest(),
                                      "bytes": old.stat().st_size}
    manifest["counts"]["splits"]["val"] = manifest["counts"]["splits"].pop("validation")
    card = (hf / "README.md").read_text()
    (hf / "README.md").write_text(card.replace("validation", "val").replace("sequence: float32", "list: float32"))
    manifest["files"]["README.md"]["sha256"] = hashlib.sha256((hf / "README.md").read_bytes()).hexdigest()
    manifest["files"]["README.md"]["bytes"] = (hf / "README.md").stat().st_size
    (hf / "manifest.json").write_text(json.dumps(manifest))
    (report,) = check_path(hf, workers=0)
    assert report.ok, report.render()
    assert set(report.counts["splits"]) == {"train", "val", "test"}
    notes = " ".join(report.notes)
    assert "datasets<4 cannot load" in notes and "data/val-*" in notes


def test_pool_and_inline_give_the_same_verdict(built) -> None:
    inline = check_path(built.ws.exports / "native", workers=0)[0]
    pooled = check_path(built.ws.exports / "native", workers=2)[0]
    assert inline.ok and pooled.ok and inline.counts == pooled.counts


def _rewrite_phrase(root: Path, name: str, expression: bytes) -> None:
    """Replace the expression of ``name`` in whichever phrase file lists it."""
    for path in root.glob("output_phrase_*.txt"):
        lines = path.read_bytes().split(b"\n")
        for i, line in enumerate(lines):
            if line.split(b" ", 1)[0] == name.encode():
                lines[i] = name.encode() + b" " + expression
                path.write_bytes(b"\n".join(lines))
                return
    raise AssertionError(name)


def test_corrupted_native_copy_fails_with_every_kind_named(exports_copy: Path) -> None:
    root = exports_copy / "native"
    index = list(csv.DictReader(open(root / "index.csv", encoding="utf-8")))
    names = [r["file_name"] for r in index if r["split"] != "val"]
    val_scene = next(r["scene_id"] for r in index if r["split"] == "val")
    # 1 unreadable image: truncate one image file (break its hard link first)
    victim = root / "img_rgb" / names[0]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) // 3])
    # 2 grey mask values, 3 wrong mask size, 4 empty mask
    Image.fromarray(np.full((512, 512), 128, np.uint8)).save(root / "mask" / names[1])
    Image.fromarray(np.full((100, 100), 255, np.uint8)).save(root / "mask" / names[2])
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(root / "mask" / names[3])
    # 5 control character, 6 not NFC, 7 invalid UTF-8, 8 missing mask file
    _rewrite_phrase(root, names[0], "the plane\x07 on the left".encode())
    _rewrite_phrase(root, names[1], "the cafe\u0301 roof".encode())
    _rewrite_phrase(root, names[2], b"the \xff\xfe ship")
    (root / "mask" / names[4]).unlink()
    # 9 duplicate file name + 10 image in two splits: list a train file in the val phrases too
    with open(root / "output_phrase_val.txt", "ab") as f:
        f.write(f"{names[5]} a leaked line\n".encode())
    # 11 scene in two splits, 12 unknown category: edit the index
    rows = list(csv.reader(open(root / "index.csv", encoding="utf-8")))
    for row in rows[1:]:
        if row[0] == names[6]:
            row[4] = val_scene
        if row[0] == names[7]:
            row[5] = "spaceship"
    with open(root / "index.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    # 13 a file the manifest does not list
    (root / "notes.txt").write_text("hello")
    report = check_path(root, workers=0)[0]
    found = set(report.kinds())
    expected = {"unreadable_image", "mask_not_binary", "mask_size_mismatch", "empty_mask",
                "expression_control_char", "expression_not_nfc", "expression_not_utf8", "missing_file",
                "duplicate_id", "split_image_overlap", "split_scene_overlap", "unknown_category",
                "manifest_unlisted_file", "manifest_sha256", "manifest_count"}
    assert expected <= found, report.render()
    assert found <= set(KINDS)
    text = report.render()
    by_kind = {f.kind: f for f in report.failures}
    assert names[1] in by_kind["mask_not_binary"].where and "128" in by_kind["mask_not_binary"].detail
    assert "100x100" in by_kind["mask_size_mismatch"].detail
    assert "U+0007" in by_kind["expression_control_char"].detail
    assert "notes.txt" in by_kind["manifest_unlisted_file"].where
    assert "FAILED" in text and "split_scene_overlap" in text


def test_corrupted_refer_copy_fails_with_every_kind_named(exports_copy: Path) -> None:
    root = exports_copy / "refer"
    refs_path = root / "risbench" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    inst = json.loads((root / "risbench" / "instances.json").read_text())
    anns = inst["annotations"]
    anns[0]["segmentation"] = anns[0]["segmentation"][0]                         # bare RLE dict
    anns[1]["segmentation"][0]["counts"] = anns[1]["segmentation"][0]["counts"][:-3]   # broken RLE
    empty = masks.encode(np.zeros((512, 512), np.uint8))
    anns[2]["segmentation"] = [empty]                                            # empty mask
    anns[3]["id"] = anns[4]["id"]                                                # duplicate ann id
    anns[5]["bbox"] = [10, 10, 5, 5]                                             # xywh-looking bbox
    anns[6]["categories_id"] = (anns[6]["category_id"] + 1) % 26                  # ids disagree
    inst["categories"][0]["name"] = "spaceship"                                  # not a RISBench class
    refs[0]["split"] = "testA"                                                   # not a REFER split
    del refs[1]["sent_ids"]                                                      # LAVT needs sent_ids
    refs[2]["ann_id"] = 10**6                                                    # dangling
    refs[3]["sentences"][0]["raw"] = "the ship\tnear the dock"                   # control character
    (root / "risbench" / "instances.json").write_text(json.dumps(inst))
    refs_path.write_bytes(pickle.dumps(refs, protocol=5))                        # protocol > 4
    report = check_path(root, workers=0)[0]
    found = set(report.kinds())
    expected = {"format_violation", "rle_roundtrip", "empty_mask", "duplicate_id", "unknown_category",
                "bad_split_name", "dangling_reference", "expression_control_char", "manifest_sha256",
                "manifest_count"}
    assert expected <= found, report.render()
    details = " | ".join(f.detail for f in report.failures if f.kind == "format_violation")
    for needle in ("bare RLE dict", "pickle protocol 5", "missing sent_ids", "x1,y1,x2,y2", "categories_id"):
        assert needle in details, needle


def test_corrupted_hf_and_coco_copies(exports_copy: Path) -> None:
    hf = exports_copy / "hf"
    shard = sorted((hf / "data").glob("validation-*.parquet"))[0]
    table = pq.read_table(shard)
    train_scene = pq.read_table(sorted((hf / "data").glob("train-*.parquet"))[0]).column("scene_id")[0].as_py()
    rows = table.to_pylist()
    rows[0]["scene_id"] = train_scene                                            # scene leak
    rows[1]["mask"]["bytes"] = b"not a png"                                      # unreadable mask
    rows[2]["triplet_id"] = rows[3]["triplet_id"]                                # duplicate id
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    (sorted((hf / "data").glob("test-*.parquet"))[0]).unlink()                   # manifest lists it
    coco = exports_copy / "coco"
    path = coco / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["expression"] = ""
    data["annotations"][1]["image_id"] = 10**6
    path.write_text(json.dumps(data))
    found = kinds(exports_copy)
    assert {"split_scene_overlap", "unreadable_mask", "duplicate_id", "manifest_missing_file",
            "card_mismatch", "manifest_count"} <= found["hf"]
    assert {"expression_empty", "dangling_reference", "manifest_sha256"} <= found["coco"]
    assert not found["native"] and not found["refer"]


def test_third_party_layouts_rrsisd_and_refsegrs(built, tmp_path: Path) -> None:
    # RRSIS-D as downloaded: rrsisd/ folder, DIOR category names, ids from the file number, no manifest
    src = built.ws.exports / "refer"
    rr = tmp_path / "refer_data"
    shutil.copytree(src / "images" / "risbench", rr / "images" / "rrsisd")
    (rr / "rrsisd").mkdir()
    inst = json.loads((src / "risbench" / "instances.json").read_text())
    dior = {"storage-tank": "storagetank", "tennis-court": "tenniscourt", "basketball-court": "basketballcourt",
            "expressway-service-area": "Expressway-Service-area", "ground-track-field": "groundtrackfield"}
    for c in inst["categories"]:
        c["name"] = dior.get(c["name"], c["name"])
    for im in inst["images"]:
        del im["scene_id"], im["source_image_id"]
    for a in inst["annotations"]:
        del a["category_id"]                                                     # real RRSIS-D: categories_id only
    (rr / "rrsisd" / "instances.json").write_text(json.dumps(inst))
    refs = pickle.loads((src / "risbench" / "refs(unc).p").read_bytes())
    for r in refs:
        del r["scene_id"], r["triplet_id"], r["mask_origin"]
    (rr / "rrsisd" / "refs(unc).p").write_bytes(dump_pickle(refs))
    report = check_path(rr, workers=0)[0]
    assert report.format == "refer" and report.ok, report.render()
    assert any("no manifest" in n for n in report.notes)
    # RefSegRS: images/<name>.tif, masks/<name>.tif, names without extension in the phrase files
    native = built.ws.exports / "native"
    rs = tmp_path / "RefSegRS"
    (rs / "images").mkdir(parents=True)
    (rs / "masks").mkdir()
    for split in ("train", "val", "test"):
        out = []
        for line in (native / f"output_phrase_{split}.txt").read_text().splitlines():
            name, expr = line.split(" ", 1)
            stem = name[:-4]
            Image.open(native / "img_rgb" / name).save(rs / "images" / f"{stem}.tif")
            Image.open(native / "mask" / name).save(rs / "masks" / f"{stem}.tif")
            out.append(f"{stem} {expr}\n")
        (rs / f"output_phrase_{split}.txt").write_text("".join(out))
    report = check_path(rs, workers=0)[0]
    assert report.format == "native" and report.ok, report.render()


def test_rle_run_parser_and_encoder_match_pycocotools() -> None:
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(3)
    for shape in ((37, 29), (512, 512), (1, 700)):
        for _ in range(15):
            m = (rng.random(shape) > rng.random()).astype(np.uint8)
            rle = masks.encode(m)
            runs = rle_counts(rle["counts"])
            assert runs is not None and runs.sum() == m.size
            assert rle_string(runs) == rle["counts"]                      # the canonical string back
            assert [f.kind for f in rle_failures(rle, shape, "x")] == ([] if m.any() else ["empty_mask"])
    assert rle_counts("\x7f") is None and rle_counts("1" + chr(48 + 0x20)) is None
    assert [f.kind for f in rle_failures({"size": [4, 4], "counts": "11"}, (4, 4), "x")] == ["rle_roundtrip"]
    # runs that pycocotools decodes, but that do not come back from encode(decode(...))
    zero_run = coco_mask.frPyObjects({"size": [4, 4], "counts": [2, 0, 3, 11]}, 4, 4)["counts"].decode()
    assert [f.kind for f in rle_failures({"size": [4, 4], "counts": zero_run}, (4, 4), "x")] == ["rle_roundtrip"]
    canonical = rle_string(np.array([5, 11]))                              # "5;": 5 zeros, 11 ones
    padded = "U0;"                                                          # 5 written in two chars
    assert rle_counts(padded).tolist() == rle_counts(canonical).tolist() == [5, 11]
    assert not rle_failures({"size": [4, 4], "counts": canonical}, (4, 4), "x")
    assert [f.kind for f in rle_failures({"size": [4, 4], "counts": padded}, (4, 4), "x")] == ["rle_roundtrip"]
    assert masks.encode(masks.decode({"size": [4, 4], "counts": padded}))["counts"] == canonical
    assert [f.kind for f in rle_failures({"size": [5, 4], "counts": canonical}, (4, 4), "x")][0] == "mask_size_mismatch"


def test_cli_check_exit_codes_and_report(built, exports_copy: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(built.ws.exports / "coco")])
    assert ok.exit_code == 0 and "OK" in ok.output
    (exports_copy / "native" / "mask" / sorted(p.name for p in (exports_copy / "native" / "mask").iterdir())[0]).unlink()
    out = tmp_path / "report.json"
    bad = runner.invoke(app, ["check", str(exports_copy / "native"), "--report", str(out)])
    assert bad.exit_code == 1 and "missing_file" in bad.output and "FAILED" in bad.output
    assert json.loads(out.read_text())[0]["failures_by_kind"]["missing_file"] == 1
    nothing = runner.invoke(app, ["check", str(tmp_path / "nowhere")])
    assert nothing.exit_code == 1 and "no such file" in nothing.output


# ----------------------------------------------------------------------------- untrusted paths
@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Real paths of every file opened through open() / io.open() (PIL, pathlib, csv, hashing)."""
    import builtins
    import io as io_module
    import os

    seen: list[str] = []
    real = builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            seen.append(os.path.realpath(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io_module, "open", spy)
    return seen


def _outside(tmp: Path, like: Path) -> Path:
    """A real, readable image outside the export, the size of ``like``: were it read, it would pass."""
    out = tmp / "outside"
    out.mkdir(exist_ok=True)
    with Image.open(like) as im:
        size = im.size
    path = out / "secret.png"
    Image.new("RGB", size, (200, 10, 10)).save(path)
    return path


def _symlink_out(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def _assert_escapes(report, secret: Path, opened: list[str], wheres: list[str]) -> None:
    import os

    escapes = [f for f in report.failures if f.kind == "path_escape"]
    for needle in wheres:
        assert any(needle in f.where for f in escapes), (needle, report.render())
    assert not any(p.startswith(os.path.realpath(secret.parent)) for p in opened), "a file outside was opened"
    st = secret.stat()
    assert (st.st_dev, st.st_ino) not in report.digests                     # never read, never hashed
    assert "path_escape" in KINDS and report.render().count("path_escape") >= 1


def test_refer_file_names_that_escape_are_refused_unread(exports_copy: Path, opened: list[str]) -> None:
    root = exports_copy / "refer"
    inst_path = root / "risbench" / "instances.json"
    inst = json.loads(inst_path.read_text())
    image_dir = root / "images" / "risbench" / "JPEGImages"
    ims = inst["images"]
    secret = _outside(exports_copy, image_dir / ims[0]["file_name"])
    ims[0]["file_name"] = str(secret)                                        # absolute
    ims[1]["file_name"] = "../../../../outside/secret.png"                   # resolves to the same file
    _symlink_out(image_dir / ims[2]["file_name"], secret)                    # a link out, name unchanged
    inst_path.write_text(json.dumps(inst))
    opened.clear()
    report = check_path(root, workers=0)[0]
    _assert_escapes(report, secret, opened, [f"image {ims[k]['id']} " for k in range(3)])
    details = " | ".join(f.detail for f in report.failures if f.kind == "path_escape")
    for needle in ("is an absolute path", "has a '..' component", "resolves outside the dataset folder"):
        assert needle in details, needle
    # the rest of the check went on: the other images were read, their annotations checked
    assert report.counts["triplets"] > 0 and "missing_file" not in report.kinds()


def test_native_names_that_escape_are_refused_unread(exports_copy: Path, opened: list[str]) -> None:
    root = exports_copy / "native"
    phrase = root / "output_phrase_train.txt"
    lines = phrase.read_text(encoding="utf-8").splitlines()
    names = [line.split(" ", 1)[0] for line in lines]
    secret = _outside(exports_copy, root / "img_rgb" / names[0])
    lines[0] = f"{secret} {lines[0].split(' ', 1)[1]}"                     # absolute
    lines[1] = f"../outside/secret.png {lines[1].split(' ', 1)[1]}"         # img_rgb/../outside is inside...
    lines[2] = f"../../outside/secret.png {lines[2].split(' ', 1)[1]}"      # ... this one is the file outside
    phrase.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _symlink_out(root / "img_rgb" / names[3], secret)                       # image linked out, mask fine
    _symlink_out(root / "mask" / names[4], secret)                          # mask linked out
    with open(root / "index.csv", "a", encoding="utf-8") as f:
        f.write("../../outside/secret.png,train,t,i,s,ship\n")
    opened.clear()
    report = check_path(root, workers=0)[0]
    _assert_escapes(report, secret, opened, [str(secret), "../outside/secret.png", "../../outside/secret.png",
                                             f"{names[3]} (image)", f"{names[4]} (mask)", "index.csv"])
    assert not any(f.kind == "missing_file" and "secret" in f.where for f in report.failures)
    assert report.counts["triplets"] == sum(1 for p in root.glob("output_phrase_*.txt")
                                            for line in p.read_text().splitlines() if line.strip())


def test_coco_file_names_and_manifest_entries_that_escape_are_refused_unread(exports_copy: Path,
                                                                           opened: list[str]) -> None:
    root = exports_copy / "coco"
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    ims = data["images"]
    secret = _outside(exports_copy, root / "images" / ims[0]["file_name"])
    ims[0]["file_name"] = str(secret)
    ims[1]["file_name"] = "../../outside/secret.png"
    _symlink_out(root / "images" / ims[2]["file_name"], secret)
    path.write_text(json.dumps(data))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["../outside/secret.png"] = {"sha256": "0" * 64, "bytes": 1}
    manifest["files"][str(secret)] = {"sha256": "0" * 64, "bytes": 1}
    (root / "manifest.json").write_text(json.dumps(manifest))
    opened.clear()
    report = check_path(root, workers=0)[0]
    _assert_escapes(report, secret, opened, [f"image {ims[k]['id']} " for k in range(3)]
                    + ["manifest.json '../outside", f"manifest.json '{secret}"])
    symlinked = f"images/{ims[2]['file_name']}"                              # listed in the manifest too
    assert any(f.kind == "path_escape" and symlinked in f.where for f in report.failures)
    assert report.counts["triplets"] > 0


def test_hf_image_paths_without_bytes_that_escape_are_flagged(exports_copy: Path, opened: list[str]) -> None:
    hf = exports_copy / "hf"
    shard = sorted((hf / "data").glob("train-*.parquet"))[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["image"] = {"bytes": None, "path": "/etc/passwd"}
    rows[1]["mask"] = {"bytes": None, "path": "../../secret.png"}
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    report = check_path(hf, workers=0)[0]
    escapes = {f.where.rsplit(" ", 1)[-1]: f.detail for f in report.failures if f.kind == "path_escape"}
    assert "is an absolute path" in escapes["image"] and "has a '..' component" in escapes["mask"]
    assert "/etc/passwd" not in opened


def test_malformed_segments_are_failures_not_crashes(exports_copy: Path) -> None:
    root = exports_copy / "refer"
    inst_path = root / "risbench" / "instances.json"
    inst = json.loads(inst_path.read_text())
    anns = inst["annotations"]
    first = {a["image_id"] for a in anns[:3]}
    far = next(a for a in anns if a["image_id"] not in first)               # an image of its own
    anns[0]["segmentation"] = [[0, 0, 10, 0, 10, float("nan"), 0, 10]]      # NaN polygon (JSON allows NaN)
    anns[1]["segmentation"] = [[0, 0, 1e300, 0, 1e300, 1e300]]              # beyond masks.MAX_COORD
    anns[2]["segmentation"] = [{"size": [512, 512], "counts": [512 * 256, 512 * 256]}]  # uncompressed RLE
    huge = next(im for im in inst["images"] if im["id"] == far["image_id"])
    huge["height"] = huge["width"] = 2**20                                    # its annotations claim 2**40 pixels
    far["segmentation"] = [{"size": [2**20, 2**20], "counts": [2**40 - 1, 1]}]    # well formed, too big
    inst_path.write_text(json.dumps(inst))
    report = check_path(root, workers=0)[0]
    unreadable = {f.where.split(" segment")[0]: f.detail for f in report.failures if f.kind == "unreadable_mask"}
    assert "non-finite" in unreadable[f"risbench/instances.json annotation {anns[0]['id']}"]
    assert "MAX_COORD" in unreadable[f"risbench/instances.json annotation {anns[1]['id']}"]
    assert "MAX_MASK_PIXELS" in unreadable[f"risbench/instances.json annotation {far['id']}"]
    assert f"annotation {anns[2]['id']}" not in " ".join(unreadable)      # decodes (it used to crash check)
