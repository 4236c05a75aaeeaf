"""Measured mask quality: how good the masks are, as numbers with their uncertainty.

The router's precision is known where a truth exists (``calibrate --truth``); on real data it
is measured here, from what reviewers did:

- **auto-accepted**: the audit sample (``samples``: auto-accepted masks that were also sent to
  reviewers, seeded and stratified by category and size) against the reviewers' consensus.
  A ``reject-mask`` verdict counts as a failure (IoU 0); an ``expression-*`` reject says
  nothing about the mask and is left out (and counted); a task waiting for the expert is pending.
- **consensus / adjudicated**: masks the router sent to review, by the decision that settled
  them: how often the model's proposal was already right, i.e. what review corrected.
- **agreement**: inter-annotator agreement (mean pairwise IoU per task).
- **rounds**: per data-engine round, the triplets it decided, the auto-accept share, the tasks
  it sent to people (review-routed + sampled) and the precision its own sample measured.

Every share comes with its Wilson score interval (95 %), which stays inside [0, 1] and keeps
its coverage at the small n of a per-category row. :func:`measure_quality` returns what
``reports/quality.json`` holds; the card, ``stats.json`` and the HTML report show the same dict.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .. import masks
from ..catalog import Catalog
from ..config import PipelineConfig
from ..readmodel import consensus_summary, current_proposal_set
from .stats import SIZE_BINS, size_bin

VERSION = 1
THRESHOLDS = {"iou90": 0.9, "iou75": 0.75}
MASK_DECISIONS = ("consensus", "adjudicated")          # the reviewers' (or expert's) mask is the truth
MASK_REJECT = "reject-mask"                            # the mask is wrong: IoU 0
EXPRESSION_REJECTS = ("expression-wrong", "expression-ambiguous")   # nothing said about the mask
PENDING = "adjudicate"                                 # waiting for the expert
SAM_REFINE = "sam-refine"


# ------------------------------------------------------------------ the estimator
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a share ``k / n`` (95 % with the default ``z``); (0, 1) when n = 0.

    >>> [round(x, 4) for x in wilson(94, 100)]
    [0.8752, 0.9722]
    >>> wilson(0, 0), wilson(0, 10)[0], wilson(10, 10)[1]
    ((0.0, 1.0), 0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return lo, hi


def rate(k: int, n: int) -> dict[str, Any]:
    """``{"k", "n", "share", "ci95"}`` (share None when n = 0)."""
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "share": round(k / n, 6) if n else None, "ci95": [round(lo, 6), round(hi, 6)]}


def shares(ious: Sequence[float]) -> dict[str, Any]:
    """n, the share at each IoU threshold (with its interval) and the mean IoU of measured masks.

    >>> s = shares([1.0, 0.95, 0.8, 0.0])
    >>> s["n"], s["iou90"]["k"], s["iou75"]["k"], s["mean_iou"]
    (4, 2, 3, 0.6875)
    """
    out: dict[str, Any] = {"n": len(ious)}
    for key, t in THRESHOLDS.items():
        out[key] = rate(sum(1 for v in ious if v >= t), len(ious))
    out["mean_iou"] = round(statistics.fmean(ious), 6) if ious else None
    return out


# ------------------------------------------------------------------ catalog reads
def _iou(a: Optional[str], b: Optional[str]) -> Optional[float]:
    """IoU of two stored masks; None when one is missing or they do not compare (other sizes)."""
    if not a or not b:
        return None
    try:
        return masks.iou(masks.loads(a), masks.loads(b))
    except (masks.MaskError, ValueError):
        return None


def _proposals(catalog: Catalog) -> dict[str, tuple[str, str, int]]:
    """triplet_id -> (rle, route, round) of the current proposal set (a NULL round is round 1)."""
    current = current_proposal_set(catalog)
    if current is None:
        return {}
    return {tid: (rle, route, int(rnd)) for tid, rle, route, rnd in catalog.conn.execute(
        "SELECT triplet_id, rle, route, COALESCE(round, 1) FROM proposals WHERE segmenter=? AND model_sha256=?",
        current)}


def _fallback_rle(catalog: Catalog, triplet_id: str) -> Optional[str]:
    """A sampled triplet outside the current set: its newest auto-accepted proposal."""
    row = catalog.conn.execute("SELECT rle FROM proposals WHERE triplet_id=? ORDER BY route='accept' DESC, "
                               "rowid DESC LIMIT 1", (triplet_id,)).fetchone()
    return row[0] if row else None


def _round_counts_from_runs(catalog: Catalog) -> dict[int, dict[str, int]]:
    """round -> {"accept", "review"} from the newest finished one-shard sam-refine run of each round
    that recorded ``round_routes`` (older runs counted only their own new proposals)."""
    out: dict[int, dict[str, int]] = {}
    for (text,) in catalog.conn.execute(
            "SELECT counts_json FROM runs WHERE stage=? AND finished IS NOT NULL AND counts_json IS NOT NULL "
            "ORDER BY started DESC, rowid DESC", (SAM_REFINE,)):
        try:
            counts = json.loads(text)
            rnd = int(counts.get("round", 1))
        except (ValueError, TypeError):
            continue
        if rnd in out or not isinstance(counts.get("round_routes"), dict):
            continue
        if str(counts.get("shard", "0/1")).split("/")[-1] not in ("1", ""):
            continue                                  # one shard's view: the proposals count it whole
        rr = counts["round_routes"]
        out[rnd] = {"accept": int(rr.get("accept", 0)), "review": int(rr.get("review", 0))}
    return out


# ------------------------------------------------------------------ the measurement
def _group(rows: Iterable[tuple[str, float]]) -> dict[str, dict[str, Any]]:
    by: dict[str, list[float]] = defaultdict(list)
    for key, v in rows:
        by[key].append(v)
    return {k: shares(v) for k, v in sorted(by.items())}


def measure_quality(catalog: Catalog, cfg: PipelineConfig) -> dict[str, Any]:
    """What ``reports/quality.json`` holds (see the module docstring); reads only."""
    props = _proposals(catalog)
    category = dict(catalog.conn.execute("SELECT triplet_id, category FROM triplets"))
    decided = {tid: (rle, decision) for tid, rle, decision in
               catalog.conn.execute("SELECT triplet_id, rle, decision FROM consensus")}
    sample: dict[str, int] = dict(catalog.conn.execute("SELECT triplet_id, round FROM samples ORDER BY triplet_id"))

    # --- auto-accepted: the audit sample against the reviewers
    counts: Counter = Counter()
    measured: list[tuple[str, int, float]] = []               # (triplet, round, IoU)
    for tid, rnd in sample.items():
        rle = props[tid][0] if tid in props else _fallback_rle(catalog, tid)
        if tid not in decided:
            counts["awaiting_review"] += 1
            continue
        truth, decision = decided[tid]
        if decision == MASK_REJECT:
            counts["mask_rejected"] += 1
            measured.append((tid, int(rnd), 0.0))
        elif decision in EXPRESSION_REJECTS:
            counts["expression_rejected"] += 1
        elif decision == PENDING:
            counts["pending_adjudication"] += 1
        elif decision in MASK_DECISIONS and (iou := _iou(rle, truth)) is not None:
            counts["corrected"] += iou < 1.0
            measured.append((tid, int(rnd), iou))
        else:
            counts["unusable"] += 1                            # no mask to compare, or masks of other sizes
    # the masks the samples were drawn from: auto-accepted ones, counting a sampled mask that a later
    # check (finalize's geometry review) re-routed since
    population = sum(1 for tid, (_, route, _) in props.items() if route == "accept" or tid in sample)
    ious = [v for _, _, v in measured]
    area = {tid: masks.area(masks.loads(props[tid][0])) for tid, _, _ in measured if tid in props}
    auto = {"population": population, "sampled": len(sample), "reviewed": len(sample) - counts["awaiting_review"],
            **{k: counts[k] for k in ("awaiting_review", "pending_adjudication", "expression_rejected",
                                      "mask_rejected", "corrected", "unusable")},
            **shares(ious),
            "by_category": _group((category.get(tid, "?"), v) for tid, _, v in measured),
            "by_size": {k: v for k, v in sorted(_group((size_bin(area[tid]), v) for tid, _, v in measured
                                                       if tid in area).items(),
                                                key=lambda kv: [n for n, _ in SIZE_BINS].index(kv[0]))}}

    # --- review routes: how often the model's proposal was already what review settled on
    routed = {tid for tid, (_, route, _) in props.items() if route == "review" and tid not in sample}
    decisions = Counter(decided[tid][1] for tid in routed if tid in decided)
    by_route: dict[str, dict[str, Any]] = {}
    for route in MASK_DECISIONS:
        values = [v for tid in sorted(routed) if tid in decided and decided[tid][1] == route
                  and (v := _iou(props[tid][0], decided[tid][0])) is not None]
        by_route[route] = {"triplets": decisions.get(route, 0), **shares(values)}
    review = {"routed": len(routed), "decided": sum(decisions.values()), "decisions": dict(sorted(decisions.items()))}

    # --- agreement
    summary = consensus_summary(catalog)
    agreements = summary.agreements
    floor = cfg.review.min_agreement
    agreement = {"tasks": len(agreements), "mean": round(statistics.fmean(agreements), 6) if agreements else None,
                 "median": round(statistics.median(agreements), 6) if agreements else None,
                 "min_agreement": floor,
                 "at_least_min": rate(sum(1 for a in agreements if a >= floor), len(agreements)),
                 "reviews": summary.reviews, "annotators": summary.annotators,
                 "reviews_per_task": round(summary.reviews_per_task, 6)}

    q = {"version": VERSION, "thresholds": THRESHOLDS, "auto_accepted": auto, **by_route, "review": review,
         "agreement": agreement, "rounds": _rounds(catalog, props, sample, measured)}
    q["round_comparison"] = _compare(q["rounds"])
    q["statement"] = statement(q)
    return q


def _rounds(catalog: Catalog, props: dict[str, tuple[str, str, int]], sample: dict[str, int],
            measured: list[tuple[str, int, float]]) -> list[dict[str, Any]]:
    """One row per round that decided triplets or drew a sample."""
    from_runs = _round_counts_from_runs(catalog)
    from_props: dict[int, Counter] = defaultdict(Counter)
    for _, route, rnd in props.values():
        from_props[rnd][route] += 1
    sampled = Counter(int(r) for r in sample.values())
    rows = []
    for rnd in sorted(set(from_runs) | set(from_props) | set(sampled)):
        source = "run" if rnd in from_runs else "proposals"
        routes = from_runs.get(rnd) or from_props.get(rnd, Counter())
        accept, review = int(routes.get("accept", 0)), int(routes.get("review", 0))
        hits = [v for _, r, v in measured if r == rnd]
        rows.append({"round": rnd, "decided": accept + review, "accepted": accept, "review_routed": review,
                     "auto_accept_share": round(accept / (accept + review), 6) if accept + review else None,
                     "sampled": sampled.get(rnd, 0), "review_tasks": review + sampled.get(rnd, 0),
                     "precision": rate(sum(1 for v in hits if v >= THRESHOLDS["iou90"]), len(hits)),
                     "counts_from": source})
    return rows


def _compare(rounds: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The last round against the one before: fewer tasks for people, at no lower precision?"""
    if len(rounds) < 2:
        return None
    a, b = rounds[-2], rounds[-1]
    pa, pb = a["precision"], b["precision"]
    measured = bool(pa["n"] and pb["n"])
    return {"from": a["round"], "to": b["round"], "review_tasks": [a["review_tasks"], b["review_tasks"]],
            "fewer_tasks": b["review_tasks"] < a["review_tasks"],
            "precision": [pa["share"], pb["share"]],
            "precision_not_lower": (pb["share"] >= pa["share"]) if measured else None,
            # the intervals overlap: a lower point estimate the samples cannot tell from noise
            "precision_not_significantly_lower": (pb["ci95"][1] >= pa["ci95"][0]) if measured else None}


# ------------------------------------------------------------------ words
def pct(x: Optional[float]) -> str:
    """A share as a percentage.

    >>> pct(0.94), pct(None)
    ('94.0 %', 'n/a')
    """
    return "n/a" if x is None else f"{100 * x:.1f} %"


def ci_text(r: dict[str, Any]) -> str:
    """A share's 95 % interval as text.

    >>> ci_text(rate(94, 100))
    '87.5-97.2 %'
    """
    lo, hi = r["ci95"]
    return f"{100 * lo:.1f}-{100 * hi:.1f} %"


def statement(q: dict[str, Any]) -> str:
    """One or two sentences for a dataset card (a third when two rounds can be compared)."""
    a = q["auto_accepted"]
    r90, r75 = a["iou90"], a["iou75"]
    if a["n"]:
        of = (f"{a['n']:,} sampled of {a['population']:,}" if a["n"] == a["sampled"]
              else f"{a['n']:,} measured of {a['sampled']:,} sampled from {a['population']:,}")
        first = (f"Auto-accepted masks: {pct(r90['share'])} at IoU >= 0.9 against the reviewers' consensus "
                 f"(95 % CI {ci_text(r90)}, {of}); {pct(r75['share'])} at IoU >= 0.75 (95 % CI {ci_text(r75)}).")
    elif not a["population"]:
        first = ("Auto-accepted masks: none in this build, so there is nothing to measure: every mask was "
                 "routed to human review." if q["review"]["routed"] else
                 "Mask quality: not measured yet: no mask has been auto-accepted or reviewed.")
    elif not a["sampled"]:
        first = (f"Auto-accepted masks: not measured yet: no audit sample of the {a['population']:,} "
                 "auto-accepted masks has been drawn (review.audit_fraction).")
    else:
        first = (f"Auto-accepted masks: not measured yet: the audit sample ({a['sampled']:,} of "
                 f"{a['population']:,} auto-accepted masks) has not been reviewed.")
    parts = [first]
    c, j, ag = q["consensus"], q["adjudicated"], q["agreement"]
    if c["triplets"] or j["triplets"]:
        agree = (f"; inter-annotator agreement (mean pairwise IoU) {ag['mean']:.3f} on average over "
                 f"{ag['tasks']:,} tasks" if ag["mean"] is not None else "")
        parts.append(f"Reviewers settled {c['triplets']:,} masks by consensus and experts {j['triplets']:,} by "
                     f"adjudication; the model's proposal was already at IoU >= 0.9 for "
                     f"{pct(_pooled(c, j)['share'])} of them{agree}.")
    cmp_ = q.get("round_comparison")
    if cmp_:
        t = cmp_["review_tasks"]
        p = cmp_["precision"]
        verdict = ("fewer" if cmp_["fewer_tasks"] else "not fewer") + " tasks"
        if cmp_["precision_not_lower"] is None:
            verdict += ", precision not measured in both rounds"
        else:
            verdict += " at " + ("no lower" if cmp_["precision_not_lower"] else "a lower") + " measured precision"
            if cmp_["precision_not_lower"] is False and cmp_["precision_not_significantly_lower"]:
                verdict += " (the 95 % intervals overlap)"
        parts.append(f"Round {cmp_['to']} sent {t[1]:,} tasks to people (round {cmp_['from']}: {t[0]:,}), "
                     f"precision {pct(p[1])} (round {cmp_['from']}: {pct(p[0])}): {verdict}.")
    return " ".join(parts)


def _pooled(*blocks: dict[str, Any]) -> dict[str, Any]:
    return rate(sum(b["iou90"]["k"] for b in blocks), sum(b["iou90"]["n"] for b in blocks))


def _num(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def quality_rows(q: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(route, measured, IoU >= 0.9, IoU >= 0.75) per route: the card's and the report's table."""
    def cell(r: dict[str, Any]) -> str:
        return f"{pct(r['share'])} ({ci_text(r)})" if r["n"] else "n/a"

    labels = (("auto_accepted", "auto-accepted (audit sample)"), ("consensus", "review: consensus"),
              ("adjudicated", "review: adjudicated"))
    return [(label, f"{q[key]['n']:,}", cell(q[key]["iou90"]), cell(q[key]["iou75"])) for key, label in labels]


def quality_markdown(q: dict[str, Any]) -> str:
    """QUALITY.md: the statement, the per-route table, per category and size, agreement, rounds."""
    a, ag = q["auto_accepted"], q["agreement"]
    head = "| route | masks measured | IoU >= 0.9 (95 % CI) | IoU >= 0.75 (95 % CI) |\n|---|---|---|---|"
    lines = ["# Mask quality", "", q["statement"], "",
             "Each share is the fraction of masks at that IoU against the reviewers' consensus mask, with its "
             "Wilson 95 % interval. Auto-accepted: the audit sample of masks the router accepted, sent to "
             "reviewers like any task (a `reject-mask` verdict counts as IoU 0; an expression reject is left "
             "out). Review routes: how often the model's proposal already matched what review settled on.", "",
             head]
    lines += ["| " + " | ".join(row) + " |" for row in quality_rows(q)]
    lines += ["", "## Audit sample", "", "| figure | value |", "|---|---|"]
    for key, label in (("population", "auto-accepted masks"), ("sampled", "sampled"), ("reviewed", "reviewed"),
                       ("awaiting_review", "awaiting review"), ("pending_adjudication", "pending adjudication"),
                       ("mask_rejected", "mask rejected (IoU 0)"), ("expression_rejected", "expression rejected "
                                                                                           "(left out)"),
                       ("corrected", "changed by reviewers"), ("unusable", "no comparable mask")):
        lines.append(f"| {label} | {a[key]:,} |")
    lines.append(f"| mean IoU | {_num(a['mean_iou'])} |")
    for key, title in (("by_category", "category"), ("by_size", "size")):
        if a[key]:
            lines += ["", f"### Auto-accepted by {title}", "",
                      f"| {title} | n | IoU >= 0.9 (95 % CI) | IoU >= 0.75 (95 % CI) |", "|---|---|---|---|"]
            lines += [f"| {name} | {s['n']} | {pct(s['iou90']['share'])} ({ci_text(s['iou90'])}) | "
                      f"{pct(s['iou75']['share'])} ({ci_text(s['iou75'])}) |" for name, s in a[key].items()]
    lines += ["", "## Inter-annotator agreement", "", "| figure | value |", "|---|---|",
              f"| tasks with an agreement | {ag['tasks']:,} |",
              f"| mean | {_num(ag['mean'])} |", f"| median | {_num(ag['median'])} |",
              f"| at or above min_agreement ({ag['min_agreement']:g}) | {pct(ag['at_least_min']['share'])} |",
              f"| reviews per task | {ag['reviews_per_task']:.2f} |"]
    if q["rounds"]:
        lines += ["", "## Rounds", "",
                  "| round | decided | auto-accepted | review tasks (routed + sampled) | precision at IoU >= 0.9 |",
                  "|---|---|---|---|---|"]
        for r in q["rounds"]:
            p = r["precision"]
            prec = f"{pct(p['share'])} ({ci_text(p)}, n={p['n']})" if p["n"] else "not measured"
            lines.append(f"| {r['round']} | {r['decided']:,} | {pct(r['auto_accept_share'])} | "
                         f"{r['review_tasks']:,} ({r['review_routed']:,} + {r['sampled']:,}) | {prec} |")
    return "\n".join(lines) + "\n"


def write_quality(catalog: Catalog, cfg: PipelineConfig, reports_dir: Path) -> dict[str, Any]:
    """Measure and write ``reports_dir/quality.json`` and ``QUALITY.md``; returns the measurement."""
    q = measure_quality(catalog, cfg)
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "quality.json").write_text(json.dumps(q, indent=2) + "\n", encoding="utf-8")
    (reports_dir / "QUALITY.md").write_text(quality_markdown(q), encoding="utf-8")
    return q
