"""CroBIM on CPU: forward+backward time per sample at 480 for the paper configuration (random
weights), the time share of LGFA, MID and MSDeformAttn, and pure-PyTorch MSDeformAttn against
dense attention over the same tokens. Prints one small table; results go to BENCHMARKS.md.

    python benchmarks/bench_crobim.py [--config crobim_swin_b] [--size 480] [--batch 1] [--repeats 1]

Component shares: each part is timed alone (forward + backward) on the inputs it saw inside the
full model, divided by the full model's time; MSDeformAttn is counted inside MID too.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risbench_builder.crobim.config import load_config  # noqa: E402
from risbench_builder.crobim.model import build_model, count_parameters  # noqa: E402
from risbench_builder.crobim.model.msdeform import MSDeformAttn, reference_points  # noqa: E402


WARMUP = 0


def timed(fn, repeats: int) -> float:
    for _ in range(WARMUP):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def leaf(x):
    """A captured input as a fresh autograd leaf (tensors in lists too; other values as they are)."""
    if isinstance(x, torch.Tensor):
        return x.detach().requires_grad_(x.is_floating_point())
    if isinstance(x, list):
        return [leaf(y) for y in x]
    return x


def grad_sum(out) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        return sum(grad_sum(o) for o in out if isinstance(o, (torch.Tensor, tuple, list)))
    return out.float().mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="crobim_swin_b")
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=0, help="untimed passes first (CPU needs none)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    global WARMUP
    WARMUP = args.warmup
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config)
    cfg.model.img_size = args.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg.model)
    model.train()
    n_params = count_parameters(model)["total"]
    b, s = args.batch, args.size
    ids, mask = model.tokenize(["the white airplane at the top left of the image"] * b)
    image = torch.randn(b, 3, s, s)

    captured: dict[str, tuple] = {}

    def grab(name):
        def hook(module, inputs, kwargs=None):
            captured.setdefault(name, (module, inputs))
        return hook

    hooks = [model.lgfa.register_forward_pre_hook(grab("LGFA")), model.mid.register_forward_pre_hook(grab("MID")),
             model.mid.layers[0].v_deform.register_forward_pre_hook(grab("MSDeformAttn"))]

    def full() -> None:
        model.zero_grad(set_to_none=True)
        model(image, ids, mask).mean().backward()

    t_full = timed(full, args.repeats)
    for h in hooks:
        h.remove()
    rows = [("full model (fwd+bwd)", t_full, 1.0)]
    n_deform = len(model.mid.layers)
    for name, (module, inputs) in captured.items():
        leaves = tuple(leaf(x) for x in inputs)

        def part(module=module, leaves=leaves) -> None:
            module.zero_grad(set_to_none=True)
            grad_sum(module(*leaves)).backward()

        t = timed(part, args.repeats) * (n_deform if name == "MSDeformAttn" else 1)
        label = f"{name} (x{n_deform} layers)" if name == "MSDeformAttn" else name
        rows.append((label, t, t / t_full))

    # MSDeformAttn vs dense attention over the same N = sum(H_i W_i) tokens
    shapes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16), (s // 32, s // 32)]
    n = sum(h * w for h, w in shapes)
    d, heads = cfg.model.mid.dim, cfg.model.mid.heads
    x = torch.randn(b, n, d, requires_grad=True)
    deform = MSDeformAttn(d, 4, heads, cfg.model.mid.points)
    ref = reference_points(shapes)[None, :, None].expand(b, -1, 4, -1)
    dense = torch.nn.MultiheadAttention(d, heads, batch_first=True)

    def run_deform() -> None:
        deform(x, ref, x, shapes).mean().backward()

    def run_dense() -> None:
        dense(x, x, x, need_weights=False)[0].mean().backward()

    def run_deform_fwd() -> None:
        with torch.no_grad():
            deform(x, ref, x, shapes)

    def run_dense_fwd() -> None:
        with torch.no_grad():
            dense(x, x, x, need_weights=False)

    t_def, t_den = timed(run_deform, 1), timed(run_dense, 1)
    t_def_f, t_den_f = timed(run_deform_fwd, 1), timed(run_dense_fwd, 1)

    print(f"CroBIM {cfg.name}, {n_params / 1e6:.1f} M parameters, random weights, CPU x{args.threads} threads, "
          f"{s}x{s}, batch {b}, torch {torch.__version__}")
    print(f"{'part':<28}{'s / sample':>12}{'share':>9}")
    for label, t, share in rows:
        print(f"{label:<28}{t / b:>12.2f}{100 * share:>8.1f}%")
    print(f"\nattention over N = {n:,} visual tokens (D = {d}, {heads} heads), one layer, batch {b}:")
    print(f"{'':<28}{'fwd+bwd s':>12}{'fwd s':>9}")
    print(f"{'MSDeformAttn (grid_sample)':<28}{t_def:>12.3f}{t_def_f:>9.3f}")
    print(f"{'dense attention (SDPA)':<28}{t_den:>12.3f}{t_den_f:>9.3f}")
    print(f"{'dense / deformable':<28}{t_den / t_def:>11.1f}x{t_den_f / t_def_f:>8.1f}x")


if __name__ == "__main__":
    main()
