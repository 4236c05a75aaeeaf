"""``manifest.json``: what an export holds (counts) and the sha256 of every file in it.

No timestamps and sorted keys, so two exports of one catalog have byte-identical manifests;
``risbench check`` verifies the hashes and recounts the data.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from .base import Ledger

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def manifest_dict(fmt: str, ledger: Ledger, counts: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "format": fmt,
        "counts": counts,
        "provenance": provenance,
        "files": {rel: {"sha256": sha, "bytes": size} for rel, (sha, size) in sorted(ledger.files.items())},
    }


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_manifest(root: Path, fmt: str, ledger: Ledger, counts: dict[str, Any],
                   provenance: dict[str, Any]) -> str:
    """Write ``root/manifest.json``; returns its sha256 (the export's fingerprint)."""
    text = dumps(manifest_dict(fmt, ledger, counts, provenance))
    (root / MANIFEST).write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def manifest_sha256(root: Path) -> str | None:
    path = root / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def walk(root: Path) -> Iterator[str]:
    """Every regular file below ``root`` (posix, relative), the manifest itself excluded."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            rel = (Path(dirpath) / fn).relative_to(root).as_posix()
            if rel != MANIFEST:
                yield rel


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def hash_files(root: Path, rels: list[str], threads: int = 2,
               known: dict[tuple[int, int], str] | None = None) -> dict[str, str | None]:
    """sha256 of each file (None when missing); hard-linked copies are hashed once, and files
    whose inode is in ``known`` (hashed while they were read for checking) not at all."""
    known = known or {}
    by_inode: dict[tuple[int, int], list[str]] = {}
    out: dict[str, str | None] = {}
    for rel in rels:
        try:
            st = (root / rel).stat()
        except OSError:
            out[rel] = None
            continue
        by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    for key in [k for k in by_inode if k in known]:
        for rel in by_inode.pop(key):
            out[rel] = known[key]
    groups = list(by_inode.values())
    with ThreadPoolExecutor(max(1, threads)) as ex:   # hashlib releases the GIL on large blocks
        for group, sha in zip(groups, ex.map(lambda g: sha256_file(root / g[0]), groups)):
            for rel in group:
                out[rel] = sha
    return out
