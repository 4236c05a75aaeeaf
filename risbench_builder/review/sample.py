"""The audit sample: auto-accepted masks that reviewers see anyway, so the router's precision is
measured on real data rather than assumed.

Each data-engine round draws its own sample from the masks that round auto-accepted: a seeded,
stratified random sample (strata: category x size bin), ``review.audit_fraction`` of each stratum
(largest remainders, at least ``review.audit_min`` in all). The sample is disjoint from the review
queue by construction (the queue holds masks routed to review), its tasks look exactly like queue
tasks, and what reviewers say changes a sampled mask only when they reject or correct it
(finalize). ``finalize/quality.py`` turns the verdicts into a precision with its interval.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass

from ..catalog import Catalog
from ..config import ReviewConfig
from ..finalize.stats import size_bin
from ..readmodel import current_proposal_set


@dataclass(frozen=True)
class Drawn:
    round: int
    population: int                # auto-accepted masks of the round that could be drawn
    drawn: int                     # newly drawn now
    sample: int                    # the round's whole sample


def current_round(catalog: Catalog) -> int:
    """The round of the newest finished sam-refine run (1 before any round was named)."""
    for (counts,) in catalog.conn.execute(
            "SELECT counts_json FROM runs WHERE stage='sam-refine' AND finished IS NOT NULL AND counts_json IS NOT "
            "NULL ORDER BY started DESC, rowid DESC"):
        return int(json.loads(counts).get("round") or 1)
    return 1


def _rank(seed: int, round_no: int, triplet_id: str) -> str:
    return hashlib.sha256(f"{seed}:{round_no}:{triplet_id}".encode()).hexdigest()


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """``total`` draws over strata in proportion to their sizes (largest remainders, ties by name),
    never more than a stratum holds.

    >>> allocate({"ship|small": 50, "ship|large": 30, "dam|large": 20}, 10)
    {'dam|large': 2, 'ship|large': 3, 'ship|small': 5}
    """
    population = sum(sizes.values())
    total = min(total, population)
    if not total:
        return {k: 0 for k in sorted(sizes)}
    exact = {k: total * n / population for k, n in sizes.items()}
    out = {k: min(sizes[k], int(math.floor(v))) for k, v in exact.items()}
    order = sorted(sizes, key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    while sum(out.values()) < total:
        for k in order:
            if sum(out.values()) >= total:
                break
            if out[k] < sizes[k]:
                out[k] += 1
    return dict(sorted(out.items()))


def draw_sample(catalog: Catalog, cfg: ReviewConfig, run_id: str | None = None) -> Drawn:
    """Draw (once per round) the audit sample of the current round's auto-accepted masks; rows go
    to ``samples``. Drawing again in the same round adds nothing."""
    round_no = current_round(catalog)
    current = current_proposal_set(catalog)
    if current is None or (cfg.audit_fraction <= 0 and cfg.audit_min <= 0):
        return Drawn(round_no, 0, 0, 0)
    already = catalog.count("samples", "WHERE round=?", (round_no,))
    rows = catalog.conn.execute(
        "SELECT p.triplet_id, t.category, p.scores_json FROM proposals p JOIN triplets t USING (triplet_id) "
        "WHERE p.segmenter=? AND p.model_sha256=? AND p.route='accept' AND COALESCE(p.round, 1)=? "
        "AND t.expression IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM consensus c WHERE c.triplet_id = p.triplet_id) ORDER BY p.triplet_id",
        (*current, round_no)).fetchall()
    if already:
        return Drawn(round_no, len(rows), 0, already)
    strata: dict[str, list[str]] = defaultdict(list)
    for tid, category, scores in rows:
        area = int(float(json.loads(scores or "{}").get("area", 0)))
        strata[f"{category}|{size_bin(area)}"].append(tid)
    wanted = max(math.ceil(cfg.audit_fraction * len(rows)), min(cfg.audit_min, len(rows)))
    counts = allocate({k: len(v) for k, v in strata.items()}, wanted)
    chosen = [(tid, round_no, stratum, run_id) for stratum, ids in sorted(strata.items())
              for tid in sorted(ids, key=lambda t: _rank(cfg.audit_seed, round_no, t))[:counts[stratum]]]
    with catalog.transaction():
        catalog.add("samples", chosen)
    return Drawn(round_no, len(rows), len(chosen), len(chosen))


def interleave(queue: list, sample: list, seed: int) -> list:
    """The sample spread through the queue at seeded positions, so a sampled task's place says
    nothing about how it was chosen (the queue itself is most uncertain first)."""
    if not sample:
        return list(queue)
    out = list(queue)
    for item in sorted(sample, key=lambda q: _rank(seed, 0, q.triplet_id)):
        at = int(_rank(seed, 1, item.triplet_id)[:8], 16) % (len(out) + 1)
        out.insert(at, item)
    return out


def review_items(catalog: Catalog, cfg: ReviewConfig) -> list:
    """What goes to people now: the review queue with the round's audit sample (drawn on first
    call) spread through it. ``review push``, the import file and the demo's simulated reviewers
    all send exactly this."""
    from ..readmodel import review_queue, sample_queue

    draw_sample(catalog, cfg)
    return interleave(review_queue(catalog), sample_queue(catalog), cfg.audit_seed)
