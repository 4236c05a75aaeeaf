"""The refer export read back by an independent REFER-style reader (refer.py / LAVT / RMSIN logic).

The reader below re-implements what the loaders do (RMSIN ``refer/refer.py``): unpickle ``refs(unc).p``,
index ``instances.json`` like ``REFER.createIndex``, zip ``sentences`` with ``sent_ids`` like
``ReferDataset``, and build the mask like ``REFER.getMask`` + ``annot[m == 1] = 1``, decoding
with pycocotools directly (not through risbench_builder.masks).
"""

from __future__ import annotations

import json
import pickle
import pickletools
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from risbench_builder.catalog import Catalog
from risbench_builder.sources.base import RISBENCH_CLASSES

from .conftest import truth


class Refer:
    """What REFER.__init__ + createIndex build, for dataset ``name`` under ``data_root``."""

    def __init__(self, data_root: Path, dataset: str, split_by: str = "unc"):
        self.image_dir = data_root / "images" / dataset / "JPEGImages"
        with open(data_root / dataset / f"refs({split_by}).p", "rb") as f:
            self.refs_raw = f.read()
        self.refs = pickle.loads(self.refs_raw)
        instances = json.loads((data_root / dataset / "instances.json").read_text())
        self.Anns = {a["id"]: a for a in instances["annotations"]}
        self.Imgs = {im["id"]: im for im in instances["images"]}
        self.Cats = {c["id"]: c["name"] for c in instances["categories"]}
        self.Refs = {r["ref_id"]: r for r in self.refs}
        self.annToRef = {r["ann_id"]: r for r in self.refs}
        self.Sents = {s["sent_id"]: s for r in self.refs for s in r["sentences"]}

    def getRefIds(self, split: str) -> list[int]:
        if split == "test":
            return [r["ref_id"] for r in self.refs if "test" in r["split"]]
        return [r["ref_id"] for r in self.refs if r["split"] == split]

    def getMask(self, ref: dict) -> np.ndarray:
        ann = self.Anns[ref["ann_id"]]
        image = self.Imgs[ref["image_id"]]
        if type(ann["segmentation"][0]) == list:  # noqa: E721 - the loaders' own test
            rle = coco_mask.frPyObjects(ann["segmentation"], image["height"], image["width"])
        else:
            rle = ann["segmentation"]                     # a list of RLE dicts (str counts decode as is)
        m = coco_mask.decode(rle)
        m = np.sum(m, axis=2).astype(np.uint8)
        annot = np.zeros(m.shape, np.uint8)
        annot[m == 1] = 1
        return annot


def test_refer_reader_reads_every_ref_with_exact_masks(built) -> None:
    root = built.ws.exports / "refer"
    refer = Refer(root, "risbench")
    want = truth(built.ws)
    with Catalog(built.ws.catalog_path) as cat:
        final = dict(cat.conn.execute("SELECT triplet_id, split FROM final"))
        expressions = dict(cat.conn.execute("SELECT triplet_id, expression FROM triplets"))
    assert len(refer.refs) == len(final)
    # splits exactly train / val / test, and getRefIds partitions the refs
    assert {r["split"] for r in refer.refs} == {"train", "val", "test"}
    assert sorted(sum((refer.getRefIds(s) for s in ("train", "val", "test")), [])) == sorted(refer.Refs)
    for ref in refer.refs:
        tid = ref["triplet_id"]
        assert ref["split"] == final[tid]
        assert ref["ref_id"] == ref["ann_id"] == ref["sent_ids"][0]
        # ReferDataset: zip(sentences, sent_ids), el['raw']
        for el, sent_id in zip(ref["sentences"], ref["sent_ids"]):
            assert el["sent_id"] == sent_id and el["raw"] == expressions[tid]
            assert el["tokens"] and el["sent"] == " ".join(el["tokens"])
        ann = refer.Anns[ref["ann_id"]]
        assert isinstance(ann["segmentation"], list) and len(ann["segmentation"]) == 1
        assert isinstance(ann["segmentation"][0]["counts"], str)
        assert ann["category_id"] == ann["categories_id"] == ref["category_id"]
        assert refer.Cats[ref["category_id"]] in RISBENCH_CLASSES
        x1, y1, x2, y2 = ann["bbox"]                       # xyxy, not xywh
        image = refer.Imgs[ref["image_id"]]
        assert 0 <= x1 < x2 <= image["width"] and 0 <= y1 < y2 <= image["height"]
        assert ann["iscrowd"] == 0 and ann["area"] == int(want[tid].sum())
        assert np.array_equal(refer.getMask(ref), want[tid]), tid
        assert ref["file_name"] == image["file_name"]
        with Image.open(refer.image_dir / image["file_name"]) as im:   # __getitem__: open + convert RGB
            assert im.convert("RGB").size == (image["width"], image["height"])
    ids = [r["ref_id"] for r in refer.refs]
    assert len(set(ids)) == len(ids) and len(set(refer.Anns)) == len(refer.refs)


def test_refer_pickle_protocol_and_files(built) -> None:
    root = built.ws.exports / "refer"
    raw = (root / "risbench" / "refs(unc).p").read_bytes()
    assert raw[:2] == b"\x80\x04"                      # protocol 4: readable by Python 3.7 loaders
    ops = {op.name for op, _, _ in pickletools.genops(raw)}
    assert "GLOBAL" not in ops and "STACK_GLOBAL" not in ops   # plain lists, dicts, str, int
    instances = json.loads((root / "risbench" / "instances.json").read_text())
    assert [c["id"] for c in instances["categories"]] == list(range(len(RISBENCH_CLASSES)))
    names = sorted(p.name for p in (root / "images" / "risbench" / "JPEGImages").iterdir())
    assert names == sorted(im["file_name"] for im in instances["images"])
    by_id = {im["source_image_id"]: im for im in instances["images"]}
    assert by_id[built.jpeg_image]["file_name"].endswith(".jpg")          # JPEG bytes get a .jpg name
    with Image.open(root / "images" / "risbench" / "JPEGImages" / by_id[built.grey_image]["file_name"]) as im:
        assert im.mode == "RGB" and im.format == "PNG"                     # grey source converted to RGB
    assert "refer_data_root" in (root / "README.md").read_text()
