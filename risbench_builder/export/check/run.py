"""Finding exports (a folder, ``W/exports`` or a workspace) and checking each in its format."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..manifest import hash_files
from .coco import check_coco
from .hf import check_hf
from .manifest import check_manifest, load_manifest, manifest_files
from .native import check_native
from .refer import check_refer
from .report import CheckReport, Runner, SeenFiles, SplitEntry, counts_of, split_failures

#: Each format's check, in the order :func:`detect` tries the layouts.
CHECKS: dict[str, Callable[[Path, CheckReport, Runner], list[SplitEntry]]] = {
    "hf": check_hf, "refer": check_refer, "native": check_native, "coco": check_coco}


def detect(path: Path) -> str | None:
    """The export format of the folder ``path``, or None."""
    if (path / "data").is_dir() and any((path / "data").glob("*.parquet")):
        return "hf"
    if any(path.glob("*/refs(*).p")):
        return "refer"
    if any(path.glob("output_phrase_*.txt")):
        return "native"
    if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
        return "coco"
    return None


def find_exports(path: Path) -> list[tuple[Path, str]]:
    """``path`` itself, or the exports inside it (``W/exports/*`` or a workspace's ``exports/``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    fmt = detect(path)
    if fmt:
        return [(path, fmt)]
    for base in (path, path / "exports"):
        found = [(p, f) for p in sorted(base.iterdir()) if p.is_dir() and not p.name.startswith(".")
                 and (f := detect(p))] if base.is_dir() else []
        if found:
            return found
    raise ValueError(f"{path}: no export found (looked for hf data/*.parquet, refer */refs(*).p, native "
                     "output_phrase_*.txt, coco annotations/*.json, here and in its subfolders)")


def check_path(path: Path | str, workers: int | None = None) -> list[CheckReport]:
    """Check every export found at ``path`` (see :func:`find_exports`)."""
    seen = SeenFiles()
    return [check_export(p, fmt, workers, seen) for p, fmt in find_exports(Path(path))]


def check_export(root: Path, fmt: str, workers: int | None = None, seen: SeenFiles | None = None) -> CheckReport:
    report = CheckReport(root, fmt)
    report.seen = seen or SeenFiles()
    runner = Runner(workers)
    runner.known_masks = report.seen.masks if fmt == "native" else {}
    manifest = load_manifest(root, report)
    try:
        samples = CHECKS[fmt](root, report, runner)
    finally:
        runner.close()
    report.counts = counts_of(samples)
    report.failures += split_failures(samples)
    if manifest is not None:
        listed = sorted(manifest_files(root, manifest, report))
        hashes = hash_files(root, listed, 2, report.digests)
        check_manifest(root, manifest, hashes, report)
    report.failures.sort(key=lambda f: (f.kind, f.where, f.detail))
    return report
