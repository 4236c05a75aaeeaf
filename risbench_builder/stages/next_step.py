"""What a workspace waits for, and the one command that comes next.

``risbench build --stage all`` stops where the inputs of the next stage are not ready (masks that
people must review first, an import not audited yet) and prints this; ``risbench status`` prints
it too, so a newcomer always sees the true state and the right next command rather than an error
from a later stage that found nothing to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog
from ..config import ConfigError
from ..export.freshness import refresh_command, stale_exports
from ..readmodel import REFERRED, current_proposal_set, last_finished_run, queued_count, unmasked_count
from ..sources.imported import IMPORTED_SEGMENTER
from ..workspace import Workspace


@dataclass(frozen=True)
class NextStep:
    waiting: str              # what the workspace waits for, in words ("65 masks await review")
    command: str              # the command that comes next
    blocks_finalize: bool = False   # True: finalizing now would leave out work people have not done

    def line(self) -> str:
        return f"{self.waiting}: {self.command}"

    def as_dict(self) -> dict[str, str | bool]:
        return {"waiting": self.waiting, "next": self.command, "blocks_finalize": self.blocks_finalize}


def _has_run(catalog: Catalog, stage: str) -> bool:
    return catalog.conn.execute("SELECT 1 FROM runs WHERE stage=? AND finished IS NOT NULL LIMIT 1",
                                (stage,)).fetchone() is not None


def finalized_since_decisions(catalog: Catalog) -> bool:
    """A finalize ran after the last run that decided masks (sam-refine, review, audit): the
    final table, and an export made from it, hold every decision there is."""
    finalized = last_finished_run(catalog, ("finalize",))
    latest = last_finished_run(catalog, ("sam-refine", "review-simulated", "review", "audit"))
    return finalized is not None and (latest is None or latest < finalized)


def review_waiting(catalog: Catalog, ws: Path) -> NextStep | None:
    """Masks routed to people (and the audit sample) that nobody has decided yet; the partial
    export is offered only while it would add something (no finalize since the last decisions)."""
    queued = queued_count(catalog)
    if not queued:
        return None
    decided = catalog.count("consensus")
    what = f"{queued:,} masks await review" + (f" ({decided:,} decided so far)" if decided else "")
    command = f"risbench review push -w {ws}, then risbench review pull -w {ws}"
    if not finalized_since_decisions(catalog):
        command += f" (or export what is decided now: risbench build -w {ws} --stage finalize --until export)"
    return NextStep(what, command, blocks_finalize=True)


def missing_source(ws: Path) -> NextStep | None:
    """A source root the pipeline names that is not there yet (the shipped ``risbench`` and
    ``audit`` pipelines point at placeholders): the user edits the pipeline before building."""
    workspace = Workspace(ws)
    try:
        cfg = workspace.load()
    except ConfigError:
        return None        # build says what is wrong with the pipeline, one line per key
    if cfg.synthetic is not None:
        return None        # ingest writes the synthetic sources first
    for i, src in enumerate(cfg.sources):
        root = workspace.resolve(src.root)
        if not root.is_dir():
            return NextStep(f"sources[{i}].root {root} is not there",
                            f"set it in {workspace.pipeline_path} to your {src.kind} copy, then "
                            f"risbench build -w {ws} --stage ingest")
    return None


def unread_sources(catalog: Catalog, ws: Path) -> NextStep | None:
    """Sources the pipeline names that no finished ingest has read (one added after a build, or an
    ingest killed on its way): every later stage would quietly leave them out."""
    try:
        cfg = Workspace(ws).load()
    except ConfigError:
        return None
    read: set[str] = set()
    for (counts,) in catalog.conn.execute("SELECT counts_json FROM runs WHERE stage='ingest' AND finished IS NOT NULL"):
        try:
            read.update(json.loads(counts or "{}").get("per_source", {}))
        except (ValueError, AttributeError):
            continue
    unread = [src.label for src in cfg.sources if src.label not in read]
    if not unread:
        return None
    return NextStep(f"{', '.join(unread)} in {ws / 'pipeline.yaml'} not ingested yet",
                    f"risbench build -w {ws} --stage ingest", blocks_finalize=True)


def _stale_exports(catalog: Catalog, ws: Path) -> list[str]:
    workspace = Workspace(ws)
    try:
        cfg = workspace.load()
    except ConfigError:
        return []          # build says what is wrong with the pipeline
    return stale_exports(catalog, workspace, cfg)


def next_step(ws: Path) -> NextStep:
    """The workspace's state as one line: what it waits for and the command that comes next."""
    catalog_path = ws / "catalog.sqlite"
    if not catalog_path.exists():
        return missing_source(ws) or NextStep("nothing built yet", f"risbench build -w {ws} --stage ingest")
    with Catalog.for_reading(catalog_path) as catalog:
        if not catalog.count("triplets"):
            return NextStep("no triplets in the catalog", f"risbench build -w {ws} --stage ingest "
                                                          f"(see reports/rejects.csv if every record was rejected)")
        unread = unread_sources(catalog, ws)
        if unread is not None:
            return unread
        if not catalog.conn.execute(f"SELECT EXISTS (SELECT 1 FROM triplets t WHERE {REFERRED})").fetchone()[0]:
            return NextStep("no triplet has a referring expression (label sources such as dota, dior and dior_r "
                            "bring boxes only)", f"add a vrsbench or dior_rsvg source to {ws / 'pipeline.yaml'}, then "
                            f"risbench build -w {ws} --stage ingest")
        current = current_proposal_set(catalog)
        if current is None:
            return NextStep("no masks yet", f"risbench build -w {ws} --stage sam-refine")
        unmasked = unmasked_count(catalog, current)
        if unmasked:
            return NextStep(f"{unmasked:,} of {catalog.count('triplets'):,} triplets have no mask yet",
                            f"risbench build -w {ws} --stage sam-refine (it goes on where it stopped)",
                            blocks_finalize=True)
        if current[0] == IMPORTED_SEGMENTER and not _has_run(catalog, "audit"):
            return NextStep("the imported dataset is not audited yet", f"risbench audit -w {ws}",
                            blocks_finalize=True)
        waiting = review_waiting(catalog, ws)
        if waiting is not None:
            return waiting
        if not catalog.count("final"):
            return NextStep("every mask is decided, nothing is final yet",
                            f"risbench build -w {ws} --stage finalize --until export")
        if not finalized_since_decisions(catalog):
            return NextStep("decisions newer than the last finalize", f"risbench build -w {ws} --stage finalize "
                                                                      "--until export")
        if not (ws / "exports" / "hf").exists() and not any((ws / "exports").glob("*/manifest.json")):
            return NextStep("the dataset is final, not exported", refresh_command(ws))
        stale = _stale_exports(catalog, ws)
        if stale:
            return NextStep(f"the final table changed since the last export ({', '.join(stale)})",
                            refresh_command(ws))
    return NextStep("the dataset is built", f"risbench train --smoke --data {ws / 'exports' / 'hf'} "
                                            f"(validate the splits) or risbench publish -w {ws} --repo-id ORG/NAME")
