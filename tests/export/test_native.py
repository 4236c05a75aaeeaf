"""The native (RISBench / RefSegRS-style) export read back as plain files."""

from __future__ import annotations

import csv
import re

import numpy as np
from PIL import Image

from risbench_builder.catalog import Catalog

from .conftest import truth


def test_native_files_phrases_and_masks(built) -> None:
    root = built.ws.exports / "native"
    want = truth(built.ws)
    with Catalog(built.ws.catalog_path) as cat:
        final = dict(cat.conn.execute("SELECT triplet_id, split FROM final"))
        expressions = dict(cat.conn.execute("SELECT triplet_id, expression FROM triplets"))
    index = {row["file_name"]: row for row in csv.DictReader(open(root / "index.csv", encoding="utf-8"))}
    seen = 0
    for split in ("train", "val", "test"):
        lines = (root / f"output_phrase_{split}.txt").read_text(encoding="utf-8").splitlines()
        assert lines
        for line in lines:
            name, expression = line.split(" ", 1)           # loaders split on the first space
            assert re.fullmatch(rf"{split}_\d+_\d+\.png", name)
            row = index[name]
            assert row["split"] == split == final[row["triplet_id"]]
            assert expression == " ".join(expressions[row["triplet_id"]].split())
            with Image.open(root / "mask" / name) as m:
                assert m.mode == "L"                         # single channel, 0/255
                arr = np.asarray(m)
            assert set(np.unique(arr)) <= {0, 255}
            assert np.array_equal(arr > 0, want[row["triplet_id"]].astype(bool))
            with Image.open(root / "img_rgb" / name) as im:
                assert im.mode == "RGB" and im.format == "PNG" and im.size == arr.shape[::-1]
            seen += 1
    assert seen == len(final) == len(index)


def test_native_one_file_per_referent_hard_linked(built) -> None:
    root = built.ws.exports / "native"
    by_image: dict[str, list[str]] = {}
    for row in csv.DictReader(open(root / "index.csv", encoding="utf-8")):
        by_image.setdefault(row["image_id"], []).append(row["file_name"])
    multi = [names for names in by_image.values() if len(names) > 1]
    assert multi, "the synthetic scenes have several referents per image"
    for names in multi:
        assert len({(root / "img_rgb" / n).stat().st_ino for n in names}) == 1   # one copy, linked
        prefixes = {n.rsplit("_", 1)[0] for n in names}
        assert len(prefixes) == 1                                              # same <split>_<imgIdx>
        assert sorted(int(n.rsplit("_", 1)[1][:-4]) for n in names) == list(range(len(names)))
