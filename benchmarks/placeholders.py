"""A RISBench-sized VRSBench tree of placeholders, fast, for the ingest benchmark and the ingest
scale tests (no rendering; not part of the installed package).

Import it as ``placeholders`` from a script in ``benchmarks/`` (its folder is on ``sys.path``)
or as ``benchmarks.placeholders`` from the repository root (pytest)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from risbench_builder.synthetic.io_helpers import _seed_rng, _write_json
from risbench_builder.synthetic.language import _NOUNS, _POSITION_PHRASES
from risbench_builder.synthetic.scene import DRAWABLE_CLASSES, PATCH, _grid_position
from risbench_builder.synthetic.vrsbench import _eval_records, _vrsbench_image_path


def _placeholder_names(n_files: int, val_fraction: float, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(name, split) for n patches: DOTA scenes with 8 windows and DIOR scenes with 4, alternating."""
    out: list[tuple[str, str]] = []
    scene = 0
    while len(out) < n_files:
        split = "val" if rng.random() < val_fraction else "train"
        sid = scene // 2 + 1
        stems = ([f"P{sid:04d}_{w:04d}.png" for w in range(8)] if scene % 2 == 0
                 else [f"{sid:05d}_{w:04d}.png" for w in range(4)])
        out += [(n, split) for n in stems[: n_files - len(out)]]
        scene += 1
    return out


def _placeholder_objects(count: int, rng: np.random.Generator) -> list[dict]:
    """Axis-aligned boxes (valid for DOTA and DIOR names alike) with one-line sentences."""
    cls_idx = rng.integers(len(DRAWABLE_CLASSES), size=count)
    xy = rng.integers(0, 440, size=(count, 2))
    wh = rng.integers(8, 72, size=(count, 2))
    colours = rng.integers(6, size=count)
    classes = [DRAWABLE_CLASSES[int(c)] for c in cls_idx]
    objs = []
    for k in range(count):
        (x0, y0), (w, h) = xy[k].tolist(), wh[k].tolist()
        x1, y1 = x0 + w, y0 + h
        cls = classes[k]
        position = _grid_position((x0 + x1) / 2, (y0 + y1) / 2, PATCH)
        colour = ("white", "gray", "red", "blue", "green", "yellow")[int(colours[k])]
        corners = [x0, y0, x1, y0, x1, y1, x0, y1]
        objs.append({
            "obj_id": k, "referring_sentence": f"The {colour} {_NOUNS[cls][0][0]} {_POSITION_PHRASES[position][0]}.",
            "obj_cls": cls, "obj_corner": [v / PATCH for v in corners],
            "obj_coord": [round(x0 / PATCH, 2), round(y0 / PATCH, 2), round(x1 / PATCH, 2), round(y1 / PATCH, 2)],
            "is_unique": classes.count(cls) == 1, "obj_position": position, "obj_rel_position": "",
            "obj_size": "", "obj_rel_size": "", "flag": False})
    return objs


def _link_or_copy(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copyfile(src, dst)
        return False


def write_vrsbench_placeholders(root: Path, n_files: int = 29_614, objects_total: int = 52_472,
                                seed: int = 0, val_fraction: float = 9_350 / 29_614) -> dict:
    """A RISBench-sized VRSBench tree, fast, for the ingest benchmark (no rendering).

    Every image is the same solid 512x512 PNG hard-linked under each name (copied where links
    fail), so ingest's size check passes; annotations are cheaply templated but well formed.
    Each file gets 1-5 objects and the total is exactly ``objects_total``.
    """
    if not n_files <= objects_total <= 5 * n_files:
        raise ValueError(f"objects_total={objects_total} must lie in [{n_files}, {5 * n_files}] "
                         "(each file holds 1-5 referred objects)")
    root = Path(root)
    rng = _seed_rng(seed, 6)
    names = _placeholder_names(n_files, val_fraction, rng)
    counts = np.ones(n_files, np.int64)
    extra = rng.permutation(np.repeat(np.arange(n_files), 4))[: objects_total - n_files]
    counts += np.bincount(extra, minlength=n_files)
    for folder in ("Images_train", "Images_val/Images_val", "Annotations_train", "Annotations_val"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    master = _vrsbench_image_path(root, names[0][1], names[0][0])
    ok, buf = cv2.imencode(".png", np.full((PATCH, PATCH, 3), (118, 122, 110), np.uint8))
    master.write_bytes(buf.tobytes())
    linked = True
    val_docs, n_split = [], {"train": 0, "val": 0}
    objects = {"train": 0, "val": 0}
    for (name, split), count in zip(names, counts.tolist()):
        image = _vrsbench_image_path(root, split, name)
        if image != master:
            linked &= _link_or_copy(master, image)
        doc = {"image": name, "caption": "The aerial image shows several objects.",
               "objects": _placeholder_objects(count, rng), "qa_pairs": []}
        (root / f"Annotations_{split}" / (name[:-4] + ".json")).write_text(json.dumps(doc), encoding="utf-8")
        n_split[split] += 1
        objects[split] += count
        if split == "val":
            val_docs.append(doc)
    records = _eval_records(val_docs)
    _write_json(root / "VRSBench_EVAL_referring.json", records, indent=None)
    return {"kind": "vrsbench-placeholders", "root": str(root), "images": n_split, "objects": objects,
            "eval_records": len(records), "hard_links": linked}
