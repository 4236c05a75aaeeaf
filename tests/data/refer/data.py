"""Fake RRSIS-D tree (REFER layout, Lsan2401/RMSIN) for tests, with planted defects (torchgeo style).

::

    rrsisd/refs(unc).p                  pickle protocol 4, list of refs, one sentence each
    rrsisd/instances.json               images / annotations / categories
    images/rrsisd/JPEGImages/000NN.jpg  RGB JPEG
    images/rrsisd/ann_split/00002.xml   DIOR-RSVG-style XML (RMSIN#32)

The real files' quirks are kept: bbox is x1,y1,x2,y2, annotations carry only the misspelled
``categories_id`` (refs carry ``category_id``), categories are the 20 DIOR names with ids from 0,
``segmentation`` is a list holding one compressed RLE with ``str`` counts (pycocotools). RRSIS-D
images are 800x800 (some 800x801) with one ref each; here 96x96 and most images hold two refs so
that the defects that need two objects fit on few images.

:func:`make_rrsisd` returns ``{defect kind: [(image file_name, sentence raw), ...]}`` for the
defects it planted (a pair repeats when two refs share it); with ``defects=False`` the same tree
is written clean and the dict is empty. Kinds: see :data:`DEFECTS`.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from risbench_builder.masks import encode

NAME = "rrsisd"
# DIOR class names as spelled in the files, with RRSIS-D's category ids (ids from 0)
DIOR_CATEGORIES = ("Expressway-Service-area", "Expressway-toll-station", "airplane", "airport", "baseballfield",
                   "basketballcourt", "bridge", "chimney", "dam", "golffield", "groundtrackfield", "harbor",
                   "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill")
CATEGORY_ID = {name: i for i, name in enumerate(DIOR_CATEGORIES)}
DEFECTS = ("size_mismatch", "empty_mask", "mask_outside_box", "mask_box_disagreement", "many_components",
           "duplicate_expression", "duplicate_mask", "split_leak_image", "position_contradiction",
           "undecodable_mask", "missing_mask")
GARBAGE_COUNTS = "garbage~~not an RLE"     # '~' is outside the RLE alphabet '0'..'o'

Rect = tuple[float, float, float, float]    # x1, y1, x2, y2 as fractions of the image side


@dataclass
class Obj:
    category: str
    sentence: str
    parts: list[Rect]                        # the mask: union of rectangles (empty list: all-zero mask)
    box: Rect | None = None                  # the annotation bbox; None: the mask's rectangle
    split: str | None = None                 # None: the image's split
    counts: str | None = None                # RLE counts written instead of the mask's


@dataclass
class Img:
    file_name: str
    split: str
    objects: list[Obj]
    extra_rows: int = 0                      # image file taller than its entry and masks
    defects: list[str] = field(default_factory=list)   # image-level defects (every ref on it)


def _plan(defects: bool) -> tuple[list[Img], dict[str, list[tuple[str, str]]]]:
    """The images and refs, defects applied when asked, and which pairs each defect touches."""
    d = defects
    images = [
        Img("00001.jpg", "train", [Obj("ship", "The ship on the left", [(0.05, 0.4, 0.25, 0.6)]),
                                   Obj("storagetank", "the storage tank at the bottom", [(0.4, 0.75, 0.6, 0.95)])]),
        Img("00002.jpg", "train", [Obj("airplane", "the large airplane in the center", [(0.3, 0.3, 0.7, 0.7)])]),
        Img("00003.jpg", "train", [Obj("dam", "the dam at the top", [(0.1, 0.05, 0.9, 0.25)]),
                                   Obj("bridge", "the bridge below the dam", [(0.3, 0.5, 0.7, 0.6)])],
            extra_rows=1 if d else 0, defects=["size_mismatch"] if d else []),
        Img("00004.jpg", "train", [Obj("bridge", "the bridge in the middle", [] if d else [(0.1, 0.45, 0.9, 0.55)],
                                       box=(0.1, 0.45, 0.9, 0.55)),
                                   Obj("vehicle", "the vehicle on the right", [(0.75, 0.2, 0.9, 0.3)])]),
        Img("00005.jpg", "val", [Obj("overpass", "the overpass on the right", [(0.55, 0.2, 0.95, 0.8)],
                                     box=(0.65, 0.4, 0.75, 0.6) if d else None),
                                 Obj("harbor", "the harbor on the left", [(0.05, 0.1, 0.35, 0.9)])]),
        Img("00006.jpg", "val", [Obj("golffield", "the golf field at the top left", [(0.05, 0.05, 0.35, 0.35)],
                                     box=(0.6, 0.6, 0.95, 0.95) if d else None),
                                 Obj("tenniscourt", "the tennis court at the top right", [(0.6, 0.05, 0.9, 0.3)])]),
        Img("00007.jpg", "train", [Obj("windmill", "the windmill in the middle",
                                       [(0.2, 0.2, 0.3, 0.3), (0.6, 0.2, 0.7, 0.3), (0.2, 0.6, 0.3, 0.7),
                                        (0.6, 0.6, 0.7, 0.7)] if d else [(0.45, 0.45, 0.55, 0.55)]),
                                   Obj("chimney", "the chimney at the bottom left", [(0.05, 0.8, 0.15, 0.95)])]),
        Img("00008.jpg", "test", [Obj("storagetank", "the white storage tank", [(0.1, 0.1, 0.3, 0.3)]),
                                  Obj("storagetank", "the white storage tank" if d else "the storage tank at the bottom right",
                                      [(0.6, 0.6, 0.8, 0.8)])]),
        Img("00009.jpg", "test", [Obj("golffield", "the golf field in the center", [(0.2, 0.2, 0.8, 0.8)]),
                                  Obj("golffield", "the large green golf field",
                                      [(0.2, 0.2, 0.8, 0.8)] if d else [(0.02, 0.02, 0.15, 0.15)])]),
        Img("00010.jpg", "train", [Obj("baseballfield", "the baseball field on the top", [(0.3, 0.05, 0.7, 0.35)]),
                                   Obj("basketballcourt", "the basketball court at the bottom", [(0.35, 0.7, 0.65, 0.9)],
                                       split="test" if d else None)]),
        Img("00011.jpg", "test", [Obj("ship", "the ship on the left",
                                      [(0.72, 0.4, 0.92, 0.6)] if d else [(0.08, 0.4, 0.28, 0.6)]),
                                  Obj("ship", "the ship at the top", [(0.4, 0.05, 0.6, 0.2)])]),
        Img("00012.jpg", "val", [Obj("airport", "the airport in the center", [(0.25, 0.25, 0.75, 0.7)],
                                     counts=GARBAGE_COUNTS if d else None),
                                 Obj("trainstation", "the train station at the bottom", [(0.2, 0.75, 0.8, 0.95)])]),
    ]
    if not d:
        return images, {}
    by = {im.file_name: im for im in images}

    def pairs(file_name: str, *which: int) -> list[tuple[str, str]]:
        objects = by[file_name].objects
        return [(file_name, objects[i].sentence) for i in (which or range(len(objects)))]

    planted = {
        "size_mismatch": pairs("00003.jpg"),
        "empty_mask": pairs("00004.jpg", 0),
        "mask_outside_box": pairs("00005.jpg", 0),
        "mask_box_disagreement": pairs("00006.jpg", 0),
        "many_components": pairs("00007.jpg", 0),
        "duplicate_expression": pairs("00008.jpg"),
        "duplicate_mask": pairs("00009.jpg"),
        "split_leak_image": pairs("00010.jpg"),
        "position_contradiction": pairs("00011.jpg", 0),
        "undecodable_mask": pairs("00012.jpg", 0),
        "missing_mask": [("00002.jpg", text) for _, text in LOST_OBJECTS],
    }
    return images, planted


# RMSIN#32: the XML describes earlier objects whose masks never made it into the refs
LOST_OBJECTS = (("vehicle", "a white vehicle at the top left"), ("vehicle", "the vehicle at the top right"))
LOST_BOXES = ((0.02, 0.02, 0.15, 0.1), (0.85, 0.02, 0.98, 0.1))


def _pixels(rect: Rect, size: int) -> tuple[int, int, int, int]:
    return tuple(int(round(v * size)) for v in rect)  # type: ignore[return-value]


def _mask(parts: list[Rect], size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for rect in parts:
        x1, y1, x2, y2 = _pixels(rect, size)
        mask[y1:y2, x1:x2] = 1
    return mask


def _image(rng: np.random.Generator, im: Img, size: int) -> np.ndarray:
    pixels = rng.integers(60, 110, (size + im.extra_rows, size, 3), dtype=np.uint8)
    for k, obj in enumerate(im.objects):
        colour = np.array([200 - 30 * k, 180, 60 + 40 * CATEGORY_ID[obj.category] % 190], np.uint8)
        for rect in obj.parts:
            x1, y1, x2, y2 = _pixels(rect, size)
            pixels[y1:y2, x1:x2] = colour
    return pixels


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _xml(im: Img, size: int, lost: bool) -> str:
    """ann_split XML: the lost objects (when planted), then the ref's object with its segmentation.

    The encoding inside ``<segmentation>`` is not public (RMSIN#32 only says it is there); a
    compressed RLE string stands in for it and readers must not depend on it.
    """
    def bndbox(rect: Rect) -> str:
        x1, y1, x2, y2 = _pixels(rect, size)
        return f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"

    objects = []
    if lost:
        for (category, text), rect in zip(LOST_OBJECTS, LOST_BOXES):
            objects.append(f"<object><name>{category}</name><pose>Unspecified</pose>{bndbox(rect)}"
                           f"<description>{text}</description></object>")
    last = im.objects[-1]
    rle = encode(_mask(last.parts, size))["counts"]
    objects.append(f"<object><name>{last.category}</name><pose>Unspecified</pose>{bndbox(last.parts[0])}"
                   f"<description>{last.sentence}</description><segmentation>{rle}</segmentation></object>")
    return (f"<annotation><folder>JPEGImages</folder><filename>{im.file_name}</filename><source><database>DIOR"
            f"</database></source><size><width>{size}</width><height>{size}</height><depth>3</depth></size>"
            + "".join(objects) + "</annotation>\n")


def make_rrsisd(root: Path, *, size: int = 96, defects: bool = True, seed: int = 7) -> dict[str, list[tuple[str, str]]]:
    """Write the tree under ``root`` (the REFER data root); 12 images, 23 refs. See the module doc."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    images, planted = _plan(defects)
    image_dir = root / "images" / NAME / "JPEGImages"
    image_dir.mkdir(parents=True, exist_ok=True)
    (root / NAME).mkdir(parents=True, exist_ok=True)
    refs, entries, annotations = [], [], []
    n = 0
    for image_id, im in enumerate(images, 1):
        Image.fromarray(_image(rng, im, size)).save(image_dir / im.file_name, quality=90)
        entries.append({"file_name": im.file_name, "height": size, "width": size, "id": image_id})
        for obj in im.objects:
            n += 1
            mask = _mask(obj.parts, size)
            rle = encode(mask)
            if obj.counts is not None:
                rle = {"size": rle["size"], "counts": obj.counts}
            box = obj.box or (obj.parts[0] if len(obj.parts) == 1 else None)
            if box is None:         # several parts: the box of their union
                ys, xs = np.nonzero(mask)
                bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            else:
                bbox = list(_pixels(box, size))
            cid = CATEGORY_ID[obj.category]
            annotations.append({"bbox": bbox, "categories_id": cid, "id": n, "image_id": image_id,
                                "segmentation": [rle], "area": int(mask.sum())})
            tokens = _tokens(obj.sentence)
            refs.append({"image_id": image_id, "split": obj.split or im.split,
                         "sentences": [{"tokens": tokens, "raw": obj.sentence, "sent_id": n, "sent": " ".join(tokens)}],
                         "file_name": im.file_name, "category_id": cid, "ann_id": n, "sent_ids": [n], "ref_id": n})
    categories = [{"id": i, "name": name} for i, name in enumerate(DIOR_CATEGORIES)]
    (root / NAME / "instances.json").write_text(json.dumps(
        {"images": entries, "annotations": annotations, "categories": categories}))
    (root / NAME / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=4))
    xml_dir = root / "images" / NAME / "ann_split"
    xml_dir.mkdir(parents=True, exist_ok=True)
    second = images[1]
    (xml_dir / "00002.xml").write_text(_xml(second, size, lost=defects))
    return planted
