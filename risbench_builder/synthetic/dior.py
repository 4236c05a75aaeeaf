"""The DIOR + DIOR-R writer, and the Pascal-VOC-style XML helpers DIOR-RSVG shares."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .. import masks
from .io_helpers import _class_counts, _seed_rng, _truth_row, _write_image, _write_truth
from .scene import DIOR_CLASSES, DIOR_NAMES, Scene, SceneObject, _render_nonempty


def _xml_text(parent: "ET.Element", tag: str, text: object) -> "ET.Element":
    el = ET.SubElement(parent, tag)
    el.text = str(text)
    return el


def _xml_header(filename: str, database: str, size: int) -> "ET.Element":
    ann = ET.Element("annotation")
    _xml_text(ann, "filename", filename)
    _xml_text(ET.SubElement(ann, "source"), "database", database)
    sz = ET.SubElement(ann, "size")
    for tag, val in (("width", size), ("height", size), ("depth", 3)):
        _xml_text(sz, tag, val)
    _xml_text(ann, "segmented", 0)
    return ann


def _hbb_ints(o: SceneObject, size: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(round(v)) for v in masks.clip_box(masks.polygon_box(o.quad), size, size))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _xml_bndbox(obj: "ET.Element", box: tuple[int, int, int, int]) -> None:
    bb = ET.SubElement(obj, "bndbox")
    for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), box):
        _xml_text(bb, tag, val)


def _write_xml(path: Path, ann: "ET.Element") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(ann, space="\t")
    path.write_bytes(ET.tostring(ann, encoding="utf-8") + b"\n")


def _dior_hbb_xml(filename: str, scene: Scene) -> "ET.Element":
    ann = _xml_header(filename, "DIOR", scene.size)
    for o in scene.objects:
        obj = ET.SubElement(ann, "object")
        _xml_text(obj, "name", DIOR_NAMES[o.category])
        _xml_text(obj, "pose", "Unspecified")
        _xml_bndbox(obj, _hbb_ints(o, scene.size))
    return ann


def _dior_obb_xml(filename: str, scene: Scene) -> "ET.Element":
    """DIOR-R: ``<angle>`` is a sibling of ``<robndbox>``, the database says Unknown."""
    ann = _xml_header(filename, "Unknown", scene.size)
    corners = ("left_top", "right_top", "right_bottom", "left_bottom")
    for o in scene.objects:
        obj = ET.SubElement(ann, "object")
        _xml_text(obj, "type", "robndbox")
        _xml_text(obj, "name", DIOR_NAMES[o.category])
        _xml_text(obj, "pose", "Unspecified")
        _xml_text(obj, "truncated", int(o.truncated))
        _xml_text(obj, "difficult", int(o.visible_fraction < 0.6))
        rb = ET.SubElement(obj, "robndbox")
        for corner, (x, y) in zip(corners, o.quad):
            _xml_text(rb, f"x_{corner}", int(round(x)))
            _xml_text(rb, f"y_{corner}", int(round(y)))
        _xml_text(obj, "angle", int(round(o.angle)) % 180)
    return ann


def write_dior(root: Path, seed: int = 0, n_images: int = 6, size: int = 400,
               truth_dir: Path | None = None) -> dict:
    """A DIOR + DIOR-R tree, laid out as the DIOR release. DIOR uses 800x800; smaller here for speed.

    Trainval ids count from 00001 into ``JPEGImages-trainval``, test ids from 11726 into
    ``JPEGImages-test`` (as the real ranges), about half of the images are test.
    """
    root = Path(root)
    n_test = n_images // 2
    n_trainval = n_images - n_test
    n_train = (n_trainval + 1) // 2
    ids = [(i + 1, "train" if i < n_train else "val") for i in range(n_trainval)]
    ids += [(11726 + i, "test") for i in range(n_test)]
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    rows, categories = [], []
    for k, (num, split) in enumerate(ids):
        stem = f"{num:05d}"
        # the first image always holds a service area, so the capitalised DIOR name is on disk
        classes = ("expressway-service-area", "vehicle") if k == 0 else DIOR_CLASSES
        scene = _render_nonempty(_seed_rng(seed, 3, k), size, classes, 12)
        folder = "JPEGImages-test" if split == "test" else "JPEGImages-trainval"
        _write_image(root / folder / f"{stem}.jpg", scene.image)
        _write_xml(root / "Annotations" / "Horizontal Bounding Boxes" / f"{stem}.xml",
                   _dior_hbb_xml(f"{stem}.jpg", scene))
        _write_xml(root / "Annotations" / "Oriented Bounding Boxes" / f"{stem}.xml",
                   _dior_obb_xml(f"{stem}.jpg", scene))
        splits[split].append(stem)
        rows += [_truth_row(f"{stem}.jpg", j, o, split=split) for j, o in enumerate(scene.objects)]
        categories += [o.category for o in scene.objects]
    for split, stems in splits.items():
        path = root / "ImageSets" / "Main" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(s + "\n" for s in stems), encoding="utf-8")
    if truth_dir is not None:
        _write_truth(Path(truth_dir), rows)
    return {"kind": "dior", "root": str(root), "images": {s: len(v) for s, v in splits.items()},
            "objects": len(categories), "classes": _class_counts(categories)}
