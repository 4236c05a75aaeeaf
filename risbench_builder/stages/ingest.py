"""The ingest stage: every configured source into one catalog, with a reason for each reject.

Readers parse; this module decides. It streams units (annotation files) in a deterministic
order and commits every ``batch_size`` units in one transaction, so memory stays flat and a
killed run leaves whole batches. Rows are keyed by stable ids and inserted with ``INSERT OR
IGNORE``: a rerun, or a resume after SIGKILL, ends with the same catalog as one clean run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable

from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import masks
from ..catalog import Catalog, stable_id
from ..config import IngestConfig, PipelineConfig, RouteConfig, SourceConfig
from ..images import open_image
from ..masks import clip_box
from ..segment.base import MaskOutput
from ..segment.routing import route
from ..segment.signals import compute_signals
from ..sources import make_reader
from ..sources.base import (
    BOX_OUTSIDE_IMAGE, DUPLICATE, EMPTY_EXPRESSION, EMPTY_MASK, EXPRESSION_TOO_LONG, IMAGE_SIZE_MISMATCH,
    IMPORT_KINDS, MALFORMED_FILE, MALFORMED_RECORD, MASK_SIZE_MISMATCH, MISSING_IMAGE, MISSING_MASK,
    UNDECODABLE_MASK, UNKNOWN_CLASS, UNREADABLE_IMAGE, ZERO_AREA_BOX, BadInput, Rejected, SourceLayoutError,
    SourceReader, SourceRecord, check_coordinates, infer_category, normalize_class, normalize_expression,
    scene_id_from_name)
from ..sources.imported import IMPORTED_SEGMENTER, decode_imported
from ..sources.locations import record_locations, refuse_a_renamed_source
from ..text import clean_text, unexpected
from ..workspace import Workspace

STAGE = "ingest"
EXPRESSION_KINDS = {"vrsbench", "dior_rsvg", *IMPORT_KINDS}
_TABLES_FROM_HERE = ("final", "samples", "consensus", "reviews", "proposals", "triplets", "images")
_MASK_PROBLEMS = (MISSING_MASK, UNDECODABLE_MASK, MASK_SIZE_MISMATCH, EMPTY_MASK)
MAX_DETAIL_CHARS = 500             # a reject's detail is one line, whatever the input held


class RejectRateExceeded(RuntimeError):
    """More of the input was rejected than ``--max-reject-rate`` allows."""


@dataclass
class ImageInfo:
    width: int = 0
    height: int = 0
    sha256: str | None = None
    problem: tuple[str, str] | None = None   # (reason, detail) when the image cannot be used


@dataclass
class IngestReport:
    run_id: str
    seconds: float = 0.0
    units: int = 0
    accepted: int = 0
    new_triplets: int = 0
    rejected: Counter = field(default_factory=Counter)
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    eval_checked: int = 0
    eval_agree: int = 0
    imported: int = 0                     # imported masks written as proposals
    imported_routes: Counter = field(default_factory=Counter)
    skipped_sources: dict[str, str] = field(default_factory=dict)   # label -> why (read before, root gone now)
    changed: int = 0                      # triplets and images held that the files now give otherwise
    changed_examples: list[str] = field(default_factory=list)

    @property
    def reject_rate(self) -> float:
        total = self.accepted + sum(self.rejected.values())
        return sum(self.rejected.values()) / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "seconds": round(self.seconds, 3), "units": self.units,
            "triplets_seen": self.accepted, "triplets_new": self.new_triplets,
            "triplets_per_s": round(self.accepted / self.seconds, 1) if self.seconds else None,
            "rejected": dict(sorted(self.rejected.items())), "reject_rate": round(self.reject_rate, 4),
            "per_source": self.per_source,
            **({"skipped_sources": self.skipped_sources} if self.skipped_sources else {}),
            # kept as first ingested (their masks and reviews are of that object); ingest --force rereads
            **({"changed_since_ingest": self.changed, "changed_since_ingest_examples": self.changed_examples}
               if self.changed else {}),
            "eval_cross_check": {"checked": self.eval_checked, "agree": self.eval_agree},
            **({"segmenter": IMPORTED_SEGMENTER, "model_sha256": "", "imported_masks": self.imported,
                "routes": dict(sorted(self.imported_routes.items()))} if self.imported_routes else {}),
        }


def _truncated(data: bytes) -> bool:
    """Cheap end-marker check: a PNG ends with IEND, a JPEG with EOI (maybe plus padding)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in data[-64:]
    return False


def inspect_image(path: Path | None, hash_images: bool) -> ImageInfo:
    if path is None:
        return ImageInfo(problem=(MISSING_IMAGE, "no image file of that name below the source root"))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageInfo(problem=(MISSING_IMAGE, f"{path} does not exist"))
    except OSError as exc:
        return ImageInfo(problem=(UNREADABLE_IMAGE, f"{path}: {exc.strerror or exc}"))
    try:
        with open_image(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:      # over the package's bound: say how big
        return ImageInfo(problem=(UNREADABLE_IMAGE, f"{path.name}: {exc}"))
    except Exception as exc:  # PIL raises many types for bad files
        return ImageInfo(problem=(UNREADABLE_IMAGE, f"{path.name}: not a readable image ({type(exc).__name__})"))
    if _truncated(data):
        return ImageInfo(problem=(UNREADABLE_IMAGE, f"{path.name}: truncated image file ({len(data)} bytes)"))
    return ImageInfo(width, height, hashlib.sha256(data).hexdigest() if hash_images else None)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Batch:
    """Rows of some units, validated against the catalog and written in one transaction."""

    def __init__(self, catalog: Catalog, src: SourceConfig, limits: IngestConfig, report: IngestReport,
                 route_cfg: RouteConfig | None = None):
        self.catalog, self.src, self.report = catalog, src, report
        self.importing = src.kind in IMPORT_KINDS
        # imports always hash: the same image under two names in two splits is an audit finding
        self.hash_images = limits.hash_images or self.importing
        self.max_expression_chars = limits.max_expression_chars
        self.route_cfg = route_cfg or RouteConfig()
        self.images: dict[str, tuple] = {}
        self.triplets: list[tuple] = []
        self.proposals: list[tuple] = []
        self.rejects: list[tuple[str, str, str]] = []
        self.files: set[str] = set()                         # refs of the files read (a record's ref is "<file>#...")
        self.files_read: list[str] = []                      # of which those read without a file reject
        self._image_info: dict[Path | None, ImageInfo] = {}
        self._expressions: dict[str, dict[str, str]] = {}   # image_id -> {normalised expr: triplet_id}
        self._stats = report.per_source.setdefault(src.label, Counter())

    def reject(self, ref: str, reason: str, detail: str) -> None:
        detail = detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 3] + "..."
        self.rejects.append((ref, reason, detail))
        self.report.rejected[reason] += 1
        self._stats["rejects"] += 1

    def add(self, item: SourceRecord | Rejected) -> None:
        if isinstance(item, Rejected):
            self.reject(item.ref, item.reason, item.detail)
            return
        try:
            problem = self._validate(item)
        except BadInput as bad:
            problem = bad.reason, bad.detail
        except Exception as exc:          # the last line of defence: one record, never the stage
            problem = MALFORMED_RECORD, unexpected(exc)
        if problem:
            self.reject(item.ref, *problem)

    def add_unit(self, reader: Any, unit: str) -> None:
        """Every item of one annotation file; a reader that fails outright costs that file alone
        (a ``malformed_file`` reject), never the stage."""
        file_ref = f"{self.src.label}:{unit}"
        try:
            for item in reader.read(unit):
                self.add(item)
        except Exception as exc:
            self.reject(file_ref, MALFORMED_FILE, f"{unit}: {unexpected(exc)}")
        self.files.add(file_ref)
        if not any(ref == file_ref for ref, _, _ in self.rejects):
            self.files_read.append(file_ref)             # an earlier reject of the whole file is gone

    def _validate(self, rec: SourceRecord) -> tuple[str, str] | None:
        category = normalize_class(rec.category_raw)
        if category is None and self.importing:      # a finished dataset's object is kept, class or not
            category = infer_category(rec.expression if isinstance(rec.expression, str) else "")
        if category is None:
            return UNKNOWN_CLASS, f"class {rec.category_raw!r} is not one of the 26 RISBench classes"
        expression = rec.expression
        if self.src.kind in EXPRESSION_KINDS:
            if not isinstance(expression, str) or not expression.strip():
                kind = "empty" if isinstance(expression, str) or expression is None else type(expression).__name__
                return EMPTY_EXPRESSION, f"referring expression is {kind}, not text"
            if len(expression) > self.max_expression_chars:
                return EXPRESSION_TOO_LONG, (f"referring expression of {len(expression):,} characters, over "
                                             f"ingest.max_expression_chars ({self.max_expression_chars:,})")
            # one line of printable text: a NUL or a terminal escape would reach every export,
            # report and terminal that shows the expression
            expression = clean_text(expression)
            if not expression:
                return EMPTY_EXPRESSION, "referring expression holds only control or format characters"
        check_coordinates(rec.box_xyxy or (), "box")
        check_coordinates((v for point in rec.polygon or () for v in point), "polygon")
        if rec.image_path not in self._image_info:
            self._image_info[rec.image_path] = inspect_image(rec.image_path, self.hash_images)
        info = self._image_info[rec.image_path]
        if info.problem:
            reason, detail = info.problem
            return reason, f"{rec.image_name}: {detail}" if reason == MISSING_IMAGE else detail
        if rec.expected_size and tuple(rec.expected_size) != (info.width, info.height):
            return IMAGE_SIZE_MISMATCH, (f"{rec.image_name} is {info.width}x{info.height}, the annotation "
                                         f"expects {rec.expected_size[0]}x{rec.expected_size[1]}")
        attrs = dict(rec.attributes)
        source_box = rec.box_xyxy          # a record is the reader's: its fields are not rewritten here
        proposal = None
        if self.importing:
            decoded = decode_imported(rec.mask, info.width, info.height)
            rle = masks.encode(decoded.mask)
            if rec.mask is None and isinstance(attrs.get("mask_problem"), str):   # the reader said why
                code, _, detail = attrs["mask_problem"].partition(": ")
                decoded.problem = (code if code in _MASK_PROBLEMS else MISSING_MASK, detail or code)
            elif decoded.problem:
                attrs["mask_problem"] = f"{decoded.problem[0]}: {decoded.problem[1]}"
            if decoded.fitted:
                attrs["mask_fitted"] = decoded.fitted
            if source_box is None:
                if not decoded.mask.any():
                    return decoded.problem or (EMPTY_MASK, "the dataset gives no box and its mask is empty: "
                                                          "nothing locates the object")
                source_box = masks.bbox_xyxy(rle)
                attrs["box_from_mask"] = True
            proposal = (decoded.mask, rle)
        elif source_box is None:
            return MALFORMED_RECORD, "the record has no box"
        x1, y1, x2, y2 = source_box
        if x2 <= 0 or y2 <= 0 or x1 >= info.width or y1 >= info.height:
            return BOX_OUTSIDE_IMAGE, f"box {_fmt(source_box)} lies outside the {info.width}x{info.height} image"
        box = clip_box(source_box, info.width, info.height)
        if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
            return ZERO_AREA_BOX, f"box {_fmt(source_box)} has zero area"

        image_id = f"{self.src.label}:{Path(rec.image_name).stem}"
        triplet_id = stable_id(self.src.label, rec.image_name, rec.object_ref, expression or "")
        if expression and not self.importing:      # an import keeps duplicates: audit flags them
            dup_of = self._duplicate_of(image_id, normalize_expression(expression), triplet_id)
            if dup_of:
                return DUPLICATE, f"same image and expression as triplet {dup_of}"
        if box != tuple(float(v) for v in source_box):
            attrs["box_clipped"] = True
        if category != rec.category_raw:
            attrs["category_raw"] = rec.category_raw
        if "eval_grid_agrees" in attrs:
            self.report.eval_checked += 1
            self.report.eval_agree += bool(attrs["eval_grid_agrees"])
        if proposal is not None:
            self._propose(triplet_id, box, *proposal)
        self.images.setdefault(image_id, (
            image_id, str(rec.image_path), self.src.label, rec.scene_id or scene_id_from_name(rec.image_name),
            info.width, info.height, rec.gsd, info.sha256))
        polygon = [[round(x, 3), round(y, 3)] for x, y in rec.polygon] if rec.polygon else None
        self.triplets.append((
            triplet_id, image_id, self.src.label, rec.ref, category, expression,
            _json([round(v, 3) for v in box]), _json(polygon) if polygon else None, _json(attrs),
            rec.origin_split))
        self.report.accepted += 1
        self._stats["triplets"] += 1
        return None

    def _propose(self, triplet_id: str, box: tuple, mask: Any, rle: dict) -> None:
        """The dataset's own mask as this triplet's proposal, with the signals and route every
        proposal gets (an unusable mask is empty, so it always goes to review)."""
        signals = compute_signals(MaskOutput(mask=mask), box, None)
        decision = route(signals, self.route_cfg)
        self.proposals.append((triplet_id, IMPORTED_SEGMENTER, "", masks.dumps(rle),
                               json.dumps(signals, sort_keys=True), decision))
        self.report.imported_routes[decision] += 1

    def _duplicate_of(self, image_id: str, norm: str, triplet_id: str) -> str | None:
        known = self._expressions.get(image_id)
        if known is None:
            known = self._expressions[image_id] = {}
            rows = self.catalog.conn.execute(
                "SELECT triplet_id, expression FROM triplets WHERE image_id=? AND expression IS NOT NULL",
                (image_id,))
            for tid, expr in rows:
                known.setdefault(normalize_expression(expr), tid)
        first = known.setdefault(norm, triplet_id)
        return first if first != triplet_id else None

    def _reconcile_rejects(self) -> None:
        """Rejects as the files are now: a record the catalog holds is no reject of this run (it
        is counted as changed), and a record or a whole file rejected before and read fine now
        loses its old reject."""
        held = {ref for (ref,) in self.catalog.select_in("SELECT source_ref FROM triplets WHERE source_ref IN ({ids})",
                                                         (ref for ref, _, _ in self.rejects))}
        held |= {ref for ref, _, _ in self.rejects if ref in self.files and self.catalog.conn.execute(
            "SELECT 1 FROM triplets WHERE source_ref > ? AND source_ref < ? LIMIT 1",   # its records: "<ref>#..."
            (ref + "#", ref + "$")).fetchone()}
        for ref, reason, detail in [r for r in self.rejects if r[0] in held]:
            self._changed(f"{ref}: now {reason} ({detail})")
            self.report.rejected[reason] -= 1
            self.report.rejected = +self.report.rejected       # no reason left at zero
            self._stats["rejects"] -= 1
        self.rejects = [r for r in self.rejects if r[0] not in held]
        self.catalog.conn.executemany("DELETE FROM rejects WHERE stage=? AND ref=?",
                                      [(STAGE, ref) for ref in [row[3] for row in self.triplets] + self.files_read])

    def _note_changed(self) -> None:
        """Triplets the catalog holds whose category, box or outline the files now give otherwise,
        and images whose file now holds other pixels (fixed or re-encoded upstream, or read
        differently by this version): kept as first read, counted, never silently."""
        read = {row[0]: row for row in self.triplets}
        for tid, ref, category, box, polygon in self.catalog.select_in(
                "SELECT triplet_id, source_ref, category, box_xyxy, polygon FROM triplets WHERE triplet_id IN ({ids})",
                read):
            now = read[tid]
            diffs = [f"{what} {was} -> {new}" for what, was, new in (
                ("category", category, now[4]), ("box", box, now[6]), ("outline", polygon, now[7])) if was != new]
            if diffs:
                self._changed(f"{tid} ({ref}): " + "; ".join(diffs))
        images = {row[0]: row for row in self.images.values()}
        for image_id, width, height, sha in self.catalog.select_in(
                "SELECT image_id, width, height, sha256 FROM images WHERE image_id IN ({ids})", images):
            now = images[image_id]
            if (width, height) != now[4:6] or sha and now[7] and sha != now[7]:
                self._changed(f"{image_id} ({now[1]}): another image now ({width}x{height}, sha256 {str(sha)[:12]} -> "
                              f"{now[4]}x{now[5]}, {str(now[7])[:12]}); its masks were made on the old one")

    def _changed(self, example: str) -> None:
        self.report.changed += 1
        if len(self.report.changed_examples) < 10:
            self.report.changed_examples.append(example[:400])

    def commit(self, run_id: str) -> None:
        with self.catalog.transaction():
            self._reconcile_rejects()
            self._note_changed()
            self.catalog.add("images", self.images.values())
            self.report.new_triplets += self.catalog.add("triplets", self.triplets)
            self.report.imported += self.catalog.add("proposals", (row + (run_id,) for row in self.proposals))
            self.catalog.add_rejects(STAGE, self.rejects, run_id)


def _fmt(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def write_rejects_csv(catalog: Catalog, path: Path) -> int:
    """Every reject of every stage, regenerated from the catalog (so resumed runs are complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = catalog.conn.execute("SELECT stage, reason, ref, detail, run_id FROM rejects ORDER BY stage, reason, ref")
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["stage", "reason", "ref", "detail", "run_id"])
        for row in rows:
            writer.writerow(row)
            n += 1
    return n


OpenedSource = tuple[SourceConfig, SourceReader, list[str]]      # config, reader, its annotation files


def open_sources(ws: Workspace, cfg: PipelineConfig,
                 read_before: Collection[str] = ()) -> tuple[list[OpenedSource], dict[str, str]]:
    """Every source's reader and its annotation files, and the sources skipped (label -> why).

    A root that is not a folder, or holds none of the files its kind reads, is a wrong path in
    the pipeline, not bad data: read on, it would ingest nothing and "succeed", and ``next``
    would send the user back to ingest. So it stops the build, with the key to fix, before a run
    starts. Unless the catalog already holds that source's triplets (``read_before``): then the
    files were moved or deleted after ingest (an hf import keeps its own copy of the images), and
    a rerun (``build --stage all``) keeps those rows and skips the source instead of stopping.
    """
    opened, skipped = [], {}
    for i, src in enumerate(cfg.sources):
        root = ws.resolve(src.root)
        fix = (f"set sources[{i}].root in {ws.pipeline_path} to your {src.kind} copy "
               f"(a relative path starts at the workspace)")
        try:
            if not root.is_dir():
                raise SourceLayoutError(f"sources[{i}].root: {root} is not a folder: {fix}")
            try:
                reader = make_reader(src, root, cfg.ingest, ws.path / "imported" / src.label)
            except SourceLayoutError as exc:
                raise SourceLayoutError(f"sources[{i}]: {exc}") from None
            units = reader.units()
            if not units:
                raise SourceLayoutError(f"sources[{i}] ({src.kind}): no {reader.expects} below {root}: {fix}")
        except SourceLayoutError as exc:
            if src.label not in read_before:
                raise
            skipped[src.label] = f"{exc} (its triplets from an earlier ingest are kept; nothing new read)"
            continue
        opened.append((src, reader, units))
    return opened, skipped


class ReviewsAtStake(ValueError):
    """``ingest --force`` would delete what people decided; it needs ``--discard-reviews``."""


def _people_s_work(catalog: Catalog) -> tuple[int, int]:
    return catalog.count("reviews"), catalog.count("consensus")


def _refuse_to_discard_reviews(ws: Workspace) -> None:
    """``--force`` on ingest clears every table from ingest on, reviews included: weeks of
    annotators' time behind one flag that ``--stage all --force`` also passes."""
    with Catalog(ws.catalog_path, create=False) as catalog:
        reviews, decisions = _people_s_work(catalog)
    if reviews or decisions:
        raise ReviewsAtStake(
            f"ingest --force would delete {reviews:,} reviews and {decisions:,} decisions people made (and every "
            f"mask): without --force ingest reads only what is new; to start over anyway add --discard-reviews "
            f"(a copy of the catalog goes to {ws.backups} first)")


def run_ingest(ws: Workspace, cfg: PipelineConfig, *, force: bool = False, discard_reviews: bool = False,
               max_reject_rate: float | None = None, progress: bool = True) -> IngestReport:
    """Ingest every source of ``cfg`` into ``ws``'s catalog; raises RejectRateExceeded, and
    ReviewsAtStake for ``force`` over reviews without ``discard_reviews``."""
    if force and not discard_reviews and ws.catalog_path.exists():
        _refuse_to_discard_reviews(ws)
    if cfg.synthetic is not None:
        from ..synthetic import generate_sources

        generate_sources(ws.resolve(cfg.synthetic.out), cfg.synthetic)
    read_before: set[str] = set()       # --force clears every source's rows: each must be there to read
    if ws.catalog_path.exists() and not force:
        with Catalog(ws.catalog_path, create=False) as catalog:
            read_before = {row[0] for row in catalog.conn.execute("SELECT DISTINCT source FROM triplets")}
            refuse_a_renamed_source(catalog, ws, cfg)
    sources, skipped = open_sources(ws, cfg, read_before)
    started = time.perf_counter()
    with Catalog(ws.catalog_path) as catalog:
        if force:
            if any(_people_s_work(catalog)):
                ws.backups.mkdir(parents=True, exist_ok=True)
                catalog.copy_to(ws.backups / f"catalog-before-ingest-force-{time.strftime('%Y%m%dT%H%M%S')}.sqlite")
            catalog.clear_stage(STAGE, _TABLES_FROM_HERE)
        run_id = catalog.start_run(STAGE, cfg.sha256())
        report = IngestReport(run_id, skipped_sources=skipped)
        columns = (TextColumn("[bold]ingest[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("files"), TimeRemainingColumn())
        with Progress(*columns, disable=not progress, transient=False) as bar:
            for src, reader, units in sources:
                task = bar.add_task(src.label, total=len(units))
                batch = _Batch(catalog, src, cfg.ingest, report, cfg.refine.route)
                for i, unit in enumerate(units, 1):
                    batch.add_unit(reader, unit)
                    report.units += 1
                    if i % cfg.ingest.batch_size == 0:
                        batch.commit(run_id)
                        batch = _Batch(catalog, src, cfg.ingest, report, cfg.refine.route)
                        bar.update(task, completed=i)
                batch.commit(run_id)
                bar.update(task, completed=len(units))
        record_locations(catalog, ws, cfg)
        report.seconds = time.perf_counter() - started
        ws.reports.mkdir(parents=True, exist_ok=True)
        write_rejects_csv(catalog, ws.reports / "rejects.csv")
        (ws.reports / "ingest.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        catalog.finish_run(run_id, report.as_dict())
    limit = max_reject_rate if max_reject_rate is not None else cfg.ingest.max_reject_rate
    if limit is not None and report.reject_rate > limit:
        top = ", ".join(f"{n} {reason}" for reason, n in report.rejected.most_common(4))
        raise RejectRateExceeded(
            f"ingest: {report.reject_rate:.1%} of records rejected (limit {limit:.1%}): {top} "
            f"(see {ws.reports / 'rejects.csv'})")
    return report
