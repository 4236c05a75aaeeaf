"""``risbench review status``: where the review stands, from the catalog alone (no server).

Tasks pushed, annotations per task, decisions, the agreement distribution, what waits for an
expert, each annotator's IoU against the consensus masks, so a careless annotator shows, and
the invalid answers (``rejects`` rows with reason ``invalid_review``) per annotator.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from .. import masks
from ..catalog import Catalog
from ..config import PipelineConfig
from ..workspace import Workspace
from .answers import INVALID_REVIEW
from .consensus import ADJUDICATE
from .sync import load_state
from ..readmodel import consensus_summary, review_queue


def review_status(ws: Workspace, cfg: PipelineConfig | None = None) -> dict[str, Any]:
    cfg = cfg or ws.load()
    rc = cfg.review
    state = load_state(ws)
    pushed = state.get("tasks", {})
    with Catalog(ws.catalog_path, create=False) as catalog:
        queue = review_queue(catalog)
        per_task = Counter(n for (n,) in catalog.conn.execute(
            "SELECT COUNT(*) FROM reviews WHERE task_id NOT LIKE 'adj:%' GROUP BY task_id"))
        summary = consensus_summary(catalog)
        decisions, agreements = summary.decisions, np.array(summary.agreements, float)
        awaiting = [tid for (tid,) in catalog.conn.execute(
            "SELECT triplet_id FROM consensus WHERE decision=? ORDER BY agreement, triplet_id", (ADJUDICATE,))]
        annotators: dict[str, dict[str, Any]] = defaultdict(lambda: {"reviews": 0, "verdicts": Counter(), "ious": []})
        for annotator, verdict, rle, c_rle, adj in catalog.conn.execute(
                "SELECT r.annotator, r.verdict, r.rle, c.rle, r.task_id LIKE 'adj:%' FROM reviews r LEFT JOIN "
                "consensus c ON c.triplet_id = r.triplet_id AND c.decision IN ('consensus', 'adjudicated') "
                "ORDER BY r.annotator"):
            a = annotators[annotator]
            a["reviews"] += 1
            a["verdicts"][verdict] += 1
            if rle and c_rle and not adj:
                a["ious"].append(masks.iou(masks.loads(rle), masks.loads(c_rle)))
        rejected = dict(catalog.conn.execute("SELECT reason, COUNT(*) FROM rejects WHERE stage='review' AND "
                                             "reason != ? GROUP BY reason ORDER BY reason",
                                             (INVALID_REVIEW,)).fetchall())
        invalid: Counter = Counter()
        invalid_examples: list[str] = []
        for ref, detail in catalog.conn.execute("SELECT ref, detail FROM rejects WHERE stage='review' AND reason=? "
                                                "ORDER BY run_id DESC, ref", (INVALID_REVIEW,)):
            invalid[ref.split("/", 1)[1] if "/" in ref else "unknown"] += 1
            if len(invalid_examples) < 10:
                invalid_examples.append(detail)
    per_annotator = {}
    for name in sorted(set(annotators) | set(invalid)):
        a = annotators[name]
        ious = a["ious"]
        verdicts = dict(sorted(a["verdicts"].items()))
        if invalid[name]:
            verdicts["invalid"] = invalid[name]
        per_annotator[name] = {"reviews": a["reviews"], "invalid": invalid[name], "verdicts": verdicts,
                               "compared": len(ious),
                               "mean_iou_vs_consensus": round(float(np.mean(ious)), 4) if ious else None}
    low = sorted(n for n, a in per_annotator.items()
                 if a["mean_iou_vs_consensus"] is not None and a["mean_iou_vs_consensus"] < rc.min_agreement)
    return {
        "url": state.get("url"), "project_id": state.get("project_id"),
        "adjudication": rc.adjudication, "adjudication_project_id": state.get("adjudication_project_id"),
        "tasks_pushed": len(pushed), "queue_not_pushed": sum(1 for q in queue if q.triplet_id not in pushed),
        "quorum": rc.annotators_per_task,
        "annotations_per_task": {str(k): v for k, v in sorted(per_task.items())},
        "tasks_without_annotations": max(len(pushed) - sum(per_task.values()), 0),
        "decisions": decisions, "rejected": rejected,
        "agreement": _distribution(agreements, rc.min_agreement),
        "awaiting_adjudication": len(awaiting), "awaiting_examples": awaiting[:10],
        "invalid_reviews": sum(invalid.values()), "invalid_by_annotator": dict(sorted(invalid.items())),
        "invalid_examples": invalid_examples,
        "annotators": per_annotator, "annotators_below_threshold": low,
    }


def _distribution(values: np.ndarray, threshold: float) -> dict[str, Any]:
    if values.size == 0:
        return {"n": 0}
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    hist, edges = np.histogram(values, bins=10, range=(0.0, 1.0))
    return {"n": int(values.size), "mean": round(float(values.mean()), 4),
            "min": round(float(q[0]), 4), "p25": round(float(q[1]), 4), "median": round(float(q[2]), 4),
            "p75": round(float(q[3]), 4), "max": round(float(q[4]), 4),
            "below_threshold": int((values < threshold).sum()),
            "histogram": {f"{lo:.1f}-{hi:.1f}": int(n) for lo, hi, n in zip(edges[:-1], edges[1:], hist)}}
