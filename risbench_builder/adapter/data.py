"""Training data for the adapter: trusted masks from the catalog, split by scene, cached features.

Trusted masks are the ones a person vouched for or that are known to be right: ``final`` rows
whose mask came from review consensus or adjudication, and masks imported as ground truth
(the synthetic sources' ``masks.jsonl``, or any file in that format). Each becomes a
:class:`TrustedMask` with the workspace's own prompt box, so the noise profile can be measured.

Images are encoded once through sam-refine's :class:`~risbench_builder.segment.sam.SamSegmenter`
and :class:`~risbench_builder.segment.cache.EmbeddingCache` (same keys, so a workspace that ran
sam-refine already has the embeddings); the adapter's guiding image is stored in the same
entry. Epochs then read the cache and run only the decoder side.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import masks
from ..catalog import Catalog
from ..segment.base import View
from ..segment.calibrate import trusted_masks
from ..segment.sam import SamSegmenter, _fits
from ..segment.views import context_window, load_rgb
from ..synthetic import default_truth
from ..workspace import Workspace
from .model import GuideFeatures
from .noise import BoxNoise

if TYPE_CHECKING:
    from .recipe import AdapterRecipe


@dataclass(frozen=True)
class TrustedMask:
    """One trusted mask with its prompt box and image."""

    triplet_id: str
    image_id: str
    image_path: str
    image_key: str            # the embedding-cache key: the image's sha256, as in sam-refine
    scene_id: str
    width: int
    height: int
    prompt_box: tuple[float, float, float, float]
    truth: dict               # COCO RLE
    window: tuple[int, int, int, int] | None = None  # crop of the image this sample is cut to

    @property
    def truth_box(self) -> tuple[float, float, float, float]:
        return masks.bbox_xyxy(self.truth)

    def view(self) -> View:
        """The image (or its crop) under the embedding-cache key sam-refine would use."""
        image = load_rgb(self.image_path)
        if self.window is None:
            return View(image, self.image_key)
        x0, y0, x1, y1 = self.window
        return View(np.ascontiguousarray(image[y0:y1, x0:x1]), self.image_key)


def crop_samples(samples: Sequence[TrustedMask], side: int) -> list[TrustedMask]:
    """Each sample cut to a context window around its prompt box (sam-refine's crop for tiny
    boxes): at least ``side`` px, at least twice the box. Small test models see objects larger."""
    out = []
    for s in samples:
        box = np.asarray(s.prompt_box, float)
        need = max(side, int(2 * max(box[2] - box[0], box[3] - box[1])))
        x0, y0, x1, y1 = window = context_window(box, need, s.width, s.height)
        truth = masks.encode(masks.decode(s.truth)[y0:y1, x0:x1])
        if masks.area(truth) == 0:
            continue
        out.append(TrustedMask(s.triplet_id, s.image_id, s.image_path, f"{s.image_key}@{x0},{y0},{x1},{y1}", s.scene_id,
                          x1 - x0, y1 - y0, masks.clip_box(box - [x0, y0, x0, y0], x1 - x0, y1 - y0), truth, window))
    return out


def trusted_samples(ws: Workspace, truth: Path | None = None) -> list[TrustedMask]:
    """Every triplet with a trusted, non-empty mask, in triplet_id order."""
    truth = truth if truth is not None else default_truth(ws)
    with Catalog(ws.catalog_path, create=False) as catalog:
        trusted = trusted_masks(catalog, truth, final_only=True)
        rows = catalog.conn.execute(
            "SELECT t.triplet_id, t.image_id, i.path, i.sha256, i.scene_id, i.width, i.height, t.box_xyxy "
            "FROM triplets t JOIN images i USING (image_id) ORDER BY t.triplet_id").fetchall()
    out = []
    for tid, image_id, path, sha, scene, w, h, box in rows:
        rle = trusted.get(tid)
        if rle is None or list(rle["size"]) != [h, w] or masks.area(rle) == 0:
            continue
        key = sha or hashlib.sha256(Path(path).read_bytes()).hexdigest()
        out.append(TrustedMask(tid, image_id, path, key, scene, int(w), int(h),
                          masks.clip_box(json.loads(box), w, h), rle))
    if not out:
        raise ValueError(f"adapter: no trusted masks in {ws.path} (no final consensus/adjudicated rows and no "
                         "truth file): review some masks, run finalize, or pass --truth masks.jsonl")
    return out


def split_by_scene(samples: Sequence[TrustedMask], heldout_fraction: float, seed: int) -> tuple[list[TrustedMask], list[TrustedMask]]:
    """(train, held-out): whole scenes go to one side; the held-out scenes are the first
    ``ceil(fraction x scenes)`` in a seeded hash order (at least one, never all)."""
    scenes = sorted({s.scene_id for s in samples},
                    key=lambda sc: hashlib.sha256(f"{seed}\0{sc}".encode()).hexdigest())
    n = int(np.ceil(heldout_fraction * len(scenes)))
    n = min(max(n, 1), len(scenes) - 1) if len(scenes) > 1 else 0
    held = set(scenes[:n])
    return [s for s in samples if s.scene_id not in held], [s for s in samples if s.scene_id in held]


def lowres_target(rle: dict, input_size: tuple[int, int], img_size: int, out_size: int) -> np.ndarray:
    """The trusted mask in the decoder's low-res frame: resized like SAM's input, padded, area-pooled."""
    m = masks.decode(rle).astype(np.float32)
    m = cv2.resize(m, (input_size[1], input_size[0]), interpolation=cv2.INTER_AREA)
    padded = np.zeros((img_size, img_size), np.float32)
    padded[: input_size[0], : input_size[1]] = m
    return (cv2.resize(padded, (out_size, out_size), interpolation=cv2.INTER_AREA) >= 0.5).astype(np.float32)


class FeatureStore:
    """Per-image embedding + guiding image from the embedding cache, a bounded set kept in memory.

    With a segmenter without cache and ``memory_images=0`` every :meth:`get` runs the encoder
    again: the baseline ``benchmarks/bench_adapter.py`` compares against.
    """

    def __init__(self, seg: SamSegmenter, features: GuideFeatures, memory_images: int = 512) -> None:
        self.seg = seg
        self.features = features
        self.memory_images = memory_images
        self._lru: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, tuple[int, int]]] = OrderedDict()

    def _cached(self, sample: TrustedMask) -> dict[str, torch.Tensor] | None:
        if self.seg.cache is None:
            return None
        hit = self.seg.cache.get(sample.image_key, self.seg.model_sha256,
                                 check=lambda t: _fits(t, (sample.height, sample.width), self.seg.model))
        return hit if hit is not None and all(n in hit for n in self.features.names) else None

    def prepare(self, samples: Sequence[TrustedMask], rank: int = 0, world: int = 1, progress: bool = True) -> int:
        """Encode every image of ``samples`` this rank owns that is not cached yet; returns how many."""
        images = sorted({s.image_key: s for s in samples}.values(), key=lambda s: s.image_key)
        mine = [s for i, s in enumerate(images) if i % world == rank]
        done = 0
        columns = (TextColumn("[bold]adapter[/] encoding images"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("", total=len(mine))
            for s in mine:
                if self._cached(s) is None:
                    self.seg.image_inputs(s.view(), self.features)
                    done += 1
                bar.advance(task)
        return done

    def get(self, sample: TrustedMask) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(embedding 1xCxhxw, guide 1x4xGxG, input size), float32 on the segmenter's device."""
        key = sample.image_key
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        hit = self._cached(sample)
        if hit is not None:
            emb = hit["image_embeddings"].to(self.seg.device, torch.float32)
            guide = hit["guide"].to(self.seg.device, torch.float32)
            input_size = tuple(int(v) for v in hit["input_size"].tolist())
        else:
            emb, input_size, extras = self.seg.image_inputs(sample.view(), self.features)
            guide = extras["guide"]
        item = (emb, guide, input_size)
        self._lru[key] = item
        while len(self._lru) > self.memory_images:
            self._lru.popitem(last=False)
        return item


@dataclass
class Batch:
    embeddings: torch.Tensor  # (B, C, h, w)
    guide: torch.Tensor       # (B, 4, G, G)
    boxes: torch.Tensor       # (B, 4) xyxy in SAM's input frame
    target: torch.Tensor      # (B, 1, 4h, 4w) in {0, 1}


def make_batch(store: FeatureStore, samples: Sequence[TrustedMask], noise: BoxNoise | None,
               rng: np.random.Generator) -> Batch:
    """Cached features, noisy boxes (trusted box + ``noise``; None: the prompt box) and targets."""
    seg = store.seg
    img_size = seg.model.image_encoder.img_size
    embs, guides, boxes, targets = [], [], [], []
    for s in samples:
        emb, guide, input_size = store.get(s)
        box = np.asarray(s.prompt_box, float) if noise is None else noise.apply(s.truth_box, rng, s.width, s.height)
        boxes.append(seg.transform.apply_boxes(box[None], (s.height, s.width))[0])
        out_size = 4 * emb.shape[-1]
        targets.append(lowres_target(s.truth, input_size, img_size, out_size))
        embs.append(emb)
        guides.append(guide)
    device = seg.device
    return Batch(torch.cat(embs), torch.cat(guides), torch.as_tensor(np.stack(boxes), dtype=torch.float32, device=device),
                 torch.as_tensor(np.stack(targets)[:, None], device=device))


def sam_for(ws: Workspace, model: str, checkpoint: str | Path | None = None, recipe_checkpoint: str | None = None,
            device: str | None = None) -> SamSegmenter:
    """The SAM an adapter trains or evaluates on, with the workspace's embedding cache.

    Weights: ``checkpoint``, else the recipe's, else the workspace's ``refine.checkpoint`` when
    ``refine.model`` is the same model, else random (seeded by ``refine.seed``, as sam-refine).
    """
    from ..segment.cache import EmbeddingCache

    cfg = ws.load()
    chosen = checkpoint or recipe_checkpoint
    if chosen is None and cfg.refine.model == model and cfg.refine.checkpoint:
        chosen = cfg.refine.checkpoint
    path = ws.resolve(chosen) if chosen else None
    return SamSegmenter(model, checkpoint=path, device=device, cache=EmbeddingCache(ws.cache / "embeddings"),
                        seed=cfg.refine.seed)


def noise_for(samples: Sequence[TrustedMask], shift: float, scale: float, aspect: float, profile: float) -> BoxNoise:
    """Recipe jitter plus the error profile of ``samples``' own (prompt box, trusted box) pairs."""
    from .noise import NoiseProfile

    measured = NoiseProfile.measure((s.prompt_box, s.truth_box) for s in samples)
    return BoxNoise(shift, scale, aspect, profile, measured)


def recipe_samples(ws: Workspace, recipe: "AdapterRecipe", truth: Path | None = None
                   ) -> tuple[list[TrustedMask], list[TrustedMask], BoxNoise]:
    """The recipe's trusted samples (context crops when it sets them) split by scene, and the box
    noise fitted on the train part: training, evaluation and the benchmark must see the same split."""
    samples = trusted_samples(ws, truth)
    if recipe.data.crop:
        samples = crop_samples(samples, recipe.data.crop)
    train, held = split_by_scene(samples, recipe.data.heldout_fraction, recipe.data.seed)
    n = recipe.noise
    return train, held, noise_for(train, n.shift, n.scale, n.aspect, n.profile)
