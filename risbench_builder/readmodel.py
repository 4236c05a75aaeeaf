"""The catalog's shared reads: the few concepts several stages must see the same way.

A triplet can hold proposals from several sam-refine runs (GrabCut first, SAM later; an
imported mask beside a fresh one). Which of them is *the* proposal is decided here once:
the proposal set of the newest finished run that made one (a sam-refine run, or an ingest run
that imported a finished dataset's masks; optionally of one segmenter), else, before any run
finished, the newest proposals written. ``audit``'s fresh masks are written without such a run,
so they sit beside the imported ones without replacing them. finalize, calibrate, the review queue,
review pull and the QA report all read it through :func:`current_proposal_set`, so a second
run with another model can never make them pick different masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from . import masks
from .catalog import Catalog

ProposalSet = tuple[str, str]            # (segmenter, model_sha256)
CONFIDENCE_SIGNALS = ("iou_pred", "stability", "jitter_agreement", "box_iou", "polygon_iou")


# ------------------------------------------------------------------ proposals
def current_proposal_set(catalog: Catalog, segmenter: Optional[str] = None) -> Optional[ProposalSet]:
    """(segmenter, model_sha256) of the newest finished run that made proposals (of ``segmenter``
    when given), else of the newest proposals written; None when there is none."""
    for (counts,) in catalog.conn.execute(
            "SELECT counts_json FROM runs WHERE stage IN ('sam-refine', 'ingest') AND finished IS NOT NULL AND counts_json IS NOT NULL "
            "ORDER BY started DESC, rowid DESC"):
        data = json.loads(counts)
        if "segmenter" in data and (segmenter is None or data["segmenter"] == segmenter):
            return data["segmenter"], data.get("model_sha256", "")
    sql, params = "SELECT segmenter, model_sha256 FROM proposals", ()
    if segmenter is not None:
        sql, params = sql + " WHERE segmenter=?", (segmenter,)
    row = catalog.conn.execute(sql + " ORDER BY rowid DESC LIMIT 1", params).fetchone()    # newest written
    return (row[0], row[1]) if row else None


@dataclass(frozen=True)
class Proposal:
    """One row of ``proposals``, with its scores parsed."""

    triplet_id: str
    segmenter: str
    model_sha256: str
    rle: str
    scores: dict
    route: str


def current_proposals(catalog: Catalog, ids: Optional[Sequence[str]] = None,
                      proposal_set: Optional[ProposalSet] = None) -> Iterator[Proposal]:
    """The proposals of the current set (or of ``proposal_set``), of every triplet or of ``ids``,
    in triplet id order."""
    current = proposal_set or current_proposal_set(catalog)
    if current is None:
        return
    sql = ("SELECT triplet_id, segmenter, model_sha256, rle, scores_json, route FROM proposals "
           "WHERE segmenter=? AND model_sha256=?")
    params: tuple[Any, ...] = current
    if ids is not None:
        if not ids:
            return
        sql += f" AND triplet_id IN ({', '.join('?' for _ in ids)})"
        params = (*current, *ids)
    for tid, seg, sha, rle, scores, route in catalog.conn.execute(sql + " ORDER BY triplet_id", params):
        yield Proposal(tid, seg, sha, rle, json.loads(scores or "{}"), route)


def proposal_rle(catalog: Catalog, triplet_id: str, proposal_set: Optional[ProposalSet] = None) -> Optional[str]:
    """The triplet's mask (COCO RLE JSON) in ``proposal_set`` when it has one there, else in the
    current set; None when it has neither."""
    for chosen in (proposal_set, current_proposal_set(catalog)):
        if chosen is None:
            continue
        row = catalog.conn.execute("SELECT rle FROM proposals WHERE triplet_id=? AND segmenter=? AND model_sha256=?",
                                   (triplet_id, *chosen)).fetchone()
        if row:
            return row[0]
    return None


# ------------------------------------------------------------------ the review queue
@dataclass(frozen=True)
class QueueItem:
    triplet_id: str
    image_path: str
    width: int
    height: int
    category: str
    expression: str
    rle: dict
    scores: dict
    segmenter: str
    model_sha256: str
    #: the triplet's masks from other proposal sets, (segmenter, model_sha256, rle), e.g. audit's
    #: fresh mask beside an imported one: reviewers see them as further predictions
    alternatives: tuple[tuple[str, str, dict], ...] = ()

    @property
    def confidence(self) -> float:
        return confidence(self.scores)


def confidence(scores: dict) -> float:
    """Mean of the confidence signals present, each clipped to [0, 1]; 0 when none is."""
    values = [min(max(float(scores[k]), 0.0), 1.0) for k in CONFIDENCE_SIGNALS
              if isinstance(scores.get(k), (int, float))]
    return sum(values) / len(values) if values else 0.0


#: SQL: triplet ``t`` has a referring expression. Only these can become dataset triplets; a label
#: source (DOTA's or DIOR's boxes over whole scenes) brings objects without one, which no stage masks.
REFERRED = "t.expression IS NOT NULL AND TRIM(t.expression) != ''"

_QUEUE_SQL = """
SELECT p.triplet_id, i.path, i.width, i.height, t.category, t.expression, p.rle, p.scores_json,
       p.segmenter, p.model_sha256
FROM proposals p JOIN triplets t USING (triplet_id) JOIN images i ON i.image_id = t.image_id
WHERE p.segmenter = ? AND p.model_sha256 = ? AND {which} AND """ + REFERRED + """
  AND NOT EXISTS (SELECT 1 FROM consensus c WHERE c.triplet_id = p.triplet_id)
  AND NOT EXISTS (SELECT 1 FROM rejects r WHERE r.stage = 'review' AND r.ref = p.triplet_id)
"""
_ROUTED = "p.route = 'review'"
_SAMPLED = "p.route = 'accept' AND EXISTS (SELECT 1 FROM samples s WHERE s.triplet_id = p.triplet_id)"


def review_queue(catalog: Catalog) -> list[QueueItem]:
    """Triplets of the current proposal set waiting for people (routed to review, with an
    expression, no decision, not rejected by reviewers), most uncertain first, ties by id."""
    return _queue(catalog, _ROUTED)


def sample_queue(catalog: Catalog) -> list[QueueItem]:
    """Auto-accepted triplets drawn into the audit sample (``samples``) that reviewers have not
    decided yet: sent as ordinary tasks beside :func:`review_queue`."""
    return _queue(catalog, _SAMPLED)


def queued_count(catalog: Catalog) -> int:
    """How many triplets :func:`review_queue` and :func:`sample_queue` hold together, counted in
    SQLite (no mask is read: ``risbench status`` asks this on every call)."""
    current = current_proposal_set(catalog)
    if current is None:
        return 0
    return sum(int(catalog.conn.execute(f"SELECT COUNT(*) FROM ({_QUEUE_SQL.format(which=which)})", current)
                   .fetchone()[0]) for which in (_ROUTED, _SAMPLED))


def last_finished_run(catalog: Catalog, stages: Sequence[str]) -> Optional[tuple[str, int]]:
    """``(started, rowid)`` of the latest finished run of ``stages``, for "did X run after Y"
    questions. ``started`` has one-second resolution, so the insertion order (rowid) breaks ties:
    of two runs in one second, the one recorded later is the newer."""
    marks = ", ".join("?" for _ in stages)
    row = catalog.conn.execute(f"SELECT started, rowid FROM runs WHERE finished IS NOT NULL AND stage IN ({marks}) "
                               "ORDER BY started DESC, rowid DESC LIMIT 1", tuple(stages)).fetchone()
    return (row[0], row[1]) if row else None


def unmasked_count(catalog: Catalog, proposal_set: ProposalSet) -> int:
    """Triplets with an expression that still need a mask of ``proposal_set``: none there, no
    sam-refine reject, and no reviewers' decision (a consensus mask or a review reject stands in
    for it). What a killed sam-refine, an ``ingest --force`` or an interrupted ``sam-refine
    --force`` leaves to do."""
    return int(catalog.conn.execute(
        f"SELECT COUNT(*) FROM triplets t WHERE {REFERRED} AND NOT EXISTS (SELECT 1 FROM proposals p WHERE "
        "p.triplet_id = t.triplet_id AND p.segmenter = ? AND p.model_sha256 = ?) AND NOT EXISTS (SELECT 1 FROM "
        "rejects r WHERE r.stage IN ('sam-refine', 'review') AND r.ref = t.triplet_id) "
        "AND NOT EXISTS (SELECT 1 FROM consensus c WHERE c.triplet_id = t.triplet_id)", proposal_set).fetchone()[0])


def _queue(catalog: Catalog, which: str) -> list[QueueItem]:
    current = current_proposal_set(catalog)
    if current is None:
        return []
    queue_sql = _QUEUE_SQL.format(which=which)
    rows = catalog.conn.execute(queue_sql, current).fetchall()
    others: dict[str, list[tuple[str, str, dict]]] = {}
    for tid, seg, sha, rle in catalog.conn.execute(          # the queued triplets' masks from other sets
            "SELECT o.triplet_id, o.segmenter, o.model_sha256, o.rle FROM proposals o WHERE NOT (o.segmenter = ? "
            f"AND o.model_sha256 = ?) AND o.triplet_id IN (SELECT triplet_id FROM ({queue_sql})) "
            "ORDER BY o.triplet_id, o.segmenter, o.model_sha256", (*current, *current)):
        others.setdefault(tid, []).append((seg, sha, masks.loads(rle)))
    items = [QueueItem(tid, path, w, h, cat, expr, masks.loads(rle), json.loads(scores), seg, sha,
                       tuple(others.get(tid, ())))
             for tid, path, w, h, cat, expr, rle, scores, seg, sha in rows]
    return sorted(items, key=lambda q: (q.confidence, q.triplet_id))


# ------------------------------------------------------------------ consensus
@dataclass(frozen=True)
class ConsensusSummary:
    """What the card, ``review status`` and the report say about human review."""

    consensus: int                       # triplets with a decision
    decisions: dict[str, int]
    agreements: list[float]              # mean pairwise IoU of each decided task that has one
    reviews: int
    annotators: int
    tasks: int

    @property
    def reviews_per_task(self) -> float:
        return self.reviews / self.tasks if self.tasks else 0.0


def consensus_summary(catalog: Catalog) -> ConsensusSummary:
    decisions = dict(catalog.conn.execute("SELECT decision, COUNT(*) FROM consensus GROUP BY decision "
                                          "ORDER BY decision").fetchall())
    agreements = [float(a) for (a,) in catalog.conn.execute(
        "SELECT agreement FROM consensus WHERE agreement IS NOT NULL ORDER BY triplet_id")]
    reviews, annotators, tasks = catalog.conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT annotator), COUNT(DISTINCT task_id) FROM reviews").fetchone()
    return ConsensusSummary(sum(decisions.values()), decisions, agreements, reviews, annotators, tasks)
