"""Where a catalog's images are now.

The catalog stores each image's absolute path, as ingest found it. A workspace copied to a GPU
server, or a dataset moved to a bigger disk, left every stored path pointing at the old place:
sam-refine rejected every triplet as ``unreadable_image`` (exit 0), and re-ingest did not help
(rows are ``INSERT OR IGNORE``). So ingest records where each source's root and the workspace
were, and every command that reads images first follows the moves the pipeline now says:
a path under a source's old root moves under ``sources[i].root`` as set today, and one under the
old workspace (relative roots, an import's extracted images) under the workspace's new place,
each image only when it is gone from the old place and there in the new one. ``unreadable_image``
rejects of the images that moved are dropped, so sam-refine retries them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..catalog import Catalog
from ..config import PipelineConfig, SourceConfig
from ..workspace import Workspace
from .base import SourceLayoutError

WORKSPACE_KEY = "location:workspace"
ROOT_KEY = "location:source:"              # + the source's label
READS_KEY = "reads:source:"                # + the source's label: its kind and sub-folders
_PROBE = 5                                  # images per source looked at before saying they are all gone


def record_locations(catalog: Catalog, ws: Workspace, cfg: PipelineConfig) -> None:
    """Where the workspace and each source's root are now, each recorded only where the catalog
    holds an image under it (so a catalog from before this, or one whose files already moved, never
    records a place its paths do not use). Ingest calls this after it reads; so does every move."""
    candidates = [(ROOT_KEY + src.label, ws.resolve(src.root), src.label) for src in cfg.sources]
    candidates.append((WORKSPACE_KEY, ws.path, None))
    rows = [(key, str(place)) for key, place, label in candidates if _holds_images(catalog, _prefix(place), label)]
    recorded = {key for key, _ in rows}
    rows += [(READS_KEY + src.label, _reads(src)) for src in cfg.sources if ROOT_KEY + src.label in recorded]
    with catalog.transaction():
        catalog.conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", rows)


def _reads(src: SourceConfig) -> str:
    return json.dumps(list(src.reads))


def refuse_a_renamed_source(catalog: Catalog, ws: Workspace, cfg: PipelineConfig) -> None:
    """Triplet and image ids hash the source's name, so files the catalog holds under one name,
    read again under another (a renamed source, or a copy of its entry), would add every triplet
    a second time and send each mask to review twice. Stop before reading, naming the fix."""
    meta = dict(catalog.conn.execute("SELECT key, value FROM meta WHERE key LIKE ? OR key LIKE ?",
                                     (ROOT_KEY + "%", READS_KEY + "%")))
    roots = {key[len(ROOT_KEY):]: root for key, root in meta.items() if key.startswith(ROOT_KEY)}
    held = {label for (label,) in catalog.conn.execute("SELECT DISTINCT source FROM images")}
    for i, src in enumerate(cfg.sources):
        if src.label in held:
            continue
        for other, root in roots.items():
            if (other != src.label and root == str(ws.resolve(src.root))
                    and meta.get(READS_KEY + other) == _reads(src)):
                raise SourceLayoutError(
                    f"sources[{i}] ({src.label!r}) reads the files the catalog holds as source {other!r}: under a "
                    f"new name every triplet would be added again; set sources[{i}].name to {other!r} in "
                    f"{ws.pipeline_path}")


def _prefix(place: str | Path) -> str:
    return str(place).rstrip(os.sep) + os.sep


def _under(label: str | None) -> str:
    return "substr(path, 1, ?) = ?" + (" AND source = ?" if label is not None else "")


def _holds_images(catalog: Catalog, prefix: str, label: str | None) -> bool:
    params = (len(prefix), prefix) + ((label,) if label is not None else ())
    return catalog.conn.execute(f"SELECT 1 FROM images WHERE {_under(label)} LIMIT 1", params).fetchone() is not None


def locate_images(catalog: Catalog, ws: Workspace, cfg: PipelineConfig, *, check: bool = True) -> dict[str, int]:
    """Follow the moves, then (``check``) make sure each source's images are there: what every
    command that reads images calls first. Returns how many images moved, per source label
    (``workspace`` for the workspace's own files); raises :class:`SourceLayoutError` for a source
    whose images are all gone."""
    moved = _follow_moves(catalog, ws, cfg)
    if check:
        _check_reachable(catalog, ws, cfg)
    return moved


def _follow_moves(catalog: Catalog, ws: Workspace, cfg: PipelineConfig) -> dict[str, int]:
    meta = dict(catalog.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'location:%'"))
    moves: list[tuple[str | None, str, str]] = []          # (source label or None for any, old, new)
    for src in cfg.sources:
        old, new = meta.get(ROOT_KEY + src.label), str(ws.resolve(src.root))
        if old and old != new and Path(new).is_dir():
            moves.append((src.label, old, new))
    if meta.get(WORKSPACE_KEY) and meta[WORKSPACE_KEY] != str(ws.path):
        moves.append((None, meta[WORKSPACE_KEY], str(ws.path)))
    moved: dict[str, int] = {}
    with catalog.transaction():
        for label, old, new in moves:
            n = _move(catalog, label, _prefix(old), _prefix(new))
            if n:
                moved[label or "workspace"] = n
        record_locations(catalog, ws, cfg)
    return moved


def _move(catalog: Catalog, label: str | None, old: str, new: str) -> int:
    """Each image under ``old`` that is gone from there and present under ``new`` moves; one still
    in its old place stays (a copied workspace keeps reading the original's files until they go)."""
    params: tuple = (len(old), old) + ((label,) if label is not None else ())
    rows = catalog.conn.execute(f"SELECT image_id, path FROM images WHERE {_under(label)}", params).fetchall()
    moved = [(new + path[len(old):], image_id) for image_id, path in rows
             if not os.path.exists(path) and os.path.isfile(new + path[len(old):])]
    catalog.conn.executemany("UPDATE images SET path = ? WHERE image_id = ?", moved)
    catalog.conn.executemany(
        "DELETE FROM rejects WHERE stage = 'sam-refine' AND reason = 'unreadable_image' AND ref IN "
        "(SELECT triplet_id FROM triplets WHERE image_id = ?)", [(image_id,) for _, image_id in moved])
    return len(moved)


def _check_reachable(catalog: Catalog, ws: Workspace, cfg: PipelineConfig) -> None:
    """Stop when none of a source's images is where the catalog has it: a move the pipeline does
    not say yet, not a set of bad images to reject one by one."""
    labels = [r[0] for r in catalog.conn.execute("SELECT DISTINCT source FROM images ORDER BY source")]
    for label in labels:
        paths = [Path(p) for (p,) in catalog.conn.execute(
            "SELECT path FROM images WHERE source = ? ORDER BY image_id LIMIT ?", (label, _PROBE))]
        if any(p.is_file() for p in paths):
            continue
        index = next((i for i, src in enumerate(cfg.sources) if src.label == label), None)
        fix = (f"set sources[{index}].root in {ws.pipeline_path} to where they are now" if index is not None
               else f"add source {label!r} back to {ws.pipeline_path} with its root where they are now")
        raise SourceLayoutError(f"none of source {label!r}'s images is where the catalog has them "
                                f"(e.g. {paths[0]}): if they moved, {fix}; the catalog follows on the next build")
