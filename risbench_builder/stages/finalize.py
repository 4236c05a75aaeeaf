"""The finalize stage: decided masks -> filters -> expression-geometry check -> splits -> ``final``.

Finalize is a pure function of the catalog, so it recomputes ``final`` (and its own rejects)
in one transaction each time it runs: rerunning changes nothing, and a killed run leaves the
previous result intact. A triplet whose mask is still waiting for review is *pending*: not in
``final``, not rejected, counted in the report.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from rich.progress import track

from ..catalog import Catalog
from ..config import PipelineConfig
from ..finalize import filters, geometry
from ..readmodel import current_proposal_set, last_finished_run
from ..finalize.splits import Item, assign, drawn, scene_leaks
from ..workspace import Workspace

STAGE = "finalize"
_REVIEW_ORIGINS = ("consensus", "adjudicated")
_ORIGIN_RANK = {"adjudicated": 0, "consensus": 1, "auto": 2}


@dataclass
class FinalizeReport:
    run_id: str
    seconds: float = 0.0
    candidates: int = 0
    kept: Counter = field(default_factory=Counter)          # per split
    origins: Counter = field(default_factory=Counter)
    pending: Counter = field(default_factory=Counter)       # why not decided yet
    rejected: Counter = field(default_factory=Counter)
    geometry: dict[str, Any] = field(default_factory=dict)
    upstream_leaks: dict[str, list[str]] = field(default_factory=dict)
    split_leaks: dict[str, list[str]] = field(default_factory=dict)
    sample_confirmed: int = 0        # audit-sample masks reviewers accepted: kept as auto-accepted
    scenes: Counter = field(default_factory=Counter)        # drawn scenes: kept their split / drawn now

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "seconds": round(self.seconds, 3), "candidates": self.candidates,
                "kept": dict(self.kept), "kept_total": sum(self.kept.values()), "mask_origins": dict(self.origins),
                "pending": dict(self.pending), "rejected": dict(sorted(self.rejected.items())),
                "geometry": {k: v for k, v in self.geometry.items() if k != "all"},
                "upstream_scene_leaks": len(self.upstream_leaks), "split_scene_leaks": len(self.split_leaks),
                "upstream_leak_examples": dict(list(self.upstream_leaks.items())[:10]),
                "sample_confirmed": self.sample_confirmed, "scenes": dict(self.scenes)}


_SQL = """
SELECT t.triplet_id, t.image_id, i.scene_id, t.category, t.expression, t.box_xyxy, t.attributes_json,
       t.origin_split, i.width, i.height, c.rle, c.decision, p.rle, p.route
FROM triplets t JOIN images i USING (image_id)
LEFT JOIN consensus c ON c.triplet_id = t.triplet_id
LEFT JOIN proposals p ON p.triplet_id = t.triplet_id AND p.segmenter = ? AND p.model_sha256 = ?
WHERE t.expression IS NOT NULL
ORDER BY t.triplet_id
"""


def _decide(catalog: Catalog, report: FinalizeReport, progress: bool) -> tuple[list[filters.Candidate], list[tuple]]:
    """Candidates with a decided mask, and reviewer rejections; everything else is pending."""
    seg = current_proposal_set(catalog) or ("", "")
    rows = catalog.conn.execute(_SQL, seg).fetchall()
    kept_as_accepted = _sample_confirmed(catalog)
    candidates, rejects = [], []
    for (tid, image_id, scene, category, expression, box, attrs, origin_split, w, h, c_rle, decision,
         p_rle, p_route) in track(rows, description="[bold]finalize[/] masks", disable=not progress):
        if decision == "consensus" and p_route == "accept" and tid in kept_as_accepted:
            rle, origin = p_rle, "auto"          # an audit-sample mask reviewers accepted stays as it was
            report.sample_confirmed += 1
        elif decision in _REVIEW_ORIGINS and c_rle:
            rle, origin = c_rle, decision
        elif decision and decision.startswith(("reject", "expression", "drop")):
            rejects.append((tid, filters.REVIEWER_REJECTED, f"review decision: {decision}"))
            continue
        elif decision:
            report.pending[f"review:{decision}"] += 1
            continue
        elif p_route == "accept":
            rle, origin = p_rle, "auto"
        else:
            report.pending["awaiting review" if p_route == "review" else "no proposal"] += 1
            continue
        candidates.append(filters.Candidate(tid, image_id, scene, category, expression, tuple(json.loads(box)),
                                            json.loads(attrs), origin_split, json.loads(rle), origin,
                                            (w, h)).measure())
    return candidates, rejects


def _sample_confirmed(catalog: Catalog) -> set[str]:
    """Audit-sample triplets whose reviewers mostly accepted the mask as shown: their consensus
    only measures the router, it does not replace the mask (a correction, a rejection or an
    adjudication does, and is counted by ``risbench quality``)."""
    return {tid for tid, accepted, corrected in catalog.conn.execute(
        "SELECT r.triplet_id, SUM(r.verdict = 'accept'), SUM(r.verdict = 'corrected') FROM reviews r "
        "JOIN samples s USING (triplet_id) WHERE r.task_id NOT LIKE 'adj:%' GROUP BY r.triplet_id")
            if accepted > corrected}


def _kept_scene_splits(catalog: Catalog, pool: list[Item], cfg: PipelineConfig, split_sha: str,
                       report: FinalizeReport) -> dict[str, str]:
    """Scene -> the split an earlier finalize gave it, under the same split config (``pool``: the
    items whose split is drawn). A catalog made before ``scene_splits`` existed keeps the splits
    its ``final`` holds if its last finalize ran with this very pipeline (else nothing says they
    came from this split config)."""
    rows = catalog.conn.execute("SELECT scene_id, split, config_sha256 FROM scene_splits").fetchall()
    fixed: dict[str, str] = {}
    last = last_finished_run(catalog, (STAGE,))
    if rows:
        fixed = {scene: split for scene, split, sha in rows if sha == split_sha}
        if len(fixed) < len(rows):
            report.scenes["drawn again: the split config changed"] = len(rows) - len(fixed)
    elif last and catalog.conn.execute("SELECT config_sha256 FROM runs WHERE rowid=?", (last[1],)).fetchone() == (
            cfg.sha256(),):
        final = dict(catalog.conn.execute("SELECT triplet_id, split FROM final"))
        fixed = {it.scene_id: final[it.triplet_id] for it in pool if it.triplet_id in final}
    report.scenes["kept their split"] = len({it.scene_id for it in pool} & set(fixed))
    return fixed


def _geometry(catalog: Catalog, kept: list[filters.Candidate], mode: str,
              report: FinalizeReport) -> tuple[set[str], list[dict[str, Any]]]:
    """Triplet ids whose words contradict their mask, and a record of each contradiction."""
    known: dict[tuple[str, str], list[tuple[str, float, float, float]]] = defaultdict(list)
    measured = {c.triplet_id: c for c in kept}
    for tid, image_id, category, box in catalog.conn.execute(
            "SELECT triplet_id, image_id, category, box_xyxy FROM triplets ORDER BY triplet_id"):
        if tid in measured:
            c = measured[tid]
            known[(image_id, category)].append((tid, *c.centroid, float(c.area)))
        else:
            x1, y1, x2, y2 = json.loads(box)
            known[(image_id, category)].append((tid, (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * (y2 - y1)))
    flagged: set[str] = set()
    records: list[dict[str, Any]] = []
    words = Counter()
    for c in kept:
        words.update(c.parsed.absolute + c.parsed.relative + c.parsed.size)
        others = [(x, y, a) for t, x, y, a in known[(c.image_id, c.category)] if t != c.triplet_id]
        found = geometry.check(c.parsed, c.centroid, c.size, float(c.area), others)
        if found:
            flagged.add(c.triplet_id)
            records.append({"triplet_id": c.triplet_id, "expression": c.expression, "mask_origin": c.mask_origin,
                            "centroid": [round(v, 1) for v in c.centroid], "image_size": list(c.size),
                            "contradictions": [{"word": f.word, "reason": f.reason} for f in found],
                            "action": mode if c.mask_origin == "auto" or mode == "drop" else "flag"})
    report.geometry = {"mode": mode, "checked": len(kept), "with_position_words": sum(
        1 for c in kept if c.parsed.absolute or c.parsed.relative or c.parsed.size),
        "contradictions": len(records), "word_counts": dict(words.most_common()), "examples": records[:10]}
    return flagged, records


def run_finalize(ws: Workspace, cfg: PipelineConfig, *, force: bool = False, progress: bool = True) -> FinalizeReport:
    """Recompute ``final`` from the catalog; ``force`` is accepted for symmetry (always recomputed)."""
    fcfg = cfg.finalize
    started = time.perf_counter()
    with Catalog(ws.catalog_path, create=False) as catalog:
        run_id = catalog.start_run(STAGE, cfg.sha256())
        report = FinalizeReport(run_id)
        candidates, rejects = _decide(catalog, report, progress)
        report.candidates = len(candidates)
        kept: list[filters.Candidate] = []
        seen: dict[tuple[str, str], str] = {}
        for c in sorted(candidates, key=lambda c: (_ORIGIN_RANK[c.mask_origin], c.triplet_id)):
            problem = filters.mask_rules(c, fcfg)
            if problem is None and fcfg.dedupe:
                first = seen.setdefault(filters.duplicate_key(c), c.triplet_id)
                if first != c.triplet_id:
                    problem = (filters.DUPLICATE_EXPRESSION, f"same image and expression as {first}")
            if problem:
                rejects.append((c.triplet_id, *problem))
            else:
                kept.append(c)
        kept.sort(key=lambda c: c.triplet_id)
        to_review: list[str] = []
        records: list[dict[str, Any]] = []
        if fcfg.geometry_check != "off":
            flagged, records = _geometry(catalog, kept, fcfg.geometry_check, report)
            if fcfg.geometry_check == "drop":
                rejects += [(r["triplet_id"], filters.GEOMETRY_CONTRADICTION,
                             "; ".join(f"'{x['word']}': {x['reason']}" for x in r["contradictions"])) for r in records]
                kept = [c for c in kept if c.triplet_id not in flagged]
            elif fcfg.geometry_check == "review":
                to_review = [c.triplet_id for c in kept if c.triplet_id in flagged and c.mask_origin == "auto"]
                report.pending["geometry contradiction sent to review"] += len(to_review)
                kept = [c for c in kept if c.triplet_id not in set(to_review)]
        items = [Item(c.triplet_id, c.scene_id, c.category, c.origin_split) for c in kept]
        split_sha = fcfg.split.sha256()              # another seed, protocol or ratio redraws every scene
        pool = drawn(items, fcfg.split)
        fixed = _kept_scene_splits(catalog, pool, cfg, split_sha, report)
        splits = assign(items, fcfg.split, fixed)
        scene_splits = {it.scene_id: splits[it.triplet_id] for it in pool}
        report.scenes["drawn now"] = len(set(scene_splits) - set(fixed))
        scene_of = {c.triplet_id: c.scene_id for c in kept}
        upstream = {c.triplet_id: c.origin_split or "-" for c in kept}
        report.upstream_leaks = scene_leaks(upstream, scene_of)
        report.split_leaks = scene_leaks(splits, scene_of)
        final_rows = [(c.triplet_id, splits[c.triplet_id], c.mask_origin) for c in kept if c.triplet_id in splits]
        for c in kept:
            if c.triplet_id in splits:
                report.kept[splits[c.triplet_id]] += 1
                report.origins[c.mask_origin] += 1
            else:
                report.pending["outside the split protocol"] += 1
        for _, reason, _ in rejects:
            report.rejected[reason] += 1
        seg = current_proposal_set(catalog) or ("", "")
        with catalog.transaction():
            catalog.conn.execute("DELETE FROM final")
            catalog.conn.execute("DELETE FROM rejects WHERE stage=?", (STAGE,))
            catalog.add("final", final_rows)
            catalog.add_rejects(STAGE, rejects, run_id)
            catalog.conn.execute("DELETE FROM scene_splits WHERE config_sha256 != ?", (split_sha,))
            catalog.conn.executemany(  # a kept row stays with the run that drew it, also if its scene is not final
                "INSERT OR IGNORE INTO scene_splits (scene_id, split, config_sha256, run_id) VALUES (?, ?, ?, ?)",
                [(scene, split, split_sha, run_id) for scene, split in sorted(scene_splits.items())])
            catalog.conn.executemany(  # forced_review survives later re-routing by sam-refine
                "UPDATE proposals SET route='review', scores_json=json_set(scores_json, '$.forced_review', "
                "'geometry') WHERE triplet_id=? AND segmenter=? AND model_sha256=?", [(t, *seg) for t in to_review])
        report.seconds = time.perf_counter() - started
        ws.reports.mkdir(parents=True, exist_ok=True)
        (ws.reports / "finalize.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        (ws.reports / "geometry.json").write_text(json.dumps(records, indent=2) + "\n")
        catalog.finish_run(run_id, report.as_dict())
    return report
