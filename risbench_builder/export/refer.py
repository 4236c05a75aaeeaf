"""The RRSIS-D / REFER export, read unchanged by LAVT, RMSIN, FIANet and CroBIM-style loaders.

Layout (RMSIN / LAVT ``refer/refer.py`` and ``data/dataset_refer_bert.py``)::

    refer/<name>/refs(unc).p            pickle (protocol 4) list of refs
    refer/<name>/instances.json         {"images", "annotations", "categories"}
    refer/images/<name>/JPEGImages/     the images (original file names; PNG files keep .png)
    refer/README.md                     how to point a REFER loader at <name>

Every loader pitfall is honoured: each annotation's ``segmentation`` is a *list* holding one
compressed RLE with ``str`` counts (so ``getMask`` sums one layer and never zeroes overlaps),
refs carry ``sent_ids``, splits are exactly ``train``/``val``/``test``, annotations have both
``category_id`` and the misspelled ``categories_id``, ``bbox`` is x1,y1,x2,y2, ids are unique
ints (``ref_id == ann_id == sent_id``, one sentence per ref), and the pickle is written with
the memo off so the same refs give the same bytes.
"""

from __future__ import annotations

import io
import pickle
import re
from typing import Any

from ..sources.base import OTHER_CATEGORY, RISBENCH_CLASSES
from ..sources.refer import load_plain_pickle  # noqa: F401 - re-exported: crobim/data.py reads our export with it
from .base import AS_IS, Context, Counts, Item, Ledger, compact_json, round_coordinate

REFER_SPLITS = ("train", "val", "test")
PICKLE_PROTOCOL = 4
CATEGORY_IDS = {name: i for i, name in enumerate(RISBENCH_CLASSES)}      # ids from 0, like RRSIS-D
OTHER_ID = len(RISBENCH_CLASSES)        # imported objects of no RISBench class (RefSegRS roads): listed when used
_WORD = re.compile(r"\w+(?:['\-]\w+)*")


def tokens(text: str) -> list[str]:
    """RefCOCO-style tokens: lower-case words, punctuation dropped.

    >>> tokens("The large white airplane, furthest to the left.")
    ['the', 'large', 'white', 'airplane', 'furthest', 'to', 'the', 'left']
    """
    return _WORD.findall(text.lower())


def dump_pickle(obj: Any) -> bytes:
    """Deterministic pickle: no memo, so equal data gives equal bytes whatever the object identities."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=PICKLE_PROTOCOL)
    pickler.fast = True   # the memo depends on object identity; refs hold no cycles
    pickler.dump(obj)
    return buf.getvalue()


class ReferWriter:
    name = "refer"

    def __init__(self, ledger: Ledger, ctx: Context):
        self.ledger, self.ctx = ledger, ctx
        self.dataset = ctx.dataset_name
        self.refs: list[dict[str, Any]] = []
        self.annotations: list[str] = []
        self.images: dict[str, dict[str, Any]] = {}
        self.counts = Counts()
        self._next = 1
        self._other = False

    def begin_split(self, split: str) -> None:
        if split not in REFER_SPLITS:
            raise ValueError(f"refer export: split {split!r} is not one of {', '.join(REFER_SPLITS)} (REFER "
                             "loaders match these names exactly); rename it in finalize.split.ratios")

    def add(self, item: Item) -> None:
        rec = item.rec
        ref = self.ctx.image_refs[rec.image_id]
        name = self.ctx.file_name(rec)
        if rec.image_id not in self.images:
            self.ctx.images.place(self.ledger, f"images/{self.dataset}/JPEGImages/{name}", rec, AS_IS)
            self.images[rec.image_id] = {"id": ref.number, "file_name": name, "height": rec.height,
                                         "width": rec.width, "scene_id": rec.scene_id,
                                         "source_image_id": rec.image_id}
        if rec.category not in CATEGORY_IDS and rec.category != OTHER_CATEGORY:
            raise ValueError(f"refer export: triplet {rec.triplet_id} has category {rec.category!r}, not one of "
                             "the RISBench classes")
        cat = CATEGORY_IDS.get(rec.category, OTHER_ID)
        self._other = self._other or cat == OTHER_ID
        n = self._next
        self._next += 1
        x1, y1, x2, y2 = (round_coordinate(v) for v in item.box)
        self.annotations.append(compact_json({
            "id": n, "image_id": ref.number, "category_id": cat, "categories_id": cat,
            "bbox": [x1, y1, x2, y2], "area": item.area, "iscrowd": 0,
            "segmentation": [{"size": [int(v) for v in rec.rle["size"]], "counts": str(rec.rle["counts"])}],
            "triplet_id": rec.triplet_id}))
        words = tokens(rec.expression)
        self.refs.append({
            "ref_id": n, "ann_id": n, "image_id": ref.number, "category_id": cat, "split": rec.split,
            "file_name": name, "sent_ids": [n],
            "sentences": [{"sent_id": n, "raw": rec.expression, "sent": " ".join(words), "tokens": words}],
            "triplet_id": rec.triplet_id, "scene_id": rec.scene_id, "mask_origin": rec.mask_origin})
        self.counts.add(rec.split, rec.image_id)

    def end_split(self, split: str) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        images = sorted(self.images.values(), key=lambda im: im["id"])
        categories = [{"id": i, "name": name, "supercategory": "object"} for name, i in CATEGORY_IDS.items()]
        if self._other:
            categories.append({"id": OTHER_ID, "name": OTHER_CATEGORY, "supercategory": "object"})
        text = ('{"images":[' + ",".join(compact_json(im) for im in images) + '],"annotations":['
                + ",".join(self.annotations) + '],"categories":' + compact_json(categories) + "}\n")
        self.ledger.write_text(f"{self.dataset}/instances.json", text)
        self.ledger.write_bytes(f"{self.dataset}/refs(unc).p", dump_pickle(self.refs))
        self.ledger.write_text("README.md", readme(self.dataset))
        return self.counts.as_dict()


def readme(dataset: str) -> str:
    patch = "" if dataset == "rrsisd" else f"""
`REFER.__init__` in RMSIN / LAVT hard-wires the dataset name `rrsisd`; add `{dataset}` to it:

```python
if dataset in ['refcoco', 'refcoco+', 'refcocog', 'rrsisd', '{dataset}']:
    self.IMAGE_DIR = osp.join(data_root, 'images/{dataset}/JPEGImages')
```
or export with `export.dataset_name: rrsisd` to load it with no change at all.
"""
    return f"""# {dataset}: REFER (RRSIS-D) layout

```
{dataset}/refs(unc).p        pickle (protocol {PICKLE_PROTOCOL}) list of refs, splitBy = 'unc'
{dataset}/instances.json     COCO-style images / annotations / categories
images/{dataset}/JPEGImages/ images (the original files; names keep their extension)
```

Use `--refer_data_root PATH_TO_THIS_FOLDER --dataset {dataset} --splitBy unc`.
{patch}
- Each ref has one sentence; `ref_id == ann_id == sent_id`; `sent_ids` is set.
- `segmentation` is a list holding one COCO compressed RLE (`counts` is a str): decode with
  `pycocotools.mask.decode(ann['segmentation'])`, then sum over the last axis.
- `bbox` is `[x1, y1, x2, y2]` in pixels (RRSIS-D style), `category_id` and `categories_id` are equal,
  category ids start at 0 (the 26 RISBench classes in `instances.json`).
- Extra keys (`triplet_id`, `scene_id`, `mask_origin`, `source_image_id`) are ignored by the loaders.
"""
