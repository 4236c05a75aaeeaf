"""The smoke verdict (``risbench train --smoke``): does a fresh export hold aligned, learnable
expression-mask pairs?

Fits the tiny model on a subset of train, scores held-out val; then the negative control trains
identically with expressions shuffled among the referred objects of each image. Verdict: val mIoU
gap (aligned - control) on images with >= 2 referred objects. The two arms run one after the
other in this process or side by side in two ``smoke_arm.py`` worker processes; each arm is
``train.fit_steps`` plus scoring.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import torch

from .config import CroBIMConfig
from .data import RefSegDataset, RefSample, load_split, min_mask_fraction, multi_object_images, shuffle_expressions, \
    subset_by_images
from ..devices import pick_device
from .evaluate import score
from .train import Log, fit_steps, with_texts

RESULT_PREFIX = "SMOKE-ARM-RESULT "
LARGER_EXPORT = ("the smoke verdict needs a larger export (a few hundred images): build one with "
                 "`risbench demo --scenes 250 -w big`, then `risbench train --smoke --data big/exports/hf`")


def smoke(data: str | Path, cfg: CroBIMConfig, device: str | None = None, samples: dict | None = None,
          log: Log = print, always_control: bool = False, side_by_side: bool | None = None) -> dict:
    """Aligned run vs shuffled-expression control; returns numbers and the verdict.

    ``side_by_side`` trains the two arms at once in two worker processes, each with half of
    torch's threads (default: on a CPU with two or more threads). The smoke model is small, so
    one arm gains little from a second thread (1.5x on the 2-core VM) while two arms side by
    side gain 2x: the check takes ~3/4 of the wall time. Both arms then always run.

    Run one after the other, when the aligned run already decides a FAIL (it does not fit, or
    its own val mIoU on multi-object images is below the required gap, so no control can make
    the gap large enough), the control is skipped unless ``always_control``: ``gap`` is then that
    upper bound and ``runs`` has no ``shuffled`` entry. A broken export is reported in half the time.
    """
    sc = cfg.smoke
    dev = pick_device(device)
    t0 = time.time()
    if samples is None:
        try:
            train_all = load_split(data, "train")
            val_all = load_split(data, cfg.train.val_split)
        except FileNotFoundError as exc:    # a split the export lacks (make demo's 24 images: no val yet)
            if not Path(data).is_dir():
                raise
            raise FileNotFoundError(f"{exc}; {LARGER_EXPORT}") from None
    else:
        train_all, val_all = samples["train"], samples["val"]
    visible = min_mask_fraction(sc.min_mask_fraction)
    train_set = subset_by_images(train_all, sc.train_samples, sc.seed, keep=visible)
    val_set = subset_by_images(val_all, sc.val_samples, sc.seed, prefer_multi=True, keep=visible)
    # images with two or more referred objects of any size: there the expression decides, also
    # when only one of the objects is large enough to be scored
    multi_all = multi_object_images(val_all)
    keep = [s.image_id in multi_all for s in val_set]
    multi = {s.image_id for s, k in zip(val_set, keep) if k}
    if not any(keep):
        raise ValueError(f"{data}: no val image with two or more referred objects (scored referents >= "
                         f"{100 * sc.min_mask_fraction:g} % of the image); {LARGER_EXPORT}")
    if side_by_side is None:
        side_by_side = dev.type == "cpu" and torch.get_num_threads() >= 2
    log(f"smoke: {len(train_set)} train triplets on {len({s.image_id for s in train_set})} images, "
        f"{len(val_set)} held-out val triplets ({sum(keep)} on {len(multi)} multi-object images), "
        f"{sc.steps} steps x batch {sc.batch_size} per run, {cfg.model.img_size} px, device {dev}"
        + (", both runs side by side" if side_by_side else ""))
    train_ds = RefSegDataset(train_set, cfg.model.img_size, cache=True)
    val_ds = RefSegDataset(val_set, cfg.model.img_size, cache=True)
    arms = {"aligned": train_set, "shuffled": shuffle_expressions(train_set, sc.seed)}
    job = _SmokeJob(cfg, train_ds, val_ds, keep, dev)
    if side_by_side:
        runs = _arms_side_by_side(job, arms, max(1, torch.get_num_threads() // 2), log)
    else:
        runs = {}
        for name, texts in arms.items():
            if name == "shuffled" and not always_control and (
                    runs["aligned"]["train_mIoU"] < sc.min_train_miou or runs["aligned"]["val_multi_mIoU"] < sc.min_gap):
                log("smoke shuffled: skipped, the aligned run already decides FAIL (no control can lift the gap)")
                break
            runs[name] = job.run(name, texts, log)
    control = runs["shuffled"]["val_multi_mIoU"] if "shuffled" in runs else None
    gap = runs["aligned"]["val_multi_mIoU"] - (control or 0.0)   # without a control: an upper bound
    fits = runs["aligned"]["train_mIoU"] >= sc.min_train_miou
    aligned = gap >= sc.min_gap
    verdict = "PASS" if fits and aligned else "FAIL"
    versus = (f"shuffled control {100 * control:.2f}, gap {100 * gap:.2f}" if control is not None
              else f"shuffled control not run, gap <= {100 * gap:.2f}")
    note = (f"{verdict}: val mIoU on {sum(keep)} expressions of {len(multi)} multi-object images: aligned "
            f"{100 * runs['aligned']['val_multi_mIoU']:.2f} vs {versus} (need >= {100 * sc.min_gap:.0f}); "
            f"train fit mIoU {100 * runs['aligned']['train_mIoU']:.2f} (need >= {100 * sc.min_train_miou:.0f})")
    if not aligned:
        note += " -- expressions and masks do not look aligned (shifted or mismatched masks show no gap)"
    log(note)
    return {"verdict": verdict, "gap": gap, "fits": fits, "runs": runs, "note": note,
            "train_samples": len(train_set), "val_samples": len(val_set), "val_multi_samples": sum(keep),
            "seconds": round(time.time() - t0, 1)}


class _SmokeJob:
    """What both smoke arms share (config, cached images and masks, held-out set); picklable, so an
    arm runs the same in this process or in a worker."""

    def __init__(self, cfg: CroBIMConfig, train_ds: RefSegDataset, val_ds: RefSegDataset, keep: list[bool],
                 device: torch.device) -> None:
        self.cfg, self.train_ds, self.val_ds, self.keep, self.device = cfg, train_ds, val_ds, keep, device

    def run(self, name: str, texts: Sequence[RefSample], log: Log) -> dict:
        """Fit one arm on ``texts`` (the train images with this arm's expressions) and score it."""
        cfg, sc, dev = self.cfg, self.cfg.smoke, self.device
        t = time.time()
        model = fit_steps(cfg, texts, sc.steps, sc.batch_size, sc.lr, sc.seed, dev, self.train_ds, log)
        train_m = score(model, texts, cfg.model.img_size, cfg.eval.batch_size, device=dev,
                        dataset=with_texts(self.train_ds, texts))
        val_m = score(model, self.val_ds.samples, cfg.model.img_size, cfg.eval.batch_size, device=dev,
                      dataset=self.val_ds)
        run = {"train_mIoU": train_m.summary()["all"]["mIoU"], "val_mIoU": val_m.summary()["all"]["mIoU"],
               "val_multi_mIoU": val_m.select(self.keep)["mIoU"], "seconds": round(time.time() - t, 1)}
        log(f"smoke {name:>8}: train mIoU {100 * run['train_mIoU']:.2f}, val mIoU {100 * run['val_mIoU']:.2f}, "
            f"val mIoU on multi-object images {100 * run['val_multi_mIoU']:.2f} ({run['seconds']} s)")
        return run


def _arms_side_by_side(job: _SmokeJob, arms: dict[str, Sequence[RefSample]], threads: int, log: Log) -> dict[str, dict]:
    """Each arm in its own ``python -m risbench_builder.crobim.smoke_arm`` process, log lines passed
    on as they come. A fresh interpreter, not multiprocessing: a forked OpenMP runtime can hang,
    and spawn re-imports the caller's main script (which breaks unguarded scripts)."""
    import pickle
    import queue as queue_mod
    import subprocess
    import sys
    import tempfile
    import threading

    lines: queue_mod.Queue = queue_mod.Queue()
    results: dict[str, dict] = {}
    last_line: dict[str, str] = {}                  # for the one-line error when a run dies

    def pump(name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:                                           # type: ignore[union-attr]
            line = line.rstrip("\n")
            if line.startswith(RESULT_PREFIX):
                results[name] = json.loads(line[len(RESULT_PREFIX):])
            else:
                last_line[name] = line
                lines.put(line if line.startswith("smoke") else f"  {name}: {line.strip()}")
        proc.wait()

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with tempfile.TemporaryDirectory(prefix="risbench-smoke-") as tmp:
        procs, pumps = {}, []
        for name, texts in arms.items():
            job_file = Path(tmp) / f"{name}.pkl"
            job_file.write_bytes(pickle.dumps((job, name, list(texts), threads)))
            procs[name] = subprocess.Popen([sys.executable, "-m", "risbench_builder.crobim.smoke_arm", str(job_file)],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            pumps.append(threading.Thread(target=pump, args=(name, procs[name]), daemon=True))
            pumps[-1].start()
        try:
            while any(t.is_alive() for t in pumps) or not lines.empty():
                try:
                    log(lines.get(timeout=0.5))
                except queue_mod.Empty:
                    pass
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
    for name, proc in procs.items():
        if name not in results:
            raise RuntimeError(f"smoke: the {name} run stopped with exit code {proc.returncode}: "
                               f"{last_line.get(name, '(no output)')} "
                               f"(rerun with --one-at-a-time, side_by_side=False, to see it in this process)")
    return {name: results[name] for name in arms}
