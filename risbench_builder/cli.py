"""The `risbench` command: parse, load the pipeline, call a stage. Nothing else lives here."""

from __future__ import annotations

import inspect
import json
import sys
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from .catalog import Catalog, CatalogError
from .config import ConfigError
from .stages import PIPELINE, implementations, plan, run_stage
from .stages.ingest import RejectRateExceeded
from .segment.calibrate import calibrate_workspace
from .workspace import Workspace, init_workspace

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build referring remote-sensing segmentation datasets the RISBench way.")
console = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_ERROR, EXIT_REJECTS = 1, 3
WorkspaceOpt = typer.Option(..., "--workspace", "-w", help="workspace folder (made by `risbench init`)")


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures become one red line that says what to do, and a non-zero exit."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RejectRateExceeded as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_REJECTS) from None
        except (ConfigError, CatalogError, FileNotFoundError, ValueError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


@app.command()
@_friendly
def init(workspace: Path = typer.Argument(..., help="folder to create"),
         pipeline: str = typer.Option(..., "--pipeline", "-p", help="pipeline YAML, or a shipped recipe name: demo, risbench"),
         overwrite: bool = typer.Option(False, help="replace an existing pipeline.yaml")) -> None:
    """Create a workspace and copy the pipeline into it."""
    ws = init_workspace(workspace, pipeline, overwrite=overwrite)
    console.print(f"workspace ready: {ws.path}\n  pipeline: {ws.pipeline_path}\n"
                  f"next: risbench build --workspace {ws.path} --stage all")


def _build(ws: Workspace, stage: str, until: Optional[str], **options: Any) -> dict[str, Any]:
    cfg = ws.load()
    results = {}
    for name in plan(stage, until):
        accepted = inspect.signature(implementations()[name]).parameters
        kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
        results[name] = run_stage(name, ws, cfg, **kwargs)
    return results


@app.command()
@_friendly
def build(workspace: Path = WorkspaceOpt,
          stage: str = typer.Option("all", "--stage", "-s", help=f"one of: {', '.join(PIPELINE)}, all"),
          until: Optional[str] = typer.Option(None, help="run from --stage up to and including this stage"),
          force: bool = typer.Option(False, help="recompute the stage (drops its rows and those downstream)"),
          max_reject_rate: Optional[float] = typer.Option(
              None, help="ingest: exit 3 when more than this fraction of records is rejected"),
          shard: Optional[str] = typer.Option(
              None, help="sam-refine: take only shard i/n of the images (default: torchrun's RANK/WORLD_SIZE)"),
          shard_catalog: bool = typer.Option(
              False, help="sam-refine: write this shard's own catalog under W/shards/ (multi-node)"),
          progress: bool = typer.Option(sys.stderr.isatty(), help="show progress bars")) -> None:
    """Run one stage, or all stages in order."""
    ws = Workspace(workspace.resolve())
    results = _build(ws, stage, until, force=force, max_reject_rate=max_reject_rate, shard=shard,
                     shard_catalog=shard_catalog or None, progress=progress)
    for name, result in results.items():
        summary = result.as_dict() if hasattr(result, "as_dict") else result
        console.print(f"[bold]{name}[/]: " + json.dumps(_headline(summary)))
    _print_status(ws)


def _headline(summary: Any) -> Any:
    if not isinstance(summary, dict):
        return summary
    keep = ("triplets_seen", "triplets_new", "rejected", "reject_rate", "seconds", "triplets_per_s",
            "segmenter", "shard", "images", "proposals", "crops", "routes", "rerouted", "kept", "pending",
            "triplets", "splits", "figures")
    return {k: summary[k] for k in keep if k in summary}


def _print_status(ws: Workspace) -> dict[str, Any]:
    with Catalog(ws.catalog_path, create=False) as catalog:
        info = catalog.summary()
    table = Table(title=f"catalog {info['catalog']}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, n in info["counts"].items():
        table.add_row(name, str(n))
    for group in ("triplets_by_source", "triplets_by_origin_split", "proposals_by_route", "final_by_split"):
        for key, n in info[group].items():
            table.add_row(f"  {group.replace('_', ' ')}: {key}", str(n))
    for stage_name, reasons in info["rejects"].items():
        for reason, n in reasons.items():
            table.add_row(f"  rejects {stage_name}: {reason}", str(n))
    console.print(table)
    for run in info["runs"]:
        console.print(f"  run {run['run_id']}  started {run['started']}  finished {run['finished'] or '(unfinished)'}")
    return info


@app.command()
@_friendly
def status(workspace: Path = WorkspaceOpt,
           as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Counts per stage, route and split, rejects by reason, and the last runs."""
    ws = Workspace(workspace.resolve())
    if as_json:
        with Catalog(ws.catalog_path, create=False) as catalog:
            console.print_json(json.dumps(catalog.summary()))
    else:
        _print_status(ws)


catalog_app = typer.Typer(help="Catalog maintenance.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("merge")
@_friendly
def catalog_merge(others: list[Path] = typer.Argument(..., help="shard catalogs to join in"),
                  workspace: Path = WorkspaceOpt) -> None:
    """Join per-rank shard catalogs (multi-node sam-refine) into the workspace catalog."""
    ws = Workspace(workspace.resolve())
    with Catalog(ws.catalog_path, create=False) as catalog:
        for other in others:
            if not other.is_file():
                raise FileNotFoundError(f"{other}: no such catalog")
            added = catalog.merge_from(other)
            console.print(f"merged {other}: " + ", ".join(f"{n} {t}" for t, n in added.items() if n))


def _print_evaluation(label: str, ev: dict[str, Any]) -> None:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    console.print(f"  {label}: {ev['n']} masks with truth; mean IoU {ev['segmenter']} {ev['mean_iou']:.3f} vs "
                  f"box baseline {ev['mean_iou_box_baseline']:.3f}; good (IoU>=0.9) {ev['good_share']:.1%}; "
                  f"to review {ev['review_share']:.1%}; auto-accept precision {fmt(ev['precision'])}, "
                  f"recall {fmt(ev['recall'])}")


@app.command()
@_friendly
def calibrate(workspace: Path = WorkspaceOpt,
              truth: Optional[Path] = typer.Option(None, help="truth masks.jsonl (default: the synthetic truth)"),
              target: float = typer.Option(0.95, help="auto-accept precision to reach"),
              write: bool = typer.Option(False, help="write the proposed thresholds into pipeline.yaml")) -> None:
    """Router precision and recall against trusted masks, and thresholds that reach a target precision."""
    ws = Workspace(workspace.resolve())
    result = calibrate_workspace(ws, truth, target, write)
    _print_evaluation("current thresholds ", result["current"])
    _print_evaluation("proposed thresholds", result["proposed"])
    changed = {k: v for k, v in result["proposed"]["thresholds"].items() if result["current"]["thresholds"][k] != v}
    console.print(f"  target precision {target} {'reached' if result['target_reached'] else 'NOT reached'}; "
                  f"changes: {json.dumps(changed)}")
    if write:
        console.print(f"  written to {result['written_to']}; rerun sam-refine to re-route (no masks are recomputed)")


@app.command()
@_friendly
def demo(workspace: Path = typer.Option(Path("demo-workspace"), "--workspace", "-w"),
         progress: bool = typer.Option(sys.stderr.isatty(), help="show progress bars")) -> None:
    """Build a small dataset from generated synthetic sources, offline, and say where it went."""
    ws = Workspace(workspace.resolve())
    if not ws.pipeline_path.exists():
        init_workspace(ws.path, "demo")
    _build(ws, "all", None, progress=progress)
    info = _print_status(ws)
    cfg = ws.load()
    quality = calibrate_workspace(ws, None, 0.95, write=False)["current"]
    console.print("\n[bold]mask quality against the synthetic truth[/]")
    _print_evaluation("demo thresholds", quality)
    console.print("\n[bold green]demo build finished[/]")
    console.print(f"  workspace : {ws.path}")
    console.print(f"  pipeline  : {ws.pipeline_path}")
    console.print(f"  catalog   : {ws.catalog_path}  ({info['counts']['triplets']} triplets, "
                  f"{info['counts']['images']} images, {info['counts']['rejects']} rejects)")
    if cfg.synthetic:
        console.print(f"  sources   : {ws.resolve(cfg.synthetic.out)}  (synthetic, VRSBench layout, true masks beside)")
    console.print(f"  reports   : {ws.reports}  (ingest.json, refine.json, calibration.json, rejects.csv)")
    console.print(f"  status    : risbench status --workspace {ws.path}")


if __name__ == "__main__":  # pragma: no cover
    app()
