"""The ``coco`` check: ``annotations/*.json`` (ids, references, categories, segmentations,
expressions) and the images they name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...paths import path_escape
from ...sources.base import scene_id_from_name
from .report import (CheckReport, Runner, SplitEntry, Failure, category_failures, check_images, chunks,
                     duplicate_failures, expression_failures, load_json, seg_batch)


def check_coco(root: Path, report: CheckReport, runner: Runner) -> list[SplitEntry]:
    samples: list[SplitEntry] = []
    all_ann_ids: list[Any] = []
    image_tasks, seg_tasks = [], []
    no_expression = 0
    for path in sorted((root / "annotations").glob("*.json")):
        rel = path.relative_to(root).as_posix()
        split = path.stem[len("instances_"):] if path.stem.startswith("instances_") else path.stem
        data = load_json(path, rel, report)
        if not isinstance(data, dict):
            continue
        images = [im for im in data.get("images", []) if isinstance(im, dict)]
        anns = [a for a in data.get("annotations", []) if isinstance(a, dict)]
        cats = {c.get("id"): c.get("name") for c in data.get("categories", []) if isinstance(c, dict)}
        report.failures += duplicate_failures([im.get("id") for im in images], "image id", rel)
        for cid, cname in sorted(cats.items(), key=lambda kv: str(kv[0])):
            report.failures += category_failures(cname, f"{rel} category {cid}")
        by_image = {im.get("id"): im for im in images}
        for im in images:
            fn = str(im.get("file_name"))
            reason = path_escape(root, root / "images", fn) or path_escape(root, root, fn)
            if reason:
                report.failures.append(Failure("path_escape", f"{rel} image {im.get('id')} ({fn})",
                                               f"file_name {fn!r} {reason}; not read"))
                continue
            p = root / "images" / fn if (root / "images" / fn).exists() else root / fn
            wh = (im.get("width"), im.get("height")) if im.get("width") and im.get("height") else None
            image_tasks.append((str(p), f"{rel} image {im.get('id')} ({fn})", wh))
        for a in anns:
            where = f"{rel} annotation {a.get('id')}"
            all_ann_ids.append(a.get("id"))
            im = by_image.get(a.get("image_id"))
            if im is None:
                report.failures.append(Failure("dangling_reference", where, f"image_id {a.get('image_id')} not in "
                                                                            "this file's images"))
            if a.get("category_id") not in cats:
                report.failures.append(Failure("dangling_reference", where, f"category {a.get('category_id')} not "
                                                                            "in categories"))
            hw = (im.get("height"), im.get("width")) if im else None
            seg = a.get("segmentation")
            seg_tasks.append((where, seg if isinstance(seg, list) else [seg], hw))
            if "expression" in a:
                report.failures += expression_failures(a["expression"], where)
            else:
                no_expression += 1
            scene = (im or {}).get("scene_id") or scene_id_from_name(str((im or {}).get("file_name", a.get("image_id"))))
            samples.append(SplitEntry(split, str((im or {}).get("file_name", a.get("image_id"))), str(scene)))
    if no_expression:
        report.notes.append(f"{no_expression} annotations carry no expression (plain COCO instances?)")
    report.failures += duplicate_failures(all_ann_ids, "annotation id", "annotations/")
    check_images(report, runner, image_tasks)
    for failures in runner.map(seg_batch, chunks(seg_tasks, 256), len(seg_tasks)):
        report.failures += failures
    return samples
