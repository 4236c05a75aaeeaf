"""Push the review queue to Label Studio and pull the reviews back into the catalog.

Both are idempotent, with the server as the source of truth for what exists there:

- ``push`` lists the triplet ids the project already holds and imports only the others, in
  batches, so a second (or interrupted) push never duplicates a task.
- ``pull`` reads the project page by page and commits each page's annotations as ``reviews``
  rows keyed by (task, annotator): a pull killed at any point (or a server that dies under it)
  is simply run again. Each annotator's latest answer counts: one changed in Label Studio
  since the last pull replaces the stored one and reopens the decision it went into, unless
  an expert has decided that triplet. Triplets that reached the quorum get a
  ``consensus`` row: the fused mask and its agreement, a drop (reviewer verdict, also in
  ``rejects`` at stage ``review``) or ``adjudicate``. Adjudication tasks go to a second project
  (or are flagged in the same one); an expert's answer turns ``adjudicate`` into
  ``adjudicated`` with the expert's mask. ``finalize`` then takes consensus and adjudicated
  masks into ``final``.
- An answer that cannot be used (malformed brush RLE, a verdict the labeling config does not
  have, a brush of another size, an over-long corrected expression: see ``answers``) is an
  *invalid review*: a ``rejects`` row at stage ``review`` with reason ``invalid_review``, ref
  ``<task id>/<annotator>`` and a one-line detail. It is not a review, so it does not count
  toward ``annotators_per_task`` and the task stays open; if the annotator later fixes the
  answer, the next pull takes it and drops the row.

The project ids live in ``W/review/state.json`` (no secrets in it).
"""

from __future__ import annotations

import html
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from .. import masks
from ..catalog import Catalog, columns, stable_id
from ..lock import holds_lock
from ..sources.locations import locate_images
from ..readmodel import proposal_rle
from .sample import review_items
from ..config import PipelineConfig
from ..workspace import Workspace
from .answers import (
    DECODE_ERRORS, DEFAULT_MAX_EXPRESSION_CHARS, INVALID_REVIEW, Answer, annotator_name, read_annotation, reason,
)
from .client import LabelStudio, ReviewError
from .consensus import (
    ADJUDICATE, ADJUDICATED, MASK_VERDICTS, REJECT_VERDICTS, Vote, decide,
)
from .tasks import (
    GUIDELINES, LABEL_CONFIG, Roots, adjudication_title, brush_result,
    catalog_image_paths, model_version, project_title, resolve_roots, resource_text, task_payload,
)

T = TypeVar("T")
STAGE = "review"
ADJ_PREFIX = "adj:"
MAX_INVALID_DETAILS = 1000          # lines listed in the pull report (all are counted)


# ----------------------------------------------------------------------------- state
def state_path(ws: Workspace) -> Path:
    return ws.review / "state.json"


def load_state(ws: Workspace) -> dict[str, Any]:
    path = state_path(ws)
    return json.loads(path.read_text()) if path.is_file() else {}


def save_state(ws: Workspace, state: dict[str, Any]) -> None:
    path = state_path(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _server_state(state: dict[str, Any], url: str) -> dict[str, Any]:
    """The part of the state that belongs to this server (another URL starts afresh)."""
    if state.get("url") != url:
        state.clear()
        state["url"] = url
    return state


def _instructions() -> str:
    return f"<pre style='white-space: pre-wrap'>{html.escape(resource_text(GUIDELINES))}</pre>"


def _ensure_project(client: LabelStudio, state: dict[str, Any], key: str, title: str, annotations: int) -> int:
    project = client.project(state[key]) if state.get(key) else None
    if project is None:
        project = client.find_project(title)
    if project is None:
        project = client.create_project(title, resource_text(LABEL_CONFIG), maximum_annotations=annotations,
                                        description="risbench-builder review: see the instructions",
                                        expert_instruction=_instructions())
    pid = int(project["id"])
    state[key] = pid
    return pid


def _ensure_serving(client: LabelStudio, pid: int, roots: Roots) -> None:
    """A local-files storage on the project, which lets the server serve the image folder."""
    root = str(roots.image_root)
    if not any(s.get("path") == root for s in client.local_storages(pid)):
        try:
            client.create_local_storage(pid, root, "risbench images")
        except ReviewError as exc:
            raise ReviewError(
                f"Label Studio will not serve {root}: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={roots.document_root} (or set review.document_root to the "
                f"server's value) [{exc}]") from None


def _progress(show: bool | None) -> Progress:
    """The review bars, on stderr (stdout stays for reports); shown by default only when stderr
    is a terminal. Each row counts tasks and may carry a ``note`` (e.g. how many were decided)."""
    columns = (TextColumn("[bold]review[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("tasks {task.fields[note]}"), TimeRemainingColumn())
    show = sys.stderr.isatty() if show is None else show
    return Progress(*columns, console=Console(stderr=True), disable=not show)


def _existing(client: LabelStudio, project_id: int) -> dict[str, int]:
    """triplet_id -> task id of every task the project holds."""
    found: dict[str, int] = {}
    for _, tasks in client.task_pages(project_id, annotations=False, page_size=1000):
        for t in tasks:
            tid = (t.get("data") or {}).get("triplet_id")
            if tid:
                found.setdefault(str(tid), int(t["id"]))
    return found


def _import(client: LabelStudio, project_id: int, payloads: list[tuple[str, dict]], batch_size: int,
            state_tasks: dict[str, int], save: Callable[[], None],
            on_batch: Callable[[int], None] | None = None) -> int:
    done = 0
    for start in range(0, len(payloads), batch_size):
        batch = payloads[start:start + batch_size]
        ids = client.import_tasks(project_id, [p for _, p in batch])
        state_tasks.update({tid: task_id for (tid, _), task_id in zip(batch, ids)})
        save()
        done += len(batch)
        if on_batch:
            on_batch(len(batch))
    return done


def _of_another_workspace(ws: Workspace, existing: dict[str, int]) -> bool:
    """Whether the project's tasks are all of other triplets: it belongs to another workspace
    (same pipeline name, so the same default title, or a reset server that reuses the id), and
    pushing into it would mix two datasets in one reviewers' queue."""
    if not existing:
        return False
    with Catalog(ws.catalog_path, create=False) as catalog:
        return next(catalog.select_in("SELECT 1 FROM triplets WHERE triplet_id IN ({ids}) LIMIT 1", existing),
                    None) is None


def _check_serving(client: LabelStudio, roots: Roots, image_path: str) -> None:
    code = client.status_of(roots.url(image_path))
    if code != 200:
        raise ReviewError(
            f"Label Studio answers HTTP {code} for {image_path}: start it with "
            f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="
            f"{roots.document_root} (or set review.document_root to the server's value)")


# ----------------------------------------------------------------------------- push
@dataclass
class PushReport:
    url: str
    project_id: int
    queued: int = 0
    imported: int = 0
    already_there: int = 0
    seconds: float = 0.0
    model_versions: list[str] = field(default_factory=list)
    image_root: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "project_id": self.project_id, "queued": self.queued, "imported": self.imported,
                "already_there": self.already_there, "seconds": round(self.seconds, 3),
                "tasks_per_s": round(self.imported / self.seconds, 1) if self.seconds and self.imported else None,
                "model_versions": self.model_versions, "image_root": self.image_root}


@holds_lock("review push")
def push(ws: Workspace, cfg: PipelineConfig | None = None, *, client: LabelStudio | None = None,
         progress: bool | None = None) -> PushReport:
    """Create or reuse the review project and import one task per queued triplet not yet there,
    with a bar of the tasks imported, batch by batch (``progress``: default, when stderr is a
    terminal)."""
    cfg = cfg or ws.load()
    rc = cfg.review
    started = time.perf_counter()
    with Catalog(ws.catalog_path, create=False) as catalog:
        locate_images(catalog, ws, cfg)                      # Label Studio serves the images from where they are now
        items = review_items(catalog, rc)
        roots = resolve_roots(ws, rc, catalog_image_paths(catalog))
    client = client or LabelStudio.from_config(rc)
    client.whoami()                                          # a bad token fails here, in one line
    state = _server_state(load_state(ws), client.url)
    pid = _ensure_project(client, state, "project_id", project_title(cfg), rc.annotators_per_task)
    existing = _existing(client, pid)
    if _of_another_workspace(ws, existing):
        save_state(ws, {k: v for k, v in state.items() if k != "project_id"})
        raise ReviewError(f"Label Studio project {pid} at {client.url} holds {len(existing):,} tasks, none of them "
                          f"of this workspace's triplets (another workspace pushed to it): set review.project_title "
                          f"in {ws.pipeline_path} to a title of this workspace's own")
    _ensure_serving(client, pid, roots)
    save_state(ws, state)
    tasks = state.setdefault("tasks", {})
    tasks.update(existing)
    todo = [q for q in items if q.triplet_id not in existing]
    if todo:
        _check_serving(client, roots, todo[0].image_path)
    versions = {q.triplet_id: model_version(q.segmenter, q.model_sha256, cfg.refine.adapter) for q in todo}
    payloads = [(q.triplet_id, task_payload(q, roots, versions[q.triplet_id])) for q in todo]
    report = PushReport(client.url, pid, queued=len(items), already_there=len(items) - len(todo),
                        model_versions=sorted(set(versions.values())), image_root=str(roots.image_root))
    with _progress(progress) as bar:
        row = bar.add_task("push", total=len(payloads), note="imported")
        report.imported = _import(client, pid, payloads, rc.batch_size, tasks, lambda: save_state(ws, state),
                                  lambda n: bar.advance(row, n))
    save_state(ws, state)
    report.seconds = time.perf_counter() - started
    _write_report(ws, "review-push.json", report.as_dict())
    return report


# ----------------------------------------------------------------------------- pull
@dataclass
class PullReport:
    run_id: str
    url: str = ""
    seconds: float = 0.0
    tasks_seen: int = 0
    annotations_seen: int = 0
    reviews_new: int = 0
    reviews_changed: int = 0              # answers updated in Label Studio since an earlier pull
    redecided: int = 0                    # decisions reopened by new or changed answers
    kept_expert_decision: int = 0         # reviewers' changes after an expert decided
    skipped: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)
    adjudication_tasks_new: int = 0
    adjudicated: Counter = field(default_factory=Counter)
    candidates_new: int = 0
    invalid: int = 0                      # invalid answers read by this pull
    invalid_new: int = 0                  # of which recorded for the first time
    invalid_details: list[str] = field(default_factory=list)

    def add_invalid(self, line: str) -> None:
        self.invalid += 1
        if len(self.invalid_details) < MAX_INVALID_DETAILS:
            self.invalid_details.append(line)

    def as_dict(self) -> dict[str, Any]:
        details = self.invalid_details
        if self.invalid > len(details):
            details = details + [f"... and {self.invalid - len(details)} more (all in the catalog: rejects at stage "
                                 f"review, reason {INVALID_REVIEW})"]
        return {"run_id": self.run_id, "url": self.url, "seconds": round(self.seconds, 3),
                "tasks_seen": self.tasks_seen, "annotations_seen": self.annotations_seen,
                "tasks_per_s": round(self.tasks_seen / self.seconds, 1) if self.seconds else None,
                "reviews_new": self.reviews_new, "reviews_changed": self.reviews_changed,
                "redecided": self.redecided, "kept_expert_decision": self.kept_expert_decision,
                "skipped": dict(self.skipped), "decisions": dict(self.decisions),
                "adjudication_tasks_new": self.adjudication_tasks_new, "adjudicated": dict(self.adjudicated),
                "candidates_new": self.candidates_new, "invalid_reviews": self.invalid,
                "invalid_reviews_new": self.invalid_new, "invalid_review_details": details}


class _Triplets:
    """Image sizes and proposal masks of the triplets a pull meets (read once each)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._size: dict[str, Optional[tuple[int, int]]] = {}

    def size(self, tid: str) -> Optional[tuple[int, int]]:
        """(height, width) of the triplet's image, None for an unknown triplet."""
        if tid not in self._size:
            row = self.catalog.conn.execute("SELECT i.height, i.width FROM triplets t JOIN images i USING (image_id) "
                                            "WHERE t.triplet_id=?", (tid,)).fetchone()
            self._size[tid] = None if row is None else (int(row[0]), int(row[1]))
        return self._size[tid]

    def proposal(self, tid: str, proposal: Any) -> Optional[str]:
        """The proposal the task showed (its ``data.proposal``, untrusted), else the current one."""
        shown = None
        if isinstance(proposal, dict) and all(isinstance(proposal.get(k, ""), str)
                                              for k in ("segmenter", "model_sha256")):
            shown = (proposal.get("segmenter", ""), proposal.get("model_sha256", ""))
        return proposal_rle(self.catalog, tid, shown)


class _Masks:
    """Masks decoded while reading a page, kept as (window, crop) so deciding that page's
    tasks needs no second decode; anything not kept is decoded from its COCO RLE."""

    def __init__(self) -> None:
        self._crops: dict[tuple[str, str], tuple[Any, np.ndarray] | None] = {}

    def keep(self, key: tuple[str, str], mask: np.ndarray, rle: dict) -> None:
        if not masks.area(rle):
            self._crops[key] = None
            return
        x1, y1, x2, y2 = (int(v) for v in masks.bbox_xyxy(rle))
        window = (slice(y1, y2), slice(x1, x2))
        self._crops[key] = (window, mask[window].copy())

    def get(self, key: tuple[str, str], rle: Optional[str], shape: tuple[int, int]) -> Optional[np.ndarray]:
        if key in self._crops:
            full = np.zeros(shape, np.uint8)
            kept = self._crops[key]
            if kept is not None:
                full[kept[0]] = kept[1]
            return full
        return None if rle is None else masks.decode(masks.loads(rle)).reshape(shape)


@dataclass
class _Invalid:
    """An answer that cannot be used, as the ``rejects`` row that records it."""

    triplet_id: str
    task_id: str
    annotator: str
    why: str

    @property
    def ref(self) -> str:
        return invalid_ref(self.task_id, self.annotator)

    @property
    def line(self) -> str:
        return f"task {self.task_id} (triplet {self.triplet_id}) by {self.annotator}: {self.why}"


def invalid_ref(task_id: str, annotator: str) -> str:
    """``rejects.ref`` of an invalid review: task ids hold no ``/``, so the annotator is what
    follows the first one."""
    return f"{task_id}/{annotator}"


def _task_id(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _oldest_first(anns: list) -> list:
    """A task's annotations in the order they were last saved, so that each annotator's latest
    answer comes last: Label Studio lets people update a submitted answer (same id, a later
    ``updated_at``) or submit a second one."""
    def saved(ann: Any) -> tuple[str, int]:
        when = ann.get("updated_at") if isinstance(ann, dict) else None
        number = _task_id(ann.get("id")) if isinstance(ann, dict) else None
        return (when if isinstance(when, str) and len(when) <= 64 else "", -1 if number is None else number)
    return sorted(anns, key=saved)


def _review_rows(tasks: list[dict], users: dict[int, str], triplets: _Triplets, run_id: str, report: PullReport,
                 task_prefix: str, experts: set[str], decoded: _Masks,
                 max_expression_chars: int = DEFAULT_MAX_EXPRESSION_CHARS) -> tuple[list[tuple], list[_Invalid]]:
    """``reviews`` rows of each annotator's latest usable answer, and the answers that cannot be used."""
    rows: dict[tuple[str, str], tuple] = {}
    invalid: list[_Invalid] = []
    for task in tasks:
        report.tasks_seen += 1
        number = _task_id(task.get("id")) if isinstance(task, dict) else None
        if number is None:
            report.skipped["malformed task"] += 1
            continue
        data = task.get("data")
        data = data if isinstance(data, dict) else {}
        anns = task.get("annotations")
        anns = anns if isinstance(anns, list) else []
        tid = data.get("triplet_id")
        size = triplets.size(tid) if isinstance(tid, str) and tid else None
        if size is None:
            if anns:
                report.skipped["task of an unknown triplet"] += len(anns)
            continue
        for ann in _oldest_first(anns):
            report.annotations_seen += 1
            if not isinstance(ann, dict):
                report.skipped["malformed annotation"] += 1
                continue
            if ann.get("was_cancelled"):
                report.skipped["skipped by the annotator"] += 1
                continue
            annotator = annotator_name(ann.get("completed_by"), users)
            prefix = ADJ_PREFIX if task_prefix or annotator in experts else ""
            task_id = f"{prefix}{number}"
            try:
                answer: Answer = read_annotation(ann.get("result"), *size, max_expression_chars=max_expression_chars)
            except DECODE_ERRORS as exc:
                bad = _Invalid(tid, task_id, annotator, reason(exc))
                invalid.append(bad)
                report.add_invalid(bad.line)
                continue
            rle: Optional[str] = None
            if answer.mask is not None:
                coco = masks.encode_sparse(answer.mask)
                rle = masks.dumps(coco)
                decoded.keep((task_id, annotator), answer.mask, coco)
            elif answer.verdict == "accept" and not task_prefix:  # accepted as shown: the proposal (an
                rle = triplets.proposal(tid, data.get("proposal"))   # adjudication task shows the fused mask)
            rows[(task_id, annotator)] = (tid, task_id, annotator, rle, answer.verdict, answer.corrected, run_id)
    return list(rows.values()), invalid


_INVALID_SQL = ("INSERT OR IGNORE INTO rejects (stage, ref, reason, detail, run_id) SELECT ?, ?, ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM reviews WHERE task_id=? AND annotator=?)")


def _store(catalog: Catalog, rows: list[tuple], invalid: list[_Invalid], run_id: str, report: PullReport) -> None:
    """One page's reviews and invalid answers, in one transaction. An answer that differs from the
    stored one of the same annotator on the same task replaces it (they changed it in Label
    Studio) and reopens the decision it went into (:func:`_reopen`). A usable answer clears an
    earlier invalid one (they fixed it); an invalid answer is recorded only where the annotator
    has no usable one (an invalid update leaves their last usable answer standing)."""
    with catalog.transaction():
        stored = _stored_answers(catalog, rows)
        new = [r for r in rows if (r[1], r[2]) not in stored]
        changed = [r for r in rows if (r[1], r[2]) in stored and stored[(r[1], r[2])] != r[3:6]]
        report.reviews_new += catalog.add("reviews", new)
        catalog.conn.executemany("DELETE FROM reviews WHERE task_id=? AND annotator=?", [r[1:3] for r in changed])
        report.reviews_changed += catalog.add("reviews", changed)      # a new rowid: the latest answer
        _reopen(catalog, new + changed, report)
        catalog.conn.executemany("DELETE FROM rejects WHERE stage=? AND reason=? AND ref=?",
                                 [(STAGE, INVALID_REVIEW, invalid_ref(r[1], r[2])) for r in rows])
        before = catalog.conn.total_changes
        catalog.conn.executemany(_INVALID_SQL, [(STAGE, b.ref, INVALID_REVIEW, b.line, run_id, b.task_id, b.annotator)
                                                for b in invalid])
        report.invalid_new += catalog.conn.total_changes - before


def _stored_answers(catalog: Catalog, rows: list[tuple]) -> dict[tuple[str, str], tuple]:
    """(task, annotator) -> (rle, verdict, corrected expression) already in ``reviews`` for ``rows``."""
    return {(task, annotator): tuple(answer) for task, annotator, *answer in catalog.select_in(
        "SELECT task_id, annotator, rle, verdict, corrected_expression FROM reviews WHERE task_id IN ({ids})",
        (r[1] for r in rows))}


def _expert_answered(catalog: Catalog, tids: Iterable[str]) -> set[str]:
    """The triplets among ``tids`` an expert has answered (adjudication)."""
    return {t for (t,) in catalog.select_in(f"SELECT DISTINCT triplet_id FROM reviews WHERE task_id LIKE "
                                            f"'{ADJ_PREFIX}%' AND triplet_id IN ({{ids}})", tids)}


def _drop_reason(verdict: str) -> str:
    """The ``rejects.reason`` a dropping verdict is recorded under (``reject-mask`` -> ``reject_mask``)."""
    return verdict.replace("-", "_")


_DROP_REASONS = tuple(_drop_reason(v) for v in REJECT_VERDICTS)


def _reopen(catalog: Catalog, rows: list[tuple], report: PullReport) -> None:
    """Delete the decisions (and drops) that answers new or changed since no longer reflect, so
    that :func:`_decide_ready` decides them again from every current answer, as a first pull of
    the same answers would. An expert's answer stands: a reviewer's change does not reopen what
    an expert decided (it is counted), the expert's own new or changed answer does."""
    by_expert = {r[0] for r in rows if r[1].startswith(ADJ_PREFIX)}
    decided = dict(catalog.select_in("SELECT triplet_id, decision FROM consensus WHERE triplet_id IN ({ids})",
                                     (r[0] for r in rows)))
    answered = _expert_answered(catalog, set(decided) - by_expert)
    reopen = []
    for tid, decision in sorted(decided.items()):
        if tid in by_expert:
            if decision != ADJUDICATE:          # an open adjudication takes the answer as it is
                reopen.append(tid)
        elif tid in answered:
            report.kept_expert_decision += 1
        else:
            reopen.append(tid)
    catalog.conn.executemany("DELETE FROM consensus WHERE triplet_id=?", [(t,) for t in reopen])
    catalog.conn.executemany(f"DELETE FROM rejects WHERE stage=? AND ref=? AND reason IN "
                             f"({', '.join('?' * len(_DROP_REASONS))})", [(STAGE, t, *_DROP_REASONS) for t in reopen])
    report.redecided += len(reopen)


def _candidates(catalog: Catalog, parent: str, corrections: Iterable[tuple[str, str]]) -> list[tuple]:
    """New triplets for corrected expressions: same object, the reviewer's words."""
    row = catalog.conn.execute(f"SELECT {', '.join(columns('triplets'))} FROM triplets WHERE triplet_id=?",
                               (parent,)).fetchone()
    if row is None:
        return []
    base = dict(zip(columns("triplets"), row))
    seen = {" ".join((base["expression"] or "").lower().split())}
    out = []
    for annotator, text in corrections:
        key = " ".join(text.lower().split())
        if not key or key in seen:
            continue
        seen.add(key)
        attrs = {**json.loads(base["attributes_json"] or "{}"), "derived_from": parent,
                 "expression_origin": "review", "suggested_by": annotator}
        out.append((stable_id(base["source"], base["source_ref"], "review", text.strip()), base["image_id"],
                    base["source"], f"{base['source_ref']}#review", base["category"], text.strip(), base["box_xyxy"],
                    base["polygon"], json.dumps(attrs, sort_keys=True), base["origin_split"]))
    return out


_READY_SQL = ("SELECT r.triplet_id FROM reviews r WHERE r.task_id NOT LIKE 'adj:%' {only} AND NOT EXISTS (SELECT 1 "
              "FROM consensus c WHERE c.triplet_id = r.triplet_id) GROUP BY r.triplet_id HAVING COUNT(*) >= {quorum} "
              "ORDER BY r.triplet_id")


def _decide_ready(catalog: Catalog, cfg: PipelineConfig, run_id: str, report: PullReport, triplets: _Triplets,
                  only: Optional[list[str]] = None, decoded: Optional[_Masks] = None, batch: int = 200) -> None:
    """Consensus rows, in one transaction per batch, for the triplets (of ``only``, else all)
    that reached the quorum and have none yet. One an expert has answered goes to adjudication
    whatever the votes say (the expert's answer stands; reopened by :func:`_reopen`)."""
    rc = cfg.review
    decoded = decoded or _Masks()
    quorum = int(rc.annotators_per_task)
    if only is None:
        ready = [r[0] for r in catalog.conn.execute(_READY_SQL.format(only="", quorum=quorum))]
    else:
        ready = sorted(r[0] for r in catalog.select_in(_READY_SQL.format(
            only="AND r.triplet_id IN ({ids})", quorum=quorum), only))
    experts = _expert_answered(catalog, ready)
    for start in range(0, len(ready), batch):
        part = ready[start:start + batch]
        reviews: dict[str, list[tuple]] = {t: [] for t in part}
        for row in catalog.conn.execute(
                f"SELECT triplet_id, task_id, annotator, rle, verdict, corrected_expression FROM reviews WHERE "
                f"task_id NOT LIKE 'adj:%' AND triplet_id IN ({', '.join('?' * len(part))}) "
                f"ORDER BY triplet_id, annotator", part):
            reviews[row[0]].append(row[1:])
        consensus, rejects, new = [], [], []
        for tid in part:
            shape = triplets.size(tid)
            votes = [Vote(a, v, decoded.get((task, a), rle, shape), fix) for task, a, rle, v, fix in reviews[tid]]
            proposal = None
            if any(v.verdict == "accept" and v.mask is None for v in votes):
                proposal = _decode(triplets.proposal(tid, None), shape)
            d = decide(votes, proposal, method=rc.consensus, min_agreement=rc.min_agreement, shape=shape)
            if tid in experts and d.decision != ADJUDICATE:
                d = replace(d, decision=ADJUDICATE, detail=f"an expert answered ({d.detail})")
            rle = masks.dumps(masks.encode_sparse(d.mask)) if d.mask is not None else None
            consensus.append((tid, rle, None if d.agreement is None else round(d.agreement, 6), d.decision, run_id))
            report.decisions[d.decision] += 1
            if d.dropped:
                rejects.append((tid, _drop_reason(d.decision), d.detail[:500]))
            if rc.keep_corrected_expressions:
                new += _candidates(catalog, tid, [(v.annotator, v.corrected_expression) for v in votes
                                                  if v.corrected_expression])
        with catalog.transaction():
            catalog.add("consensus", consensus)
            catalog.add_rejects(STAGE, rejects, run_id)
            report.candidates_new += catalog.add("triplets", new)


def _decode(rle: Optional[str], shape: tuple[int, int]) -> Optional[np.ndarray]:
    return None if rle is None else masks.decode(masks.loads(rle)).reshape(shape)


def _adjudication_payload(catalog: Catalog, tid: str, rle: Optional[str], detail: str, method: str,
                          roots: Roots) -> dict:
    path, width, height, category, expression = catalog.conn.execute(
        "SELECT i.path, i.width, i.height, t.category, t.expression FROM triplets t JOIN images i USING (image_id) "
        "WHERE t.triplet_id=?", (tid,)).fetchone()
    task: dict[str, Any] = {"data": {"image": roots.url(path), "expression": expression, "category": category,
                                     "triplet_id": tid, "note": f"adjudication: {detail}"}}
    if rle:
        task["predictions"] = [{"model_version": f"consensus-{method}", "score": 0.0,
                                "result": [brush_result(masks.loads(rle), width, height, tid[:10])]}]
    return task


def _adjudication_detail(catalog: Catalog, tid: str, agreement: Optional[float]) -> str:
    votes = ", ".join(f"{a}: {v}" for a, v in catalog.conn.execute(
        "SELECT annotator, verdict FROM reviews WHERE triplet_id=? AND task_id NOT LIKE 'adj:%' ORDER BY annotator",
        (tid,)))
    return f"reviewers disagree (mean IoU {agreement if agreement is not None else float('nan'):.2f}; {votes})"


def _push_adjudication(client: LabelStudio, ws: Workspace, cfg: PipelineConfig, catalog: Catalog,
                       state: dict[str, Any], report: PullReport, bar: Optional[Progress] = None) -> Optional[int]:
    """Make sure every ``adjudicate`` triplet is in front of an expert; returns the project to read."""
    rc = cfg.review
    pending = catalog.conn.execute("SELECT c.triplet_id, c.rle, c.agreement FROM consensus c WHERE c.decision=? "
                                   "ORDER BY c.agreement, c.triplet_id", (ADJUDICATE,)).fetchall()
    if rc.adjudication == "flag":
        main = state.get("tasks", {})
        flagged = set(state.setdefault("flagged", []))
        for tid, _, agreement in pending:
            if tid in flagged or tid not in main:
                continue
            task = client.get(f"/api/tasks/{main[tid]}/")
            client.update_task_data(main[tid], {**task["data"], "adjudicate": True,
                                                "note": "ADJUDICATE: " + _adjudication_detail(catalog, tid, agreement)})
            flagged.add(tid)
            report.adjudication_tasks_new += 1
        state["flagged"] = sorted(flagged)
        save_state(ws, state)
        return None
    if not pending and not state.get("adjudication_project_id"):
        return None
    roots = resolve_roots(ws, rc, catalog_image_paths(catalog))
    pid = _ensure_project(client, state, "adjudication_project_id", adjudication_title(cfg), 1)
    _ensure_serving(client, pid, roots)
    save_state(ws, state)
    existing = _existing(client, pid)
    adj_tasks = state.setdefault("adjudication_tasks", {})
    adj_tasks.update(existing)
    payloads = [(tid, _adjudication_payload(catalog, tid, rle, _adjudication_detail(catalog, tid, agreement),
                                            rc.consensus, roots))
                for tid, rle, agreement in pending if tid not in existing]
    on_batch = None
    if bar is not None and payloads:
        row = bar.add_task("adjudication", total=len(payloads), note="imported")
        on_batch = lambda n: bar.advance(row, n)                # noqa: E731
    report.adjudication_tasks_new += _import(client, pid, payloads, rc.batch_size, adj_tasks,
                                             lambda: save_state(ws, state), on_batch)
    save_state(ws, state)
    return pid


def _resolve_adjudications(catalog: Catalog, cfg: PipelineConfig, run_id: str, report: PullReport) -> None:
    """``adjudicate`` rows that an expert has answered become ``adjudicated`` (or are dropped)."""
    rows = catalog.conn.execute(
        "SELECT c.triplet_id, c.rle, r.annotator, r.rle, r.verdict, r.corrected_expression FROM consensus c "
        "JOIN reviews r ON r.triplet_id = c.triplet_id AND r.task_id LIKE 'adj:%' WHERE c.decision=? "
        "ORDER BY c.triplet_id, r.rowid", (ADJUDICATE,)).fetchall()
    latest: dict[str, tuple] = {}
    for row in rows:
        latest[row[0]] = row                                 # the expert's most recent answer counts
    updates, rejects, new = [], [], []
    for tid, fused, expert, rle, verdict, fix in latest.values():
        if verdict in REJECT_VERDICTS:
            updates.append((None, verdict, run_id, tid))
            rejects.append((tid, _drop_reason(verdict), f"adjudicated by {expert}: {verdict}"))
            report.adjudicated[verdict] += 1
        elif verdict in MASK_VERDICTS and (rle or fused):
            updates.append((rle or fused, ADJUDICATED, run_id, tid))
            report.adjudicated[ADJUDICATED] += 1
        else:
            report.skipped["adjudication without a mask"] += 1
            continue
        if fix and cfg.review.keep_corrected_expressions:
            new += _candidates(catalog, tid, [(expert, fix)])
    with catalog.transaction():
        catalog.conn.executemany("UPDATE consensus SET rle=?, decision=?, run_id=? WHERE triplet_id=? AND decision="
                                 f"'{ADJUDICATE}'", updates)
        catalog.add_rejects(STAGE, rejects, run_id)
        report.candidates_new += catalog.add("triplets", new)


def _prefetch(pages: Iterator[T]) -> Iterator[T]:
    """Fetch the next page while the caller works on this one (the server is another process)."""
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(next, pages, None)
        while True:
            page = ahead.result()
            if page is None:
                return
            ahead = pool.submit(next, pages, None)
            yield page


def _read(bar: Progress, row: TaskID, done: int, total: Optional[int], report: PullReport) -> None:
    bar.update(row, completed=done, total=total, note=f"read, {sum(report.decisions.values())} decided")


@holds_lock("review pull")
def pull(ws: Workspace, cfg: PipelineConfig | None = None, *, client: LabelStudio | None = None,
         on_page: Callable[[int, int], None] | None = None, progress: bool | None = None) -> PullReport:
    """Fetch every annotation into ``reviews``, decide the tasks at quorum, route low agreement
    to adjudication and take the experts' answers. ``on_page(done, total)`` is called after each
    committed page of tasks; ``progress`` shows bars of the tasks read and decided (default:
    when stderr is a terminal)."""
    cfg = cfg or ws.load()
    rc = cfg.review
    started = time.perf_counter()
    state = load_state(ws)
    if not state.get("project_id"):
        raise ReviewError(f"nothing pushed from {ws.path} yet: run `risbench review push --workspace {ws.path}` first")
    client = client or LabelStudio.from_config(rc)
    if state.get("url") != client.url:
        raise ReviewError(f"{state_path(ws)} belongs to {state.get('url')}, not review.url {client.url}: "
                          "push to this server first")
    users = client.users()
    experts = set(rc.adjudicators) if rc.adjudication == "flag" else set()
    max_chars = cfg.ingest.max_expression_chars          # a corrected expression becomes a candidate triplet
    with Catalog(ws.catalog_path, create=False) as catalog, _progress(progress) as bar:
        run_id = catalog.start_run(STAGE, cfg.sha256())
        report = PullReport(run_id, client.url)
        triplets = _Triplets(catalog)
        row = bar.add_task("pull", total=None, note="read")
        done, total = 0, None
        for total, tasks in _prefetch(client.task_pages(state["project_id"], annotations=True,
                                                         page_size=rc.page_size)):
            decoded = _Masks()
            rows, invalid = _review_rows(tasks, users, triplets, run_id, report, "", experts, decoded, max_chars)
            _store(catalog, rows, invalid, run_id, report)
            _decide_ready(catalog, cfg, run_id, report, triplets, only=[r[0] for r in rows], decoded=decoded)
            done += len(tasks)
            _read(bar, row, done, total, report)
            if on_page:
                on_page(done, total)
        _decide_ready(catalog, cfg, run_id, report, triplets)          # any left by an interrupted pull
        _read(bar, row, done, total if total is not None else done, report)
        adj_pid = _push_adjudication(client, ws, cfg, catalog, state, report, bar)
        if adj_pid is not None:
            adj_row, adj_done, adj_total = bar.add_task("adjudication", total=None, note="read"), 0, None
            for adj_total, tasks in _prefetch(client.task_pages(adj_pid, annotations=True, page_size=rc.page_size)):
                rows, invalid = _review_rows(tasks, users, triplets, run_id, report, ADJ_PREFIX, experts, _Masks(),
                                             max_chars)
                _store(catalog, rows, invalid, run_id, report)
                _decide_ready(catalog, cfg, run_id, report, triplets, only=[r[0] for r in rows])  # reopened ones
                adj_done += len(tasks)
                bar.update(adj_row, completed=adj_done, total=adj_total)
            bar.update(adj_row, total=adj_total if adj_total is not None else adj_done)
        _resolve_adjudications(catalog, cfg, run_id, report)
        report.seconds = time.perf_counter() - started
        catalog.finish_run(run_id, report.as_dict())
    _write_report(ws, "review-pull.json", report.as_dict())
    return report


def _write_report(ws: Workspace, name: str, data: dict[str, Any]) -> None:
    ws.reports.mkdir(parents=True, exist_ok=True)
    (ws.reports / name).write_text(json.dumps(data, indent=2) + "\n")
