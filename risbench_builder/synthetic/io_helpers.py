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


def load_truth(path: Path) -> dict[tuple[str, int], dict]:
    """Rows of a truth ``masks.jsonl`` (or a folder holding one) keyed by (image file name, obj_id);
    decode ``rle`` with masks.decode. The format the writers here make, and any file in it.

    The file is the user's: a path that is not there, or a line that is not a row with an
    ``image`` name, an integer ``obj_id`` and a decodable COCO ``rle``, stops the command with
    ``file:line`` and what is wrong. Skipping it would quietly calibrate on part of the truth.
    """
    path = path / "masks.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such truth file (a masks.jsonl with one JSON row per mask, "
                                f"or a folder holding one)")
    out: dict[tuple[str, int], dict] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = _parsed_truth_row(line)
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"{path}:{number}: {str(exc).splitlines()[0][:200]}: fix or remove the line") from None
            out[(Path(row["image"]).name, row["obj_id"])] = row
    return out


def _parsed_truth_row(line: str) -> dict:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    missing = [k for k in ("image", "obj_id", "rle") if k not in row]
    if missing:
        raise ValueError(f"the row lacks {', '.join(missing)}")
    if not isinstance(row["image"], str) or not row["image"]:
        raise ValueError("image must be a file name")
    if not isinstance(row["obj_id"], int) or isinstance(row["obj_id"], bool):
        raise ValueError(f"obj_id must be an integer, got {json.dumps(row['obj_id'])[:40]}")
    masks.area(row["rle"])            # MaskError (a ValueError) when it does not decode
    return row


def _class_counts(categories: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in categories:
        counts[c] = counts.get(c, 0) + 1
    return dict(sorted(counts.items()))
