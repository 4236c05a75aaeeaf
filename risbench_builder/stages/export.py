"""The export stage: the ``final`` triplets -> ``W/exports/{hf,refer,native,coco}/``.

One pass over :func:`~risbench_builder.finalize.records.final_records`, split by split and
within a split grouped by image (image_id, then triplet_id), feeds every configured writer; masks are PNG-encoded once per run (a pool of worker processes on
large exports) and images copied once per run, then hard-linked. Each target is written
into ``W/exports/.staging/`` and moved into place only when it is complete, with a
``manifest.json`` (counts, provenance, sha256 of every file). The manifest records a
fingerprint of the catalog content the export came from, so rerunning the stage on an
unchanged catalog does nothing (``--force`` rewrites). Triplets still waiting for review are
not exported; the report counts them as ``pending``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..catalog import Catalog, code_version
from ..config import PipelineConfig
from ..export import changes, writers
from ..export.base import AS_IS, PNG, Context, ExportError, ImageRef, Images, Ledger, prepared
from ..parallel import make_pool
from ..export.freshness import input_fingerprint, recorded_fingerprint
from ..export.manifest import read_manifest, write_manifest
from ..export.refer import REFER_SPLITS
from ..finalize.quality import measure_quality
from ..finalize.records import final_records, split_names
from ..readmodel import REFERRED, consensus_summary, current_proposal_set
from ..workspace import Workspace
from .next_step import next_step

STAGE = "export"
POOL_MIN_TRIPLETS = 2000        # below this, encoding masks in-process beats starting workers


@dataclass
class ExportReport:
    run_id: str
    seconds: float = 0.0
    triplets: int = 0
    pending: int = 0
    up_to_date: bool = False
    workers: int = 0
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: int | None = None             # rows of exports/CHANGES.csv (imported datasets only)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "seconds": round(self.seconds, 3), "triplets": self.triplets,
                "pending": self.pending, "up_to_date": self.up_to_date, "workers": self.workers,
                "targets": self.targets, **({"changes": self.changes} if self.changes is not None else {})}


# ----------------------------------------------------------------------------- catalog facts
def pending_count(catalog: Catalog) -> int:
    """Triplets with an expression that are neither in ``final`` nor rejected by any stage."""
    return int(catalog.conn.execute(
        f"SELECT COUNT(*) FROM triplets t WHERE {REFERRED} AND t.triplet_id NOT IN (SELECT triplet_id FROM final) "
        "AND t.triplet_id NOT IN (SELECT ref FROM rejects)").fetchone()[0])


def review_figures(catalog: Catalog) -> dict[str, Any]:
    """What the card says about human review (empty when no consensus exists)."""
    summary = consensus_summary(catalog)
    if not summary.consensus:
        return {}
    agreements = summary.agreements
    return {
        "consensus": summary.consensus, "reviews": summary.reviews, "annotators": summary.annotators,
        "reviews_per_task": summary.reviews_per_task,
        "agreement_mean": round(statistics.fmean(agreements), 6) if agreements else None,
        "agreement_median": round(statistics.median(agreements), 6) if agreements else None,
        "agreement_min": round(min(agreements), 6) if agreements else None,
        "decisions": summary.decisions,
    }


def _image_refs(catalog: Catalog) -> tuple[dict[str, ImageRef], dict[str, list[str]]]:
    rows = catalog.conn.execute(
        "SELECT DISTINCT t.image_id, i.path, f.split FROM final f JOIN triplets t USING (triplet_id) "
        "JOIN images i ON i.image_id = t.image_id ORDER BY t.image_id").fetchall()
    paths = {image_id: path for image_id, path, _ in rows}
    stems = {image_id: Path(path).stem for image_id, path in paths.items()}
    clash: dict[str, int] = {}
    for stem in stems.values():
        clash[stem.lower()] = clash.get(stem.lower(), 0) + 1
    refs = {}
    for number, image_id in enumerate(sorted(paths), 1):
        stem = stems[image_id]
        if clash[stem.lower()] > 1:      # two sources use one file name: prefix the image id
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)
        refs[image_id] = ImageRef(number, stem)
    split_images: dict[str, list[str]] = {}
    for image_id, _, split in rows:
        split_images.setdefault(split, []).append(image_id)
    return refs, split_images


def _source_kinds(catalog: Catalog, cfg: PipelineConfig) -> list[str]:
    label_kind = {s.label: s.kind for s in cfg.sources}
    labels = [r[0] for r in catalog.conn.execute(
        "SELECT DISTINCT t.source FROM final f JOIN triplets t USING (triplet_id) ORDER BY 1")]
    return sorted({label_kind.get(label, label) for label in labels})


def _auto_workers(n: int, workers: int | None) -> int:
    if workers is not None:
        return max(0, workers)
    return min(2, os.cpu_count() or 1) if n >= POOL_MIN_TRIPLETS else 0


# ----------------------------------------------------------------------------- the stage
@contextmanager
def _staging_folder(exports: Path) -> Iterator[Path]:
    """Targets are written here and swapped in whole when all are done; whatever happens (a full
    disk, Ctrl-C), no partial copy of the dataset is left behind to take up the space."""
    staging = exports / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_export(ws: Workspace, cfg: PipelineConfig, *, force: bool = False, progress: bool = True,
               workers: int | None = None) -> ExportReport:
    """Write every configured export target of the finished dataset (see the module doc)."""
    ecfg = cfg.export
    targets = list(dict.fromkeys(ecfg.targets))
    started = time.perf_counter()
    with Catalog(ws.catalog_path, create=False) as catalog:
        splits = split_names(catalog)
        if not splits:
            raise ExportError(f"export: the final table is empty; next: {next_step(ws.path).line()}")
        if "refer" in targets and set(splits) - set(REFER_SPLITS):
            raise ExportError(f"export: refer needs splits named {'/'.join(REFER_SPLITS)}, the catalog has "
                              f"{', '.join(splits)}: rename them in finalize.split.ratios or drop the refer target")
        if "hf" in targets:
            from ..export.schema import features

            features()   # fail now, not after the other targets, when the hub extra is missing
        fingerprint = input_fingerprint(catalog, ws, cfg)
        pending = pending_count(catalog)
        if not force and all(recorded_fingerprint(read_manifest(ws.exports / t)) == fingerprint for t in targets):
            report = ExportReport("", time.perf_counter() - started, pending=pending, up_to_date=True)
            for t in targets:
                m = read_manifest(ws.exports / t) or {}
                report.triplets = m.get("counts", {}).get("triplets", 0)
                report.targets[t] = {"path": str(ws.exports / t), "counts": m.get("counts", {}), "up_to_date": True}
            _write_changes(catalog, ws, cfg, report)
            return report
        run_id = catalog.start_run(STAGE, cfg.sha256())
        split_counts = dict(catalog.conn.execute("SELECT split, COUNT(*) FROM final GROUP BY split"))
        total = sum(split_counts.values())
        refs, split_images = _image_refs(catalog)
        seg = current_proposal_set(catalog) or ("", "")
        meta: dict[str, Any] = {
            "config_sha256": cfg.sha256(), "code_version": code_version(), "input_sha256": fingerprint,
            "pending": pending, "segmenter": seg[0], "model_sha256": seg[1],
            "sources": _source_kinds(catalog, cfg), "review": review_figures(catalog),
            "synthetic": cfg.synthetic is not None, "license_explicit": "license" in cfg.export.model_fields_set,
            "mask_origins": dict(catalog.conn.execute("SELECT mask_origin, COUNT(*) FROM final GROUP BY 1 ORDER BY 1")),
            "quality": measure_quality(catalog, cfg),
        }
        with _staging_folder(ws.exports) as staging:
            ctx = Context(dataset_name=ecfg.dataset_name, rows_per_shard=ecfg.rows_per_shard, license=ecfg.license,
                          images=Images(staging / "_converted"), image_refs=refs, split_images=split_images,
                          split_counts=split_counts, meta=meta, reports=ws.reports)
            registry = writers()
            outs = {t: registry[t](Ledger(staging / t), ctx) for t in targets}
            native = outs.get("native")
            kinds = ([AS_IS] if {"refer", "coco"} & set(targets) else []) + ([PNG] if native is not None else [])
            plan = _FilePlan(ctx.images, kinds, staging / "_images", native.mask_path if native is not None else None)
            n_workers = _auto_workers(total, workers)
            report = ExportReport(run_id, pending=pending, triplets=total, workers=n_workers)
            pool = make_pool(n_workers)
            report.workers = n_workers if pool is not None else 0
            try:
                columns = (TextColumn(f"[bold]{STAGE}[/] {', '.join(targets)}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("triplets"), TimeRemainingColumn())
                with Progress(*columns, disable=not progress) as bar:
                    task = bar.add_task("", total=total)
                    done = 0
                    for split in splits:
                        for w in outs.values():
                            w.begin_split(split)
                        # grouped by image (then triplet): each image is read once and stored once per row group
                        records = sorted(final_records(catalog, split), key=lambda r: (r.image_id, r.triplet_id))
                        if native is not None:
                            native.plan(split, records)
                        for item in prepared(records, pool, plan):
                            for w in outs.values():
                                w.add(item)
                            done += 1
                            if done % 256 == 0:
                                bar.update(task, completed=done)
                        for w in outs.values():
                            w.end_split(split)
                    bar.update(task, completed=done)
            finally:
                if pool is not None:
                    pool.close()
                    pool.join()
            provenance = {k: meta[k] for k in ("config_sha256", "code_version", "input_sha256", "pending",
                                               "segmenter", "model_sha256")}
            provenance["dataset_name"] = ecfg.dataset_name
            for t, w in outs.items():
                counts = w.finish()
                sha = write_manifest(w.ledger.root, t, w.ledger, counts, provenance)
                report.targets[t] = {"path": str(ws.exports / t), "manifest_sha256": sha, "counts": counts,
                                     "files": len(w.ledger.files) + 1,
                                     "bytes": sum(size for _, size in w.ledger.files.values())}
            for t in targets:
                _swap(staging / t, ws.exports / t)
        _write_changes(catalog, ws, cfg, report)
        report.seconds = time.perf_counter() - started
        ws.reports.mkdir(parents=True, exist_ok=True)
        (ws.reports / "export.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        catalog.finish_run(run_id, report.as_dict())
    return report


def _write_changes(catalog: Catalog, ws: Workspace, cfg: PipelineConfig, report: ExportReport) -> None:
    """CHANGES.csv beside the exports when the workspace repairs an imported dataset."""
    labels = changes.import_labels(cfg.sources)
    if labels:
        report.changes = changes.write_changes(catalog, ws.exports / "CHANGES.csv", ws.reports, labels)


class _FilePlan:
    """The file work that rides along with each mask's encoding (in the pool when there is one):
    the native mask PNG written in place, and each image copied once into the staging folder,
    where every export then hard-links it (a link costs a directory entry, a copy a file)."""

    def __init__(self, images: Images, kinds: list[str], folder: Path, mask_path: Any):
        self.images, self.kinds, self.folder, self.mask_path = images, kinds, folder, mask_path
        self._planned: set[tuple[str, str]] = set()
        folder.mkdir(parents=True, exist_ok=True)

    def jobs(self, rec: Any) -> tuple[str | None, list[tuple[str, str]]]:
        copies = []
        for kind in self.kinds:
            key = self.images.key(rec, kind)
            if key in self._planned or self.images.is_placed(key):
                continue
            self._planned.add(key)
            dest = self.folder / (hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:24] + ".img")
            copies.append((key[1], str(dest)))
        return (str(self.mask_path(rec)) if self.mask_path else None), copies

    def done(self, rec: Any, copies: list[tuple[str, str]], results: list[tuple[str, int]]) -> None:
        for (src, dest), (sha, size) in zip(copies, results):
            self.images.register((rec.image_id, src), Path(dest), sha, size)


def _swap(new: Path, dest: Path) -> None:
    """Replace ``dest`` by ``new`` (same filesystem): the old export stays whole until the rename."""
    old = dest.with_name(f".old-{dest.name}")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
