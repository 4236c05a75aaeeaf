"""The stats stage: reports/stats.json, STATS.md and figures/*.png for the finished dataset, and the
measured mask quality (``quality`` in stats.json, reports/quality.json and QUALITY.md)."""

from __future__ import annotations

import json
from typing import Any

from ..catalog import Catalog
from ..config import PipelineConfig
from ..finalize.quality import write_quality
from ..finalize.records import final_records
from ..finalize.stats import collect, draw_figures, markdown_table
from ..workspace import Workspace
from .next_step import next_step

STAGE = "stats"


def run_stats(ws: Workspace, cfg: PipelineConfig, *, force: bool = False) -> dict[str, Any]:
    """Statistics of ``final``. A rerun over an unchanged ``final`` table (its fingerprint is kept
    in stats.json) and unchanged measured quality changes nothing and returns the summary it wrote;
    ``force`` rewrites them."""
    with Catalog(ws.catalog_path, create=False) as catalog:
        source = catalog.fingerprint(["final"])
        quality = write_quality(catalog, cfg, ws.reports)
        previous = _previous(ws, source, quality)
        if previous is not None and not force:
            return previous
        run_id = catalog.start_run(STAGE, cfg.sha256())
        overall, per_split = collect(final_records(catalog))
        if not overall.triplets:
            raise ValueError(f"stats: the dataset is empty; next: {next_step(ws.path).line()}")
        figures = draw_figures(overall, per_split, ws.reports / "figures")
        table = markdown_table(overall, per_split)
        images = "\n".join(f"![{p.stem}]({p.relative_to(ws.reports).as_posix()})" for p in figures)
        (ws.reports / "STATS.md").write_text(f"# Dataset statistics\n\n{table}\n\n{images}\n")
        summary = {"triplets": overall.triplets, "splits": {k: v.triplets for k, v in per_split.items()},
                   "figures": len(figures), "stats": str(ws.reports / "STATS.md")}
        data = {"overall": overall.summary(), "splits": {k: v.summary() for k, v in per_split.items()},
                "figures": [str(p.relative_to(ws.reports)) for p in figures], "final_fingerprint": source,
                "quality": quality, "summary": summary}
        (ws.reports / "stats.json").write_text(json.dumps(data, indent=2) + "\n")
        catalog.finish_run(run_id, summary)
    return summary


def _previous(ws: Workspace, source: str, quality: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of stats already written from this very ``final`` table and quality, if every file
    is there."""
    try:
        data = json.loads((ws.reports / "stats.json").read_text())
    except (OSError, ValueError):
        return None
    files = [ws.reports / "STATS.md", *(ws.reports / f for f in data.get("figures", []))]
    if (data.get("final_fingerprint") != source or data.get("quality") != quality
            or not all(f.is_file() for f in files)):
        return None
    return data.get("summary")
