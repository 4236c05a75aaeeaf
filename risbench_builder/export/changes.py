"""``exports/CHANGES.csv``: what repairing an imported dataset changed, why, and who decided.

One row per change to a triplet of an imported source (``refer``, ``native``, ``hf``):

- ``mask_replaced``: reviewers' consensus (or an adjudicator) replaced the dataset's mask;
- ``mask_confirmed``: reviewers kept the dataset's mask (listed so a flag has an outcome);
- ``removed``: reviewers rejected the triplet, or a finalize rule dropped it;
- ``mask_fitted``: the mask was padded/cropped to its image's size at import;
- ``awaiting_review``: flagged, not decided yet (exported without it until it is).

``why`` joins the audit's reasons (``reports/audit.json``) with the stage's own; ``who`` names
the annotators and the consensus method, or ``risbench`` for automatic changes. An unflagged,
unreviewed triplet is not listed: its mask is exported as it came.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .. import masks
from ..catalog import Catalog
from ..sources.base import IMPORT_KINDS
from ..sources.imported import IMPORTED_SEGMENTER

COLUMNS = ("triplet_id", "source", "source_ref", "split", "change", "why", "who", "mask_iou", "expression")
_REVIEWED = ("consensus", "adjudicated")


def _audit_reasons(reports: Path) -> dict[str, str]:
    try:
        data = json.loads((reports / "audit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {e["triplet_id"]: "; ".join(f"{r['kind']}: {r['detail']}" for r in e.get("reasons", []))
            for e in data.get("flagged", []) if isinstance(e, dict) and "triplet_id" in e}


def changes(catalog: Catalog, reports: Path, import_labels: list[str]) -> list[dict[str, Any]]:
    """The rows of CHANGES.csv, in triplet id order."""
    if not import_labels:
        return []
    reasons = _audit_reasons(reports)
    marks = ", ".join("?" for _ in import_labels)
    annotators: dict[str, list[str]] = {}
    for tid, who in catalog.conn.execute("SELECT triplet_id, annotator FROM reviews ORDER BY triplet_id, annotator"):
        annotators.setdefault(tid, []).append(who)
    rejected = {ref: (stage, reason, detail) for stage, ref, reason, detail in catalog.conn.execute(
        "SELECT stage, ref, reason, detail FROM rejects WHERE stage IN ('review', 'finalize') ORDER BY stage DESC")}
    rows: list[dict[str, Any]] = []
    sql = f"""
    SELECT t.triplet_id, t.source, t.source_ref, t.origin_split, t.expression, t.attributes_json, p.rle, p.route,
           c.rle, c.decision, f.split, f.mask_origin
    FROM triplets t
    LEFT JOIN proposals p ON p.triplet_id = t.triplet_id AND p.segmenter = ? AND p.model_sha256 = ''
    LEFT JOIN consensus c ON c.triplet_id = t.triplet_id
    LEFT JOIN final f ON f.triplet_id = t.triplet_id
    WHERE t.source IN ({marks}) ORDER BY t.triplet_id"""
    for (tid, source, ref, origin, expression, attrs, p_rle, route, c_rle, decision, split,
         origin_final) in catalog.conn.execute(sql, (IMPORTED_SEGMENTER, *import_labels)):
        attributes = json.loads(attrs or "{}")
        why = reasons.get(tid, "")
        people = ", ".join(annotators.get(tid, []))
        base = {"triplet_id": tid, "source": source, "source_ref": ref, "split": split or origin or "",
                "expression": expression or "", "mask_iou": ""}
        if attributes.get("mask_fitted"):
            rows.append({**base, "change": "mask_fitted", "why": attributes["mask_fitted"], "who": "risbench"})
        if origin_final in _REVIEWED and c_rle:
            iou = round(masks.iou(masks.loads(p_rle), masks.loads(c_rle)), 4) if p_rle else 0.0
            rows.append({**base, "change": "mask_confirmed" if iou >= 0.999 else "mask_replaced", "why": why,
                         "who": f"{origin_final} of {people}" if people else origin_final, "mask_iou": iou})
        elif tid in rejected:
            stage, reason, detail = rejected[tid]
            rows.append({**base, "change": "removed", "why": "; ".join(x for x in (why, f"{reason}: {detail}") if x),
                         "who": f"{decision or stage} of {people}" if people and stage == "review" else
                         (people or stage)})
        elif route == "review" and not split:
            rows.append({**base, "change": "awaiting_review", "why": why, "who": ""})
    return rows


def write_changes(catalog: Catalog, path: Path, reports: Path, import_labels: list[str]) -> int:
    """Write CHANGES.csv (only when the workspace imported a dataset); returns its row count."""
    rows = changes(catalog, reports, import_labels)
    if not import_labels:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def import_labels(sources: list[Any]) -> list[str]:
    """Labels of a pipeline's import sources (the ``source`` column of their triplets)."""
    return [s.label for s in sources if s.kind in IMPORT_KINDS]
