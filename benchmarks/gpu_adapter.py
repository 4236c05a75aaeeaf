"""PA-SAM adapter on one NVIDIA GPU: training steps/s and peak memory (run via gpu_adapter.sh).

The vit_h decoder side (prompt encoder + mask decoder, random weights: same cost as the real
checkpoint) with the adapter of ``adapters/pa_sam_vit_h.yaml`` (4+4 hard points, Gumbel top-k
mining on, output upscaling / hypernetworks / mask tokens unfrozen), bf16 autocast. Inputs are
what the embedding cache holds: a 256x64x64 image embedding and a 4x256x256 guiding image per
sample (synthetic random here, already on the GPU), one box prompt and a 256x256 target each.
Reports, after warm-up and with ``torch.cuda.synchronize()`` around the timing:

  train      steps/s and samples/s of the full step (prompt encoder, adapter decoder, losses,
             backward, Adam) at batch B, and peak GPU memory
  infer      ms per decoder pass of 64 box prompts on one image, SAM's decoder vs with the
             adapter (sam-refine's path: one image broadcast over the prompts) and their ratio

Without CUDA it prints why and exits 0. Imports torch, segment-anything and three small modules
of this package (no pydantic, shapely or pycocotools needed).

    python benchmarks/gpu_adapter.py [--model vit_h] [--batch 16] [--steps 40] [--cpu-smoke]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from risbench_builder.adapter.model import PA_SAM_TRAINABLE, build_adapter_decoder, guide_size
from risbench_builder.adapter.step import autocast, make_optimizer, train_step
from risbench_builder.segment.sam import _predict_masks_one_image
from risbench_builder.segment.sam_build import build_sam_decoder

LOSSES = {"mask": 1.0, "coarse": 1.0, "refined": 1.0, "uncertainty": 1.0}  # pa_sam_vit_h.yaml


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(args: argparse.Namespace, device: torch.device) -> dict:
    prompt, decoder = build_sam_decoder(args.model)
    prompt, decoder = prompt.to(device), decoder.to(device)
    adapter = build_adapter_decoder(decoder, prompt, n_points=4, trainable=PA_SAM_TRAINABLE).to(device)
    counts = adapter.parameter_counts()
    adapter.train()
    adapter.mine_points = True
    adapter.generator = torch.Generator(device=device).manual_seed(0)
    opt = make_optimizer([p for p in adapter.parameters() if p.requires_grad], 1e-3)  # the trainer's (fused)
    g, c, s = prompt.image_embedding_size[0], prompt.embed_dim, prompt.input_image_size[0]
    gs, b = guide_size(prompt), args.batch
    gen = torch.Generator(device=device).manual_seed(0)
    emb = torch.randn(b, c, g, g, device=device, generator=gen)        # cached embeddings (fp32, as stored)
    guide = torch.randn(b, 4, gs, gs, device=device, generator=gen)    # cached guiding images
    xy = torch.rand(b, 2, device=device, generator=gen) * s * 0.7
    wh = 32 + torch.rand(b, 2, device=device, generator=gen) * s * 0.25
    boxes = torch.cat([xy, xy + wh], dim=1)
    target = torch.zeros(b, 1, 4 * g, 4 * g, device=device)
    for i, box in enumerate((boxes / 4).long().tolist()):
        target[i, :, box[1]:box[3], box[0]:box[2]] = 1
    pe = prompt.get_dense_pe()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> float:
        return float(train_step(adapter, prompt, pe, emb, guide, boxes, target, LOSSES, opt)["total"].detach())

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warm = time.perf_counter() - t0
    t = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    sync(device)
    train_s = (time.perf_counter() - t) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")

    # inference: one image, 64 box prompts, SAM's decoder (shared image work) vs with the adapter
    adapter.eval()
    n = args.prompts
    with torch.inference_mode(), autocast(device):
        xy = torch.rand(n, 2, device=device, generator=gen) * s * 0.7
        pboxes = torch.cat([xy, xy + 64], dim=1)
        sparse, dense = prompt(points=None, boxes=pboxes, masks=None)
        one, g1 = emb[:1], guide[:1]

        def timed(fn) -> float:
            for _ in range(3):
                fn()
            sync(device)
            t = time.perf_counter()
            for _ in range(args.infer_iters):
                fn()
            sync(device)
            return (time.perf_counter() - t) / args.infer_iters

        sam_ms = timed(lambda: _predict_masks_one_image(decoder, one, pe, sparse, dense)) * 1e3
        ada_ms = timed(lambda: adapter.predict_masks(one, pe, sparse, dense, guide=g1)) * 1e3
    return {"counts": counts, "train_s": train_s, "warm_s": warm, "peak": peak, "loss0": losses[0],
            "loss1": losses[-1], "sam_ms": sam_ms, "ada_ms": ada_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_h")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=64, help="box prompts per inference decoder pass")
    ap.add_argument("--infer-iters", type=int, default=20)
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="exercise this script on the CPU with the tiny model (numbers meaningless)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.node()}")
    if args.cpu_smoke:
        args.model, args.steps, args.warmup, args.infer_iters, args.prompts = "tiny", 2, 1, 2, 8
        r = run(args, torch.device("cpu"))
        print(f"cpu smoke test (tiny model, fp32, numbers meaningless): {r}")
        return 0
    if not torch.cuda.is_available():
        print("gpu_adapter: no CUDA device visible (torch.cuda.is_available() is False): nothing measured. "
              "Run this on a machine with an NVIDIA GPU and a CUDA build of torch.")
        return 0
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}")
    print(f"setup: {args.model} decoder side, random weights, bf16 autocast, batch {args.batch}, cached inputs "
          f"(256x64x64 embedding + 4x256x256 guiding image per sample), 4+4 mined points, {args.steps} timed steps")
    t0 = time.perf_counter()
    r = run(args, torch.device("cuda"))
    c = r["counts"]
    print(f"trainable parameters: {c['trainable']:,} ({c['new']:,} new + {c['unfrozen_sam']:,} unfrozen SAM decoder)")
    print(f"train: {1 / r['train_s']:.1f} steps/s = {args.batch / r['train_s']:.0f} samples/s at batch {args.batch}; "
          f"peak memory {r['peak']:.2f} GiB; warm-up {r['warm_s']:.1f} s; loss {r['loss0']:.3f} -> {r['loss1']:.3f}")
    print(f"infer: {args.prompts} prompts on one image: SAM decoder {r['sam_ms']:.2f} ms, with adapter "
          f"{r['ada_ms']:.2f} ms, ratio {r['ada_ms'] / r['sam_ms']:.2f}")
    print(f"total {time.perf_counter() - t0:.0f} s on {props.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
