"""``risbench adapter train|eval|params``: thin commands over :mod:`.train` and :mod:`.evaluate`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..console import WorkspaceOpt, emit_json, json_mode
from ..console import friendly as _friendly
from ..console import plain as _plain

adapter_app = typer.Typer(help="PA-SAM prompt adapter for sam-refine: train on trusted masks, evaluate.",
                          no_args_is_help=True)


@adapter_app.command("train")
@_friendly
def train_cmd(workspace: Path = WorkspaceOpt,
              recipe: str = typer.Option("adapters/pa_sam_vit_h.yaml", "--recipe", "-r",
                                         help="adapter recipe YAML, or shipped: pa_sam_vit_h, pa_sam_vit_b, tiny"),
              out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default W/runs/adapter-NAME)"),
              checkpoint: Optional[Path] = typer.Option(None, help="SAM checkpoint (default: recipe, else refine.checkpoint)"),
              truth: Optional[Path] = typer.Option(None, help="ground-truth masks.jsonl to trust besides reviewed masks "
                                                              "(default: the synthetic truth)"),
              resume: bool = typer.Option(False, help="continue from OUT/last"),
              max_steps: Optional[int] = typer.Option(None, min=1, help="stop after this many steps (resumable)"),
              device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N (torchrun: one GPU per rank)"),
              evaluate: bool = typer.Option(True, help="score the held-out scenes at the end"),
              progress: bool = typer.Option(sys.stderr.isatty(), help="show progress bars")) -> None:
    """Train the adapter on the workspace's trusted masks (torchrun for several GPUs)."""
    from ..workspace import Workspace
    from .evaluate import format_table
    from .recipe import load_recipe
    from .train import train_adapter

    result = train_adapter(Workspace(workspace.resolve()), load_recipe(recipe), out, checkpoint=checkpoint, truth=truth,
                           resume=resume, max_steps=max_steps, device=device, evaluate=evaluate, progress=progress,
                           log=_plain)
    if result.evaluation:
        format_table(result.evaluation, log=_plain)
    _plain(f"use it: refine: {{adapter: {result.adapter_path}}} in {workspace}/pipeline.yaml")


@adapter_app.command("eval")
@_friendly
def eval_cmd(workspace: Path = WorkspaceOpt,
             adapter: Path = typer.Option(..., "--adapter", "-a", help="adapter.safetensors, its JSON or its run folder"),
             checkpoint: Optional[Path] = typer.Option(None, help="SAM checkpoint (must be the one it was trained on)"),
             truth: Optional[Path] = typer.Option(None, help="ground-truth masks.jsonl (default: the synthetic truth)"),
             draws: Optional[int] = typer.Option(None, min=0, help="noisy boxes per held-out mask (default: recipe)"),
             device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N"),
             as_json: bool = typer.Option(False, "--json", help="print only JSON on stdout (the table goes to stderr)"),
             progress: bool = typer.Option(sys.stderr.isatty(), help="show progress bars")) -> None:
    """mIoU and boundary IoU on the held-out scenes, SAM alone and SAM + adapter side by side."""
    from ..workspace import Workspace
    from .evaluate import evaluate_adapter, format_table

    with json_mode(as_json):
        result = evaluate_adapter(Workspace(workspace.resolve()), adapter, truth=truth, checkpoint=checkpoint,
                                  device=device, draws=draws, progress=progress)
        _plain(f"adapter {result['adapter']} (sha256 {result['adapter_sha256'][:12]}) on {result['segmenter']}")
        format_table(result, log=_plain)
    if as_json:
        emit_json(result)


@adapter_app.command("params")
@_friendly
def params_cmd(recipe: str = typer.Option("adapters/pa_sam_vit_h.yaml", "--recipe", "-r", help="adapter recipe")) -> None:
    """Trainable parameter count of a recipe (builds SAM's decoder side only, random weights)."""
    from ..segment.sam_build import build_sam_decoder
    from .model import build_adapter_decoder
    from .recipe import load_recipe

    r = load_recipe(recipe)
    prompt, decoder = build_sam_decoder(r.sam.model)
    counts = build_adapter_decoder(decoder, prompt, n_points=r.adapter.points, trainable=r.adapter.trainable).parameter_counts()
    _plain(f"{r.name} ({r.sam.model}): {counts['trainable']:,} trainable = {counts['new']:,} new + "
           f"{counts['unfrozen_sam']:,} unfrozen SAM decoder ({', '.join(r.adapter.trainable)}); "
           f"{counts['frozen_sam_decoder']:,} SAM decoder parameters stay frozen")
