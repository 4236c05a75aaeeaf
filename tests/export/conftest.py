"""A small finished workspace for the export tests, built once per session.

Ingest + sam-refine with the ``box`` segmenter, then ``final`` rows written directly (the
finalize stage is tested on its own): every triplet with an expression is split by a hash of
its image's scene_id, except one left pending, one rejected by finalize, and two whose mask
comes from a review consensus (an eroded copy of the proposal, with two reviews each). One
image is rewritten as a grey PNG and one as JPEG bytes, so the exports' conversion paths run.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.stages.export import run_export
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine
from risbench_builder.workspace import Workspace, init_workspace

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Built:
    ws: Workspace
    pending: str            # triplet left out of final (waiting for review)
    rejected: str           # triplet rejected by finalize
    consensus: tuple[str, ...]
    grey_image: str
    jpeg_image: str


def pipeline(scenes: int = 6, **export) -> dict:
    spec = {"synthetic": {"out": "sources", "seed": 11, "scenes": scenes, "patches_per_scene": 2},
            "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
            "refine": {"segmenter": "box", "jitter_k": 0}}
    if export:
        spec["export"] = export
    return spec


def split_of(scene: str, scenes: list[str]) -> str:
    """Scenes ranked by a hash of their id, dealt round-robin, so every split gets scenes."""
    ranked = sorted(scenes, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    return SPLITS[ranked.index(scene) % len(SPLITS)]


def write_final(ws: Workspace) -> Built:
    with Catalog(ws.catalog_path) as cat, cat.transaction():
        cat.conn.execute("UPDATE proposals SET route='accept'")
        cat.conn.execute("DELETE FROM final")
        rows = cat.conn.execute(
            "SELECT t.triplet_id, i.scene_id, p.rle FROM triplets t JOIN images i USING (image_id) "
            "JOIN proposals p USING (triplet_id) WHERE t.expression IS NOT NULL ORDER BY t.triplet_id").fetchall()
        scenes = sorted({scene for _, scene, _ in rows})
        pending, rejected = rows[0][0], rows[1][0]
        consensus = (rows[2][0], rows[3][0])
        cat.add_rejects("finalize", [(rejected, "too_few_words", "planted by the test")], None)
        for tid, scene, rle in rows[2:]:
            origin = "consensus" if tid in consensus else "auto"
            cat.conn.execute("INSERT INTO final VALUES (?, ?, ?)", (tid, split_of(scene, scenes), origin))
            if origin == "consensus":
                eroded = cv2.erode(masks.decode(masks.loads(rle)), np.ones((3, 3), np.uint8))
                assert eroded.any()
                cat.conn.execute("INSERT INTO consensus VALUES (?, ?, ?, ?, ?)",
                                 (tid, masks.dumps(masks.encode(eroded)), 0.91 if tid == consensus[0] else 0.83,
                                  "accept", None))
                for annotator in ("ann1", "ann2"):
                    cat.conn.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (tid, f"task-{tid}", annotator, rle, "fixed", None, None))
        images = [r[0] for r in cat.conn.execute("SELECT DISTINCT t.image_id FROM final f JOIN triplets t "
                                                 "USING (triplet_id) ORDER BY 1")]
        paths = dict(cat.conn.execute("SELECT image_id, path FROM images"))
    grey, jpeg = images[0], images[1]
    with Image.open(paths[grey]) as im:
        im.convert("L").save(paths[grey], format="PNG")
    with Image.open(paths[jpeg]) as im:
        im.convert("RGB").save(paths[jpeg], format="JPEG", quality=95)   # JPEG bytes under a .png name
    return Built(ws, pending, rejected, consensus, grey, jpeg)


def build(root: Path, name: str = "ws", **export) -> Built:
    root.mkdir(parents=True, exist_ok=True)
    spec = root / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(pipeline(**export)))
    ws = init_workspace(root / name, spec)
    run_ingest(ws, ws.load(), progress=False)
    run_refine(ws, ws.load(), progress=False)
    return write_final(ws)


def truth(ws: Workspace) -> dict[str, np.ndarray]:
    """triplet_id -> the mask the export must carry (consensus mask where there is one)."""
    from risbench_builder.finalize.records import final_records

    with Catalog(ws.catalog_path) as cat:
        return {r.triplet_id: masks.decode(r.rle) for r in final_records(cat)}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    b = build(tmp_path_factory.mktemp("export"))
    report = run_export(b.ws, b.ws.load(), progress=False)
    assert not report.up_to_date
    return b


@pytest.fixture
def exports_copy(built: Built, tmp_path: Path) -> Path:
    """A private copy of the session's exports (hard links become separate files)."""
    dest = tmp_path / "exports"
    shutil.copytree(built.ws.exports, dest)
    return dest
