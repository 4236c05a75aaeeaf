"""``risbench adapter train``: the PA-SAM adapter trained on cached embeddings, resumable.

Per step: a batch of trusted masks (cached embedding + guiding image each), box prompts drawn
from the trusted box with the recipe's noise, SAM's frozen prompt encoder, the adapter decoder,
the recipe's losses, Adam. bf16 autocast on CUDA; DDP when started by ``torchrun`` (each rank
encodes its share of the images, then takes its slice of every global batch).

Everything random is derived from (recipe seed, epoch, step): data order, box noise and the
Gumbel draws. A checkpoint (``RUN/last/``: trainable weights as safetensors, Adam state, a JSON
of progress) therefore lets a killed run continue exactly as if it had not stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file

from ..catalog import code_version
from ..ddp import process_group, ranks_agree
from ..devices import pick_device
from ..workspace import Workspace
from .data import FeatureStore, make_batch, recipe_samples, sam_for
from .model import GuideFeatures, PromptAdapterDecoder, build_adapter_decoder, guide_size
from .recipe import AdapterRecipe
from .step import make_optimizer, train_step

LAST = "last"


@dataclass
class TrainResult:
    out: Path
    adapter_path: Path
    adapter_sha256: str
    steps: int
    total_steps: int
    losses: list[float]
    parameters: dict[str, int]
    train_masks: int
    heldout_masks: int
    seconds: float
    evaluation: dict[str, Any] | None = None
    noise_profile: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.steps >= self.total_steps


def _seed(*parts: object) -> int:
    return int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _device(device: str | None, world: int, local_rank: int) -> str:
    return str(pick_device(device, local_rank if world > 1 else None))


# ------------------------------------------------------------------------ checkpoints
def save_checkpoint(out: Path, decoder: PromptAdapterDecoder, opt: torch.optim.Optimizer, progress: dict) -> Path:
    """``out/last/`` replaced atomically (written to a temporary folder, then renamed)."""
    tmp = out / f".{LAST}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in decoder.trainable_state_dict().items()},
              str(tmp / "weights.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "progress.json").write_text(json.dumps(progress, indent=1) + "\n")
    final, old = out / LAST, out / f".{LAST}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _refuse_a_stopped_run(out: Path) -> None:
    """A checkpoint the written adapter does not come from is a stopped run: starting over would
    replace it at the first checkpoint. A finished run is trained again (a later data-engine round)."""
    try:
        progress = json.loads((out / LAST / "progress.json").read_text())
    except (OSError, ValueError):
        return
    try:
        finished = json.loads((out / "adapter.json").read_text())["trained"]["steps"] == progress["step"]
    except (OSError, ValueError, KeyError, TypeError):
        finished = False
    if not finished:
        raise FileExistsError(f"{out} holds an adapter run stopped at step {progress.get('step')} of "
                              f"{progress.get('total_steps')}: add --resume to continue it, or give another --out "
                              f"(or remove {out}) to start over")


def load_checkpoint(out: Path, decoder: PromptAdapterDecoder, opt: torch.optim.Optimizer,
                    sam_sha256: str, recipe: AdapterRecipe) -> dict:
    """Restore weights and Adam state from ``out/last``; the run must be the same recipe and SAM."""
    folder = out / LAST
    progress = json.loads((folder / "progress.json").read_text())
    if progress.get("sam_sha256") != sam_sha256 or progress.get("recipe") != recipe.model_dump(mode="json"):
        raise ValueError(f"adapter train: {folder} belongs to another recipe or SAM; use a new --out or drop --resume")
    state = load_file(str(folder / "weights.safetensors"))
    own = dict(decoder.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    opt.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    return progress


# ------------------------------------------------------------------------ training
def train_adapter(ws: Workspace, recipe: AdapterRecipe, out: Path | None = None, *, checkpoint: str | Path | None = None,
                  truth: Path | None = None, resume: bool = False, max_steps: int | None = None,
                  device: str | None = None, evaluate: bool = True, progress: bool = True,
                  log: Callable[[str], None] = print) -> TrainResult:
    """Train (or continue) the adapter of ``recipe`` on ``ws``'s trusted masks; writes ``out``."""
    out = Path(out) if out is not None else ws.runs / f"adapter-{recipe.name}"
    with process_group() as (rank, world, local_rank):
        return _train(ws, recipe, out, checkpoint, truth, resume, max_steps, _device(device, world, local_rank),
                      evaluate, progress and rank == 0, log if rank == 0 else (lambda _m: None), rank, world)


def _train(ws: Workspace, recipe: AdapterRecipe, out: Path, checkpoint: str | Path | None, truth: Path | None,
           resume: bool, max_steps: int | None, device: str, evaluate: bool, progress: bool,
           log: Callable[[str], None], rank: int, world: int) -> TrainResult:
    started = time.perf_counter()
    train, held, noise = recipe_samples(ws, recipe, truth)
    if not train:
        raise ValueError(f"adapter train: no training masks left after holding out scenes in {ws.path}")
    seg = sam_for(ws, recipe.sam.model, checkpoint, recipe.sam.checkpoint, device)
    sam = seg.model
    log(f"adapter {recipe.name}: {len(train)} training masks, {len(held)} held out "
        f"({len({s.scene_id for s in held})} scenes); SAM {seg.model_name} sha256 {seg.model_sha256[:12]}; "
        f"noise profile {json.dumps(noise.profile.summary())}")

    store = FeatureStore(seg, GuideFeatures(guide_size(sam.prompt_encoder)), recipe.data.memory_images)
    encoded = store.prepare(train + held, rank, world, progress)
    _barrier(world)
    if encoded:
        log(f"adapter {recipe.name}: encoded {encoded} images into {seg.cache.root}")

    a = recipe.adapter
    decoder = build_adapter_decoder(sam.mask_decoder, sam.prompt_encoder, n_points=a.points, trainable=a.trainable,
                                    gumbel_tau=a.gumbel_tau, seed=recipe.seed).to(seg.device)
    params = [p for p in decoder.parameters() if p.requires_grad]
    counts = decoder.parameter_counts()
    log(f"adapter {recipe.name}: {counts['trainable']:,} trainable parameters ({counts['new']:,} new, "
        f"{counts['unfrozen_sam']:,} unfrozen SAM decoder: {', '.join(a.trainable)})")
    opt = make_optimizer(params, recipe.optim.lr, recipe.optim.weight_decay)
    model: torch.nn.Module = decoder
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(decoder, device_ids=[seg.device.index] if seg.device.type == "cuda" else None,
                                        find_unused_parameters=True)

    o = recipe.optim
    per_step = o.batch_size * world
    steps_per_epoch = max(1, len(train) // per_step)
    total = o.epochs * steps_per_epoch
    stop = total if max_steps is None else min(total, max_steps)
    run_info = {"recipe": recipe.model_dump(mode="json"), "sam_model": seg.model_name, "sam_sha256": seg.model_sha256}
    step, history = 0, []
    if not resume:
        _refuse_a_stopped_run(out)
    if resume and (out / LAST).is_dir():
        state = load_checkpoint(out, decoder, opt, seg.model_sha256, recipe)
        step, history = int(state["step"]), list(state["losses"])
        log(f"adapter {recipe.name}: resumed at step {step}/{total} from {out / LAST}")
    elif resume:
        log(f"adapter {recipe.name}: nothing to resume in {out}; starting at step 0")

    pe = sam.prompt_encoder.get_dense_pe()
    weights = recipe.losses.model_dump()
    columns = (TextColumn(f"[bold]adapter[/] {recipe.name}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
               TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("", total=stop, completed=step, loss="-")
        while step < stop:
            epoch, k = divmod(step, steps_per_epoch)
            for group in opt.param_groups:
                group["lr"] = o.lr * o.gamma ** (epoch // o.step_epochs)
            order = np.random.default_rng(_seed(recipe.seed, "order", epoch)).permutation(len(train))
            idx = order[k * per_step:(k + 1) * per_step][rank::world]
            rng = np.random.default_rng(_seed(recipe.seed, "noise", epoch, k, rank))
            batch = make_batch(store, [train[i] for i in idx], noise, rng)
            decoder.train()
            decoder.mine_points = epoch >= a.mining_start_epoch
            decoder.generator = torch.Generator(device=seg.device).manual_seed(_seed(recipe.seed, "gumbel", step, rank))
            losses = train_step(model, sam.prompt_encoder, pe, batch.embeddings, batch.guide, batch.boxes,
                                batch.target, weights, opt, o.grad_clip)
            step += 1
            history.append(round(float(losses["total"].detach()), 6))
            bar.update(task, completed=step, loss=f"{history[-1]:.4f}")
            if rank == 0 and (step % o.checkpoint_every == 0 or step % steps_per_epoch == 0 or step == stop):
                save_checkpoint(out, decoder, opt, {**run_info, "step": step, "epoch": step // steps_per_epoch,
                                                    "total_steps": total, "losses": history})
    decoder.eval()
    decoder.generator = None
    _barrier(world)
    if not ranks_agree(decoder.parameters(), world):
        raise RuntimeError(f"adapter: the {world} ranks ended with different weights; DDP did not synchronise "
                           "them (report this with the recipe)")
    if world > 1 and rank == 0:
        log(f"adapter {recipe.name}: {world} ranks, trainable weights identical on every rank")

    from .io import load_adapter, save_adapter

    info = {"trained": {"steps": step, "total_steps": total, "complete": step >= total, "epochs": step / steps_per_epoch,
                        "train_masks": len(train), "heldout_masks": len(held),
                        "heldout_images": len({s.image_id for s in held}), "heldout_scenes": sorted({s.scene_id for s in held}), "world_size": world,
                        "first_loss": history[0] if history else None, "last_loss": history[-1] if history else None,
                        "device": str(seg.device), "precision": seg.precision},
            "noise_profile": noise.profile.summary(), "code_version": code_version()}
    path, sha = out / "adapter.safetensors", ""
    evaluation = None
    if rank == 0:
        path, sha = save_adapter(decoder, out, recipe=recipe.model_dump(mode="json"), sam_model=seg.model_name,
                                 sam_sha256=seg.model_sha256, info=info)
        log(f"adapter {recipe.name}: step {step}/{total}, loss {history[0] if history else float('nan'):.4f} -> "
            f"{history[-1] if history else float('nan'):.4f}; wrote {path} (sha256 {sha[:12]})")
        if evaluate and held:
            from .evaluate import compare

            evaluation = compare(seg, load_adapter(path, seg), held, noise, recipe.data.eval_draws, recipe.seed, progress)
            sidecar = out / "adapter.json"
            sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "evaluation": evaluation}, indent=2,
                                          sort_keys=True) + "\n")
    return TrainResult(out, path, sha, step, total, history, counts, len(train), len(held),
                       time.perf_counter() - started, evaluation, noise.profile.summary())
