"""Calibrate the router against trusted masks: how precise is auto-accept, and which thresholds
reach a target precision.

Trusted masks are whatever the workspace knows to be right: consensus masks from review, or a
truth file (the synthetic sources' ``masks.jsonl``; any file in that format). A proposal is
*good* when its IoU with the trusted mask is at least ``good_iou`` (0.9).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import masks
from ..catalog import Catalog
from ..config import RouteConfig, set_in_yaml
from ..readmodel import current_proposal_set
from ..synthetic import default_truth, load_truth
from ..workspace import Workspace
from .routing import threshold_tests

GOOD_IOU = 0.9


def trusted_masks(catalog: Catalog, truth: Path | None, *, final_only: bool = False) -> dict[str, dict]:
    """triplet_id -> trusted RLE, from consensus rows and from a truth file when given.

    ``final_only``: take reviewed masks only where they made it into ``final`` with
    mask_origin consensus or adjudicated (what adapter training trusts).
    """
    sql = "SELECT triplet_id, rle FROM consensus WHERE rle IS NOT NULL AND decision IN ('consensus', 'adjudicated')"
    if final_only:
        sql = ("SELECT c.triplet_id, c.rle FROM consensus c JOIN final f USING (triplet_id) WHERE c.rle IS NOT NULL "
               "AND f.mask_origin IN ('consensus', 'adjudicated')")
    trusted = {tid: masks.loads(rle) for tid, rle in catalog.conn.execute(sql)}
    if truth is not None:
        rows = load_truth(truth)
        for tid, path, attrs in catalog.conn.execute(
                "SELECT t.triplet_id, i.path, t.attributes_json FROM triplets t JOIN images i USING (image_id)"):
            obj_id = json.loads(attrs).get("obj_id")
            row = rows.get((Path(path).name, obj_id)) if isinstance(obj_id, int) else None
            if row is not None:
                trusted.setdefault(tid, row["rle"])
    return trusted


@dataclass
class ScoredMask:
    """One proposal with its trusted mask: signals, IoU and what the box alone would score."""

    triplet_id: str
    signals: dict[str, float]
    iou: float
    box_iou_truth: float


def collect(catalog: Catalog, trusted: dict[str, dict], segmenter: str | None = None) -> tuple[str, str, list[ScoredMask]]:
    """Samples of the current proposal set (the newest of ``segmenter`` when given) that have a trusted mask."""
    current = current_proposal_set(catalog, segmenter or None)
    if current is None:
        raise ValueError("no proposals to calibrate: run `risbench build -w W --stage sam-refine` first")
    samples = []
    for tid, rle, scores, box_json, poly_json in catalog.conn.execute(
            "SELECT p.triplet_id, p.rle, p.scores_json, t.box_xyxy, t.polygon FROM proposals p JOIN triplets t "
            "USING (triplet_id) WHERE p.segmenter=? AND p.model_sha256=? ORDER BY p.triplet_id", current):
        truth = trusted.get(tid)
        if truth is None:
            continue
        h, w = truth["size"]
        prompt = (masks.rasterize_polygon(json.loads(poly_json), h, w) if poly_json
                  else masks.rasterize_box(json.loads(box_json), h, w))
        samples.append(ScoredMask(tid, json.loads(scores), masks.iou(masks.loads(rle), truth),
                              masks.mask_iou(prompt, masks.decode(truth))))
    return current[0], current[1], samples


def _accepts(samples: list[ScoredMask], cfg: RouteConfig) -> np.ndarray:
    from .routing import failed_tests

    return np.array([not failed_tests(s.signals, cfg) for s in samples], bool)


@dataclass
class Evaluation:
    segmenter: str
    n: int
    mean_iou: float
    mean_iou_box_baseline: float
    good_share: float
    review_share: float
    precision: float | None          # share of auto-accepted masks that are good
    recall: float | None             # share of good masks that are auto-accepted
    thresholds: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def evaluate(segmenter: str, samples: list[ScoredMask], cfg: RouteConfig, good_iou: float = GOOD_IOU) -> Evaluation:
    if not samples:
        raise ValueError("no proposal has a trusted mask: give --truth FILE or review some masks first")
    good = np.array([s.iou >= good_iou for s in samples])
    acc = _accepts(samples, cfg)
    precision = float(good[acc].mean()) if acc.any() else None
    recall = float(acc[good].mean()) if good.any() else None
    return Evaluation(segmenter, len(samples), float(np.mean([s.iou for s in samples])),
                      float(np.mean([s.box_iou_truth for s in samples])), float(good.mean()),
                      float(1 - acc.mean()), precision, recall, cfg.model_dump())


def propose(samples: list[ScoredMask], target: float = 0.95, good_iou: float = GOOD_IOU,
            steps: int = 40) -> tuple[RouteConfig, bool]:
    """Thresholds whose auto-accept precision reaches ``target`` with as much recall as a
    stepwise search finds; returns (config, reached).

    Every threshold starts switched off. Tightening: among all thresholds and all quantile
    rungs stricter than the current one, take the move that buys the most precision per unit
    of recall lost, until the target is met. Relaxing: then take back any rung that keeps the
    target and raises recall. Buying precision cheaply, rather than jumping to the one
    threshold that reaches the target at once, keeps recall.
    """
    good = np.array([s.iou >= good_iou for s in samples])
    nonempty = np.array([s.signals.get("area", 1) > 0 for s in samples])
    tests = threshold_tests()
    values = {fld: np.array([s.signals.get(sig, np.nan) for s in samples], float) for fld, (sig, _) in tests.items()}
    ladders: dict[str, list[float | None]] = {}
    for fld, (_, op) in tests.items():
        present = values[fld][~np.isnan(values[fld])]
        if present.size:
            qs = np.unique(np.round(np.quantile(present, np.linspace(0, 1, steps + 1)), 4)).tolist()
            ladders[fld] = [None, *(qs if op == ">=" else qs[::-1])]   # stricter further up

    def passes(fld: str, rung: int) -> np.ndarray:
        limit, v = ladders[fld][rung], values[fld]
        if limit is None:
            return np.ones(len(samples), bool)
        ok = v >= limit if tests[fld][1] == ">=" else v <= limit
        return ok | np.isnan(v)

    def measure(pos: dict[str, int]) -> tuple[float, float]:
        acc = nonempty.copy()
        for fld, rung in pos.items():
            acc &= passes(fld, rung)
        precision = float(good[acc].mean()) if acc.any() else 0.0
        return precision, float(acc[good].mean()) if good.any() else 0.0

    pos = {fld: 0 for fld in ladders}
    precision, recall = measure(pos)
    while precision < target:
        best = None
        for fld in ladders:
            for rung in range(pos[fld] + 1, len(ladders[fld])):
                trial = dict(pos, **{fld: rung})
                p, r = measure(trial)
                if p > precision:
                    gain = (p - precision) / max(recall - r, 1e-6)
                    if best is None or gain > best[0]:
                        best = (gain, trial, p, r)
        if best is None:
            break
        _, pos, precision, recall = best
    improved = precision >= target
    while improved:
        improved = False
        for fld in ladders:
            for rung in range(pos[fld]):
                trial = dict(pos, **{fld: rung})
                p, r = measure(trial)
                if p >= target and r > recall:
                    pos, precision, recall, improved = trial, p, r, True
    chosen = {f: None for f in RouteConfig.model_fields} | {f: ladders[f][i] for f, i in pos.items()}
    return RouteConfig(**chosen), precision >= target


def calibrate_workspace(ws: Workspace, truth: Path | None, target: float = 0.95, write: bool = False,
                        reviewed_only: bool = False) -> dict[str, Any]:
    """Evaluate the current router, propose thresholds, optionally write them into pipeline.yaml.

    Without ``truth``, a workspace built from synthetic sources uses their true masks, unless
    ``reviewed_only``: then only the reviewers' consensus masks count (a data-engine round on
    real data has nothing else).
    """
    cfg = ws.load()
    if truth is None and not reviewed_only:
        truth = default_truth(ws)
    with Catalog(ws.catalog_path, create=False) as catalog:
        name, _, samples = collect(catalog, trusted_masks(catalog, truth))
    now = evaluate(name, samples, cfg.refine.route)
    proposed, reached = propose(samples, target)
    after = evaluate(name, samples, proposed)
    result = {"current": now.as_dict(), "proposed": after.as_dict(), "target_precision": target,
              "target_reached": reached}
    if write:                                   # only refine.route's text changes: comments stay
        backup = set_in_yaml(ws.pipeline_path, ("refine", "route"), proposed.model_dump())
        result["written_to"] = str(ws.pipeline_path)
        if backup is not None:
            result["previous_pipeline"] = str(backup)
    ws.reports.mkdir(parents=True, exist_ok=True)
    (ws.reports / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
