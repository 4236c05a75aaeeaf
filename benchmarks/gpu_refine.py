"""sam-refine on one NVIDIA GPU: encoder and full-refine throughput in bf16 (run via gpu_refine.sh).

For each model (default vit_b and vit_h, random weights: same cost as the real checkpoints, no
download) it reports, after warm-up and with ``torch.cuda.synchronize()`` around every timing:

  encoder bsB   images/s of ``image_encoder`` on a batch of B preprocessed 1024x1024 inputs
  encoder bs1   the same one image at a time (what SamSegmenter does per view)
  refine        images/s of ``SamSegmenter.segment`` on synthetic HxW RGB images with 5 boxes
                and K=4 jittered boxes each: CPU PIL resize, bf16 encode, one decoder pass for
                all 25 prompts, full-resolution upsampling, masks moved to the CPU as bool

  cached        ms per image of the same segment() with the embedding read from the cache (the
                cost of a re-run after, e.g., an adapter change: decoder, upsampling, transfer)

plus peak GPU memory and the relative error of the bf16 embedding against fp32 (one image).
Without CUDA it prints why and exits 0. Reference (A100, segment-anything-fast, point prompts):
vit_b bf16 ~37-40 img/s, vit_h bf16 ~13.5-15 img/s (segment-anything-fast ``experiments/results.csv``).

    python benchmarks/gpu_refine.py [--models vit_b vit_h] [--batch 8] [--images 24] [--budget-s 240]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time

import numpy as np
import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, iters: int, warmup: int, device: str) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls, synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t) / iters


def run_model(name: str, args: argparse.Namespace, device: str = "cuda") -> dict:
    from risbench_builder.segment.base import View
    from risbench_builder.segment.cache import EmbeddingCache
    from risbench_builder.segment.sam import SamSegmenter

    t0 = time.perf_counter()
    seg = SamSegmenter(name, device=device, cache=None, chunk_size=64)
    build_s = time.perf_counter() - t0
    sam = seg.model
    s = sam.image_encoder.img_size
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    gen = torch.Generator(device=device).manual_seed(0)
    batch = torch.randn(args.batch, 3, s, s, device=device, generator=gen)
    one = batch[:1].contiguous()

    def encode(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            return sam.image_encoder(x)

    enc_b = timed(lambda: encode(batch), iters=args.iters, warmup=2, device=device)
    enc_1 = timed(lambda: encode(one), iters=args.iters * 2, warmup=2, device=device)

    with torch.inference_mode():
        ref = sam.image_encoder(one).float()  # fp32 (TF32 off by default for matmul)
        rel_err = float((encode(one).float() - ref).norm() / ref.norm())

    from bench_refine import make_scene  # same folder; the CPU benchmark's synthetic scenes

    scenes = [make_scene(args.size, 5, 4, seed=i) for i in range(args.images)]
    views = [View(img, key=f"gpu-{i}") for i, (img, _, _) in enumerate(scenes)]
    for i in range(2):  # warm-up
        seg.segment(views[i], scenes[i][1], scenes[i][2])
    sync(device)
    t = time.perf_counter()
    for view, (_, boxes, jitter) in zip(views, scenes):
        out = seg.segment(view, boxes, jitter)
    sync(device)
    refine = (time.perf_counter() - t) / len(views)
    assert len(out) == 5 and out[0].mask.shape == (args.size, args.size) and len(out[0].jitter_masks) == 4

    # re-run cost: segment() with every embedding from the cache (no encoder), as after an adapter change
    with tempfile.TemporaryDirectory() as tmp:
        seg.cache = EmbeddingCache(tmp)
        for view, (_, boxes, jitter) in zip(views[:4], scenes[:4]):
            seg.segment(view, boxes, jitter)  # fills the cache
        calls = seg.encoder_calls
        sync(device)
        t = time.perf_counter()
        for view, (_, boxes, jitter) in zip(views[:4], scenes[:4]):
            seg.segment(view, boxes, jitter)
        sync(device)
        cached = (time.perf_counter() - t) / 4
        assert seg.encoder_calls == calls
        seg.cache = None

    row = {
        "model": name,
        "params_M": sum(p.numel() for p in sam.parameters()) / 1e6,
        "build_s": build_s,
        "enc_bsB": args.batch / enc_b,
        "enc_bs1": 1 / enc_1,
        "refine": 1 / refine,
        "cached_ms": cached * 1e3,
        "peak_GiB": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
        "bf16_rel_err": rel_err,
    }
    del seg, sam, batch, one, ref
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vit_b", "vit_h"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5, help="timed batches for the encoder (bs1 gets 2x)")
    ap.add_argument("--images", type=int, default=24, help="images for the full refine timing")
    ap.add_argument("--size", type=int, default=800, help="synthetic image side (DIOR is 800)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="skip remaining models past this time")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="exercise this script's code on the CPU with the tiny model (no meaningful numbers)")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.node()}")
    if args.cpu_smoke:
        row = run_model("tiny", args, device="cpu")
        print(f"cpu smoke test (tiny model, fp32, numbers meaningless): {row}")
        return 0
    if not torch.cuda.is_available():
        print("gpu_refine: no CUDA device visible (torch.cuda.is_available() is False): nothing measured. "
              "Run this on a machine with an NVIDIA GPU and a CUDA build of torch.")
        return 0
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}")
    print(f"setup: random weights, bf16 autocast, encoder input {1024}x{1024}; refine on {args.size}x{args.size} "
          f"images, 5 boxes x (1 + 4 jitter) = 25 prompts per image, one decoder chunk")

    t0 = time.perf_counter()
    rows = []
    for name in args.models:
        if time.perf_counter() - t0 > args.budget_s:
            print(f"skipped {name}: past the {args.budget_s:.0f} s budget")
            continue
        t = time.perf_counter()
        rows.append(run_model(name, args))
        print(f"{name}: done in {time.perf_counter() - t:.1f} s", flush=True)

    print()
    head = (f"{'model':<7}{'params M':>9}{f'enc bs{args.batch} img/s':>16}{'enc bs1 img/s':>15}"
            f"{'refine img/s':>14}{'cached ms/img':>15}{'peak GiB':>10}{'bf16 rel err':>14}")
    print(head)
    for r in rows:
        print(f"{r['model']:<7}{r['params_M']:>9.0f}{r['enc_bsB']:>16.1f}{r['enc_bs1']:>15.1f}"
              f"{r['refine']:>14.1f}{r['cached_ms']:>15.1f}{r['peak_GiB']:>10.1f}{r['bf16_rel_err']:>14.4f}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s on {props.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
