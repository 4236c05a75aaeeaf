"""COCO instances with compressed-RLE masks, one file per split, plus the referring expressions.

::

    coco/annotations/instances_<split>.json   {"info", "licenses", "images", "annotations", "categories"}
    coco/images/<file_name>                    the images (shared by all splits; splits share no image)

Each annotation is one triplet: ``segmentation`` is a COCO RLE dict (``counts`` a str),
``bbox`` the mask's box as COCO [x, y, w, h], ``area`` its pixel count, and ``expression``,
``triplet_id``, ``mask_origin`` and ``ref_box_xyxy`` (the source box) carry the referring
part. Image and annotation ids equal those of the REFER export; category ids start at 1.
"""

from __future__ import annotations

from typing import Any

from ..sources.base import OTHER_CATEGORY, RISBENCH_CLASSES
from .base import AS_IS, Context, Counts, Item, Ledger, compact_json, round_coordinate

CATEGORY_IDS = {name: i + 1 for i, name in enumerate(RISBENCH_CLASSES)}
OTHER_ID = len(RISBENCH_CLASSES) + 1     # imported objects of no RISBench class: listed when used


def annotation_file(split: str) -> str:
    return f"annotations/instances_{split}.json"


class CocoWriter:
    name = "coco"

    def __init__(self, ledger: Ledger, ctx: Context):
        self.ledger, self.ctx = ledger, ctx
        self.counts = Counts()
        self._next = 1

    def _category(self, name: str) -> int:
        if name == OTHER_CATEGORY:
            self._other = True
            return OTHER_ID
        return CATEGORY_IDS[name]

    def begin_split(self, split: str) -> None:
        self._other = False
        self._images: dict[str, str] = {}
        self._annotations: list[str] = []

    def add(self, item: Item) -> None:
        rec = item.rec
        ref = self.ctx.image_refs[rec.image_id]
        name = self.ctx.file_name(rec)
        if rec.image_id not in self._images:
            self.ctx.images.place(self.ledger, f"images/{name}", rec, AS_IS)
            self._images[rec.image_id] = compact_json({
                "id": ref.number, "file_name": name, "height": rec.height, "width": rec.width,
                "scene_id": rec.scene_id, "source_image_id": rec.image_id, "license": 1})
        x1, y1, x2, y2 = item.mask_box
        self._annotations.append(compact_json({
            "id": self._next, "image_id": ref.number, "category_id": self._category(rec.category),
            "segmentation": {"size": [int(v) for v in rec.rle["size"]], "counts": str(rec.rle["counts"])},
            "area": item.area, "bbox": [round_coordinate(x1), round_coordinate(y1), round_coordinate(x2 - x1), round_coordinate(y2 - y1)], "iscrowd": 0,
            "expression": rec.expression, "triplet_id": rec.triplet_id, "mask_origin": rec.mask_origin,
            "ref_box_xyxy": [round_coordinate(v) for v in item.box]}))
        self._next += 1
        self.counts.add(rec.split, rec.image_id)

    def end_split(self, split: str) -> None:
        info = {"description": f"{self.ctx.dataset_name} {split}: referring segmentation triplets",
                "version": str(self.ctx.meta.get("code_version", "")), "contributor": "risbench-builder"}
        licenses = [{"id": 1, "name": self.ctx.license,
                     "url": "see README.md: images keep their upstream terms (DOTA academic use, DIOR terms)"}]
        categories = [{"id": i, "name": n, "supercategory": "object"} for n, i in CATEGORY_IDS.items()]
        if self._other:
            categories.append({"id": OTHER_ID, "name": OTHER_CATEGORY, "supercategory": "object"})
        images = [self._images[k] for k in sorted(self._images, key=lambda k: self.ctx.image_refs[k].number)]
        text = ('{"info":' + compact_json(info) + ',"licenses":' + compact_json(licenses) + ',"images":[' + ",".join(images)
                + '],"annotations":[' + ",".join(self._annotations) + '],"categories":' + compact_json(categories) + "}\n")
        self.ledger.write_text(annotation_file(split), text)

    def finish(self) -> dict[str, Any]:
        self.ledger.write_text("README.md", README)
        return self.counts.as_dict()


README = """# COCO instances with referring expressions

`annotations/instances_<split>.json` are COCO instance files (pycocotools `COCO(path)` loads them);
images are in `images/`. One annotation per (image, expression, mask) triplet:

- `segmentation`: COCO compressed RLE (`{"size": [H, W], "counts": str}`), `area` its pixel count,
  `bbox` its box as `[x, y, w, h]`;
- `expression`: the referring expression; `ref_box_xyxy`: the source box `[x1, y1, x2, y2]`;
- `triplet_id`, `mask_origin` (auto | consensus | adjudicated), and on images `scene_id`.

Category ids start at 1 (the 26 RISBench classes). Images keep their upstream terms (DOTA-derived images:
academic use only; DIOR terms).
"""
