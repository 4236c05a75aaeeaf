"""Everything the catalog knows about a triplet, in one record, read in a few bulk queries.

The QA views need a triplet together with its image, its latest proposal, its reviews, its
consensus, its final row and its rejects. Reading these table by table (one query each, then
joined in Python) keeps a 50k-triplet report to a handful of queries instead of 50k.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..catalog import Catalog
from ..readmodel import current_proposals


@dataclass(frozen=True)
class Proposal:
    segmenter: str
    model_sha256: str
    rle: str
    scores: dict[str, float]
    route: str


@dataclass(frozen=True)
class Review:
    task_id: str
    annotator: str
    rle: str | None
    verdict: str
    corrected_expression: str | None


@dataclass(frozen=True)
class Consensus:
    rle: str | None
    agreement: float | None
    decision: str


@dataclass
class TripletRecord:
    """One triplet and what every stage that ran said about it (masks as RLE JSON text)."""

    triplet_id: str
    image_id: str
    image_path: str
    image_sha256: str | None
    width: int
    height: int
    source: str
    source_ref: str
    category: str
    expression: str | None
    box: tuple[float, float, float, float]
    polygon: list[list[float]] | None
    attributes: dict[str, Any]
    origin_split: str | None
    proposal: Proposal | None = None
    reviews: list[Review] = field(default_factory=list)
    consensus: Consensus | None = None
    final_split: str | None = None
    mask_origin: str | None = None
    rejects: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def split(self) -> str:
        """The split a reader of the finished dataset sees: final, else the source's own."""
        return self.final_split or self.origin_split or "-"


_TRIPLET_SQL = ("SELECT t.triplet_id, t.image_id, i.path, i.sha256, i.width, i.height, t.source, t.source_ref, "
                "t.category, t.expression, t.box_xyxy, t.polygon, t.attributes_json, t.origin_split "
                "FROM triplets t JOIN images i ON i.image_id = t.image_id")


def _where(ids: Sequence[str] | None, column: str = "triplet_id") -> tuple[str, tuple[str, ...]]:
    if ids is None:
        return "", ()
    return f" WHERE {column} IN ({', '.join('?' for _ in ids)})", tuple(ids)


def load_records(catalog: Catalog, ids: Sequence[str] | None = None) -> dict[str, TripletRecord]:
    """Records of all triplets (or of ``ids``), ordered by image then triplet id.

    When a triplet has proposals from several segmenters, the one shown is that of the current
    proposal set (:func:`readmodel.current_proposal_set`), the one finalize uses.
    """
    where, params = _where(ids, "t.triplet_id")
    out: dict[str, TripletRecord] = {}
    for row in catalog.conn.execute(_TRIPLET_SQL + where + " ORDER BY t.image_id, t.triplet_id", params):
        (tid, image_id, path, sha, width, height, source, ref, category, expression,
         box, polygon, attrs, origin_split) = row
        out[tid] = TripletRecord(tid, image_id, path, sha, int(width), int(height), source, ref, category,
                                 expression, tuple(json.loads(box)), json.loads(polygon) if polygon else None,
                                 json.loads(attrs or "{}"), origin_split)
    for p in current_proposals(catalog, ids):
        if p.triplet_id in out:
            out[p.triplet_id].proposal = Proposal(p.segmenter, p.model_sha256, p.rle, p.scores, p.route)
    where, params = _where(ids)
    for tid, task, annotator, rle, verdict, corrected in catalog.conn.execute(
            "SELECT triplet_id, task_id, annotator, rle, verdict, corrected_expression FROM reviews"
            + where + " ORDER BY triplet_id, annotator, task_id", params):
        if tid in out:
            out[tid].reviews.append(Review(task, annotator, rle, verdict, corrected))
    for tid, rle, agreement, decision in catalog.conn.execute(
            "SELECT triplet_id, rle, agreement, decision FROM consensus" + where, params):
        if tid in out:
            out[tid].consensus = Consensus(rle, agreement, decision)
    for tid, split, origin in catalog.conn.execute("SELECT triplet_id, split, mask_origin FROM final" + where, params):
        if tid in out:
            out[tid].final_split, out[tid].mask_origin = split, origin
    where, params = _where(ids, "ref")
    for stage, ref, reason, detail in catalog.conn.execute(
            "SELECT stage, ref, reason, detail FROM rejects" + where + " ORDER BY stage, reason", params):
        if ref in out:
            out[ref].rejects.append((stage, reason, detail))
    return out


def find_triplet(catalog: Catalog, text: str) -> str:
    """The triplet id ``text`` names: an exact id or a unique prefix of one."""
    if catalog.conn.execute("SELECT 1 FROM triplets WHERE triplet_id=?", (text,)).fetchone():
        return text
    hits = [r[0] for r in catalog.conn.execute(
        "SELECT triplet_id FROM triplets WHERE triplet_id >= ? AND triplet_id < ? ORDER BY triplet_id LIMIT 3",
        (text, text + "\uffff"))]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ValueError(f"no triplet {text!r} in {catalog.path}: `risbench report` lists them")
    raise ValueError(f"{text!r} names several triplets ({', '.join(hits[:2])}, ...): give more of the id")


def orphan_rejects(catalog: Catalog) -> Iterator[tuple[str, str, str, str]]:
    """Rejects whose ref is not a triplet (an unreadable file, a record dropped at ingest)."""
    yield from catalog.conn.execute(
        "SELECT stage, reason, ref, detail FROM rejects WHERE ref NOT IN (SELECT triplet_id FROM triplets) "
        "ORDER BY stage, reason, ref")
