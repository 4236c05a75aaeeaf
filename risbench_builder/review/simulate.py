"""Simulated reviewers for the offline demo: the synthetic truth stands in for people.

`make demo` has no Label Studio server and no annotators, yet the rest of the pipeline
(consensus, finalize, exports) should run on a realistic mix of auto-accepted and reviewed
masks. Three simulated annotators answer every task in the review queue from the synthetic
sources' true masks: one exact, one whose outline is a pixel off, one sloppy (a dilated
mask). Their answers go through the same :func:`~.consensus.decide` as real reviews, so the
demo's consensus and adjudication numbers are produced by the real code; a task sent to
adjudication is answered by a simulated expert (the truth itself) and becomes ``adjudicated``. Never used for
real data: a real build reviews with `risbench review push/pull`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .. import masks
from ..catalog import Catalog
from ..config import PipelineConfig
from ..readmodel import review_queue
from ..segment.calibrate import trusted_masks
from ..workspace import Workspace
from .consensus import Vote, decide

_KERNEL = np.ones((3, 3), np.uint8)


def _annotators(truth: np.ndarray) -> list[Vote]:
    t = truth.astype(np.uint8)
    eroded = cv2.erode(t, _KERNEL)
    return [Vote("sim-exact", "corrected", t.astype(bool)),
            Vote("sim-offbyone", "corrected", (eroded if eroded.any() else t).astype(bool)),
            Vote("sim-sloppy", "corrected", cv2.dilate(t, _KERNEL, iterations=2).astype(bool))]


def simulate_review(ws: Workspace, cfg: PipelineConfig, truth: Path) -> dict[str, int]:
    """Answer every queued task of the current proposal set from ``truth``; returns decisions."""
    method = getattr(getattr(cfg, "review", None), "consensus", "majority")
    min_agreement = getattr(getattr(cfg, "review", None), "min_agreement", 0.75)
    decisions: Counter = Counter()
    with Catalog(ws.catalog_path, create=False) as catalog:
        run_id = catalog.start_run("review-simulated", cfg.sha256())
        trusted = trusted_masks(catalog, truth)
        queue = sorted(review_queue(catalog), key=lambda q: q.triplet_id)    # the real queue, id order
        reviews, consensus = [], []
        for item in queue:
            tid = item.triplet_id
            if tid not in trusted:
                continue
            votes = _annotators(masks.decode(trusted[tid]))
            d = decide(votes, masks.decode(item.rle).astype(bool), method=method, min_agreement=min_agreement)
            reviews += [(tid, f"sim-{tid}", v.annotator, masks.dumps(masks.encode(v.mask)), v.verdict, None, run_id)
                        for v in votes]
            decision, final_rle = d.decision, None if d.mask is None else masks.dumps(masks.encode(d.mask))
            if decision == "adjudicate":          # the simulated expert draws the true mask
                decision, final_rle = "adjudicated", masks.dumps(trusted[tid])
                reviews.append((tid, f"adj:sim-{tid}", "sim-expert", final_rle, "corrected", None, run_id))
            consensus.append((tid, final_rle, d.agreement, decision, run_id))
            decisions[decision] += 1
        with catalog.transaction():
            catalog.add("reviews", reviews)
            catalog.add("consensus", consensus)
        catalog.finish_run(run_id, {"queue": len(queue), "decisions": dict(decisions)})
    ws.reports.mkdir(parents=True, exist_ok=True)
    (ws.reports / "review-simulated.json").write_text(json.dumps({"queue": len(queue), **decisions}, indent=2) + "\n")
    return dict(decisions)
