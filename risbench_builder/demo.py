"""The offline demo build (`make demo`): every stage on synthetic sources, nothing downloaded.

Stand-ins are used only where a real build needs people: the synthetic truth answers the
review queue (three simulated reviewers through the real consensus code), after the Label
Studio import file a real team would use has been written.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from typing import Any

from .catalog import Catalog
from .config import parse_pipeline
from .lock import holds_lock, workspace_lock
from .review import export_import_file
from .review.sample import review_items
from .review.simulate import simulate_review
from .segment.calibrate import calibrate_workspace
from .synthetic import TRUTH
from .stages import implementations, run_plan
from .workspace import Workspace, init_workspace


class DemoError(ValueError):
    pass


def init_demo(ws: Workspace, scenes: int | None = None, patches_per_scene: int | None = None) -> bool:
    """The demo workspace with the shipped demo pipeline, its synthetic size set when given
    (``risbench demo --scenes 250`` builds an export large enough for ``train --smoke``).

    A demo build is reproducible: over an earlier one it starts over (returns True). Round 2's
    calibration wrote its thresholds into ``pipeline.yaml`` and the catalog holds every decision,
    so a rerun on them re-decided round 1 under round 2's thresholds and printed other numbers.
    The pipeline goes back to the shipped one (keeping the synthetic size), and the catalog,
    reports, exports and caches go; training runs and the Label Studio state stay.
    """
    import yaml

    started_over = ws.pipeline_path.exists() and ws.catalog_path.exists()
    if ws.pipeline_path.exists():
        built = ws.load().synthetic
        if built is None:
            raise DemoError(f"{ws.path} is not a demo workspace (its pipeline has no synthetic sources): "
                            f"`risbench demo` builds only its own; use `risbench build -w {ws.path}`")
        if started_over:
            _start_over(ws)
            scenes = built.scenes if scenes is None else scenes
            patches_per_scene = built.patches_per_scene if patches_per_scene is None else patches_per_scene
    if started_over or not ws.pipeline_path.exists():
        init_workspace(ws.path, "demo", overwrite=started_over)
    if scenes is None and patches_per_scene is None:
        return started_over
    data = yaml.safe_load(ws.pipeline_path.read_text())
    synthetic = data.setdefault("synthetic", {})
    if scenes is not None:
        synthetic["scenes"] = scenes
    if patches_per_scene is not None:
        synthetic["patches_per_scene"] = patches_per_scene
    parse_pipeline(data, ws.pipeline_path)      # validated like any pipeline key, before it is written
    ws.pipeline_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return started_over


def _start_over(ws: Workspace) -> None:
    with workspace_lock(ws.path, "demo"):       # not under a build that is still writing
        for name in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
            (ws.path / name).unlink(missing_ok=True)
        for folder in (ws.reports, ws.exports, ws.cache, ws.shards):
            shutil.rmtree(folder, ignore_errors=True)


@holds_lock("demo")
def run_demo(ws: Workspace, progress: bool = False) -> dict[str, Any]:
    """Build the demo workspace end to end, as two data-engine rounds; returns what the CLI prints.

    Round 1: sam-refine, the Label Studio import file (review queue + audit sample), and the
    stand-in reviewers get through the first half of it. Round 2: the router is recalibrated on
    the reviewers' masks alone, ``sam-refine --round 2`` re-decides only what still waits, and
    the reviewers answer the rest. Then finalize, stats, export and the measured quality.
    """
    init_demo(ws)
    cfg = ws.load()
    run_plan(ws, "ingest", "sam-refine", progress=progress, round_no=1)
    truth = ws.resolve(cfg.synthetic.out) / TRUTH
    quality = calibrate_workspace(ws, truth, 0.95, write=False)["current"]
    queued = export_import_file(ws, cfg)
    decisions: Counter = Counter()
    rounds: list[dict[str, Any]] = []
    for round_no in (1, 2):
        if round_no == 2:
            calibrate_workspace(ws, None, 0.95, write=True, reviewed_only=True)
            cfg = ws.load()
            run_plan(ws, "sam-refine", None, progress=progress, round_no=2)
        with Catalog(ws.catalog_path) as catalog:
            items = review_items(catalog, cfg.review)
            sampled = dict(catalog.conn.execute("SELECT triplet_id, round FROM samples").fetchall())
        limit = (len(items) + 1) // 2 if round_no == 1 else None
        answered = simulate_review(ws, cfg, truth, limit=limit)
        decisions.update(answered)
        # an earlier round's audit-sample tasks nobody answered yet go out again (the quality
        # report counts them in the round that drew them)
        rounds.append({"round": round_no, "tasks": len(items), "sampled": sum(q.triplet_id in sampled for q in items),
                       "answered": sum(answered.values()),
                       "earlier_samples": sum(sampled.get(q.triplet_id, round_no) < round_no for q in items)})
    results = run_plan(ws, "finalize", "export", progress=progress)
    out: dict[str, Any] = {"quality": quality, "sources": ws.resolve(cfg.synthetic.out), "queued": queued.tasks,
                           "import_file": queued.path, "review_decisions": dict(decisions), "rounds": rounds}
    measured = json.loads((ws.reports / "quality.json").read_text())      # the stats stage measured it just now
    out["quality_statement"], out["quality_report"] = measured.get("statement", ""), ws.reports / "QUALITY.md"
    if "stats" in results:
        out["stats"] = ws.reports / "STATS.md"
        out["figures"] = sorted((ws.reports / "figures").glob("*.png"))
    if "export" in implementations():
        from .export.check import check_path

        out["exports"] = {}
        for target in cfg.export.targets:
            folder = ws.exports / target
            reports = check_path(folder) if folder.exists() else []
            out["exports"][target] = (folder, bool(reports) and all(r.ok for r in reports),
                                      sum(len(r.failures) for r in reports))
    from .qa.report import ReportOptions, write_report

    out["report"] = write_report(ws, ReportOptions(progress=progress)).index
    return out
