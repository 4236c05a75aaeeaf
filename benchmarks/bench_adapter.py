"""PA-SAM adapter on the CPU: epoch time with the embedding cache vs re-running the encoder, and
the adapter's overhead inside sam-refine.

(1) Epoch time, tiny SAM, the tiny recipe's samples (synthetic workspace, context crops):
    cached      every batch reads each sample's embedding + guiding image from the on-disk
                EmbeddingCache (memory LRU off, so every read is a safetensors file read)
    in memory   the same entries held in the trainer's in-memory LRU (``data.memory_images``)
    recompute   every batch decodes the PNG, cuts the crop, resizes, runs SAM's image encoder
                and the guiding image again (what training without the cache costs)
    Both then run the same train_step (prompt encoder, adapter decoder, losses, backward, Adam).
    Epochs alternate (cached, recompute, cached, ...) so load drift hits both. Target >= 5x.

(2) Adapter overhead in sam-refine, per model (default tiny and vit_b, random weights): the
    time of SamSegmenter.segment on 512x512 images with 5 boxes x (1 + 4 jitter) prompts, with
    the embedding already cached (no encoder), with the adapter / without. Also the decoder
    pass alone (predict_masks on one chunk). Target <= 1.3.

    python benchmarks/bench_adapter.py [--scenes 12] [--epochs 2] [--models tiny vit_b] [--batch-size 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_refine import make_scene  # noqa: E402

from risbench_builder.adapter.data import FeatureStore, make_batch, recipe_samples  # noqa: E402
from risbench_builder.adapter.io import LoadedAdapter  # noqa: E402
from risbench_builder.adapter.model import GuideFeatures, build_adapter_decoder, guide_size  # noqa: E402
from risbench_builder.adapter.recipe import load_recipe  # noqa: E402
from risbench_builder.adapter.step import make_optimizer, train_step  # noqa: E402
from risbench_builder.segment.base import View  # noqa: E402
from risbench_builder.segment.cache import EmbeddingCache  # noqa: E402
from risbench_builder.segment.sam import SamSegmenter  # noqa: E402
from risbench_builder.stages.ingest import run_ingest  # noqa: E402
from risbench_builder.workspace import init_workspace  # noqa: E402

TARGET_EPOCH_RATIO, TARGET_OVERHEAD = 5.0, 1.3


def epoch_times(root: Path, scenes: int, epochs: int, batch_size: int | None = None) -> tuple[list[float], list[float], list[float], int, int, int]:
    spec = root / "p.yaml"
    spec.write_text(yaml.safe_dump({"synthetic": {"out": "sources", "seed": 3, "scenes": scenes, "patches_per_scene": 2},
                                    "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}]}))
    ws = init_workspace(root / "ws", spec)
    run_ingest(ws, ws.load(), progress=False)
    recipe = load_recipe("tiny")
    if batch_size:
        recipe.optim.batch_size = batch_size
    train, _, noise = recipe_samples(ws, recipe)
    cached_seg = SamSegmenter("tiny", device="cpu", cache=EmbeddingCache(root / "cache"))
    plain_seg = SamSegmenter("tiny", device="cpu", cache=None)
    features = GuideFeatures(guide_size(cached_seg.model.prompt_encoder))
    cached = FeatureStore(cached_seg, features, memory_images=0)
    cached.prepare(train, progress=False)                       # fill the cache once (not timed)
    in_memory = FeatureStore(cached_seg, features, memory_images=len(train))  # as training runs (LRU)
    recompute = FeatureStore(plain_seg, features, memory_images=0)
    sam = cached_seg.model
    decoder = build_adapter_decoder(sam.mask_decoder, sam.prompt_encoder, trainable=recipe.adapter.trainable)
    decoder.train()
    decoder.generator = torch.Generator().manual_seed(0)
    opt = make_optimizer([p for p in decoder.parameters() if p.requires_grad], recipe.optim.lr)  # the trainer's
    pe, weights, bs = sam.prompt_encoder.get_dense_pe(), recipe.losses.model_dump(), recipe.optim.batch_size

    def epoch(store: FeatureStore, seed: int) -> float:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train))
        t = time.perf_counter()
        for k in range(0, len(order) - bs + 1, bs):
            b = make_batch(store, [train[i] for i in order[k:k + bs]], noise, rng)
            train_step(decoder, sam.prompt_encoder, pe, b.embeddings, b.guide, b.boxes, b.target, weights, opt)
        return time.perf_counter() - t

    epoch(cached, 999)  # warm-up (allocator, first safetensors reads)
    epoch(in_memory, 999)  # fills the LRU
    c, m, r = [], [], []
    for e in range(epochs):
        c.append(epoch(cached, e))
        m.append(epoch(in_memory, e))
        r.append(epoch(recompute, e))
    return c, m, r, len(train), plain_seg.encoder_calls, bs


def overhead(name: str, images: int, reps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        seg = SamSegmenter(name, device="cpu", cache=EmbeddingCache(tmp))
        sam = seg.model
        g = sam.image_encoder.img_size // 16
        scenes = [make_scene(512, 5, 4, seed=i) for i in range(images)]
        views = [View(img, key=f"bench-{i}") for i, (img, _, _) in enumerate(scenes)]
        gen = torch.Generator().manual_seed(0)
        for v in views:  # a stored random embedding: the encoder never runs (decoder cost only)
            s = seg.transform.get_preprocess_shape(512, 512, sam.image_encoder.img_size)
            seg.cache.put(v.key, seg.model_sha256, {
                "image_embeddings": torch.randn(1, sam.prompt_encoder.embed_dim, g, g, generator=gen),
                "original_size": torch.tensor([512, 512]), "input_size": torch.tensor(s)})
        decoder = build_adapter_decoder(sam.mask_decoder, sam.prompt_encoder).eval()
        adapter = LoadedAdapter(decoder, "0" * 64, GuideFeatures(guide_size(sam.prompt_encoder)))

        def run(with_adapter: bool) -> float:
            seg.set_adapter(adapter if with_adapter else None)
            t = time.perf_counter()
            for v, (_, boxes, jitter) in zip(views, scenes):
                seg.segment(v, boxes, jitter)
            return (time.perf_counter() - t) / len(views)

        run(True)  # computes and stores each view's guiding image once (as sam-refine's first run would)
        run(False)
        plain, adapted = [], []
        for _ in range(reps):  # interleaved
            plain.append(run(False))
            adapted.append(run(True))
        calls = seg.encoder_calls

        # the decoder pass alone on one chunk of 25 prompts
        emb, input_size, extras = seg.image_inputs(views[0])
        boxes = np.concatenate([scenes[0][1], scenes[0][2].reshape(-1, 4)])
        coords = seg.transform.apply_boxes_torch(torch.from_numpy(boxes), (512, 512))
        with torch.inference_mode():
            sparse, dense = sam.prompt_encoder(points=None, boxes=coords, masks=None)
            pe = sam.prompt_encoder.get_dense_pe()

            def dec(with_adapter: bool) -> float:
                seg.set_adapter(adapter if with_adapter else None)
                t = time.perf_counter()
                seg._decode(image_embeddings=emb, image_pe=pe, sparse_prompt_embeddings=sparse,
                            dense_prompt_embeddings=dense, **(extras if with_adapter else {}))
                return time.perf_counter() - t

            dec(True), dec(False)
            dp, da = [], []
            for _ in range(reps * 3):
                dp.append(dec(False))
                da.append(dec(True))
    assert calls == 0
    return {"plain": statistics.median(plain), "adapted": statistics.median(adapted),
            "dec_plain": statistics.median(dp), "dec_adapted": statistics.median(da)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=12, help="synthetic scenes (2 patches each)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per variant")
    ap.add_argument("--models", nargs="+", default=["tiny", "vit_b"])
    ap.add_argument("--images", type=int, default=2, help="images per overhead timing")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None, help="override the tiny recipe's batch (16) in (1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny models on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} CPU with "
          f"{torch.get_num_threads()} threads, Python {platform.python_version()}")

    with tempfile.TemporaryDirectory() as tmp:
        c, m, r, n, calls, bs = epoch_times(Path(tmp), args.scenes, args.epochs, args.batch_size)
    ratio = statistics.median(r) / statistics.median(c)
    ratio_m = statistics.median(r) / statistics.median(m)
    print(f"\n(1) epoch time, tiny SAM, {n} training masks, batch {bs} (tiny recipe):")
    print(f"    cached     {', '.join(f'{v:.3f}' for v in c)} s/epoch  (median {statistics.median(c):.3f})")
    print(f"    in memory  {', '.join(f'{v:.3f}' for v in m)} s/epoch  (median {statistics.median(m):.3f}; cache "
          f"entries held in the trainer's LRU, its default)")
    print(f"    recompute  {', '.join(f'{v:.3f}' for v in r)} s/epoch  (median {statistics.median(r):.3f}; "
          f"{calls} encoder runs)")
    print(f"    recompute / cached (disk reads) = {ratio:.2f}x, recompute / cached (in memory) = {ratio_m:.2f}x "
          f"(target >= {TARGET_EPOCH_RATIO:.0f}x): disk {'met' if ratio >= TARGET_EPOCH_RATIO else 'MISSED'}, "
          f"memory {'met' if ratio_m >= TARGET_EPOCH_RATIO else 'MISSED'}")

    print("\n(2) adapter overhead in sam-refine (embedding cached; 512x512, 25 prompts per image):")
    print(f"    {'model':<7}{'segment SAM':>13}{'+adapter':>10}{'ratio':>8}{'decoder SAM':>13}{'+adapter':>10}{'ratio':>8}")
    for name in args.models:
        o = overhead(name, args.images, args.reps)
        seg_ratio, dec_ratio = o["adapted"] / o["plain"], o["dec_adapted"] / o["dec_plain"]
        print(f"    {name:<7}{o['plain'] * 1e3:>11.1f}ms{o['adapted'] * 1e3:>8.1f}ms{seg_ratio:>8.2f}"
              f"{o['dec_plain'] * 1e3:>11.1f}ms{o['dec_adapted'] * 1e3:>8.1f}ms{dec_ratio:>8.2f}   "
              f"(target <= {TARGET_OVERHEAD}: segment {'met' if seg_ratio <= TARGET_OVERHEAD else 'MISSED'}, "
              f"decoder {'met' if dec_ratio <= TARGET_OVERHEAD else 'MISSED'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
