"""CroBIM training throughput on one CUDA GPU: the paper configuration (Swin-B + BERT-base,
random weights), bf16 autocast, batch 8 at 480, AdamW. Prints images/s and peak memory.
Called by gpu_crobim.sh; exits 0 with a message when CUDA is absent."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="crobim_swin_b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=15)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_crobim: no CUDA device visible; nothing measured (run it on a GPU machine)")
        return 0
    from risbench_builder.crobim.config import load_config
    from risbench_builder.crobim.losses import crobim_loss
    from risbench_builder.crobim.model import build_model, count_parameters
    from risbench_builder.crobim.train import param_groups

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = load_config(args.config)
    cfg.model.img_size = args.size
    dev = torch.device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg.model).to(dev)
    opt = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)
    b, s = args.batch, args.size
    ids, mask = model.tokenize(["the white airplane at the top left of the image"] * b)
    ids, mask = ids.to(dev), mask.to(dev)
    image = torch.randn(b, 3, s, s, device=dev)
    target = (torch.rand(b, s, s, device=dev) > 0.9).long()

    def step() -> float:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(image, ids, mask)
        loss = crobim_loss(logits.float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    print(f"gpu_crobim: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"  {cfg.name}: {count_parameters(model)['total'] / 1e6:.1f} M parameters, random weights, bf16 autocast")
    print(f"  batch {b} at {s}x{s}, {args.steps} steps after {args.warmup} warm-up, last loss {loss:.4f}")
    print(f"  training: {b * args.steps / dt:.1f} images/s ({dt / args.steps * 1000:.0f} ms/step), "
          f"peak memory {peak:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
