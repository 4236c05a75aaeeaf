"""Simulated reviewers for the offline demo: the synthetic truth stands in for people.

`make demo` has no Label Studio server and no annotators, yet the rest of the pipeline
(consensus, finalize, exports) should run on a realistic mix of auto-accepted and reviewed
masks. Three simulated annotators answer the tasks push would send (the review queue with
the audit sample in it) from the synthetic sources' true masks: they accept a mask that is
already good, else draw their own (one exact, one a pixel inside, one sloppy, dilated). Their answers go through the same :func:`~.consensus.decide` as real reviews, so the
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
from ..segment.calibrate import trusted_masks
from ..workspace import Workspace
from .consensus import Vote, decide
from .sample import review_items

_KERNEL = np.ones((3, 3), np.uint8)


ACCEPT_IOU = 0.9      # a simulated reviewer accepts the mask shown when it is this close to the truth


def _annotators(truth: np.ndarray, shown: np.ndarray) -> list[Vote]:
    """Three reviewers: they accept a mask that is already good (as people do, drawing nothing),
    else draw their own: one exact, one a pixel inside, one sloppy (dilated)."""
    t = truth.astype(np.uint8)
    if masks.mask_iou(shown.astype(bool), t.astype(bool)) >= ACCEPT_IOU:
        return [Vote(name, "accept", None) for name in ("sim-exact", "sim-offbyone", "sim-sloppy")]
    eroded = cv2.erode(t, _KERNEL)
    return [Vote("sim-exact", "corrected", t.astype(bool)),
            Vote("sim-offbyone", "corrected", (eroded if eroded.any() else t).astype(bool)),
            Vote("sim-sloppy", "corrected", cv2.dilate(t, _KERNEL, iterations=2).astype(bool))]


def simulate_review(ws: Workspace, cfg: PipelineConfig, truth: Path, limit: int | None = None) -> dict[str, int]:
    """Answer the tasks ``review push`` would send now (the review queue with the audit sample in
    it), the first ``limit`` of them (reviewers who got only that far), from ``truth``; returns
    decisions."""
    method, min_agreement = cfg.review.consensus, cfg.review.min_agreement
    decisions: Counter = Counter()
    with Catalog(ws.catalog_path, create=False) as catalog:
        run_id = catalog.start_run("review-simulated", cfg.sha256())
        trusted = trusted_masks(catalog, truth)
        queue = review_items(catalog, cfg.review)[:limit]     # what push sends, in its order
        reviews, consensus = [], []
        for item in queue:
            tid = item.triplet_id
            if tid not in trusted:
                continue
            shown = masks.decode(item.rle).astype(bool)
            votes = _annotators(masks.decode(trusted[tid]), shown)
            d = decide(votes, shown, method=method, min_agreement=min_agreement)
            reviews += [(tid, f"sim-{tid}", v.annotator, masks.dumps(masks.encode(shown if v.mask is None else v.mask)),
                         v.verdict, None, run_id) for v in votes]
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
