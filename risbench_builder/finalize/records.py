"""The finished dataset as one stream of records: what stats, exports and checks read.

A triplet is in the dataset when it has a ``final`` row; its mask comes from the consensus
(reviewed) or from the accepted proposal of the current segmenter run. Everything downstream
iterates :func:`final_records` in ``triplet_id`` order, so two exports of one catalog are
identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from ..catalog import Catalog
from ..readmodel import current_proposal_set


@dataclass(frozen=True)
class FinalRecord:
    triplet_id: str
    split: str
    mask_origin: str              # auto | consensus | adjudicated
    rle: dict                     # COCO RLE {"size": [H, W], "counts": str}
    image_id: str
    image_path: str
    scene_id: str
    width: int
    height: int
    gsd: float | None
    source: str
    source_ref: str
    category: str
    expression: str
    box_xyxy: tuple[float, float, float, float]
    attributes: dict[str, Any]
    origin_split: str | None


_SQL = """
SELECT f.triplet_id, f.split, f.mask_origin,
       CASE WHEN f.mask_origin = 'auto' THEN p.rle ELSE c.rle END,
       t.image_id, i.path, i.scene_id, i.width, i.height, i.gsd, t.source, t.source_ref, t.category,
       t.expression, t.box_xyxy, t.attributes_json, t.origin_split
FROM final f
JOIN triplets t USING (triplet_id)
JOIN images i ON i.image_id = t.image_id
LEFT JOIN consensus c ON c.triplet_id = f.triplet_id
LEFT JOIN proposals p ON p.triplet_id = f.triplet_id AND p.segmenter = ? AND p.model_sha256 = ?
{where}
ORDER BY f.triplet_id
"""


def final_records(catalog: Catalog, split: str | None = None) -> Iterator[FinalRecord]:
    """Every finished triplet (optionally of one split), streamed in triplet_id order."""
    seg = current_proposal_set(catalog) or ("", "")
    where, params = ("WHERE f.split = ?", (*seg, split)) if split else ("", seg)
    for row in catalog.conn.execute(_SQL.format(where=where), params):
        (tid, sp, origin, rle, image_id, path, scene, w, h, gsd, source, ref, category, expression, box,
         attrs, origin_split) = row
        if rle is None:
            raise ValueError(f"final triplet {tid} ({origin}) has no mask: "
                             "rerun `risbench build -w W --stage finalize`")
        yield FinalRecord(tid, sp, origin, json.loads(rle), image_id, path, scene, w, h, gsd, source, ref,
                          category, expression, tuple(json.loads(box)), json.loads(attrs), origin_split)


def split_names(catalog: Catalog) -> list[str]:
    order = {"train": 0, "val": 1, "test": 2}
    names = [r[0] for r in catalog.conn.execute("SELECT DISTINCT split FROM final")]
    return sorted(names, key=lambda s: (order.get(s, 9), s))
