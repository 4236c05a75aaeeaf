"""``risbench audit``: find the defects of a finished dataset and send its flagged triplets to review.

Audit reads the current proposal set: for an imported dataset that is the dataset's own masks
(ingest wrote them under the segmenter ``imported``). It measures each mask once, checks it
alone, against the other triplets of its image and against the upstream splits, optionally
against a fresh mask from ``refine.segmenter``, and writes ``reports/audit.json`` and
``AUDIT.md``. For imported masks it then sets the routes: a flagged triplet goes to review (its
proposal carries ``forced_review: audit``, which later re-routing keeps), every other one is
accepted as it is, so ``review push`` sends exactly the flagged ones. For a set a model made,
audit only reports: routing those is sam-refine's job.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from itertools import groupby
from typing import Any, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..audit import report as audit_report
from ..audit.findings import (AuditRow, MaskCopies, Measured, fresh_finding, image_findings, measure, single_findings,
                              split_leaks)
from ..catalog import Catalog
from ..config import PipelineConfig
from ..lock import holds_lock
from ..readmodel import current_proposal_set
from ..sources.base import IMPORT_KINDS
from ..sources.imported import IMPORTED_SEGMENTER
from ..sources.locations import locate_images
from ..text import unexpected
from ..workspace import Workspace

STAGE = "audit"

_ROWS_SQL = """
SELECT t.triplet_id, t.image_id, i.path, i.scene_id, i.sha256, t.source, t.category, t.expression, t.box_xyxy,
       t.attributes_json, t.origin_split, i.width, i.height, p.rle
FROM triplets t JOIN images i USING (image_id)
JOIN proposals p ON p.triplet_id = t.triplet_id AND p.segmenter = ? AND p.model_sha256 = ?
WHERE t.expression IS NOT NULL
ORDER BY t.source, COALESCE(i.sha256, t.image_id), t.triplet_id
"""


class AuditError(ValueError):
    """Nothing to audit (no catalog, no proposals): the CLI prints it as one line."""


def _rows(catalog: Catalog, proposal_set: tuple[str, str]) -> Iterator[AuditRow]:
    for (tid, image_id, path, scene, sha, source, category, expression, box, attrs, split, w, h,
         rle) in catalog.conn.execute(_ROWS_SQL, proposal_set):
        yield AuditRow(tid, image_id, path, scene, sha, source, category, expression, tuple(json.loads(box)),
                       json.loads(attrs or "{}"), split, w, h, rle)


def _wants_fresh(cfg: PipelineConfig, fresh: bool | None) -> bool:
    if fresh is not None:
        return fresh
    if cfg.audit.fresh_masks is not None:
        return cfg.audit.fresh_masks
    return "segmenter" in cfg.refine.model_fields_set         # the pipeline names one


def _fresh_masks(ws: Workspace, cfg: PipelineConfig, progress: bool) -> tuple[str, str]:
    """Fresh masks for every triplet from ``refine.segmenter``, written as proposals of its own
    set under an ``audit`` run (they do not replace the imported set)."""
    from .refine import run_refine

    report = run_refine(ws, cfg, progress=progress, run_stage=STAGE)
    return report.segmenter, report.model_sha256


@holds_lock("audit")
def run_audit(ws: Workspace, cfg: PipelineConfig, *, fresh: bool | None = None,
              progress: bool = True) -> audit_report.AuditResult:
    """Audit the current proposal set; write the reports; route an imported set's flagged triplets."""
    started = time.perf_counter()
    if not ws.catalog_path.exists():
        raise AuditError(f"no catalog in {ws.path}: run `risbench build -w {ws.path} --stage ingest` first")
    with Catalog(ws.catalog_path, create=False) as catalog:
        locate_images(catalog, ws, cfg)
        current = current_proposal_set(catalog)
    if current is None:
        raise AuditError(f"{ws.path} holds no masks to audit: ingest a refer, native or hf source "
                         f"(or run `risbench build -w {ws.path} --stage sam-refine`) first")
    imported = current[0] == IMPORTED_SEGMENTER
    fresh_set = _fresh_masks(ws, cfg, progress) if imported and _wants_fresh(cfg, fresh) else None
    acfg = cfg.audit
    with Catalog(ws.catalog_path, create=False) as catalog:
        run_id = catalog.start_run(STAGE, cfg.sha256())
        result = audit_report.AuditResult(run_id, current)
        total = catalog.count("triplets t JOIN proposals p ON p.triplet_id = t.triplet_id",
                              "WHERE p.segmenter=? AND p.model_sha256=? AND t.expression IS NOT NULL", current)
        findings: dict[str, list[tuple[str, str]]] = {}
        rows: list[AuditRow] = []
        copies = MaskCopies()
        columns = (TextColumn("[bold]audit[/] masks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("", total=total)
            # grouped by image *content*: RISBench's native layout stores one copy of an image per referent
            for image_key, image_rows in groupby(_rows(catalog, current),
                                                 key=lambda r: (r.source, r.sha256 or r.image_id)):
                group: list[Measured] = []
                for row in image_rows:
                    try:
                        m = measure(row)
                        found = single_findings(m, acfg)
                    except Exception as exc:       # one broken mask is a finding, never the end of the audit
                        m, found = Measured(row), [("undecodable_mask", unexpected(exc))]
                    findings[row.triplet_id] = found
                    group.append(m)
                    rows.append(row)
                for tid, extra in image_findings(group).items():
                    findings[tid] += extra
                for m in group:
                    copies.add(str(image_key), m)
                if fresh_set is None:
                    for m in group:
                        m.row.rle = ""          # masks are done with: memory stays flat
                bar.advance(task, len(group))
        for source in (split_leaks(rows), copies.findings()):
            for tid, extra in source.items():
                findings[tid] += extra
        if fresh_set is not None:
            compared = 0
            for row in rows:
                got = catalog.conn.execute("SELECT rle FROM proposals WHERE triplet_id=? AND segmenter=? AND "
                                           "model_sha256=?", (row.triplet_id, *fresh_set)).fetchone()
                if got is None or not row.rle:
                    continue
                compared += 1
                found = fresh_finding(row.rle, got[0], acfg)
                if found and not any(k in ("missing_mask", "undecodable_mask") for k, _ in findings[row.triplet_id]):
                    findings[row.triplet_id].append(found)
            result.fresh = {"segmenter": fresh_set[0], "model_sha256": fresh_set[1], "compared": compared,
                            "min_iou": acfg.min_fresh_iou}
        result.triplets = len(rows)
        for row in rows:
            reasons = findings[row.triplet_id]
            if reasons:
                result.flagged.append({
                    "triplet_id": row.triplet_id, "expression": row.expression, "file_name": row.file_name,
                    "source": row.source, "split": row.origin_split, "category": row.category,
                    "image_path": row.image_path, "source_ref": row.attributes.get("file"),
                    "reasons": [{"kind": k, "detail": d} for k, d in reasons]})
        result.rejected_at_ingest, result.rejected_examples = _ingest_rejects(catalog, cfg)
        if imported:
            result.routes = _route(catalog, current, {e["triplet_id"] for e in result.flagged},
                                   [r.triplet_id for r in rows])
        result.seconds = time.perf_counter() - started
        audit_report.write(result, ws.reports, ws.path)
        catalog.finish_run(run_id, {k: v for k, v in result.as_dict().items()
                                    if k in ("triplets", "flagged_triplets", "counts", "routes")})
    return result


def _ingest_rejects(catalog: Catalog, cfg: PipelineConfig) -> tuple[dict[str, int], list[dict[str, str]]]:
    """Ingest rejects of the import sources: records that could not even become triplets."""
    labels = [s.label for s in cfg.sources if s.kind in IMPORT_KINDS]
    counts: Counter = Counter()
    examples: list[dict[str, str]] = []
    for label in labels:
        for ref, reason, detail in catalog.conn.execute(
                "SELECT ref, reason, detail FROM rejects WHERE stage='ingest' AND ref LIKE ? ORDER BY reason, ref",
                (f"{label}:%",)):
            counts[reason] += 1
            if len(examples) < 50:
                examples.append({"ref": ref, "reason": reason, "detail": detail})
    return dict(sorted(counts.items())), examples


def _route(catalog: Catalog, proposal_set: tuple[str, str], flagged: set[str], audited: list[str]) -> dict[str, int]:
    """Flagged -> review (``forced_review: audit``), the rest -> accept, in one transaction.
    Triplets people already decided keep their decision (consensus wins over any route)."""
    seg, sha = proposal_set
    to_review = [(t, seg, sha) for t in audited if t in flagged]
    to_accept = [(t, seg, sha) for t in audited if t not in flagged]
    with catalog.transaction():
        catalog.conn.executemany(
            "UPDATE proposals SET route='review', scores_json=json_set(scores_json, '$.forced_review', 'audit') "
            "WHERE triplet_id=? AND segmenter=? AND model_sha256=?", to_review)
        catalog.conn.executemany(
            "UPDATE proposals SET route='accept', scores_json=json_remove(scores_json, '$.forced_review') "
            "WHERE triplet_id=? AND segmenter=? AND model_sha256=? AND "
            "json_extract(scores_json, '$.forced_review') IS NOT 'geometry'", to_accept)
    return {"review": len(to_review), "accept": len(to_accept)}


def summary(result: audit_report.AuditResult) -> dict[str, Any]:
    """What the CLI prints: counts, not the flagged list."""
    data = result.as_dict()
    return {k: data[k] for k in ("triplets", "flagged_triplets", "counts", "rejected_at_ingest", "fresh", "routes")}
