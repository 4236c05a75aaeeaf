"""What every writer shares: seeded generators, image and JSON files, the truth rows and
``masks.jsonl``, class counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from .. import masks
from .scene import SceneObject


def _seed_rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def _write_image(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if path.suffix.lower() == ".png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _write_json(path: Path, data: object, indent: int | None = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _truth_row(image: str, obj_id: int, o: SceneObject, **extra: object) -> dict:
    rle = masks.encode(o.mask)
    return {"image": image, "obj_id": obj_id, "category": o.category, **extra, "rle": rle,
            "quad": [[float(x), float(y)] for x, y in o.quad], "box_xyxy": list(masks.bbox_xyxy(rle)),
            "visible_fraction": round(o.visible_fraction, 4), "truncated": o.truncated}


def _write_truth(truth_dir: Path, rows: list[dict]) -> Path:
    truth_dir.mkdir(parents=True, exist_ok=True)
    path = truth_dir / "masks.jsonl"
    rows = sorted(rows, key=lambda r: (r["image"], r["obj_id"]))
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows), encoding="utf-8")
    return path


def load_truth(truth_dir: Path) -> dict[tuple[str, int], dict]:
    """``masks.jsonl`` keyed by (image file name, obj_id); decode ``rle`` with masks.decode."""
    out: dict[tuple[str, int], dict] = {}
    with open(Path(truth_dir) / "masks.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out[(row["image"], int(row["obj_id"]))] = row
    return out


def _class_counts(categories: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in categories:
        counts[c] = counts.get(c, 0) + 1
    return dict(sorted(counts.items()))
