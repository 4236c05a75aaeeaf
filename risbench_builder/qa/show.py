"""`risbench show`: one triplet as a PNG, with the thresholds it fails under the workspace's pipeline."""

from __future__ import annotations

from pathlib import Path

from ..catalog import Catalog
from ..config import ConfigError
from ..segment.routing import failed_tests
from ..workspace import Workspace
from .overlay import render_triplet
from .records import find_triplet, load_records


def show_triplet(ws: Workspace, triplet: str, out: Path | None = None) -> Path:
    """Render ``triplet`` (an id or a unique prefix) to ``out`` (default ``W/reports/show/ID.png``)."""
    with Catalog(ws.catalog_path, create=False) as catalog:
        tid = find_triplet(catalog, triplet)
        rec = load_records(catalog, [tid])[tid]
    failed = None
    if rec.proposal:
        try:
            failed = failed_tests(rec.proposal.scores, ws.load().refine.route)
        except ConfigError:  # a catalog without its pipeline still renders, without the reasons
            failed = None
    path = out or ws.reports / "show" / f"{tid}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    render_triplet(rec, failed).save(path)
    return path
