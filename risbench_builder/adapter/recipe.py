"""Adapter recipes: one pydantic schema for ``adapters/*.yaml``, validated on load.

A recipe says which SAM the adapter is for, which decoder parts train, the loss weights, the
box-noise augmentation, the held-out split and the optimiser. Shipped recipes live in
``adapters/`` at the repository root and inside the wheel (``risbench_builder/_recipes/adapters``),
so ``--recipe adapters/pa_sam_vit_h.yaml`` works from a clone and from ``pip install``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import ConfigError, parse_model, read_yaml, shipped_file, shipped_names
from .model import DECODER_PARTS, PA_SAM_TRAINABLE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamSpec(_Strict):
    model: str = Field("vit_h", description="SAM registry name: vit_b, vit_l, vit_h, tiny")
    checkpoint: Optional[str] = Field(None, description="SAM weights; default: the workspace's refine.checkpoint "
                                                        "when refine.model matches, else random weights")


class AdapterSpec(_Strict):
    points: int = Field(4, ge=0, description="hard points mined per sign (k positive + k negative)")
    mining_start_epoch: int = Field(4, ge=0, description="Gumbel top-k mining from this epoch on (PA-SAM: 4)")
    gumbel_tau: float = Field(1.0, gt=0)
    trainable: list[str] = Field(default_factory=lambda: list(PA_SAM_TRAINABLE),
                                 description="SAM decoder parts that train besides the adapter")

    @field_validator("trainable")
    @classmethod
    def _known_parts(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(DECODER_PARTS))
        if unknown:
            raise ValueError(f"unknown decoder parts {unknown}; choose from {list(DECODER_PARTS)}")
        return v


class LossSpec(_Strict):
    mask: float = Field(1.0, ge=0, description="BCE + dice on the adapted mask (token 0)")
    coarse: float = Field(1.0, ge=0, description="BCE + dice on the coarse map where certain")
    refined: float = Field(1.0, ge=0, description="BCE + dice on the refined map where uncertain")
    uncertainty: float = Field(1.0, ge=0, description="BCE of the uncertainty map vs the boundary band")


class NoiseSpec(_Strict):
    """Box noise for training prompts, applied to the trusted mask's box."""

    profile: float = Field(0.5, ge=0, le=1, description="chance a prompt takes an error measured on the workspace's "
                                                        "own (prompt box, trusted box) pairs")
    shift: float = Field(0.1, ge=0, description="std of the centre shift, fraction of box size")
    scale: float = Field(0.1, ge=0, description="std of the log scale error")
    aspect: float = Field(0.1, ge=0, description="std of the log aspect error")


class DataSpec(_Strict):
    heldout_fraction: float = Field(0.2, gt=0, lt=1, description="share of scenes held out for evaluation")
    seed: int = 0
    eval_draws: int = Field(2, ge=0, description="noisy boxes per held-out mask in evaluation (besides its prompt box)")
    memory_images: int = Field(512, ge=1, description="cached images kept in memory while training")
    crop: Optional[int] = Field(None, ge=16, description="cut each sample to a context window of at least this many "
                                                          "px around its box (null: whole images, as sam-refine)")


class OptimSpec(_Strict):
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(16, ge=1, description="prompts per step and rank")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    step_epochs: int = Field(10, ge=1, description="StepLR: multiply lr by gamma every this many epochs")
    gamma: float = Field(0.1, gt=0)
    grad_clip: Optional[float] = Field(None, gt=0)
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable checkpoints")


class AdapterRecipe(_Strict):
    name: str
    kind: Literal["pa_sam"] = "pa_sam"
    sam: SamSpec = SamSpec()
    adapter: AdapterSpec = AdapterSpec()
    losses: LossSpec = LossSpec()
    noise: NoiseSpec = NoiseSpec()
    data: DataSpec = DataSpec()
    optim: OptimSpec = OptimSpec()
    seed: int = Field(0, description="adapter init, data order, box noise and Gumbel draws")


def shipped_recipe(name: str) -> Path:
    """A recipe shipped with the package (``pa_sam_vit_h``, ``pa_sam_vit_b``, ``tiny``), clone or wheel."""
    path = shipped_file("adapters", name)
    if path is None:
        raise ConfigError(f"no adapter recipe {name!r}: give a YAML path or a shipped name "
                          f"({', '.join(shipped_names('adapters'))})")
    return path


def parse_recipe(data: object, origin: Path | str = "<recipe>") -> AdapterRecipe:
    return parse_model(AdapterRecipe, data, origin, " (an adapter recipe) with a 'name:' key")


def load_recipe(spec: str | Path) -> AdapterRecipe:
    """``spec`` is a YAML file, or ``adapters/NAME.yaml`` / ``NAME`` of a shipped recipe."""
    path = Path(spec)
    if not path.is_file():
        path = shipped_recipe(str(spec))
    return parse_recipe(read_yaml(path), path)
