"""The sam-refine stage: every ingested box becomes a mask, a set of quality signals and a route.

Work is grouped by image so a segmenter with an image encoder runs it once per image (tiny
boxes get their own zoomed context crop). Images are taken in a stable order, optionally only
this rank's shard (stable hash of the image id), and every ``batch_images`` images are
committed in one transaction: a killed run resumes with the images that have no proposals
yet, and because jitter is seeded per triplet and every backend is deterministic, it ends with
exactly the masks an uninterrupted run produces.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import masks
from ..catalog import Catalog
from ..config import PipelineConfig, RefineConfig
from ..segment.base import MaskOutput, Segmenter, View
from ..segment.registry import make_segmenter
from ..segment.routing import route
from ..segment.signals import compute_signals
from ..segment.views import context_window, jitter_boxes, load_rgb
from ..workspace import Workspace

STAGE = "sam-refine"
DEGENERATE_BOX = "degenerate_box"
UNREADABLE_IMAGE = "unreadable_image"


# ----------------------------------------------------------------------------- sharding
@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """``"i/n"``, else torchrun's RANK / WORLD_SIZE, else the whole dataset."""
        if text:
            try:
                i, n = (int(v) for v in text.split("/"))
            except ValueError:
                raise ValueError(f"--shard expects i/n such as 0/4, got {text!r}") from None
        else:
            i, n = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if not 0 <= i < n:
            raise ValueError(f"shard index {i} is outside 0..{n - 1}")
        return cls(i, n)

    def owns(self, image_id: str) -> bool:
        return self.count == 1 or int(hashlib.sha256(image_id.encode()).hexdigest()[:12], 16) % self.count == self.index


@contextmanager
def distributed(part: Shard) -> Iterator[None]:
    """Under torchrun, join the process group (gloo on CPU, nccl on GPUs) so ranks can wait for
    each other at the end; the work split itself needs no communication."""
    if part.count == 1 or "MASTER_ADDR" not in os.environ:
        yield
        return
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, rank=part.index, world_size=part.count)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- prompts
def _paste(out: MaskOutput, window: tuple[int, int, int, int], height: int, width: int) -> MaskOutput:
    x0, y0, x1, y1 = window

    def place(m: np.ndarray) -> np.ndarray:
        full = np.zeros(m.shape[:-2] + (height, width), bool)
        full[..., y0:y1, x0:x1] = m
        return full

    return MaskOutput(mask=place(out.mask), iou_pred=out.iou_pred, stability=out.stability,
                      multimask=None if out.multimask is None else place(out.multimask),
                      jitter_masks=[place(m) for m in out.jitter_masks])


@dataclass
class _Prompt:
    triplet_id: str
    box: np.ndarray
    polygon: np.ndarray | None
    jitter: np.ndarray


@dataclass
class RefineReport:
    run_id: str
    segmenter: str
    model_sha256: str
    shard: str
    seconds: float = 0.0
    images: int = 0
    proposals: int = 0
    crops: int = 0
    routes: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    rerouted: int = 0
    image_ids: list[str] = field(default_factory=list)
    adapter_sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        adapter = {"adapter_sha256": self.adapter_sha256} if self.adapter_sha256 else {}
        return {"run_id": self.run_id, "segmenter": self.segmenter, "model_sha256": self.model_sha256, **adapter,
                "shard": self.shard, "seconds": round(self.seconds, 3), "images": self.images,
                "proposals": self.proposals, "crops": self.crops, "routes": dict(self.routes),
                "rejected": dict(self.rejected), "rerouted": self.rerouted}


def segment_image(seg: Segmenter, image: np.ndarray, image_key: str, prompts: list[_Prompt],
                  cfg: RefineConfig) -> tuple[list[MaskOutput], int]:
    """Masks for all prompts of one image, in prompt order; also how many crops were used."""
    h, w = image.shape[:2]
    outputs: list[MaskOutput | None] = [None] * len(prompts)
    tiny = [i for i, p in enumerate(prompts) if max(p.box[2] - p.box[0], p.box[3] - p.box[1]) < cfg.tiny_box]
    whole = [i for i in range(len(prompts)) if i not in set(tiny)]
    if whole:
        view = View(image, image_key, [prompts[i].polygon for i in whole])
        results = seg.segment(view, np.stack([prompts[i].box for i in whole]),
                              np.stack([prompts[i].jitter for i in whole]))
        for i, out in zip(whole, results):
            outputs[i] = out
    for i in tiny:
        p = prompts[i]
        side = max(cfg.context_min, int(4 * max(p.box[2] - p.box[0], p.box[3] - p.box[1])))
        x0, y0, x1, y1 = window = context_window(p.box, side, w, h)
        offset = np.array([x0, y0, x0, y0], float)
        view = View(np.ascontiguousarray(image[y0:y1, x0:x1]), f"{image_key}@{x0},{y0},{x1},{y1}",
                    [None if p.polygon is None else p.polygon - [x0, y0]])
        (out,) = seg.segment(view, (p.box - offset)[None], (p.jitter - offset)[None])
        outputs[i] = _paste(out, window, h, w)
    return outputs, len(tiny)  # type: ignore[return-value]


def reroute(catalog: Catalog, seg_name: str, model_sha: str, cfg: RefineConfig) -> int:
    """Apply the current thresholds to proposals already made: no masks are recomputed."""
    rows = catalog.conn.execute("SELECT triplet_id, scores_json, route FROM proposals WHERE segmenter=? AND "
                                "model_sha256=?", (seg_name, model_sha)).fetchall()
    changes = [(new, tid, seg_name, model_sha) for tid, scores, old in rows
               if (new := route(json.loads(scores), cfg.route)) != old]
    if changes:
        with catalog.transaction():
            catalog.conn.executemany("UPDATE proposals SET route=? WHERE triplet_id=? AND segmenter=? AND "
                                     "model_sha256=?", changes)
    return len(changes)


def shard_catalog_path(ws: Workspace, part: Shard) -> Path:
    return ws.shards / f"catalog-{part.index}of{part.count}.sqlite"


def run_refine(ws: Workspace, cfg: PipelineConfig, *, force: bool = False, shard: str | None = None,
               shard_catalog: bool = False, progress: bool = True,
               segmenter: Segmenter | None = None) -> RefineReport:
    """Propose a mask for every triplet of this shard that has none from this segmenter yet.

    On one node all ranks write the workspace catalog (WAL). With ``shard_catalog`` (several
    nodes, no shared SQLite) a rank works on its own copy under ``W/shards/``, which
    ``risbench catalog merge`` joins back.
    """
    part = Shard.parse(shard)
    with distributed(part):
        return _run_refine(ws, cfg, part, force, shard_catalog, progress, segmenter)


def _local_device(cfg: RefineConfig) -> str | None:
    """One GPU per rank on a node: LOCAL_RANK picks it unless the pipeline names a device."""
    if cfg.device is None and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{os.environ['LOCAL_RANK']}"
    return None


def _run_refine(ws: Workspace, cfg: PipelineConfig, part: Shard, force: bool, shard_catalog: bool,
                progress: bool, segmenter: Segmenter | None) -> RefineReport:
    rcfg = cfg.refine
    seg = segmenter or make_segmenter(rcfg, ws, _local_device(rcfg))
    started = time.perf_counter()
    catalog_path = ws.catalog_path
    if shard_catalog:
        catalog_path = shard_catalog_path(ws, part)
        if not catalog_path.exists():
            with Catalog(ws.catalog_path, create=False) as main:
                main.copy_to(catalog_path)
    with Catalog(catalog_path, create=False) as catalog:
        if force:
            with catalog.transaction():
                catalog.conn.execute("DELETE FROM proposals WHERE segmenter=? AND model_sha256=?",
                                     (seg.name, seg.model_sha256))
                catalog.conn.execute("DELETE FROM rejects WHERE stage=?", (STAGE,))
        run_id = catalog.start_run(STAGE, cfg.sha256())
        report = RefineReport(run_id, seg.name, seg.model_sha256, f"{part.index}/{part.count}",
                              adapter_sha256=str(getattr(seg, "adapter_sha256", "") or ""))
        report.rerouted = reroute(catalog, seg.name, seg.model_sha256, rcfg)
        todo = [r for r in catalog.conn.execute(
            "SELECT DISTINCT i.image_id, i.path, i.sha256, i.width, i.height FROM images i "
            "JOIN triplets t ON t.image_id = i.image_id WHERE NOT EXISTS (SELECT 1 FROM proposals p "
            "WHERE p.triplet_id = t.triplet_id AND p.segmenter=? AND p.model_sha256=?) "
            "AND NOT EXISTS (SELECT 1 FROM rejects r WHERE r.stage=? AND r.ref = t.triplet_id) "
            "ORDER BY i.image_id", (seg.name, seg.model_sha256, STAGE)).fetchall() if part.owns(r[0])]
        columns = (TextColumn(f"[bold]{STAGE}[/] {seg.name}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("images"), TimeRemainingColumn())
        rows: list[tuple] = []
        rejects: list[tuple[str, str, str]] = []
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("", total=len(todo))
            for n, (image_id, path, sha, width, height) in enumerate(todo, 1):
                r, j = _refine_image(catalog, seg, rcfg, image_id, path, sha, width, height, run_id, report)
                rows += r
                rejects += j
                report.image_ids.append(image_id)
                if n % rcfg.batch_images == 0 or n == len(todo):
                    with catalog.transaction():
                        catalog.add("proposals", rows)
                        catalog.add_rejects(STAGE, rejects, run_id)
                    rows, rejects = [], []
                bar.update(task, completed=n)
        report.seconds = time.perf_counter() - started
        suffix = "" if part.count == 1 else f"-shard{part.index}of{part.count}"
        ws.reports.mkdir(parents=True, exist_ok=True)
        (ws.reports / f"refine{suffix}.json").write_text(
            json.dumps({**report.as_dict(), "image_ids": report.image_ids}, indent=2) + "\n")
        catalog.finish_run(run_id, report.as_dict())
    return report


def _refine_image(catalog: Catalog, seg: Segmenter, cfg: RefineConfig, image_id: str, path: str,
                  sha: str | None, width: int, height: int, run_id: str,
                  report: RefineReport) -> tuple[list[tuple], list[tuple[str, str, str]]]:
    triplets = catalog.conn.execute(
        "SELECT triplet_id, box_xyxy, polygon FROM triplets WHERE image_id=? AND NOT EXISTS (SELECT 1 FROM "
        "proposals p WHERE p.triplet_id = triplets.triplet_id AND p.segmenter=? AND p.model_sha256=?) "
        "ORDER BY triplet_id", (image_id, seg.name, seg.model_sha256)).fetchall()
    rejects: list[tuple[str, str, str]] = []
    try:
        image = load_rgb(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a reject, not a crash
        report.rejected[UNREADABLE_IMAGE] += len(triplets)
        return [], [(tid, UNREADABLE_IMAGE, f"{path}: {type(exc).__name__}: {exc}"[:300]) for tid, _, _ in triplets]
    h, w = image.shape[:2]
    prompts: list[_Prompt] = []
    for tid, box_json, poly_json in triplets:
        box = np.array(masks.clip_box(json.loads(box_json), w, h), float)
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            rejects.append((tid, DEGENERATE_BOX, f"box {json.loads(box_json)} is under 1 px wide or high in {w}x{h}"))
            report.rejected[DEGENERATE_BOX] += 1
            continue
        rng = np.random.default_rng(int(hashlib.sha256(f"{cfg.seed}:{tid}".encode()).hexdigest()[:12], 16))
        polygon = np.array(json.loads(poly_json), float) if poly_json else None
        prompts.append(_Prompt(tid, box, polygon, jitter_boxes(box, cfg.jitter_k, cfg.jitter_scale, rng, w, h)))
    if not prompts:
        return [], rejects
    key = sha or hashlib.sha256(Path(path).read_bytes()).hexdigest()
    outputs, crops = segment_image(seg, image, key, prompts, cfg)
    rows = []
    for p, out in zip(prompts, outputs):
        signals = compute_signals(out, p.box, p.polygon)
        decision = route(signals, cfg.route)
        rows.append((p.triplet_id, seg.name, seg.model_sha256, masks.dumps(masks.encode(out.mask)),
                     json.dumps(signals, sort_keys=True), decision, run_id))
        report.routes[decision] += 1
    report.images += 1
    report.proposals += len(rows)
    report.crops += crops
    return rows, rejects
