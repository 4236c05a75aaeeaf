"""Whether the exports on disk still hold the catalog's dataset.

Each export's manifest records the fingerprint of what it was made from (catalog content,
pipeline, code version, the stats files). The export stage compares it to skip an unchanged
rerun; ``risbench status`` and ``publish`` compare it too, so that a finalize run after the
export (new splits, new decisions) is not taken for a built dataset, trained on or uploaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from ..catalog import Catalog, code_version
from ..config import PipelineConfig
from ..readmodel import last_finished_run
from ..workspace import Workspace
from .manifest import read_manifest

# The stages whose runs change what an export holds once masks are decided (decisions newer
# than the last finalize are the workspace's own next step, before any export).
_CHANGES_EXPORTS = ("finalize", "stats")


def _stats_sha(ws: Workspace) -> str:
    h = hashlib.sha256()
    stats = ws.reports / "STATS.md"
    figures = sorted((ws.reports / "figures").glob("*.png")) if (ws.reports / "figures").is_dir() else []
    for path in ([stats] if stats.is_file() else []) + figures:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def input_fingerprint(catalog: Catalog, ws: Workspace, cfg: PipelineConfig) -> str:
    """What an export depends on: catalog content, pipeline, code version and the stats files."""
    parts = [catalog.fingerprint(["images", "triplets", "proposals", "reviews", "consensus", "final", "rejects",
                                  "samples"]),
             cfg.sha256(), code_version(), _stats_sha(ws)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def recorded_fingerprint(manifest: dict[str, Any] | None) -> str | None:
    return (manifest or {}).get("provenance", {}).get("input_sha256")


def stale_exports(catalog: Catalog, ws: Workspace, cfg: PipelineConfig,
                  targets: Sequence[str] | None = None) -> list[str]:
    """The exported targets (of ``targets``, default ``export.targets``) that the export stage
    would write again now. Targets never exported are not listed.

    Hashing the catalog takes about a second at RISBench's size, so it is done only when a
    finalize or stats run is newer than the last export run: otherwise nothing an export holds
    can have changed since it was written.
    """
    exported = {t: m for t in (targets or cfg.export.targets) if (m := read_manifest(ws.exports / t))}
    if not exported:
        return []
    export_run = last_finished_run(catalog, ("export",))
    changed = last_finished_run(catalog, _CHANGES_EXPORTS)
    if export_run is not None and (changed is None or changed < export_run):
        return []
    now = input_fingerprint(catalog, ws, cfg)
    return [t for t, m in exported.items() if recorded_fingerprint(m) != now]


def stale_export_message(ws: Workspace, folder: Path) -> str | None:
    """One line when ``folder``, an export of ``ws``, is older than the catalog's final table:
    what publish refuses and train warns about."""
    folder = folder.resolve()
    if folder.parent != ws.exports.resolve() or not ws.catalog_path.exists():
        return None
    with Catalog.for_reading(ws.catalog_path) as catalog:
        if not stale_exports(catalog, ws, ws.load(), [folder.name]):
            return None
    return (f"{folder} is older than the catalog's final table (finalize ran after the export): "
            f"run `{refresh_command(ws.path)}`")


def refresh_command(ws: Path) -> str:
    """The one command that brings the exports up to the final table (stats first: the card
    and STATS.md carry the split figures)."""
    return f"risbench build -w {ws} --stage stats --until export"
