"""Fake RefSegRS and RISBench-native trees for tests, with planted defects (torchgeo style).

RefSegRS (zhu-xlab/rrsis, read by FIANet ``data/refsegrs_refer_bert.py``)::

    images/<name>.tif                    RGB
    masks/<name>.tif                     grey 0/255
    output_phrase_{train,val,test}.txt   "<name> <expression>", names WITHOUT extension

RefSegRS tiles are 512x512; 64 here. The text files carry the quirks of hand-made files: the
train file has CRLF line ends, the val file a blank last line and trailing spaces, the test file
no final newline.

RISBench native (the original release as RSRefSeg2 reads it)::

    img_rgb/<split>_<imgIdx>_<objIdx>.png   one file per referent (the same bytes per imgIdx)
    mask/<same name>.png                    0/255, one of them 3-channel replicated
    output_phrase_{train,val,test}.txt      "<file_name.png> <expression>"; val lines name train_* files
    index.csv                               only with ``index=True`` (what our own export adds)

Both functions return ``{defect kind: [(image file name, expression), ...]}`` (the file name as
it is on disk, so ``10001.tif`` for RefSegRS's ``10001``); a pair repeats when two lines share it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

Rect = tuple[float, float, float, float]          # x1, y1, x2, y2 as fractions of the side
FOUR_BLOBS: list[Rect] = [(0.1, 0.1, 0.2, 0.2), (0.7, 0.1, 0.8, 0.2), (0.1, 0.7, 0.2, 0.8), (0.7, 0.7, 0.8, 0.8)]


def _mask(parts: list[Rect], size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for x1, y1, x2, y2 in parts:
        mask[int(y1 * size):int(y2 * size), int(x1 * size):int(x2 * size)] = 255
    return mask


def _picture(seed: int, parts: list[Rect], size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
    pixels[_mask(parts, size) > 0] = (210, 200, 90)
    return pixels


# ------------------------------------------------------------------ RefSegRS
# (split, name, expression, mask parts); the image shows the same parts
REFSEGRS = [
    ("train", "10001", "the road in the middle", [(0.0, 0.4, 1.0, 0.6)]),
    ("train", "10002", "the vehicle on the left", [(0.05, 0.4, 0.2, 0.55)]),
    ("train", "10003", "the building at the top", [(0.3, 0.05, 0.7, 0.3)]),
    ("train", "10004", "the vehicles parked along the road", FOUR_BLOBS),
    ("train", "10005", "the white building", []),
    ("train", "10006", "the vehicle on the left", [(0.75, 0.4, 0.92, 0.55)]),
    ("train", "10007", "the long road", [(0.4, 0.0, 0.55, 1.0)]),
    ("train", "10007", "the long road", [(0.4, 0.0, 0.55, 1.0)]),
    ("train", "10008", "the dark vehicle", [(0.05, 0.4, 0.2, 0.55)]),
    ("val", "20001", "the road on the right", [(0.7, 0.0, 0.85, 1.0)]),
    ("val", "20002", "the building in the center", [(0.35, 0.35, 0.65, 0.65)]),
    ("val", "20003", "the large building at the top", [(0.3, 0.05, 0.7, 0.3)]),
    ("val", "20004", "the vehicle at the bottom", [(0.45, 0.8, 0.6, 0.92)]),
    ("test", "30001", "the road at the bottom", [(0.0, 0.75, 1.0, 0.9)]),
    ("test", "30002", "the car on the right", [(0.8, 0.45, 0.95, 0.55)]),
    ("test", "30003", "the building on the left", [(0.05, 0.3, 0.3, 0.7)]),
]
REFSEGRS_SAME_IMAGE = {"20003": "10003"}           # split_leak_image: val image bytes == a train image's
REFSEGRS_NO_MASK = {"20004"}                       # missing_mask


def make_refsegrs(root: Path, *, size: int = 64) -> dict[str, list[tuple[str, str]]]:
    """Write the RefSegRS tree under ``root``: 15 images, 16 lines (train 9, val 4, test 3)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    pictures: dict[str, np.ndarray] = {}
    for k, (split, name, expression, parts) in enumerate(REFSEGRS):
        lines[split].append(f"{name} {expression}")
        if name in pictures:
            continue
        pictures[name] = pictures.get(REFSEGRS_SAME_IMAGE.get(name, ""), _picture(k, parts, size))
        Image.fromarray(pictures[name], "RGB").save(root / "images" / f"{name}.tif")
        if name not in REFSEGRS_NO_MASK:
            Image.fromarray(_mask(parts, size), "L").save(root / "masks" / f"{name}.tif")
    (root / "output_phrase_train.txt").write_bytes(("\r\n".join(lines["train"]) + "\r\n").encode())
    (root / "output_phrase_val.txt").write_bytes(("  \n".join(lines["val"]) + "\n\n").encode())
    (root / "output_phrase_test.txt").write_bytes("\n".join(lines["test"]).encode())

    def pairs(*names: str) -> list[tuple[str, str]]:
        return [(f"{n}.tif", e) for _, n, e, _ in REFSEGRS if n in names]

    return {
        "empty_mask": pairs("10005"),
        "many_components": pairs("10004"),
        "duplicate_expression": pairs("10007"),
        "duplicate_mask": pairs("10002", "10008"),
        "split_leak_image": pairs("10003", "20003"),
        "position_contradiction": pairs("10006"),
        "missing_mask": pairs("20004"),
    }


# ------------------------------------------------------------------ RISBench native
# (txt split, file name, expression, mask parts, category, picture key: one per RISBench image)
RISBENCH = [
    ("train", "train_0_0.png", "the airplane on the left", [(0.05, 0.3, 0.3, 0.6)], "airplane", "train_0"),
    ("train", "train_0_1.png", "the airplane on the right", [(0.7, 0.3, 0.95, 0.6)], "airplane", "train_0"),
    ("train", "train_1_0.png", "the ship in the center", [(0.4, 0.4, 0.6, 0.6)], "ship", "train_1"),
    ("train", "train_2_0.png", "the storage tank at the top", [], "storage-tank", "train_2"),
    ("train", "train_3_0.png", "the vehicle in the parking lot", FOUR_BLOBS, "vehicle", "train_3"),
    ("train", "train_4_0.png", "the white vehicle", [(0.1, 0.1, 0.2, 0.2)], "vehicle", "train_4"),
    ("train", "train_4_1.png", "the white vehicle", [(0.6, 0.6, 0.7, 0.7)], "vehicle", "train_4"),
    ("train", "train_5_0.png", "the bridge over the river", [(0.1, 0.45, 0.9, 0.55)], "bridge", "train_5"),
    ("train", "train_5_1.png", "the long bridge", [(0.1, 0.45, 0.9, 0.55)], "bridge", "train_5"),
    ("train", "train_6_0.png", "the ship on the left", [(0.75, 0.4, 0.95, 0.6)], "ship", "train_6"),
    ("val", "train_7_0.png", "the tennis court at the bottom", [(0.3, 0.7, 0.7, 0.95)], "tennis-court", "train_7"),
    ("val", "train_8_0.png", "the harbor on the right", [(0.6, 0.1, 0.95, 0.9)], "harbor", "train_8"),
    ("test", "test_0_0.png", "the baseball diamond in the center", [(0.3, 0.3, 0.7, 0.7)], "baseball-diamond", "test_0"),
    ("test", "test_1_0.png", "the windmill at the top", [(0.45, 0.05, 0.55, 0.2)], "windmill", "train_1"),
    ("test", "test_2_0.png", "the soccer field on the left", [(0.05, 0.2, 0.4, 0.8)], "soccer-ball-field", "test_2"),
]
RISBENCH_RGB_MASK = "train_1_0.png"                # written 3-channel (a quirk, not a defect)
RISBENCH_NO_MASK = {"train_8_0.png"}               # missing_mask


def make_risbench_native(root: Path, *, size: int = 64, index: bool = False) -> dict[str, list[tuple[str, str]]]:
    """Write the RISBench native tree under ``root``: 15 lines (train 10, val 2, test 3)."""
    root = Path(root)
    (root / "img_rgb").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(parents=True, exist_ok=True)
    pictures: dict[str, np.ndarray] = {}
    for k, (_, name, _, parts, _, key) in enumerate(RISBENCH):
        if key not in pictures:
            objects = [p for _, _, _, ps, _, kk in RISBENCH if kk == key for p in ps]
            pictures[key] = _picture(100 + k, objects, size)
        Image.fromarray(pictures[key], "RGB").save(root / "img_rgb" / name)
        if name in RISBENCH_NO_MASK:
            continue
        mask = _mask(parts, size)
        if name == RISBENCH_RGB_MASK:
            Image.fromarray(np.repeat(mask[..., None], 3, axis=2), "RGB").save(root / "mask" / name)
        else:
            Image.fromarray(mask, "L").save(root / "mask" / name)
    for split in ("train", "val", "test"):
        text = "".join(f"{name} {expr}\n" for s, name, expr, *_ in RISBENCH if s == split)
        (root / f"output_phrase_{split}.txt").write_text(text, encoding="utf-8")
    if index:
        with open(root / "index.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(("file_name", "split", "triplet_id", "image_id", "scene_id", "category"))
            for k, (split, name, _, _, category, key) in enumerate(RISBENCH):
                writer.writerow((name, split, f"t{k:04d}", f"risbench:{key}", f"scene-{key}", category))

    def pairs(*names: str) -> list[tuple[str, str]]:
        return [(n, e) for _, n, e, *_ in RISBENCH if n in names]

    return {
        "empty_mask": pairs("train_2_0.png"),
        "many_components": pairs("train_3_0.png"),
        "duplicate_expression": pairs("train_4_0.png", "train_4_1.png"),
        "duplicate_mask": pairs("train_5_0.png", "train_5_1.png"),
        "split_leak_image": pairs("train_1_0.png", "test_1_0.png"),
        "position_contradiction": pairs("train_6_0.png"),
        "missing_mask": pairs("train_8_0.png"),
    }
