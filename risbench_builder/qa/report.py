"""`risbench report`: a static HTML view of a workspace that opens from disk, with no server.

Layout under ``W/reports/``::

    index.html               summary (server-side HTML) + the gallery shell + a small inline meta
    assets/report.{js,css}   the viewer: plain JavaScript, nothing fetched from the network
    data/items.js            columnar table of every triplet (id, thumbnail key, category, split, route)
    data/signal-NAME.js      one quality signal for every triplet, loaded when you sort by it
    data/gallery-SLUG.js     which triplets (and which non-triplet rejects) a gallery holds
                             (``audit-KIND`` ones come from ``audit.json``, when `risbench audit` ran)
    data/detail-NNNNN.js     every field of a block of triplets, loaded when one is clicked
    thumbs/                  the thumbnail cache (see thumbs.py)

Browsers refuse ``fetch`` on ``file://``, so every data file is a script that hands its data to
a global (``RB.items(...)``) and is loaded with a ``<script src>`` tag, on demand. The index
page stays a few tens of kB whatever the size of the build; the viewer shows one page of
thumbnails at a time.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shlex
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from ..catalog import Catalog
from ..config import ConfigError, RouteConfig
from ..finalize.quality import quality_rows
from ..segment.routing import failed_tests
from ..workspace import Workspace
from .records import TripletRecord, load_records, orphan_rejects
from .thumbs import ThumbPlan, ThumbStats, ensure_thumbs

CONTRADICTION = re.compile(r"contradict|geometry", re.I)


@dataclass(frozen=True)
class ReportOptions:
    page_size: int = 120          # thumbnails on one page of a gallery
    lowest_agreement: int = 500   # the lowest-agreement gallery holds this many consensus tasks
    text_cap: int = 2000          # rejects that are not triplets (no thumbnail) listed per reason
    detail_chunk: int = 500       # triplets per detail file
    workers: int | None = None    # thumbnail processes (default: up to 2)
    progress: bool = True


@dataclass
class Gallery:
    slug: str
    title: str
    about: str                     # what the gallery shows
    empty: str = "none in this build"  # what an empty gallery means (e.g. the stage has not run)
    items: list[int] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)   # [ref, detail] of rejects that are not triplets
    text_total: int = 0
    sort: str = ""                 # default sort signal ("" = catalog order)
    order: str = "asc"

    def meta(self) -> dict[str, Any]:
        note = self.about if self.items or self.texts else self.empty
        return {"slug": self.slug, "title": self.title, "note": note, "count": len(self.items),
                "texts": len(self.texts), "text_total": self.text_total, "sort": self.sort, "order": self.order,
                "file": f"data/gallery-{self.slug}.js"}


@dataclass
class ReportResult:
    index: Path
    thumbs: ThumbStats
    galleries: dict[str, int]
    seconds: float
    bytes_index: int

    def as_dict(self) -> dict[str, Any]:
        return {"index": str(self.index), "thumbs": self.thumbs.as_dict(), "galleries": self.galleries,
                "seconds": round(self.seconds, 3), "bytes_index": self.bytes_index}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def load_quality(reports: Path) -> dict[str, Any] | None:
    """``reports/quality.json`` (`risbench quality`); None when it was never written or does not read
    as one (the summary then has no mask-quality table)."""
    try:
        data = json.loads((reports / "quality.json").read_text(encoding="utf-8"))
        quality_rows(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return data if isinstance(data.get("statement"), str) else None


# --------------------------------------------------------------------------- galleries
def load_contradictions(reports: Path) -> dict[str, list[dict[str, str]]] | None:
    """triplet_id -> the words its mask contradicts, from finalize's ``geometry.json``; None if it never ran."""
    path = reports / "geometry.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {r["triplet_id"]: r.get("contradictions", []) for r in rows if isinstance(r, dict) and "triplet_id" in r}


def is_contradiction(rec: TripletRecord, flagged: dict[str, list] | None) -> bool:
    """Flagged by the geometry check: listed in geometry.json, dropped for it, or sent to review for it."""
    return bool((flagged and rec.triplet_id in flagged)
                or any(CONTRADICTION.search(reason) for _, reason, _ in rec.rejects)
                or (rec.proposal and rec.proposal.scores.get("forced_review") == "geometry"))


@dataclass(frozen=True)
class AuditFindings:
    """What `risbench audit` flagged, from ``reports/audit.json``."""

    meanings: dict[str, str]                       # defect kind -> what it means, in the audit's order
    flagged: dict[str, list[tuple[str, str]]]      # triplet_id -> [(kind, detail)]

    def counts(self) -> dict[str, int]:
        """Flagged triplets per kind (a triplet with two kinds counts in both, as in audit.json)."""
        c = Counter(kind for reasons in self.flagged.values() for kind in {k for k, _ in reasons})
        return {kind: c.get(kind, 0) for kind in self.meanings}


def load_audit(reports: Path) -> AuditFindings | None:
    """The findings of ``audit.json``; None when audit never ran or its file does not read as one
    (the report then has no audit section). Entries that are not a triplet with reasons are skipped."""
    try:
        data = json.loads((reports / "audit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("flagged"), list):
        return None
    kinds = data.get("defect_kinds")
    meanings = {str(k): str(v) for k, v in kinds.items()} if isinstance(kinds, dict) else {}
    flagged: dict[str, list[tuple[str, str]]] = {}
    for entry in data["flagged"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("triplet_id"), str):
            continue
        reasons = [(r["kind"], str(r.get("detail", ""))) for r in entry.get("reasons") or []
                   if isinstance(r, dict) and isinstance(r.get("kind"), str)]
        if reasons:
            flagged.setdefault(entry["triplet_id"], []).extend(reasons)
    for reasons in flagged.values():
        for kind, _ in reasons:
            meanings.setdefault(kind, "")
    return AuditFindings(meanings, flagged)


def _unique_slug(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``...: "a b" and "a-b" would otherwise share a data file."""
    found, n = name, 1
    while found in taken:
        n += 1
        found = f"{name}-{n}"
    taken.add(found)
    return found


def audit_galleries(records: Sequence[TripletRecord], audit: AuditFindings) -> list[Gallery]:
    """One gallery per defect kind with flagged triplets, each holding all of them in catalog order
    (galleries page, so a kind with thousands costs one page at a time, like a reject reason)."""
    index = {rec.triplet_id: i for i, rec in enumerate(records)}
    items: dict[str, list[int]] = {}
    gone: Counter = Counter()                        # flagged, but no longer in the catalog
    for tid, reasons in audit.flagged.items():
        for kind in dict.fromkeys(k for k, _ in reasons):
            if tid in index:
                items.setdefault(kind, []).append(index[tid])
            else:
                gone[kind] += 1
    out, taken = [], set()
    for kind, meaning in audit.meanings.items():
        if kind not in items and not gone[kind]:
            continue
        about = meaning or f"triplets `risbench audit` flagged as {kind}"
        stale = f"{gone[kind]} flagged triplets are no longer in the catalog (rerun `risbench audit`)"
        out.append(Gallery(_unique_slug(f"audit-{slug(kind)}", taken), f"Audit: {kind}",
                           f"{about}; {stale}" if gone[kind] else about, stale, sorted(items.get(kind, []))))
    return out


def build_galleries(records: Sequence[TripletRecord], orphans: Sequence[tuple[str, str, str, str]],
                    counts: dict[str, int], flagged: dict[str, list] | None, opts: ReportOptions,
                    audit: AuditFindings | None = None) -> list[Gallery]:
    """The fixed galleries (always present, with a note when empty), one per audit defect kind
    (when `risbench audit` ran) and one per reject reason."""
    def why(stage: str, table: str) -> str:
        return f"empty: the {stage} stage has not run yet" if not counts.get(table) else "none in this build"

    g = {
        "all": Gallery("all", "All triplets", "every triplet in the catalog", "the catalog has no triplets yet"),
        "accept": Gallery("accept", "Auto-accepted", "proposals whose every quality signal passed the thresholds",
                          why("sam-refine", "proposals")),
        "review": Gallery("review", "In review", "proposals a person must check (a signal failed its threshold)",
                          why("sam-refine", "proposals")),
        "final": Gallery("final", "Final", "triplets kept in the dataset, with their split",
                         why("finalize", "final")),
        "dropped": Gallery("dropped", "Dropped", "triplets with a reject at any stage (the reason is in the detail)"),
        "low-agreement": Gallery("low-agreement", "Lowest agreement", "consensus tasks, lowest reviewer agreement first",
                                 why("review", "consensus"), sort="agreement", order="asc"),
        "contradictions": Gallery("contradictions", "Expression-geometry contradictions",
                                  "expressions whose position words contradict where the mask is",
                                  "none found" if flagged is not None
                                  else "empty: the expression-geometry check (finalize) has not run yet"),
    }
    reasons: dict[tuple[str, str], Gallery] = {}
    taken: set[str] = set()

    def reason_gallery(stage: str, reason: str) -> Gallery:
        key = (stage, reason)
        if key not in reasons:
            name = _unique_slug(f"reject-{slug(stage)}-{slug(reason)}", taken)
            reasons[key] = Gallery(name, f"Rejected at {stage}: {reason}", f"what the {stage} stage rejected as {reason}")
        return reasons[key]

    agreements: list[tuple[float, int]] = []
    for i, rec in enumerate(records):
        g["all"].items.append(i)
        if rec.proposal and rec.proposal.route in ("accept", "review"):
            g[rec.proposal.route].items.append(i)
        if rec.final_split:
            g["final"].items.append(i)
        if rec.rejects:
            g["dropped"].items.append(i)
        for stage, reason, _ in rec.rejects:
            reason_gallery(stage, reason).items.append(i)
        if is_contradiction(rec, flagged):
            g["contradictions"].items.append(i)
        if rec.consensus and rec.consensus.agreement is not None:
            agreements.append((rec.consensus.agreement, i))
    g["low-agreement"].items = [i for _, i in sorted(agreements)[: opts.lowest_agreement]]
    if agreements and len(agreements) > opts.lowest_agreement:
        g["low-agreement"].about = f"the {opts.lowest_agreement} lowest-agreement of {len(agreements)} consensus tasks"
    for stage, reason, ref, detail in orphans:
        gal = reason_gallery(stage, reason)
        gal.text_total += 1
        if len(gal.texts) < opts.text_cap:
            gal.texts.append([ref, detail])
    for gal in reasons.values():
        if gal.text_total > len(gal.texts):
            gal.about += f"; the first {len(gal.texts)} of {gal.text_total} listed (all in rejects.csv)"
    audited = audit_galleries(records, audit) if audit is not None else []
    return list(g.values()) + audited + [reasons[k] for k in sorted(reasons)]


# --------------------------------------------------------------------------- data files
def _js(call: str, *args: Any) -> str:
    body = ",".join(json.dumps(a, separators=(",", ":"), ensure_ascii=False) for a in args)
    return f"RB.{call}({body});\n"


def _numeric(v: Any) -> bool:
    """A sortable number (bools and NaN are not)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _signal_names(records: Sequence[TripletRecord]) -> list[str]:
    """Every numeric score any proposal has (flags such as ``forced_review: "geometry"`` are not signals)."""
    names = sorted({k for r in records if r.proposal for k, v in r.proposal.scores.items() if _numeric(v)})
    return names + (["agreement"] if any(r.consensus and r.consensus.agreement is not None for r in records) else [])


def _signal_columns(records: Sequence[TripletRecord], names: Sequence[str]) -> dict[str, list[float | None]]:
    """One column per signal, None where a triplet lacks it (one pass over the records)."""
    cols: dict[str, list[float | None]] = {n: [None] * len(records) for n in names}
    for i, rec in enumerate(records):
        values = dict(rec.proposal.scores) if rec.proposal else {}
        if rec.consensus:
            values["agreement"] = rec.consensus.agreement
        for name, value in values.items():
            if name in cols and _numeric(value):
                cols[name][i] = round(float(value), 4)
    return cols


def _image_url(path: str, reports: Path, folders: dict[str, str]) -> str:
    """The image as a link relative to ``reports/`` (so a moved workspace still works).

    ``folders`` caches one relpath per image folder: 50k relpath calls cost seconds.
    """
    folder, name = os.path.split(path)
    if folder not in folders:
        try:
            folders[folder] = urllib.parse.quote(os.path.relpath(folder, reports).replace(os.sep, "/")) + "/"
        except ValueError:  # another drive (Windows): an absolute URL
            folders[folder] = Path(folder).resolve().as_uri() + "/"
    return folders[folder] + urllib.parse.quote(name)


def _detail(rec: TripletRecord, p: ThumbPlan, reports: Path, route_cfg: RouteConfig | None, ws: Workspace,
            flagged: dict[str, list] | None, folders: dict[str, str],
            audit: AuditFindings | None = None) -> dict:
    prop = None
    if rec.proposal:
        pr = rec.proposal
        prop = {"segmenter": pr.segmenter, "model_sha256": pr.model_sha256[:12], "route": pr.route,
                "scores": pr.scores, "failed": failed_tests(pr.scores, route_cfg) if route_cfg else None}
    fields = {
        "id": rec.triplet_id, "image": _image_url(rec.image_path, reports, folders), "image_path": rec.image_path,
        "W": rec.width, "H": rec.height, "source": rec.source, "ref": rec.source_ref, "category": rec.category,
        "expression": rec.expression, "box": list(rec.box), "polygon": rec.polygon, "attributes": rec.attributes,
        "origin_split": rec.origin_split, "split": rec.split, "proposal": prop,
        "layers": [{"name": l.name, "color": "#%02x%02x%02x" % l.color, "x": l.x, "y": l.y, "w": l.w, "h": l.h,
                    "src": "data:image/png;base64," + base64.b64encode(l.png).decode("ascii")} for l in p.layers],
        "reviews": [{"annotator": r.annotator, "task_id": r.task_id, "verdict": r.verdict,
                     "corrected_expression": r.corrected_expression} for r in rec.reviews],
        "consensus": None if not rec.consensus else {"decision": rec.consensus.decision,
                                                     "agreement": rec.consensus.agreement},
        "final": None if not rec.final_split else {"split": rec.final_split, "mask_origin": rec.mask_origin},
        "rejects": [list(r) for r in rec.rejects],
        "contradictions": (flagged or {}).get(rec.triplet_id, []),
        "show": f"risbench show --workspace {shlex.quote(str(ws.path))} {shlex.quote(rec.triplet_id)}",
    }
    if audit is not None and rec.triplet_id in audit.flagged:   # only then: without audit.json the files are as they were
        fields["audit"] = [list(r) for r in audit.flagged[rec.triplet_id]]
    return fields


def _write(path: Path, text: str, written: set[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    written.add(path)


def _write_data(out: Path, records: Sequence[TripletRecord], plans: dict[str, ThumbPlan], galleries: list[Gallery],
                signals: list[str], cats: list[str], splits: list[str], routes: list[str],
                route_cfg: RouteConfig | None, ws: Workspace, flagged: dict[str, list] | None,
                opts: ReportOptions, audit: AuditFindings | None = None) -> set[Path]:
    data, written = out / "data", set()
    cat_i, split_i, route_i = ({v: i for i, v in enumerate(xs)} for xs in (cats, splits, routes))
    _write(data / "items.js", _js("items", {
        "id": [r.triplet_id for r in records], "key": [plans[r.triplet_id].key for r in records],
        "cat": [cat_i[r.category] for r in records], "split": [split_i[r.split] for r in records],
        "route": [route_i[r.proposal.route if r.proposal else "-"] for r in records]}), written)
    for name, values in _signal_columns(records, signals).items():
        _write(data / f"signal-{slug(name)}.js", _js("signal", name, values), written)
    for gal in galleries:
        _write(data / f"gallery-{gal.slug}.js", _js("gallery", gal.slug, {"items": gal.items, "texts": gal.texts}),
               written)
    folders: dict[str, str] = {}
    for start in range(0, len(records), opts.detail_chunk):
        block = [_detail(r, plans[r.triplet_id], out, route_cfg, ws, flagged, folders, audit)
                 for r in records[start: start + opts.detail_chunk]]
        _write(data / f"detail-{start // opts.detail_chunk:05d}.js", _js("detail", start // opts.detail_chunk, block),
               written)
    return written


# --------------------------------------------------------------------------- summary HTML
def _table(title: str, rows: Sequence[tuple[Any, ...]], head: Sequence[str] = ("what", "count"), css: str = "") -> str:
    cls = f"card-table {css}".strip()
    if not rows:
        return f"<section class='{cls}'><h3>{html.escape(title)}</h3><p class='muted'>none</p></section>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else html.escape(str(c))}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<section class='{cls}'><h3>{html.escape(title)}</h3><table><tr>{th}</tr>{body}</table></section>"


class _Raw(str):
    """Pre-escaped HTML for a table cell."""


def _link(gallery: str, text: str) -> _Raw:
    return _Raw(f"<a href='#g={urllib.parse.quote(gallery)}' class='glink'>{html.escape(text)}</a>")


def summary_html(summary: dict[str, Any], galleries: list[Gallery], reports: Path,
                 audit: AuditFindings | None = None, quality: dict[str, Any] | None = None) -> str:
    """Counts per stage, route and split, rejects by reason, audit defects by kind (linked to their
    gallery), measured mask quality (from quality.json), runs, figures."""
    by_title = {g.title: g for g in galleries}
    rejects = []
    for stage, reasons in summary["rejects"].items():
        for reason, n in reasons.items():
            gal = by_title.get(f"Rejected at {stage}: {reason}")
            rejects.append((stage, _link(gal.slug, reason) if gal else reason, n))
    route_slug = {"accept": "accept", "review": "review"}
    parts = [
        _table("Rows per table (stage)", list(summary["counts"].items())),
        _table("Proposals per route", [(_link(route_slug[k], k) if k in route_slug else k, n)
                                       for k, n in summary["proposals_by_route"].items()]),
        _table("Final triplets per split", list(summary["final_by_split"].items())),
        _table("Triplets per source split", list(summary["triplets_by_origin_split"].items())),
        _table("Triplets per source", list(summary["triplets_by_source"].items())),
        _table("Rejects by reason", rejects, ("stage", "reason", "count")),
    ]
    if audit is not None:                            # every kind the audit checks, the clean ones too
        defects = []
        for kind, n in audit.counts().items():
            gal = by_title.get(f"Audit: {kind}")
            defects.append((_link(gal.slug, kind) if gal else kind, n, audit.meanings[kind]))
        parts.append(_table("Audit", defects, ("kind", "count", "meaning"), "audit"))
    if quality is not None:
        parts.append(_table("Mask quality", quality_rows(quality),
                            ("route", "measured", "IoU ≥ 0.9 (95 % CI)", "IoU ≥ 0.75 (95 % CI)"), "quality"))
    parts += [
        _table("Last runs", [(r["run_id"], r["started"], r["finished"] or "(unfinished)") for r in summary["runs"]],
               ("run", "started", "finished")),
    ]
    files = [f for f in ("stats.json", "STATS.md", "ingest.json", "refine.json", "calibration.json", "rejects.csv")
             + (("audit.json", "AUDIT.md") if audit is not None else ())
             + (("quality.json", "QUALITY.md") if quality is not None else ()) if (reports / f).is_file()]
    links = " · ".join(f"<a href='{urllib.parse.quote(f)}'>{html.escape(f)}</a>" for f in files)
    figures = sorted((reports / "figures").glob("*.png")) if (reports / "figures").is_dir() else []
    figs = "".join(f"<figure class='fig'><img src='figures/{urllib.parse.quote(f.name)}' alt='{html.escape(f.stem)}'>"
                   f"<figcaption>{html.escape(f.stem)}</figcaption></figure>" for f in figures)
    stats = (f"<h3>Statistics figures</h3><div class='figs'>{figs}</div>" if figs
             else "<p class='muted'>No statistics figures yet: the stats stage has not run.</p>")
    said = (f"<p class='quality'>{html.escape(quality['statement'])}</p>" if quality is not None else "")
    return (f"{said}<div class='tables'>{''.join(parts)}</div>"
            f"<p class='files'>{('Reports: ' + links) if links else ''}</p>{stats}")


# --------------------------------------------------------------------------- the report
def _asset(name: str) -> str:
    return resources.files("risbench_builder.qa").joinpath("static", name).read_text(encoding="utf-8")


def _route_config(ws: Workspace) -> RouteConfig | None:
    try:
        return ws.load().refine.route
    except ConfigError:
        return None


def write_report(ws: Workspace, options: ReportOptions | None = None) -> ReportResult:
    """Write ``W/reports/index.html`` and everything it loads; returns where and what it rendered."""
    opts = options or ReportOptions()
    started = time.perf_counter()
    out = ws.reports
    with Catalog(ws.catalog_path, create=False) as catalog:
        summary = catalog.summary()
        records = list(load_records(catalog).values())
        orphans = list(orphan_rejects(catalog))
    route_cfg = _route_config(ws)
    thumb_stats, plans = ensure_thumbs(out / "thumbs", records, workers=opts.workers, progress=opts.progress)
    flagged = load_contradictions(out)
    audit = load_audit(out)
    quality = load_quality(out)
    galleries = build_galleries(records, orphans, summary["counts"], flagged, opts, audit)
    signals = _signal_names(records)
    cats = sorted({r.category for r in records})
    splits = sorted({r.split for r in records})
    routes = sorted({r.proposal.route for r in records if r.proposal} | {"-"})
    written = _write_data(out, records, plans, galleries, signals, cats, splits, routes, route_cfg, ws, flagged, opts,
                          audit)
    for stale in (out / "data").glob("*.js"):
        if stale not in written:
            stale.unlink()
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for name in ("report.js", "report.css"):
        (assets / name).write_text(_asset(name), encoding="utf-8")
    meta = {"title": f"risbench report: {ws.path.name}", "workspace": str(ws.path),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "total": len(records),
            "page_size": opts.page_size, "detail_chunk": opts.detail_chunk, "galleries": [g.meta() for g in galleries],
            "signals": [{"name": s, "file": f"data/signal-{slug(s)}.js"} for s in signals],
            "categories": cats, "splits": splits, "routes": routes}
    fills = {"title": html.escape(meta["title"]),
             "subtitle": html.escape(f"{ws.path} · {len(records)} triplets · generated {meta['generated']}"),
             "summary": summary_html(summary, galleries, out, audit, quality),
             "meta": json.dumps(meta, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")}
    page = re.sub(r"\{\{(\w+)\}\}", lambda m: fills[m.group(1)], _asset("index.html"))  # one pass: data never re-expands
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return ReportResult(index, thumb_stats, {g.slug: len(g.items) + g.text_total for g in galleries},
                        time.perf_counter() - started, index.stat().st_size)
