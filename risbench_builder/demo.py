"""The offline demo build (`make demo`): every stage on synthetic sources, nothing downloaded.

Stand-ins are used only where a real build needs people: the synthetic truth answers the
review queue (three simulated reviewers through the real consensus code), after the Label
Studio import file a real team would use has been written.
"""

from __future__ import annotations

from typing import Any

from .review import export_import_file
from .review.simulate import simulate_review
from .segment.calibrate import calibrate_workspace
from .stages import implementations, run_plan
from .workspace import Workspace, init_workspace


def run_demo(ws: Workspace, progress: bool = False) -> dict[str, Any]:
    """Build the demo workspace end to end; returns what the CLI prints."""
    if not ws.pipeline_path.exists():
        init_workspace(ws.path, "demo")
    cfg = ws.load()
    run_plan(ws, "ingest", "sam-refine", progress=progress)
    truth = ws.resolve(cfg.synthetic.out) / "vrsbench_truth"
    quality = calibrate_workspace(ws, truth, 0.95, write=False)["current"]
    queued = export_import_file(ws, cfg)
    decisions = simulate_review(ws, cfg, truth)
    results = run_plan(ws, "finalize", "export", progress=progress)
    out: dict[str, Any] = {"quality": quality, "sources": ws.resolve(cfg.synthetic.out), "queued": queued.tasks,
                           "import_file": queued.path, "review_decisions": decisions}
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
