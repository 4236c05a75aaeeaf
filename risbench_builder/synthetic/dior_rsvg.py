"""The DIOR-RSVG writer: referred objects only, each with its ``<description>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .dior import _hbb_ints, _write_xml, _xml_bndbox, _xml_header, _xml_text
from .io_helpers import _class_counts, _seed_rng, _truth_row, _write_image, _write_truth
from .language import refer_objects
from .scene import DIOR_CLASSES, DIOR_NAMES, _render_nonempty


def write_dior_rsvg(root: Path, seed: int = 0, n_images: int = 6, size: int = 400,
                    truth_dir: Path | None = None) -> dict:
    """A DIOR-RSVG tree (ZhanYang-nwpu/RSVG-pytorch): referred objects only, each with ``<description>``.

    Object children are name, pose, bndbox, description, in that order (the loader reads them
    by position). Split files hold GLOBAL object indices counted over the sorted XML names and
    the objects in file order; images are split whole (about 70/10/20). DIOR-RSVG images are
    800x800; smaller here.
    """
    root = Path(root)
    rng = _seed_rng(seed, 4)
    order = [int(i) for i in rng.permutation(n_images)]
    n_val, n_test = max(1, n_images // 10), max(1, n_images // 5)
    split_of = {i: "val" if r < n_val else "test" if r < n_val + n_test else "train" for r, i in enumerate(order)}
    if n_images < 3:
        split_of = {i: "train" for i in range(n_images)}
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    rows, categories, index = [], [], 0
    for i in range(n_images):                   # ids ascend, so file order = sorted XML names
        stem = f"{i + 1:05d}"
        prng = _seed_rng(seed, 5, i)
        scene = _render_nonempty(prng, size, DIOR_CLASSES, 12)
        refs = refer_objects(scene, prng)
        _write_image(root / "JPEGImages" / f"{stem}.jpg", scene.image)
        ann = _xml_header(f"{stem}.jpg", "DIOR", size)
        for j, ref in enumerate(refs):
            o = scene.objects[ref.index]
            obj = ET.SubElement(ann, "object")
            _xml_text(obj, "name", DIOR_NAMES[o.category])
            _xml_text(obj, "pose", "Unspecified")
            _xml_bndbox(obj, _hbb_ints(o, size))
            _xml_text(obj, "description", ref.sentence)
            splits[split_of[i]].append(index)
            rows.append(_truth_row(f"{stem}.jpg", j, o, split=split_of[i], global_index=index))
            categories.append(o.category)
            index += 1
        _write_xml(root / "Annotations" / f"{stem}.xml", ann)
    for split, idx in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{k}\n" for k in idx), encoding="utf-8")
    if truth_dir is not None:
        _write_truth(Path(truth_dir), rows)
    return {"kind": "dior_rsvg", "root": str(root), "images": n_images, "objects": index,
            "splits": {s: len(v) for s, v in splits.items()}, "classes": _class_counts(categories)}
