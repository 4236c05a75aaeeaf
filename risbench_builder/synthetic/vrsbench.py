"""The VRSBench writer (the demo source): 512x512 patches with VRSBench-like loose boxes,
per-image annotations, the eval file, and :func:`generate_sources` for the demo."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import masks
from ..config import BoxNoiseConfig, SyntheticConfig
from ..parallel import default_workers, make_pool, ordered_map
from ..workspace import Workspace
from .io_helpers import _class_counts, _seed_rng, _truth_row, _write_image, _write_json, _write_truth
from .language import _caption, _qa_pairs, refer_objects
from .scene import DIOR_CLASSES, DOTA_CLASSES, PATCH, SceneObject, _render_nonempty


GENERATOR_VERSION = 1
_VRS_REL_SIZE = {"largest": "largeest", "larger": "larger", "smaller": "smaller", "smallest": "smallest", "": ""}


# ------------------------------------------------------------------ loose boxes
def noisy_quad(quad: np.ndarray, noise: BoxNoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """A VRSBench-like loose version of an oriented quad, in pixels.

    In the quad's own frame: centre shift ~ N(0, shift * side) per axis, log scale ~ N(0, scale)
    for both sides, log aspect ~ N(0, aspect) split between them. The corner order is kept.
    """
    q = np.asarray(quad, np.float64).reshape(4, 2)
    centre = q.mean(axis=0)
    across, along = q[1] - q[0], q[2] - q[1]
    la, lb = float(np.linalg.norm(across)), float(np.linalg.norm(along))
    ea = across / la if la > 0 else np.array([0.0, 1.0])
    eb = along / lb if lb > 0 else np.array([-1.0, 0.0])
    scale = math.exp(rng.normal(0, noise.scale))
    aspect = math.exp(rng.normal(0, noise.aspect) / 2)
    shift = ea * rng.normal(0, noise.shift * la) + eb * rng.normal(0, noise.shift * lb)
    d = q - centre
    return (centre + shift + np.outer(d @ ea, ea) * (scale / aspect)
            + np.outer(d @ eb, eb) * (scale * aspect))


def _pixel_corners(quad: np.ndarray) -> np.ndarray:
    """Whole-pixel corners like the real labels; never collapses a box to zero width."""
    q = np.round(np.asarray(quad, np.float64))
    for axis in (0, 1):
        if q[:, axis].max() - q[:, axis].min() < 1:
            q[q[:, axis].argmax(), axis] += 1
    return q


# ------------------------------------------------------------------ the tree
@dataclass(frozen=True)
class _PatchPlan:
    name: str          # P0012_0004.png or 00345_0002.png
    split: str         # train | val
    dota: bool
    scene: int         # index of the source scene in the config
    window: int


def _vrsbench_plan(cfg: SyntheticConfig) -> list[_PatchPlan]:
    """Scene ids, styles (DOTA / DIOR names alternate), scene-level splits and window indices."""
    rng = _seed_rng(cfg.seed, 0)
    n = cfg.scenes
    n_val = int(round(cfg.val_fraction * n))
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    val = set(int(i) for i in rng.permutation(n)[:n_val])
    dota_ids = rng.choice(np.arange(1, 2806), size=(n + 1) // 2, replace=False)
    dior_ids = rng.choice(np.arange(1, 11726), size=n // 2, replace=False)
    k = cfg.patches_per_scene
    plans = []
    for s in range(n):
        dota = s % 2 == 0
        windows = sorted(rng.choice(3 * k + 3 if dota else max(4, k), size=k, replace=False))
        stem = f"P{dota_ids[s // 2]:04d}" if dota else f"{dior_ids[s // 2]:05d}"
        for w in windows:
            plans.append(_PatchPlan(f"{stem}_{int(w):04d}.png", "val" if s in val else "train", dota, s, int(w)))
    return sorted(plans, key=lambda p: p.name)


def _vrsbench_object(obj_id: int, o: SceneObject, sentence: str, corners: np.ndarray, dota: bool) -> dict:
    if not dota:                                   # DIOR on VRSBench main: HBB corners
        x0, y0, x1, y1 = masks.polygon_box(corners)
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    x0, y0, x1, y1 = masks.polygon_box(corners)
    return {
        "obj_id": obj_id, "referring_sentence": sentence, "obj_cls": o.category,
        "obj_corner": [float(v) / PATCH for v in corners.reshape(-1)],
        "obj_coord": [round(max(x0, 0.0) / PATCH, 2), round(max(y0, 0.0) / PATCH, 2),
                      round(x1 / PATCH, 2), round(y1 / PATCH, 2)],
        "is_unique": o.is_unique, "obj_position": o.position,
        "obj_rel_position": "" if o.is_unique else o.rel_position, "obj_size": o.size,
        "obj_rel_size": _VRS_REL_SIZE[o.rel_size], "flag": False,
    }


def ground_truth_tokens(obj_corner: Sequence[float]) -> str:
    """Eval ``ground_truth``: HBB of the normalised corners, clipped to [0, 1], ``int(v * 100)``."""
    xs, ys = obj_corner[0::2], obj_corner[1::2]
    box = [min(xs), min(ys), max(xs), max(ys)]
    return "{" + "".join(f"<{int(min(max(v, 0.0), 1.0) * 100)}>" for v in box) + "}"


def _vrsbench_patch(plan: _PatchPlan, cfg: SyntheticConfig) -> tuple[np.ndarray, dict, list[dict]]:
    """Render one patch: image, per-image annotation and truth rows of its referred objects."""
    rng = _seed_rng(cfg.seed, 1, plan.scene, plan.window)
    scene = _render_nonempty(rng, PATCH, DOTA_CLASSES if plan.dota else DIOR_CLASSES)
    refs = refer_objects(scene, rng)
    objects, truth = [], []
    for ref in refs:
        o = scene.objects[ref.index]
        corners = _pixel_corners(noisy_quad(o.quad, cfg.box_noise, rng))
        objects.append(_vrsbench_object(ref.index, o, ref.sentence, corners, plan.dota))
        truth.append(_truth_row(plan.name, ref.index, o, split=plan.split))
    doc = {"image": plan.name, "caption": _caption(scene, rng, plan.dota), "objects": objects,
           "qa_pairs": _qa_pairs(scene, refs, rng, DOTA_CLASSES if plan.dota else DIOR_CLASSES)}
    return scene.image, doc, truth


def _vrsbench_image_path(root: Path, split: str, name: str) -> Path:
    """The val zip of the real release nests one level deeper: Images_val/Images_val/*.png."""
    return root / "Images_train" / name if split == "train" else root / "Images_val" / "Images_val" / name


def _eval_records(docs: list[dict]) -> list[dict]:
    records = []
    for doc in docs:
        for obj in doc["objects"]:
            records.append({
                "image_id": doc["image"], "question": obj["referring_sentence"],
                "ground_truth": ground_truth_tokens(obj["obj_corner"]), "dataset": "RSBench",
                "question_id": len(records), "type": "ref", "unique": obj["is_unique"],
                "obj_corner": obj["obj_corner"], "obj_cls": obj["obj_cls"], "obj_ids": [0],
                "size_group": obj["obj_size"]})
    return records


# Below this many patches the writer stays in-process: forking a pool costs more than it saves.
_POOL_MIN_PATCHES = 32


def _write_patch(job: tuple[_PatchPlan, SyntheticConfig, Path]) -> tuple[str, dict, list[dict]]:
    """Render one patch and write its image and annotation file (in a worker process or not)."""
    plan, cfg, root = job
    image, doc, rows = _vrsbench_patch(plan, cfg)
    _write_image(_vrsbench_image_path(root, plan.split, plan.name), image)
    _write_json(root / f"Annotations_{plan.split}" / (Path(plan.name).stem + ".json"), doc)
    return plan.split, doc, rows


def write_vrsbench(root: Path, cfg: SyntheticConfig, truth_dir: Path | None = None,
                   workers: int | None = None) -> dict:
    """A VRSBench release tree (HF ``xiang709/VRSBench``) of ``cfg.scenes`` x ``cfg.patches_per_scene``
    512x512 patches, with the truth in ``truth_dir`` (default: sibling ``<root>_truth``).

    Each patch has its own seeded generator, so the patches are rendered in ``workers`` processes
    (default: the machine's cores, in-process below 32 patches) and the files are byte-identical
    whatever the number of workers."""
    root = Path(root)
    truth_dir = Path(truth_dir) if truth_dir is not None else root.parent / (root.name + "_truth")
    docs: dict[str, list[dict]] = {"train": [], "val": []}
    truth: list[dict] = []
    plans = _vrsbench_plan(cfg)
    if workers is None:
        workers = default_workers() if len(plans) >= _POOL_MIN_PATCHES else 0
    pool = make_pool(min(workers, len(plans)) if workers > 1 else 0)
    try:
        jobs = ((plan, cfg, root) for plan in plans)
        for split, doc, rows in ordered_map(_write_patch, jobs, pool, ahead=4 * max(1, workers)):
            docs[split].append(doc)
            truth.extend(rows)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    records = _eval_records(docs["val"])
    _write_json(root / "VRSBench_EVAL_referring.json", records, indent=None)
    _write_truth(truth_dir, truth)
    return {
        "kind": "vrsbench", "root": str(root), "truth_dir": str(truth_dir),
        "images": {s: len(d) for s, d in docs.items()},
        "objects": {s: sum(len(doc["objects"]) for doc in d) for s, d in docs.items()},
        "eval_records": len(records),
        "classes": _class_counts(r["category"] for r in truth),
    }


def config_hash(cfg: SyntheticConfig) -> str:
    """What decides the generated bytes: the config (less its output folder) and this version."""
    data = {"generator_version": GENERATOR_VERSION, **cfg.model_dump(mode="json", exclude={"out"})}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


TRUTH = "vrsbench_truth"      # below ``synthetic.out``: masks.jsonl, the true mask of every object


def default_truth(ws: Workspace) -> Path | None:
    """The synthetic sources' truth folder, when the workspace generates synthetic sources and
    they have been written (by ingest); None otherwise."""
    cfg = ws.load()
    if cfg.synthetic is None:
        return None
    path = ws.resolve(cfg.synthetic.out) / TRUTH
    return path if path.exists() else None


def generate_sources(out: Path, cfg: SyntheticConfig) -> dict:
    """The demo's sources: ``out/vrsbench`` + ``out/vrsbench_truth`` and ``out/manifest.json``.

    Skipped when the manifest already holds this config's hash, so reruns are instant and the
    files stay byte-identical; any other state is regenerated from scratch.
    """
    out = Path(out)
    manifest_path = out / "manifest.json"
    digest = config_hash(cfg)
    if manifest_path.is_file() and (out / TRUTH / "masks.jsonl").is_file():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        if old.get("config_hash") == digest:
            return old
    manifest_path.unlink(missing_ok=True)
    for sub in ("vrsbench", TRUTH):
        shutil.rmtree(out / sub, ignore_errors=True)
    info = write_vrsbench(out / "vrsbench", cfg, out / TRUTH)
    manifest = {
        "generator": "risbench_builder.synthetic", "generator_version": GENERATOR_VERSION,
        "config_hash": digest, "config": cfg.model_dump(mode="json", exclude={"out"}),
        "vrsbench": {**info, "root": "vrsbench", "truth_dir": TRUTH},
    }
    tmp = manifest_path.with_suffix(".json.tmp")
    _write_json(tmp, manifest)
    os.replace(tmp, manifest_path)
    return manifest
