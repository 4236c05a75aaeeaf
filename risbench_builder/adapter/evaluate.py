"""Held-out evaluation: SAM alone against SAM with the adapter, same boxes, side by side.

Each held-out trusted mask is prompted with its workspace prompt box and with ``draws`` noisy
boxes (the trusted box plus the training noise, seeded per triplet so every run and both
models see the same boxes). Masks come from :meth:`SamSegmenter.segment`, the exact path
sam-refine uses, and are scored at full resolution: mean IoU and mean boundary IoU.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .. import masks
from ..segment.sam import SamSegmenter
from ..workspace import Workspace
from .data import TrustedMask, recipe_samples, sam_for
from .noise import BoxNoise


def eval_boxes(sample: TrustedMask, noise: BoxNoise, draws: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """("prompt", the workspace box) and ``draws`` x ("noisy", trusted box + noise), seeded per triplet."""
    rng = np.random.default_rng(int(hashlib.sha256(f"{seed}\0{sample.triplet_id}".encode()).hexdigest()[:12], 16))
    out = [("prompt", np.asarray(sample.prompt_box, float))]
    out += [("noisy", noise.apply(sample.truth_box, rng, sample.width, sample.height)) for _ in range(draws)]
    return out


def score_segmenter(seg: SamSegmenter, samples: Sequence[TrustedMask], noise: BoxNoise, draws: int, seed: int,
                    progress: bool = False, label: str = "") -> dict[str, dict[str, float]]:
    """{"prompt"|"noisy"|"all": {"n", "miou", "biou"}} of ``seg`` on ``samples``."""
    by_image: dict[str, list[TrustedMask]] = defaultdict(list)
    for s in samples:
        by_image[s.image_key].append(s)
    ious: dict[str, list[tuple[float, float]]] = defaultdict(list)
    columns = (TextColumn(f"[bold]adapter eval[/] {label}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"))
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("", total=len(by_image))
        for image_id in sorted(by_image):
            group = by_image[image_id]
            view = group[0].view()
            kinds, boxes, truths = [], [], []
            for s in group:
                truth = masks.decode(s.truth)
                for kind, box in eval_boxes(s, noise, draws, seed):
                    kinds.append(kind)
                    boxes.append(box)
                    truths.append(truth)
            outs = seg.segment(view, np.stack(boxes), np.zeros((len(boxes), 0, 4)))
            for kind, out, truth in zip(kinds, outs, truths):
                ious[kind].append((masks.mask_iou(out.mask, truth), masks.boundary_iou(out.mask, truth)))
            bar.advance(task)
    ious["all"] = [v for k in ("prompt", "noisy") for v in ious.get(k, [])]
    return {k: {"n": len(v), "miou": float(np.mean([a for a, _ in v])) if v else float("nan"),
                "biou": float(np.mean([b for _, b in v])) if v else float("nan")} for k, v in ious.items()}


def compare(seg: SamSegmenter, adapter: Any, samples: Sequence[TrustedMask], noise: BoxNoise, draws: int, seed: int,
            progress: bool = False) -> dict[str, Any]:
    """Scores of ``seg`` without, then with ``adapter``; ``seg`` keeps the adapter afterwards."""
    seg.set_adapter(None)
    plain = score_segmenter(seg, samples, noise, draws, seed, progress, "SAM")
    seg.set_adapter(adapter)
    adapted = score_segmenter(seg, samples, noise, draws, seed, progress, "SAM+adapter")
    gain = {k: {m: adapted[k][m] - plain[k][m] for m in ("miou", "biou")} for k in plain}
    return {"heldout_masks": len(samples), "images": len({s.image_id for s in samples}), "draws": draws,
            "sam": plain, "sam+adapter": adapted, "gain": gain}


def evaluate_adapter(ws: Workspace, adapter_path: str | Path, *, truth: Path | None = None,
                     checkpoint: str | Path | None = None, device: str | None = None, draws: int | None = None,
                     progress: bool = False) -> dict[str, Any]:
    """``risbench adapter eval``: the adapter's own held-out scenes (its recipe's split) scored both ways."""
    from .io import load_adapter, read_adapter
    from .recipe import parse_recipe

    _, meta, path = read_adapter(adapter_path)
    recipe = parse_recipe(json.loads(meta["recipe"]), path)
    _, held, noise = recipe_samples(ws, recipe, truth)
    if not held:
        raise ValueError(f"adapter eval: {ws.path} has a single scene with trusted masks; nothing is held out")
    seg = sam_for(ws, recipe.sam.model, checkpoint, recipe.sam.checkpoint, device)
    loaded = load_adapter(path, seg)
    result = compare(seg, loaded, held, noise, recipe.data.eval_draws if draws is None else draws,
                     recipe.seed, progress)
    return {"adapter": str(path), "adapter_sha256": loaded.sha256, "segmenter": seg.name, **result}


def format_table(result: dict[str, Any], log: Callable[[str], None] = print) -> None:
    """The side-by-side table: rows = box kind, columns = mIoU / boundary IoU without and with."""
    log(f"held-out: {result['heldout_masks']} masks on {result['images']} images; prompt box + "
        f"{result['draws']} noisy box(es) each")
    log(f"{'boxes':<8}{'n':>6}{'mIoU SAM':>11}{'mIoU +adapter':>15}{'gain':>8}{'BIoU SAM':>11}"
        f"{'BIoU +adapter':>15}{'gain':>8}")
    for kind in ("prompt", "noisy", "all"):
        if kind not in result["sam"]:
            continue
        a, b, g = result["sam"][kind], result["sam+adapter"][kind], result["gain"][kind]
        log(f"{kind:<8}{a['n']:>6}{a['miou']:>11.3f}{b['miou']:>15.3f}{g['miou']:>+8.3f}{a['biou']:>11.3f}"
            f"{b['biou']:>15.3f}{g['biou']:>+8.3f}")
