"""The manifest checks: ``manifest.json`` readable, every listed file inside the export, present
and of its sha256, no file left unlisted, and the counts it declares those of the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...paths import path_escape
from ..manifest import MANIFEST, walk
from .report import CheckReport, Failure


def load_manifest(root: Path, report: CheckReport) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        report.notes.append("no manifest.json: file hashes and counts not checked (third-party download?)")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("files"), dict) or not isinstance(data.get("counts"), dict):
            raise ValueError("needs 'files' and 'counts' objects")
        return data
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        report.failures.append(Failure("manifest_invalid", MANIFEST, str(exc)[:200]))
        return None


def manifest_files(root: Path, manifest: dict[str, Any], report: CheckReport) -> list[str]:
    """The manifest's files that may be hashed: inside the export and regular files."""
    out = []
    for rel in manifest["files"]:
        reason = path_escape(root, root, rel)
        if reason:
            report.failures.append(Failure("path_escape", f"{MANIFEST} {rel!r}", f"listed file {reason}; not read"))
        elif (root / rel).exists() and not (root / rel).is_file():
            report.failures.append(Failure("manifest_missing_file", rel, "listed in manifest.json, not a regular file"))
        else:
            out.append(rel)
    return out


def check_manifest(root: Path, manifest: dict[str, Any], hashes: dict[str, str | None], report: CheckReport) -> None:
    for rel, entry in sorted(manifest["files"].items()):
        if rel not in hashes:                    # refused by manifest_files
            continue
        got = hashes.get(rel)
        if got is None:
            report.failures.append(Failure("manifest_missing_file", rel, "listed in manifest.json, not on disk"))
        elif got != entry.get("sha256"):
            report.failures.append(Failure("manifest_sha256", rel, f"sha256 {got[:16]}..., manifest says "
                                                                   f"{str(entry.get('sha256'))[:16]}..."))
    for rel in walk(root):
        if rel not in manifest["files"]:
            report.failures.append(Failure("manifest_unlisted_file", rel, "on disk, not in manifest.json"))
    want, got_counts = manifest["counts"], report.counts
    for key in ("triplets", "images"):
        if want.get(key) != got_counts.get(key):
            report.failures.append(Failure("manifest_count", key, f"manifest says {want.get(key)}, data has "
                                                                  f"{got_counts.get(key)}"))
    splits = set(want.get("splits", {})) | set(got_counts.get("splits", {}))
    for split in sorted(splits):
        for key in ("triplets", "images"):
            a = want.get("splits", {}).get(split, {}).get(key)
            b = got_counts.get("splits", {}).get(split, {}).get(key)
            if a != b:
                report.failures.append(Failure("manifest_count", f"{split}.{key}", f"manifest says {a}, data has {b}"))
