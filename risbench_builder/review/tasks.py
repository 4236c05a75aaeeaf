"""What goes to Label Studio: the review queue, one task per triplet, and the import file.

The queue is every ``route = review`` proposal of the current segmenter run whose triplet has
no review decision yet, most uncertain first (lowest mean of the confidence signals). Each
task carries its triplet id, the image as a local-files URL, the expression and category as
text, and the proposed mask as a brush prediction whose ``model_version`` names the
segmenter (and adapter).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import quote

from .. import masks
from ..catalog import Catalog
from ..config import PipelineConfig, ReviewConfig, shipped_file
from ..readmodel import QueueItem
from .sample import review_items
from ..workspace import Workspace
from .client import ReviewError

LABEL_CONFIG = "labeling_config.xml"
GUIDELINES = "GUIDELINES.md"
FROM_MASK, FROM_VERDICT, FROM_FIX, TO_IMAGE, LABEL = "mask", "verdict", "expression_fix", "image", "target"


def resource_text(name: str) -> str:
    """``review/labeling_config.xml`` or ``review/GUIDELINES.md``, from the wheel or a clone."""
    path = shipped_file("review", name)
    if path is None:
        raise ReviewError(f"the shipped review file {name} is missing from this installation")
    return path.read_text(encoding="utf-8")


def model_version(segmenter: str, model_sha256: str, adapter: Optional[str] = None) -> str:
    """``grabcut``, ``sam:vit_b@1a2b3c4d5e6f``, ``sam:vit_b@1a2b3c4d5e6f+adapter:rsis-v1``."""
    version = f"{segmenter}@{model_sha256[:12]}" if model_sha256 else segmenter
    return f"{version}+adapter:{Path(adapter).stem}" if adapter else version


def project_title(cfg: PipelineConfig) -> str:
    return (cfg.review.project_title or f"{cfg.name} review")[:50]


def adjudication_title(cfg: PipelineConfig) -> str:
    return f"{project_title(cfg)[:37]} adjudication"


@dataclass(frozen=True)
class Roots:
    """The folder Label Studio may serve (a local-files storage) and the server's document root."""

    image_root: Path
    document_root: Path

    def url(self, image_path: str) -> str:
        rel = Path(image_path).resolve().relative_to(self.document_root)
        return "/data/local-files/?d=" + quote(rel.as_posix(), safe="/")


def catalog_image_paths(catalog: Catalog) -> list[str]:
    return [p for (p,) in catalog.conn.execute("SELECT path FROM images ORDER BY image_id")]


def resolve_roots(ws: Workspace, rcfg: ReviewConfig, image_paths: Iterable[str]) -> Roots:
    """``review.image_root`` (default: the deepest folder holding every image of the catalog,
    so it does not move between pushes) and ``review.document_root`` (default: its parent);
    the image root must lie strictly inside the document root, as Label Studio requires."""
    paths = [Path(p).resolve() for p in image_paths]
    if rcfg.image_root:
        image_root = ws.resolve(rcfg.image_root)
    elif paths:
        image_root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    else:
        image_root = ws.path
    document_root = ws.resolve(rcfg.document_root) if rcfg.document_root else image_root.parent
    if document_root not in image_root.parents:
        raise ReviewError(f"review.image_root {image_root} must be a subfolder of review.document_root "
                          f"{document_root} (the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
    outside = [p for p in paths if image_root not in p.parents]
    if outside:
        raise ReviewError(f"{len(outside)} images to review lie outside review.image_root {image_root}, "
                          f"e.g. {outside[0]}: widen review.image_root")
    return Roots(image_root, document_root)


def brush_result(rle: dict, width: int, height: int, region_id: str) -> dict:
    """A BrushLabels result holding a COCO RLE mask in Label Studio's brush encoding."""
    return {"id": region_id, "from_name": FROM_MASK, "to_name": TO_IMAGE, "type": "brushlabels",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": masks.coco_to_brush(rle), "brushlabels": [LABEL]}}


def task_payload(item: QueueItem, roots: Roots, version: str) -> dict[str, Any]:
    conf = item.confidence
    return {
        "data": {"image": roots.url(item.image_path), "expression": item.expression, "category": item.category,
                 "triplet_id": item.triplet_id,
                 "note": f"proposed by {version}, confidence {conf:.2f}",
                 "proposal": {"segmenter": item.segmenter, "model_sha256": item.model_sha256}},
        "predictions": [{"model_version": version, "score": round(conf, 4),
                         "result": [brush_result(item.rle, item.width, item.height, item.triplet_id[:10])]}]
        + [{"model_version": model_version(seg, sha), "score": 0.0,          # e.g. audit's fresh mask
            "result": [brush_result(rle, item.width, item.height, f"{item.triplet_id[:8]}-{i}")]}
           for i, (seg, sha, rle) in enumerate(item.alternatives, 1)],
    }


@dataclass(frozen=True)
class ImportFile:
    path: Path
    tasks: int
    document_root: Path           # what the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT must be


def export_import_file(ws: Workspace, cfg: PipelineConfig | None = None) -> ImportFile:
    """Write ``W/review/import-tasks.json``: the tasks ``risbench review push`` would send for
    the whole queue (no server needed; Label Studio's Import dialog reads this file too)."""
    cfg = cfg or ws.load()
    with Catalog(ws.catalog_path, create=False) as catalog:
        items = review_items(catalog, cfg.review)
        roots = resolve_roots(ws, cfg.review, catalog_image_paths(catalog))
    tasks = [task_payload(q, roots, model_version(q.segmenter, q.model_sha256, cfg.refine.adapter)) for q in items]
    out = ws.review / "import-tasks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(tasks, separators=(",", ":")) + "\n")
    tmp.replace(out)
    return ImportFile(out, len(tasks), roots.document_root)
