"""What the host does per view after the encoder, counted on the CPU (the counts do not depend on
the device or the encoder size: SAM's mask decoder is the same for vit_b, vit_l, vit_h and tiny).

On a GPU every aten op that is not a view launches at least one kernel, and the host spends
several microseconds on each; a host round trip (a copy back it waits for) empties the GPU's
queue. ``segment_views(measure=True)`` queues a whole encoder batch's decoding and mask
measurements behind the encoder and brings them back with two round trips
(``device_masks.collect``); one call per view (how the stage's measurement went before) pays two
per view, plus the wait of a pageable prompt copy.

Prints, for ``--views`` whole 512x512 images with 6 boxes and K=4 jittered copies each (30
prompts, one decoder chunk): aten ops per view on the decode-and-measure path (kernels vs views),
the encoder's ops per batch, and host round trips per batch, batched against one call per view.

Then the GPU work itself, as FLOPs (``torch.utils.flop_counter`` over models built on the meta
device: nothing is computed or allocated, so vit_h costs nothing here): the image encoder per view
and the decoder per view at 30, 10 and 5 prompts (the decoder path sam-refine runs,
``_predict_masks_one_image``), as a share of the encoder. The matmuls and convolutions are the
FLOPs; the bilinear upsampling and the measurements are memory traffic, not counted.

    python benchmarks/bench_decode_ops.py [--views 8]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from risbench_builder.segment import device_masks  # noqa: E402
from risbench_builder.segment.base import View  # noqa: E402
from risbench_builder.segment.sam import SamSegmenter  # noqa: E402


class OpCount(TorchDispatchMode):
    """aten ops dispatched inside the block, split into kernels and views (no kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.kinds["view" if func.is_view else "kernel"] += 1
        return func(*args, **(kwargs or {}))


def items_for(seg: SamSegmenter, n: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        image = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
        boxes = np.array([[64 * a, 64 * a, 64 * a + 100, 64 * a + 90] for a in range(6)], np.float32)
        jitter = np.repeat(boxes[:, None], 4, axis=1) + np.arange(4, dtype=np.float32)[None, :, None]
        items.append((View(image, key=f"k{i}"), boxes, jitter, seg.host_input(image)))
    return items


def round_trips(seg: SamSegmenter, calls: list[list[tuple]]) -> int:
    """Host round trips (``device_masks._to_host`` calls: each waits for the device) over ``calls``."""
    real, count = device_masks._to_host, [0]

    def counted(tensors):
        count[0] += 1
        return real(tensors)

    device_masks._to_host = counted
    try:
        for items in calls:
            seg.segment_views(items, measure=True)
    finally:
        device_masks._to_host = real
    return count[0]


def flops(models: tuple[str, ...] = ("vit_b", "vit_h"), prompts: tuple[int, ...] = (30, 10, 5)) -> None:
    """Encoder and decoder FLOPs per view on the meta device (shapes only, no arithmetic)."""
    from segment_anything import sam_model_registry
    from torch.utils.flop_counter import FlopCounterMode

    from risbench_builder.segment.sam import _predict_masks_one_image

    for name in models:
        with torch.device("meta"):
            sam = sam_model_registry[name]().requires_grad_(False)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            emb = sam.image_encoder(torch.empty(1, 3, 1024, 1024, device="meta"))
        encoder = counter.get_total_flops()
        shares = []
        for n in prompts:
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                sparse, dense = sam.prompt_encoder(points=None, boxes=torch.empty(n, 4, device="meta"), masks=None)
                _predict_masks_one_image(sam.mask_decoder, emb, sam.prompt_encoder.get_dense_pe(), sparse, dense)
            decoder = counter.get_total_flops()
            shares.append(f"{n} prompts {decoder / 1e9:.1f} GFLOP = {decoder / encoder:.3f} of the encoder")
        print(f"{name}: encoder {encoder / 1e9:.0f} GFLOP per view; decoder per view: " + ", ".join(shares))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=8, help="views in one encoder batch")
    args = ap.parse_args()
    torch.manual_seed(0)
    seg = SamSegmenter("tiny", seed=0, encoder_batch=args.views)
    items = items_for(seg, args.views)
    seg.segment_views(items, measure=True)                    # warm-up
    with OpCount() as whole:
        seg.segment_views(items, measure=True)
    with OpCount() as encoder, torch.inference_mode():
        seg._encode(seg._input_batch([it[3] for it in items], args.views))
    per_view = {k: (whole.kinds[k] - encoder.kinds[k]) / args.views for k in ("kernel", "view")}
    print(f"decode + measure per view (30 prompts, one chunk): {per_view['kernel']:.0f} kernel ops, "
          f"{per_view['view']:.0f} view ops; tiny encoder per batch: {encoder.kinds['kernel']} kernel ops")
    batched = round_trips(seg, [items])
    single = round_trips(SamSegmenter("tiny", seed=0, encoder_batch=1), [[it] for it in items])
    print(f"host round trips per {args.views} views: batched {batched}, one call per view {single} "
          f"(ratio {single / batched:.1f}x)")
    for us in (5, 10, 20):
        print(f"  at {us} us of host time per kernel op: {per_view['kernel'] * us / 1000:.1f} ms per view, "
              f"{per_view['kernel'] * us * args.views / 1000:.0f} ms per batch of {args.views} to queue behind "
              f"the encoder (vit_b, H200, batch 8: ~141 ms)")
    flops()
    return 0


if __name__ == "__main__":
    sys.exit(main())
