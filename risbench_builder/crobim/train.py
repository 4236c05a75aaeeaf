"""Train CroBIM, count parameters.

``train``: the paper recipe (Section V-B): AdamW (lr 5e-5, weight decay 0.01, none on norms,
biases' norms and position tables), polynomial decay per optimizer step (power 0.9, no
warm-up), effective batch ``train.batch_size`` reached by gradient accumulation over
``micro_batch`` x world size, bf16 autocast on CUDA, DDP when started by ``torchrun``
(``RANK``/``WORLD_SIZE``/``LOCAL_RANK``). After every epoch: val metrics appended to
``OUT/metrics.json``, checkpoint ``OUT/last/`` and, on a better val oIoU, ``OUT/best/``.
A checkpoint is ``model.safetensors`` (config JSON in its metadata, strict key check on load)
plus ``optimizer.pt`` (optimizer, scheduler, epoch, step, RNG state; read with
``torch.load(weights_only=True)``). ``resume=True`` continues from ``OUT/last/`` exactly as an
uninterrupted run would (the data order is a pure function of seed and epoch).

``fit_steps``: the same optimiser and schedule for a fixed number of steps on a fresh model, in
this process (the smoke arms in ``smoke.py``).
"""
from __future__ import annotations

import json
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from rich.progress import track
from torch import nn

from ..ddp import process_group, ranks_agree
from ..devices import pick_device
from ..parallel import default_workers
from .config import CroBIMConfig
from .data import RefSegDataset, RefSample, available_splits, load_split, make_collate
from .checkpoint import config_changes, load_training_state, load_weights, save_checkpoint, stored_config
from .evaluate import score
from .losses import crobim_loss
from .model import build_model, count_parameters

Log = Callable[[str], None]
NO_DECAY_KEYS = ("absolute_pos_embed", "relative_position_bias_table", "position_embeddings", "level_embed",
                 "pos_embed", "cls_token")


# ------------------------------------------------------------------ optimiser and schedule
def param_groups(model: nn.Module, weight_decay: float, trainable_text_layers: Sequence[int] | None = None,
                 freeze_text: bool = False) -> list[dict]:
    """Decay on weights; none on normalisation parameters and position tables (as RMSIN / Swin)."""
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.InstanceNorm2d)
    norm_params = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
    norm_params |= {id(p) for name, m in model.named_modules() if "norm" in name.rsplit(".", 1)[-1].lower()
                    for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if name.startswith("text."):
            if freeze_text:
                p.requires_grad_(False)
            elif trainable_text_layers is not None:
                layer = name.split("encoder.layer.")[1].split(".")[0] if "encoder.layer." in name else None
                p.requires_grad_(layer is not None and int(layer) in trainable_text_layers)
        if not p.requires_grad:
            continue
        if id(p) in norm_params or any(k in name for k in NO_DECAY_KEYS) or (p.ndim == 1 and "norm" in name.lower()):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def poly_schedule(total_steps: int, power: float = 0.9) -> Callable[[int], float]:
    return lambda step: max(0.0, 1 - step / max(1, total_steps)) ** power


# ------------------------------------------------------------------ helpers
def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.randperm(n, generator=g).tolist()


def dry_run(cfg: CroBIMConfig, log: Log = print) -> dict[str, int]:
    """Build the model (random weights unless paths are configured) and report its parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg.model)
    counts = count_parameters(model)
    log(f"CroBIM {cfg.name}: {counts['total']:,} parameters ({counts['total'] / 1e6:.1f} M) at "
        f"{cfg.model.img_size}x{cfg.model.img_size}")
    for name, n in counts.items():
        if name != "total":
            log(f"  {name:<9} {n:>13,}")
    return counts


# ------------------------------------------------------------------ one optimisation step
def _micro_step(model: nn.Module, batch: dict, device: torch.device, cfg: CroBIMConfig, scale: float,
                amp: bool) -> float:
    lc = cfg.train.loss
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(batch["image"].to(device, non_blocking=True), batch["input_ids"].to(device),
                       batch["attention_mask"].to(device))
    loss = crobim_loss(logits.float(), batch["mask"].to(device), lc.ce_weight, lc.class_weights, lc.dice_reduction)
    (loss * scale).backward()
    return float(loss.detach())


# ------------------------------------------------------------------ train
def _refuse_a_stopped_run(out: Path, epochs: int, total: int) -> None:
    """A run folder whose last epoch is short of the schedule holds a stopped run: starting over
    would replace its checkpoint at the end of the first epoch (hours of GPU time)."""
    if not (out / "last" / "optimizer.pt").is_file():
        return
    try:
        done = json.loads((out / "metrics.json").read_text())[-1]
        epoch, step = int(done["epoch"]), int(done["step"])
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        epoch, step = 0, 0
    if epoch < epochs and step < total:
        raise FileExistsError(f"{out} holds a run stopped at epoch {epoch} of {epochs}: add --resume to continue "
                              f"it, or give another --out (or remove {out}) to start over")


def _refuse_another_config(last: Path, cfg: CroBIMConfig) -> None:
    """Resuming with another lr, schedule or model would continue a run nobody started; say which
    fields differ before hours of GPU time go into it (an architecture change would fail the
    strict load anyway, but as a list of tensor names)."""
    if not (last / "optimizer.pt").is_file():
        raise FileNotFoundError(f"{last}: nothing to resume (no optimizer.pt)")
    changed = config_changes(stored_config(last), cfg)
    if changed:
        more = f"; +{len(changed) - 4} more" if len(changed) > 4 else ""
        raise ValueError(f"{last} was trained with another config ({'; '.join(changed[:4])}{more}): resume with "
                         "the config it started with, or give another --out to start a new run")


def train(data: str | Path, cfg: CroBIMConfig, out: str | Path, resume: bool = False, device: str | None = None,
          until_epoch: int | None = None, log: Log = print, progress: bool = False) -> dict:
    """Train on ``data``'s train split; returns the last epoch's record. ``until_epoch`` stops early
    (to simulate an interruption) without changing the schedule. ``progress``: a bar per epoch on
    rank 0 (a paper epoch is minutes on a GPU, hours on a CPU)."""
    with process_group() as (rank, world, local_rank):
        return _train(data, cfg, out, resume, pick_device(None, local_rank) if world > 1 else pick_device(device),
                      until_epoch, log, progress, rank, world)


def _train(data: str | Path, cfg: CroBIMConfig, out: str | Path, resume: bool, dev: torch.device,
           until_epoch: int | None, log: Log, progress: bool, rank: int, world: int) -> dict:
    tc = cfg.train
    out = Path(out)
    last = out / "last"
    if resume:
        _refuse_another_config(last, cfg)
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(tc.seed)
    train_samples = load_split(data, "train")
    val_samples = load_split(data, tc.val_split) if tc.val_split in available_splits(data) else []
    model = build_model(cfg.model).to(dev)
    groups = param_groups(model, tc.weight_decay, tc.text_trainable_layers, tc.freeze_text)
    optimizer = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
    per_rank = len(train_samples) // world
    micro_per_epoch = per_rank // tc.micro_batch
    accum = max(1, tc.batch_size // (tc.micro_batch * world))
    steps_per_epoch = max(1, micro_per_epoch // accum)
    total = steps_per_epoch * tc.epochs
    if tc.max_steps:
        total = min(total, tc.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(total, tc.poly_power))
    if micro_per_epoch == 0:
        raise ValueError(f"{data}: {len(train_samples)} train samples, fewer than one micro-batch of {tc.micro_batch}")
    state = {"epoch": 0, "step": 0, "best_oiou": -1.0}
    if not resume:
        _refuse_a_stopped_run(out, tc.epochs, total)
    if resume:
        load_weights(model, last)
        state.update(load_training_state(last, optimizer, scheduler))
        log(f"resumed from {last}: epoch {state['epoch']}, step {state['step']}")
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    amp = tc.bf16 and dev.type == "cuda"
    ds = RefSegDataset(train_samples, cfg.model.img_size)
    collate = make_collate(model.tokenize)
    loader_workers = default_workers(tc.num_workers) if tc.num_workers else 0    # no more than the cores we have
    history = json.loads((out / "metrics.json").read_text()) if resume and (out / "metrics.json").is_file() else []
    record: dict = {}
    if main:
        log(f"train: {len(train_samples)} samples, {steps_per_epoch} steps/epoch x {tc.epochs} epochs "
            f"(batch {tc.micro_batch} x {world} ranks x {accum} accumulation), device {dev}")
    while state["epoch"] < tc.epochs and state["step"] < total:
        if until_epoch is not None and state["epoch"] >= until_epoch:
            break
        epoch = state["epoch"]
        t0 = time.time()
        order = epoch_order(len(train_samples), tc.seed, epoch)[rank::world][: micro_per_epoch * tc.micro_batch]
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds, order), batch_size=tc.micro_batch, shuffle=False, drop_last=True,
            num_workers=loader_workers, collate_fn=collate, pin_memory=dev.type == "cuda")
        net.train()
        losses = []
        batches = track(loader, total=len(loader), description=f"epoch {epoch + 1}/{tc.epochs}", transient=True,
                        disable=not (progress and main))
        for i, batch in enumerate(batches):
            last_micro = (i + 1) % accum == 0
            sync = nullcontext() if (last_micro or world == 1) else net.no_sync()
            with sync:
                losses.append(_micro_step(net, batch, dev, cfg, 1.0 / accum, amp))
            if last_micro:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                state["step"] += 1
                if state["step"] >= total:
                    break
        state["epoch"] = epoch + 1
        record = {"epoch": state["epoch"], "step": state["step"], "train_loss": float(np.mean(losses)) if losses else None,
                  "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - t0, 2)}
        if main:
            if val_samples:
                res = score(model, val_samples, cfg.eval.size, cfg.eval.batch_size, cfg.eval.native, dev, amp).summary()
                record["val"] = res
                if res["all"]["oIoU"] > state["best_oiou"]:
                    state["best_oiou"] = res["all"]["oIoU"]
                    record["best"] = True
            save_checkpoint(out / "last", model, cfg, optimizer, scheduler, state)
            if record.get("best"):
                save_checkpoint(out / "best", model, cfg)
            history.append(record)
            (out / "metrics.json").write_text(json.dumps(history, indent=1))
            val = record.get("val", {}).get("all")
            log(f"epoch {state['epoch']}/{tc.epochs}: loss {record['train_loss']:.4f}"
                + (f", val mIoU {100 * val['mIoU']:.2f} oIoU {100 * val['oIoU']:.2f}" if val else "")
                + f" ({record['seconds']} s)")
        if world > 1:
            torch.distributed.barrier()
    if not ranks_agree(model.parameters(), world):
        raise RuntimeError(f"train: the {world} ranks ended with different weights; DDP did not synchronise them")
    if world > 1 and main:
        log(f"train: {world} ranks, weights identical on every rank")
    return record


# ------------------------------------------------------------------ fixed-step fit (the smoke arms)
def fit_steps(cfg: CroBIMConfig, samples: Sequence[RefSample], steps: int, batch_size: int, lr: float, seed: int,
              device: torch.device, dataset: RefSegDataset | None = None, log: Log | None = None) -> nn.Module:
    """Fresh tiny model, AdamW + poly decay, ``steps`` steps over ``samples`` in seeded epochs."""
    seed_everything(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg.model).to(device)
    groups = param_groups(model, cfg.train.weight_decay, cfg.train.text_trainable_layers, cfg.train.freeze_text)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(steps, cfg.train.poly_power))
    # a shared cache: same images and masks, texts from ``samples`` (the control swaps them)
    ds = with_texts(dataset, samples) if dataset is not None else RefSegDataset(samples, cfg.model.img_size, cache=True)
    collate = make_collate(model.tokenize)
    if not len(ds):
        raise ValueError("smoke: no samples to fit")
    batch_size = min(batch_size, len(ds))
    step, epoch = 0, 0
    model.train()
    while step < steps:
        order = epoch_order(len(ds), seed, epoch)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = collate([ds[i] for i in order[start:start + batch_size]])
            loss = _micro_step(model, batch, device, cfg, 1.0, False)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if log and (step % 50 == 0 or step == steps):
                log(f"  step {step}/{steps}: loss {loss:.4f}")
            if step >= steps:
                break
        epoch += 1
    return model


def with_texts(ds: RefSegDataset, samples: Sequence[RefSample]) -> RefSegDataset:
    """``samples`` (same images, other texts) over ``ds``'s cached images and masks."""
    out = RefSegDataset(samples, ds.size, cache=True)
    out._cache = ds._cache
    return out
