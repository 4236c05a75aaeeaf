"""The coco export read back with pycocotools: instances with RLE and the expressions."""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO

from risbench_builder.catalog import Catalog
from risbench_builder.sources.base import RISBENCH_CLASSES

from .conftest import truth


def test_coco_instances_load_with_pycocotools(built) -> None:
    root = built.ws.exports / "coco"
    want = truth(built.ws)
    with Catalog(built.ws.catalog_path) as cat:
        final = dict(cat.conn.execute("SELECT triplet_id, split FROM final"))
        expressions = dict(cat.conn.execute("SELECT triplet_id, expression FROM triplets"))
    seen = set()
    for split in ("train", "val", "test"):
        coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(RISBENCH_CLASSES)
        for ann in coco.loadAnns(coco.getAnnIds()):
            tid = ann["triplet_id"]
            seen.add(tid)
            assert final[tid] == split and ann["expression"] == expressions[tid]
            assert np.array_equal(coco.annToMask(ann), want[tid])
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(want[tid])
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            image = coco.loadImgs(ann["image_id"])[0]
            assert (root / "images" / image["file_name"]).is_file()
    assert seen == set(final)
