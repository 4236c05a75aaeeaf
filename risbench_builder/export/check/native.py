"""The ``native`` check: ``output_phrase_*.txt`` lines, ``index.csv``, and the image and mask file
each line names."""

from __future__ import annotations

import csv
from pathlib import Path

from ...paths import PathEscapeError, confine_path, name_escape
from ...sources.base import scene_id_from_name
from .report import (CheckReport, Digest, Failure, Runner, SplitEntry, category_failures, check_images, chunks,
                     duplicate_failures, expression_failures, known_mask, mask_file_failures, read_hashed)


IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _resolve(root: Path, folder_candidates: list[Path], name: str) -> Path | None:
    """The file for ``name`` in the first folder that has it; PathEscapeError when a candidate
    resolves outside ``root`` (checked before the file is looked at)."""
    has_ext = Path(name).suffix.lower() in IMAGE_EXTENSIONS
    for folder in folder_candidates:
        for cand in [name] if has_ext else [name + ext for ext in IMAGE_EXTENSIONS]:
            if confine_path(root, folder, cand).is_file():
                return folder / cand
    return None


def _merge(report: CheckReport, results: list[tuple[list[Failure], list[Digest]]]) -> None:
    for failures, digests in results:
        report.failures += failures
        report.digests.update(digests)


def _native_masks(tasks: list[tuple[str, str, tuple[int, int] | None]]) -> tuple[list[Failure], list[Digest]]:
    out, digests = [], []
    for path, where, size in tasks:
        data, digest = read_hashed(Path(path))
        if data is None:
            out.append(Failure("missing_file", where, "mask file does not exist"))
            continue
        digests.append(digest)
        known = known_mask(digest[1])        # the same bytes already decoded and passed (hf export)
        if known is None:
            out += mask_file_failures(data, size, where)
        elif size is not None and tuple(known) != tuple(size):
            out.append(Failure("mask_size_mismatch", where, f"mask {known[0]}x{known[1]}, image {size[0]}x{size[1]}"))
    return out, digests


def check_native(root: Path, report: CheckReport, runner: Runner) -> list[SplitEntry]:
    image_dirs = [root / d for d in ("img_rgb", "images") if (root / d).is_dir()]
    mask_dirs = [root / d for d in ("mask", "masks") if (root / d).is_dir()]
    if not image_dirs or not mask_dirs:
        report.failures.append(Failure("format_violation", str(root), "needs img_rgb/ (or images/) and mask/ (or masks/)"))
    index: dict[str, dict[str, str]] = {}
    if (root / "index.csv").is_file():
        try:
            with open(root / "index.csv", newline="", encoding="utf-8") as f:
                index = {row["file_name"]: row for row in csv.DictReader(f)}
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            report.failures.append(Failure("unreadable_file", "index.csv", str(exc)[:200]))
    else:
        report.notes.append("no index.csv: images identified by content hash, scenes from file names, "
                            "categories not checked")
    lines: list[tuple[str, str]] = []     # (split, name)
    for path in sorted(root.glob("output_phrase_*.txt")):
        split = path.stem[len("output_phrase_"):]
        for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
            where = f"{path.name} line {n}"
            name_b, _, expr = raw.partition(b" ")
            try:
                name = name_b.decode("utf-8")
            except UnicodeDecodeError:
                report.failures.append(Failure("unreadable_file", where, "file name is not UTF-8"))
                continue
            report.failures += expression_failures(expr, f"{where} ({name})")
            lines.append((split, name))
    report.failures += duplicate_failures([n for _, n in lines], "file name", "output_phrase_*.txt")
    for name in index:
        if name and name_escape(name):
            report.failures.append(Failure("path_escape", f"index.csv {name!r}", f"file_name {name_escape(name)}"))
    names = []
    for n in sorted({n for _, n in lines}):
        if n and name_escape(n):
            report.failures.append(Failure("path_escape", n, f"file name {n!r} {name_escape(n)}; not read"))
        else:
            names.append(n)
    paths: dict[str, Path | None] = {}
    escaped: set[str] = set()
    for n in names:
        try:
            paths[n] = _resolve(root, image_dirs, n)
        except PathEscapeError as exc:
            paths[n] = None
            escaped.add(n)
            report.failures.append(Failure("path_escape", f"{n} (image)", f"{exc}; not read"))
    for n in names:
        if paths[n] is None and n not in escaped:
            report.failures.append(Failure("missing_file", n, "no image file for it"))
    found = [n for n in names if paths[n] is not None]
    # per-referent copies are hard links to one file: check_images decodes each inode once
    checked = dict(zip(found, check_images(report, runner, [(str(paths[n]), f"{n} (image)", None) for n in found])))
    mask_tasks = []
    for n in names:
        try:
            q = _resolve(root, mask_dirs, n)
        except PathEscapeError as exc:
            report.failures.append(Failure("path_escape", f"{n} (mask)", f"{exc}; not read"))
            continue
        if q is None:
            report.failures.append(Failure("missing_file", n, "no mask file for it"))
            continue
        mask_tasks.append((str(q), f"{n} (mask)", checked[n][0] if n in checked else None))
    _merge(report, runner.map(_native_masks, chunks(mask_tasks, 64), len(mask_tasks)))
    results = {n: checked[n][1] if n in checked else None for n in names}    # sha256 identifies an image
    samples = []
    for split, name in lines:
        row = index.get(name)
        if row is not None:
            report.failures += category_failures(row.get("category"), f"index.csv {name}", exact=True)
            if row.get("split") and row["split"] != split:
                report.failures.append(Failure("format_violation", f"index.csv {name}", f"split {row['split']} but "
                                                                                        f"listed in {split}"))
            samples.append(SplitEntry(split, row.get("image_id") or name, row.get("scene_id") or scene_id_from_name(name)))
        else:
            samples.append(SplitEntry(split, results.get(name) or name, scene_id_from_name(name)))
    return samples
