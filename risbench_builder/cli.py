"""The `risbench` command: parse, load the pipeline, call a stage. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from .catalog import Catalog, CatalogError
from enum import Enum

from . import __version__
from .console import EXIT_ERROR, WorkspaceOpt, console, emit_json, json_mode
from .console import friendly as _friendly
from .console import plain as _plain
from .stages import MOVED, PIPELINE, WAITING, run_plan
from .segment.calibrate import calibrate_workspace
from .workspace import Workspace, init_workspace

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build referring remote-sensing segmentation datasets the RISBench way.")
JsonOpt = typer.Option(False, "--json", help="print only JSON on stdout (everything else goes to stderr)")
StageName = Enum("StageName", {name: name for name in (*PIPELINE, "all")}, type=str)     # --stage choices
UntilName = Enum("UntilName", {name: name for name in PIPELINE}, type=str)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"risbench-builder {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                      help="print the version and exit")) -> None:
    """Build referring remote-sensing segmentation datasets the RISBench way."""


@app.command()
@_friendly
def init(workspace: Path = typer.Argument(..., help="folder to create"),
         pipeline: str = typer.Option(..., "--pipeline", "-p", help="pipeline YAML, or a shipped recipe name: demo, risbench"),
         overwrite: bool = typer.Option(False, help="replace an existing pipeline.yaml")) -> None:
    """Create a workspace and copy the pipeline into it."""
    from .stages.next_step import missing_source

    ws = init_workspace(workspace, pipeline, overwrite=overwrite)
    console.print(f"workspace ready: {ws.path}\n  pipeline: {ws.pipeline_path}")
    step = missing_source(ws.path)
    console.print(f"[bold]next[/]: {step.line()}" if step else f"[bold]next[/]: risbench build --workspace {ws.path} "
                  f"--stage all", soft_wrap=True)


@app.command()
@_friendly
def build(workspace: Path = WorkspaceOpt,
          stage: StageName = typer.Option("all", "--stage", "-s", help="the stage to run, or all (review and train "
                                                                       "are commands of their own: risbench review, "
                                                                       "risbench train)"),
          until: Optional[UntilName] = typer.Option(None, help="run from --stage up to and including this stage"),
          force: bool = typer.Option(False, help="recompute the stage (drops its rows and those downstream)"),
          discard_reviews: bool = typer.Option(
              False, help="ingest --force: also where people reviewed masks (the catalog is copied to W/backups/ "
                          "first)"),
          max_reject_rate: Optional[float] = typer.Option(
              None, help="ingest: exit 3 when more than this fraction of records is rejected"),
          shard: Optional[str] = typer.Option(
              None, help="sam-refine: take only shard i/n of the images (default: torchrun's RANK/WORLD_SIZE)"),
          shard_catalog: bool = typer.Option(
              False, help="sam-refine: write this shard's own catalog under W/shards/ (multi-node)"),
          round_no: Optional[int] = typer.Option(
              None, "--round", min=1, help="sam-refine: data-engine round N > 1 re-decides only the triplets "
                                           "still waiting for review (README: Rounds)"),
          as_json: bool = JsonOpt,
          progress: bool = typer.Option(sys.stderr.isatty(), help="show progress bars")) -> None:
    """Run one stage, or all stages in order."""
    from .stages.next_step import next_step

    ws = Workspace(workspace.resolve())
    with json_mode(as_json):
        results = run_plan(ws, stage.value, until.value if until else None, force=force,
                           discard_reviews=discard_reviews or None, max_reject_rate=max_reject_rate, shard=shard,
                           shard_catalog=shard_catalog or None, round_no=round_no, progress=progress)
        waiting = results.pop(WAITING, None)
        moved = results.pop(MOVED, None)
        summaries = {name: r.as_dict() if hasattr(r, "as_dict") else r for name, r in results.items()}
        if as_json:
            emit_json({"stages": summaries, "stopped": waiting.as_dict() if waiting else None,
                       "moved": moved or {}, "next": next_step(ws.path).as_dict()})
            return
        if moved:
            console.print("[bold]moved[/]: the catalog's image paths followed the pipeline's roots and the workspace: "
                          + ", ".join(f"{n:,} of {label}" for label, n in moved.items()))
        for name, summary in summaries.items():
            console.print(f"[bold]{name}[/]: " + json.dumps(_headline(summary)))
        _print_status(ws)
        if waiting is not None:
            console.print(f"[bold]stopped before the next stage[/]: {waiting.waiting}")
        _print_next(ws)


def _headline(summary: Any) -> Any:
    if not isinstance(summary, dict):
        return summary
    keep = ("triplets_seen", "triplets_new", "rejected", "reject_rate", "seconds", "triplets_per_s",
            "segmenter", "shard", "images", "proposals", "crops", "routes", "rerouted", "kept", "pending",
            "scenes", "triplets", "splits", "figures", "skipped_sources", "changed_since_ingest", "up_to_date")
    return {k: summary[k] for k in keep if k in summary and (k != "up_to_date" or summary[k])}


def _print_next(ws: Workspace) -> None:
    from .stages.next_step import next_step

    step = next_step(ws.path)
    console.print(f"[bold]next[/]: {step.waiting}: {step.command}", soft_wrap=True)


def _print_status(ws: Workspace) -> dict[str, Any]:
    with Catalog.for_reading(ws.catalog_path) as catalog:
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
    """Counts per stage, route and split, rejects by reason, the last runs and what runs now."""
    from .lock import current_holder, describe
    from .stages.next_step import next_step

    ws = Workspace(workspace.resolve())
    if not ws.catalog_path.exists():
        raise CatalogError(f"no catalog at {ws.catalog_path} yet; next: {next_step(ws.path).line()}")
    holder = current_holder(ws.path)
    if as_json:
        with Catalog.for_reading(ws.catalog_path) as catalog:
            summary = catalog.summary()
        emit_json({**summary, "running": holder, "next": next_step(ws.path).as_dict()})
        return
    _print_status(ws)
    if holder is not None:
        console.print(f"[bold]running now[/]: {describe(holder)}; the next step below is for when it ends",
                      soft_wrap=True, highlight=False)
    _print_next(ws)


catalog_app = typer.Typer(help="Catalog maintenance.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("merge")
@_friendly
def catalog_merge(others: list[Path] = typer.Argument(..., help="shard catalogs to join in"),
                  workspace: Path = WorkspaceOpt) -> None:
    """Join per-rank shard catalogs (multi-node sam-refine) into the workspace catalog; those under
    W/shards/ are removed once joined, so that the next sharded run starts from the workspace
    catalog as it is then, not from a stale copy."""
    from .lock import workspace_lock

    ws = Workspace(workspace.resolve())
    with workspace_lock(ws.path, "catalog merge"), Catalog(ws.catalog_path, create=False) as catalog:
        for other in others:
            if not other.is_file():
                raise FileNotFoundError(f"{other}: no such catalog")
            added = catalog.merge_from(other)
            skipped = added.pop("skipped")
            done = other.resolve().parent == ws.shards.resolve()
            if done:
                for path in (other, Path(f"{other}-wal"), Path(f"{other}-shm")):
                    path.unlink(missing_ok=True)
            console.print(f"merged {other}: " + (", ".join(f"{n} {t}" for t, n in added.items() if n) or "nothing new")
                          + (f"; {skipped} proposals of triplets this workspace does not hold left out" if skipped
                             else "") + ("; removed" if done else ""), highlight=False)


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
              write: bool = typer.Option(False, help="write the proposed thresholds into pipeline.yaml"),
              reviewed_only: bool = typer.Option(False, "--reviewed-only", help="trust only the reviewers' "
                                                 "consensus masks, not the synthetic truth (a data-engine round)"),
              as_json: bool = JsonOpt) -> None:
    """Router precision and recall against trusted masks, and thresholds that reach a target precision."""
    ws = Workspace(workspace.resolve())
    result = calibrate_workspace(ws, truth, target, write, reviewed_only=reviewed_only)
    if as_json:
        emit_json(result)
        return
    _print_evaluation("current thresholds ", result["current"])
    _print_evaluation("proposed thresholds", result["proposed"])
    changed = {k: v for k, v in result["proposed"]["thresholds"].items() if result["current"]["thresholds"][k] != v}
    console.print(f"  target precision {target} {'reached' if result['target_reached'] else 'NOT reached'}; "
                  f"changes: {json.dumps(changed)}")
    if write:
        console.print(f"  written to {result['written_to']}; rerun sam-refine to re-route (no masks are recomputed)")
        if "previous_pipeline" in result:
            console.print(f"  its layout did not allow a one-value edit, so it was rewritten without comments; the "
                          f"previous file is {result['previous_pipeline']}")


@app.command()
@_friendly
def show(triplet_id: str = typer.Argument(..., help="triplet id, or a unique prefix of one"),
         workspace: Path = WorkspaceOpt,
         out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default: W/reports/show/ID.png)")) -> None:
    """Render one triplet as a PNG: image, prompt box, masks, caption, quality signals and route."""
    from .qa.show import show_triplet

    console.print(f"wrote {show_triplet(Workspace(workspace.resolve()), triplet_id, out)}")


@app.command()
@_friendly
def report(workspace: Path = WorkspaceOpt,
           page_size: int = typer.Option(120, min=1, help="thumbnails per gallery page"),
           workers: Optional[int] = typer.Option(None, min=1, help="thumbnail processes (default: up to 2)"),
           progress: bool = typer.Option(sys.stderr.isatty(), help="show a progress bar")) -> None:
    """Write W/reports/index.html: a static report with galleries, sorting, filters and detail views."""
    from .qa.report import ReportOptions, write_report

    result = write_report(Workspace(workspace.resolve()), ReportOptions(page_size=page_size, workers=workers,
                                                                         progress=progress))
    t = result.thumbs
    console.print(f"report: {result.index}\n  thumbnails: {t.rendered} rendered, {t.reused} reused, {t.removed} "
                  f"removed; {result.seconds:.1f} s\n  open: {result.index.as_uri()}")


@app.command()
@_friendly
def audit(workspace: Path = WorkspaceOpt,
          fresh: Optional[bool] = typer.Option(None, "--fresh/--no-fresh", help="compare each mask with a fresh one "
                                               "from refine.segmenter (default: when the pipeline names one)"),
          as_json: bool = typer.Option(False, "--json", help="print only the summary JSON on stdout"),
          progress: bool = typer.Option(sys.stderr.isatty(), help="show progress bars")) -> None:
    """Find the defects of an imported dataset's masks; write W/reports/audit.json and AUDIT.md and send
    the flagged triplets to review."""
    from .stages.audit import run_audit, summary

    ws = Workspace(workspace.resolve())
    with json_mode(as_json):
        result = run_audit(ws, ws.load(), fresh=fresh, progress=progress)
    if as_json:
        emit_json(summary(result))
        return
    counts = {k: v for k, v in result.counts.items() if v}
    console.print(f"audit: {result.triplets:,} triplets, {len(result.flagged):,} flagged"
                  + (": " + ", ".join(f"{n:,} {k}" for k, n in counts.items()) if counts else ""))
    if result.routes:
        console.print(f"  routes: {result.routes['review']:,} to review, {result.routes['accept']:,} kept as they are")
    console.print(f"  report: {ws.reports / 'AUDIT.md'}\n  next: risbench review push -w {ws.path}")


@app.command()
@_friendly
def quality(workspace: Path = WorkspaceOpt,
            as_json: bool = typer.Option(False, "--json", help="print only quality.json on stdout")) -> None:
    """Measure mask quality from the reviewed audit sample and review decisions; write
    W/reports/quality.json and QUALITY.md."""
    from .finalize.quality import write_quality

    ws = Workspace(workspace.resolve())
    with Catalog(ws.catalog_path, create=False) as catalog:
        result = write_quality(catalog, ws.load(), ws.reports)
    if as_json:
        emit_json(result)
        return
    _plain(result["statement"])
    console.print(f"  report: {ws.reports / 'QUALITY.md'}")


@app.command()
@_friendly
def check(path: Path = typer.Argument(..., help="an export folder, W/exports, a workspace, or a downloaded "
                                                "RRSIS-D / RefSegRS / RISBench folder"),
          report: Optional[Path] = typer.Option(None, "--report", help="also write every failure as JSON here"),
          as_json: bool = JsonOpt) -> None:
    """Validate exports in the hf, refer, native or coco format; exit 1 and list every failure."""
    from .export.check import check_path

    with json_mode(as_json):
        reports = check_path(path)
    if as_json:
        emit_json([r.as_dict() for r in reports])
    else:
        for r in reports:
            console.print(r.render(), markup=False, highlight=False)
    if report:
        report.write_text(json.dumps([r.as_dict() for r in reports], indent=2) + "\n")
    if not all(r.ok for r in reports):
        raise typer.Exit(EXIT_ERROR)


@app.command()
@_friendly
def publish(workspace: Path = WorkspaceOpt,
            repo_id: str = typer.Option(..., "--repo-id", help="dataset repository ORG/NAME on the Hugging Face Hub"),
            private: bool = typer.Option(False, help="create the repository as private"),
            dry_run: bool = typer.Option(False, "--dry-run", help="prove the export loads offline; upload nothing"),
            as_json: bool = JsonOpt) -> None:
    """Upload the hf export to the Hugging Face Hub (token: HF_TOKEN, else the login saved by `hf auth login`)
    after proving it loads."""
    from .export.publish import publish_export

    with json_mode(as_json):
        result = publish_export(Workspace(workspace.resolve()), repo_id, private=private, dry_run=dry_run)
    if as_json:
        emit_json(result)
        return
    console.print(f"{result['folder']}: {result['rows']} rows load offline ({', '.join(f'{s} {n}' for s, n in result['splits'].items())}); "
                  "features equal the schema; masks bit-exact with the catalog")
    console.print(f"uploaded to {result['url']}" if result["uploaded"] else "dry run: nothing uploaded")


from .adapter.cli import adapter_app  # noqa: E402

app.add_typer(adapter_app, name="adapter")

review_app = typer.Typer(help="Human review in Label Studio (token from the env var named by review.token_env).",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("push")
@_friendly
def review_push(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """Create or reuse the review project and import the uncertain masks not yet there."""
    from .review import push

    with json_mode(as_json):
        r = push(Workspace(workspace.resolve()))
    if as_json:
        emit_json(r.as_dict())
        return
    console.print(f"review push: project {r.project_id} at {r.url}: {r.imported} tasks imported, {r.already_there} "
                  f"already there ({r.queued} queued); images served from {r.image_root}")


@review_app.command("pull")
@_friendly
def review_pull(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """Fetch the reviews, compute consensus, send disagreements to adjudication, take experts' answers."""
    from .review import pull

    with json_mode(as_json):
        r = pull(Workspace(workspace.resolve())).as_dict()
    if as_json:
        emit_json(r)
        return
    console.print("review pull: " + json.dumps({k: r[k] for k in ("tasks_seen", "reviews_new", "reviews_changed",
                                                                   "redecided", "decisions", "adjudication_tasks_new",
                                                                   "adjudicated", "candidates_new", "skipped",
                                                                   "seconds")}))
    if r["kept_expert_decision"]:
        console.print(f"  {r['kept_expert_decision']} reviewers changed answers after an expert decided the triplet: "
                      "the experts' decisions stand")
    console.print(f"next: risbench build --workspace {workspace} --stage finalize")


@review_app.command("status")
@_friendly
def review_status_cmd(workspace: Path = WorkspaceOpt,
                      as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Tasks pushed, annotations per task, agreement, adjudication queue, IoU per annotator."""
    from .review import review_status

    info = review_status(Workspace(workspace.resolve()))
    if as_json:
        emit_json(info)
        return
    console.print(f"project {info['project_id']} at {info['url']}: {info['tasks_pushed']} tasks pushed, "
                  f"{info['queue_not_pushed']} queued and not pushed; quorum {info['quorum']}")
    console.print(f"  annotations per task: {info['annotations_per_task']} "
                  f"({info['tasks_without_annotations']} tasks without any)")
    console.print(f"  decisions: {info['decisions']}  rejected: {info['rejected']}")
    console.print(f"  agreement (mean pairwise IoU): {json.dumps(info['agreement'])}")
    console.print(f"  awaiting adjudication ({info['adjudication']}): {info['awaiting_adjudication']}")
    table = Table(title="annotators", show_header=True)
    for col in ("annotator", "reviews", "verdicts", "IoU vs consensus", "compared"):
        table.add_column(col)
    for name, a in info["annotators"].items():
        iou = "n/a" if a["mean_iou_vs_consensus"] is None else f"{a['mean_iou_vs_consensus']:.3f}"
        flag = " [red](low)[/]" if name in info["annotators_below_threshold"] else ""
        table.add_row(name, str(a["reviews"]), json.dumps(a["verdicts"]), iou + flag, str(a["compared"]))
    console.print(table)


@app.command()
@_friendly
def train(data: Optional[Path] = typer.Option(None, "--data", help="export folder (hf, refer or native layout); "
                                              "default with --workspace: W/exports/hf"),
          workspace: Optional[Path] = typer.Option(None, "--workspace", "-w",
                                                   help="a workspace: runs go to W/runs, data defaults to W/exports/hf"),
          config: Optional[str] = typer.Option(
              None, "--config", "-c", help="CroBIM YAML, or shipped: crobim_swin_b, crobim_convnext_b, smoke, tiny"),
          out: Optional[Path] = typer.Option(None, "--out", "-o",
                                             help="run folder (default W/runs/crobim-<name>, or ./runs/crobim-<name>)"),
          smoke: bool = typer.Option(False, "--smoke", help="validate the export: small CPU model (config smoke), "
                                     "aligned vs shuffled-expression control"),
          dry_run: bool = typer.Option(False, "--dry-run", help="build the model, print its parameter count, exit"),
          resume: bool = typer.Option(False, help="continue from OUT/last"),
          device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N (default: cuda when available)"),
          side_by_side: Optional[bool] = typer.Option(
              None, "--side-by-side/--one-at-a-time",
              help="--smoke: train both arms at once in two processes (default on a CPU with 2+ threads), "
                   "or one after the other (skips the control when the aligned run already fails)"),
          progress: bool = typer.Option(sys.stderr.isatty(), help="show a progress bar per epoch")) -> None:
    """Train the bundled CroBIM reference model on an export, or check an export with --smoke."""
    from .crobim.config import load_config
    from .export.freshness import stale_export_message

    cfg = load_config(config or ("smoke" if smoke else "crobim_swin_b"))
    if dry_run:
        from .crobim.train import dry_run as count_parameters

        count_parameters(cfg, log=_plain)
        return
    ws = Workspace(workspace.resolve()) if workspace is not None else None
    data = data if data is not None or ws is None else ws.exports / "hf"
    if data is None:
        raise ValueError("train: --data EXPORT or --workspace W is required (only --dry-run runs without data)")
    stale = stale_export_message(ws, data) if ws is not None else None
    if stale:
        _plain(f"warning: {stale}; this run trains on the splits it holds")
    if smoke:
        from .crobim.smoke import smoke as run_smoke

        if run_smoke(data, cfg, device=device, log=_plain, side_by_side=side_by_side)["verdict"] != "PASS":
            raise typer.Exit(EXIT_ERROR)
        return
    from .crobim.train import train as run_train

    runs = ws.runs if ws is not None else Path("runs")
    run_train(data, cfg, out or runs / f"crobim-{cfg.name}", resume=resume, device=device, log=_plain,
              progress=progress)


@app.command()
@_friendly
def evaluate(checkpoint: Path = typer.Option(..., "--checkpoint", help="a run's best/ or last/ folder, or model.safetensors"),
             data: Path = typer.Option(..., "--data", help="export folder (hf, refer or native layout)"),
             split: str = typer.Option("test", help="split to score"),
             native: Optional[bool] = typer.Option(None, "--native/--grid", help="native resolution, or the config's grid (480)"),
             batch_size: Optional[int] = typer.Option(None, help="images per forward"),
             device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N"),
             as_json: bool = JsonOpt) -> None:
    """Score a CroBIM checkpoint on an export split; prints the paper's table row."""
    from .crobim.evaluate import evaluate as run_evaluate

    with json_mode(as_json):
        result = run_evaluate(checkpoint, data, split, native, batch_size, device, log=_plain)
    if as_json:
        emit_json(result)


@app.command()
@_friendly
def demo(workspace: Path = typer.Option(Path("demo-workspace"), "--workspace", "-w"),
         scenes: Optional[int] = typer.Option(None, "--scenes", min=1, help="synthetic scenes (demo.yaml: 12; "
                                              "250 gives an export `risbench train --smoke` can judge)"),
         patches_per_scene: Optional[int] = typer.Option(None, "--patches-per-scene", min=1,
                                                         help="patches cut from each scene (demo.yaml: 2)"),
         as_json: bool = JsonOpt,
         progress: bool = typer.Option(sys.stderr.isatty(), help="show progress bars")) -> None:
    """Build a small dataset from generated synthetic sources, offline, and say where it went."""
    from .demo import init_demo, run_demo

    ws = Workspace(workspace.resolve())
    with json_mode(as_json):
        if init_demo(ws, scenes, patches_per_scene):
            console.print(f"starting over: the earlier demo build in {ws.path} is replaced (its training runs and "
                          "Label Studio state are kept)", highlight=False)
        result = run_demo(ws, progress=progress)
    if as_json:
        emit_json({**result, "workspace": ws.path, "exports": {t: {"path": p, "check_passed": ok, "failures": n}
                                                               for t, (p, ok, n) in result.get("exports", {}).items()}})
        return
    info = _print_status(ws)
    console.print("\n[bold]mask quality against the synthetic truth[/]")
    _print_evaluation("demo thresholds", result["quality"])
    console.print("\n[bold green]demo build finished[/]")
    console.print(f"  workspace : {ws.path}")
    console.print(f"  pipeline  : {ws.pipeline_path}")
    console.print(f"  catalog   : {ws.catalog_path}  ({info['counts']['triplets']} triplets, "
                  f"{info['counts']['images']} images, {info['counts']['final']} final, "
                  f"{info['counts']['rejects']} rejects)")
    console.print(f"  sources   : {result['sources']}  (synthetic, VRSBench layout, true masks beside)")
    console.print(f"  review    : {result['queued']} masks routed to people; Label Studio import file "
                  f"{result['import_file']}")
    console.print(f"              demo stand-in reviewers (synthetic truth) decided: {result['review_decisions']}")
    for r in result.get("rounds", []):
        earlier = (f"; {r['earlier_samples']} of those drawn in an earlier round and still open"
                   if r.get("earlier_samples") else "")
        console.print(f"  round {r['round']}   : {r['tasks']} tasks sent to people ({r['sampled']} of them the audit "
                      f"sample of auto-accepted masks{earlier}), {r['answered']} answered")
    if result.get("stats"):
        console.print(f"  stats     : {result['stats']}")
        for fig in result["figures"]:
            console.print(f"              {fig}")
    for target, (path, ok, failures) in result.get("exports", {}).items():
        verdict = "[green]check passed[/]" if ok else f"[red]check FAILED ({failures} failures)[/]"
        console.print(f"  export    : {target:7s} {path}  {verdict}")
    console.print(f"  reports   : {ws.reports}")
    console.print(f"  report    : {result['report']}  (open {result['report'].as_uri()})")
    console.print(f"  status    : risbench status --workspace {ws.path}")
    if result.get("quality_statement"):
        console.print(f"\n[bold]measured quality[/] ({result['quality_report']})")
        _plain(f"  {result['quality_statement']}")


if __name__ == "__main__":  # pragma: no cover
    app()
