"""The ``refer`` check: each ``*/refs(*).p`` with its ``instances.json`` (ids, references, categories,
segmentations, the REFER loaders' pitfalls) and the images it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...paths import path_escape
from ...sources.base import scene_id_from_name
from ...sources.refer import load_plain_pickle
from .report import (CheckReport, Failure, Runner, SplitEntry, category_failures, check_images, chunks,
                     duplicate_failures, expression_failures, load_json, seg_batch)


REFER_SPLITS = ("train", "val", "test")


def check_refer(root: Path, report: CheckReport, runner: Runner) -> list[SplitEntry]:
    samples: list[SplitEntry] = []
    for refs_path in sorted(root.glob("*/refs(*).p")):
        samples += _check_refer_dataset(root, refs_path, report, runner)
    return samples


def _check_refer_dataset(root: Path, refs_path: Path, report: CheckReport, runner: Runner) -> list[SplitEntry]:
    name = refs_path.parent.name
    rel_refs = refs_path.relative_to(root).as_posix()
    raw = refs_path.read_bytes()
    if raw[:1] == b"\x80" and len(raw) > 1 and raw[1] > 4:
        report.failures.append(Failure("format_violation", rel_refs, f"pickle protocol {raw[1]} > 4: the loaders' "
                                                                     "Python 3.7 cannot read it"))
    try:
        refs = load_plain_pickle(raw)
    except Exception as exc:  # noqa: BLE001
        report.failures.append(Failure("unreadable_file", rel_refs, f"{type(exc).__name__}: {str(exc)[:160]}"))
        return []
    inst = load_json(refs_path.parent / "instances.json", f"{name}/instances.json", report)
    if not isinstance(refs, list) or not isinstance(inst, dict):
        if not isinstance(refs, list):
            report.failures.append(Failure("format_violation", rel_refs, "refs must be a list of dicts"))
        return []
    image_dir = root / "images" / name / "JPEGImages"
    rel_inst = f"{name}/instances.json"
    images = [im for im in inst.get("images", []) if isinstance(im, dict)]
    anns = [a for a in inst.get("annotations", []) if isinstance(a, dict)]
    cats = {c.get("id"): c.get("name") for c in inst.get("categories", []) if isinstance(c, dict)}
    report.failures += duplicate_failures([im.get("id") for im in images], "image id", rel_inst)
    report.failures += duplicate_failures([a.get("id") for a in anns], "annotation id", rel_inst)
    report.failures += duplicate_failures(list(cats), "category id", rel_inst) if len(cats) < len(
        inst.get("categories", [])) else []
    by_image = {im.get("id"): im for im in images}
    by_ann = {a.get("id"): a for a in anns}
    for cid, cname in sorted(cats.items(), key=lambda kv: str(kv[0])):
        report.failures += category_failures(cname, f"{rel_inst} category {cid}")
    # images
    image_tasks = []
    for im in images:
        fn = im.get("file_name")
        where = f"{rel_inst} image {im.get('id')} ({fn})"
        if not isinstance(fn, str):
            report.failures.append(Failure("format_violation", where, "image has no file_name"))
            continue
        reason = path_escape(root, image_dir, fn)
        if reason:
            report.failures.append(Failure("path_escape", where, f"file_name {fn!r} {reason}; not read"))
            continue
        wh = (im.get("width"), im.get("height")) if im.get("width") and im.get("height") else None
        image_tasks.append((str(image_dir / fn), where, wh))
    check_images(report, runner, image_tasks)
    # annotations
    seg_tasks = []
    for a in anns:
        where = f"{rel_inst} annotation {a.get('id')}"
        im = by_image.get(a.get("image_id"))
        if im is None:
            report.failures.append(Failure("dangling_reference", where, f"image_id {a.get('image_id')} not in images"))
        cid, cids = a.get("category_id"), a.get("categories_id")
        if cid is None and cids is None:
            report.failures.append(Failure("format_violation", where, "neither category_id nor categories_id"))
        elif cid is not None and cids is not None and cid != cids:
            report.failures.append(Failure("format_violation", where, f"category_id {cid} != categories_id {cids}"))
        for c in {cid, cids} - {None}:
            if c not in cats:
                report.failures.append(Failure("dangling_reference", where, f"category {c} not in categories"))
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
                and bbox[0] < bbox[2] and bbox[1] < bbox[3]):
            report.failures.append(Failure("format_violation", where, f"bbox {bbox} is not x1,y1,x2,y2 with x1<x2, y1<y2"))
        hw = (im.get("height"), im.get("width")) if im and im.get("height") and im.get("width") else None
        seg_tasks.append((where, a.get("segmentation"), hw))
    for failures in runner.map(seg_batch, chunks(seg_tasks, 256), len(seg_tasks)):
        report.failures += failures
    # refs
    samples = []
    required = ("ref_id", "ann_id", "image_id", "category_id", "split", "sent_ids", "sentences")
    sent_ids: list[Any] = []
    for i, ref in enumerate(refs):
        where = f"{rel_refs} ref {ref.get('ref_id', f'#{i}') if isinstance(ref, dict) else f'#{i}'}"
        if not isinstance(ref, dict):
            report.failures.append(Failure("format_violation", where, "ref is not a dict"))
            continue
        missing = [k for k in required if k not in ref]
        if missing:
            report.failures.append(Failure("format_violation", where, f"missing {', '.join(missing)}"))
        split = ref.get("split")
        if split not in REFER_SPLITS:
            report.failures.append(Failure("bad_split_name", where, f"split {split!r}, not train/val/test"))
        ann = by_ann.get(ref.get("ann_id"))
        if ann is None:
            report.failures.append(Failure("dangling_reference", where, f"ann_id {ref.get('ann_id')} not in annotations"))
        else:
            if ann.get("image_id") != ref.get("image_id"):
                report.failures.append(Failure("format_violation", where, f"image_id {ref.get('image_id')} != its "
                                                                          f"annotation's {ann.get('image_id')}"))
            ann_cat = ann.get("category_id", ann.get("categories_id"))
            if "category_id" in ref and ref["category_id"] != ann_cat:
                report.failures.append(Failure("format_violation", where, f"category_id {ref['category_id']} != "
                                                                          f"its annotation's {ann_cat}"))
        im = by_image.get(ref.get("image_id"))
        if im is None:
            report.failures.append(Failure("dangling_reference", where, f"image_id {ref.get('image_id')} not in images"))
        sentences = ref.get("sentences") if isinstance(ref.get("sentences"), list) else []
        ids = [s.get("sent_id") for s in sentences if isinstance(s, dict)]
        sent_ids += ids
        if "sent_ids" in ref and list(ref["sent_ids"]) != ids:
            report.failures.append(Failure("format_violation", where, f"sent_ids {ref['sent_ids']} != sentence ids {ids}"))
        if not sentences:
            report.failures.append(Failure("expression_empty", where, "ref has no sentences"))
        for s in sentences:
            if not isinstance(s, dict) or "raw" not in s or not isinstance(s.get("tokens"), list):
                report.failures.append(Failure("format_violation", where, "sentence lacks raw or tokens"))
                continue
            report.failures += expression_failures(s["raw"], f"{where} sentence {s.get('sent_id')}")
        scene = (im or {}).get("scene_id") or scene_id_from_name(str((im or {}).get("file_name") or ref.get("image_id")))
        samples.append(SplitEntry(str(split), str(ref.get("image_id")), str(scene)))
    report.failures += duplicate_failures([r.get("ref_id") for r in refs if isinstance(r, dict)], "ref_id", rel_refs)
    report.failures += duplicate_failures(sent_ids, "sent_id", rel_refs)
    return samples
