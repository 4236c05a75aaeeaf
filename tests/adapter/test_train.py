"""Training, evaluation, resume, checksum refusal and sam-refine integration on the tiny SAM.

Setting: 12 synthetic scenes (24 patches of 512 px, ~57 referred objects) whose prompt boxes
are VRSBench-style loose boxes; the tiny recipe holds out a quarter of the scenes and crops a
>= 128 px context window around each box. "SAM alone" is the tiny random SAM, whose masks are
meaningless, so the gain shows that the adapter learns to segment from the guiding image and
the box, not that it beats a real SAM: the test asserts held-out mIoU rises by at least 0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors import safe_open
from typer.testing import CliRunner

from risbench_builder.adapter.io import AdapterError, load_adapter
from risbench_builder.adapter.recipe import load_recipe
from risbench_builder.adapter.train import train_adapter
from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from risbench_builder.segment.sam import SamSegmenter
from risbench_builder.segment.registry import make_segmenter
from risbench_builder.stages.refine import run_refine

runner = CliRunner()


def test_training_lowers_loss_and_raises_heldout_miou(trained, capsys) -> None:
    first, last = np.mean(trained.losses[:10]), np.mean(trained.losses[-10:])
    ev = trained.evaluation
    sam, ada = ev["sam"]["all"], ev["sam+adapter"]["all"]
    with capsys.disabled():
        print(f"\ntiny adapter: {trained.steps} steps, {trained.train_masks} train / {trained.heldout_masks} held-out "
              f"masks, loss {first:.3f} -> {last:.3f} (mean of first/last 10 steps), {trained.seconds:.1f} s; "
              f"held-out mIoU {sam['miou']:.3f} -> {ada['miou']:.3f} (gain {ada['miou'] - sam['miou']:+.3f}), "
              f"boundary IoU {sam['biou']:.3f} -> {ada['biou']:.3f}")
    assert trained.complete and trained.steps == trained.total_steps
    assert last < 0.7 * first
    assert ada["miou"] >= sam["miou"] + 0.1  # the gain the issue asks for (tiny random SAM baseline)
    assert ada["biou"] > sam["biou"]
    assert ev["sam"]["noisy"]["n"] == ev["sam+adapter"]["noisy"]["n"] == trained.heldout_masks
    meta = json.loads((trained.out / "adapter.json").read_text())
    assert meta["adapter_sha256"] == trained.adapter_sha256 and meta["evaluation"]["gain"]["all"]["miou"] > 0.1
    assert meta["sam"]["model"] == "tiny" and len(meta["sam"]["sha256"]) == 64
    with safe_open(str(trained.adapter_path), "pt") as f:  # weights only, plus the SAM it belongs to
        assert json.loads(f.metadata()["risbench_adapter"])["sam_sha256"] == meta["sam"]["sha256"]
        assert set(f.keys()) and all(not k.startswith("decoder.transformer") for k in f.keys())


def test_resume_continues_the_same_run(workspace, tmp_path) -> None:
    recipe = load_recipe("tiny")
    recipe.optim.checkpoint_every = 4
    quiet = dict(progress=False, evaluate=False, log=lambda _m: None)
    whole = train_adapter(workspace, recipe, tmp_path / "whole", max_steps=14, **quiet)
    first = train_adapter(workspace, recipe, tmp_path / "split", max_steps=9, **quiet)  # "killed" at step 9
    assert first.steps == 9 and json.loads((tmp_path / "split/last/progress.json").read_text())["step"] == 9
    train_adapter(workspace, recipe, tmp_path / "split", max_steps=9, **quiet)   # finished: trained again
    (tmp_path / "split" / "adapter.json").unlink()                               # as if killed before the end
    with pytest.raises(FileExistsError, match="holds an adapter run stopped at step 9 of .*: add --resume"):
        train_adapter(workspace, recipe, tmp_path / "split", max_steps=14, **quiet)
    resumed = train_adapter(workspace, recipe, tmp_path / "split", max_steps=14, resume=True, **quiet)
    assert resumed.steps == 14 and resumed.losses == whole.losses  # crosses epochs and the start of point mining
    with safe_open(str(whole.adapter_path), "pt") as a, safe_open(str(resumed.adapter_path), "pt") as b:
        assert all(np.array_equal(a.get_tensor(k).numpy(), b.get_tensor(k).numpy()) for k in a.keys())
    assert whole.adapter_sha256 != "" and resumed.adapter_sha256 == whole.adapter_sha256


def test_mismatched_sam_is_refused(trained, workspace) -> None:
    other = SamSegmenter("tiny", seed=1)  # same architecture, other weights
    with pytest.raises(AdapterError, match=r"trained against SAM tiny sha256 \w{12}, but sam-refine uses tiny") as e:
        load_adapter(trained.adapter_path, other)
    assert "\n" not in str(e.value)
    # through the pipeline: one red line and exit 1
    data = yaml.safe_load(workspace.pipeline_path.read_text())
    data["refine"].update(adapter=str(trained.adapter_path), seed=1)
    bad = workspace.path.parent / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "pipeline.yaml").write_text(yaml.safe_dump(data))
    (bad / "catalog.sqlite").write_bytes(workspace.catalog_path.read_bytes())
    result = runner.invoke(app, ["build", "-w", str(bad), "--stage", "sam-refine", "--no-progress"])
    assert result.exit_code == 1 and "trained against SAM tiny" in result.output


def test_sam_refine_uses_the_adapter_and_records_it(trained, workspace) -> None:
    data = yaml.safe_load(workspace.pipeline_path.read_text())
    data["refine"]["adapter"] = str(trained.out)  # the run folder works as well as the file
    workspace.pipeline_path.write_text(yaml.safe_dump(data))
    cfg = workspace.load()
    seg = make_segmenter(cfg.refine, workspace)
    name = f"sam:tiny+adapter:{trained.adapter_sha256[:8]}"
    assert seg.name == name and seg.adapter_sha256 == trained.adapter_sha256
    report = run_refine(workspace, cfg, progress=False, segmenter=seg)
    with Catalog(workspace.catalog_path) as cat:
        rows = cat.conn.execute("SELECT DISTINCT segmenter, model_sha256 FROM proposals").fetchall()
        n = cat.count("triplets")
    assert rows == [(name, seg.model_sha256)] and report.proposals == n
    assert json.loads((workspace.reports / "refine.json").read_text())["adapter_sha256"] == trained.adapter_sha256
    assert seg.feature_calls == report.images  # guiding image once per image, next to the cached embedding


def test_cli_eval_prints_side_by_side(trained, workspace) -> None:
    result = runner.invoke(app, ["adapter", "eval", "-w", str(workspace.path), "--adapter", str(trained.adapter_path),
                                 "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    assert "mIoU SAM" in result.output and "mIoU +adapter" in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("all "))
    sam, ada = float(line.split()[2]), float(line.split()[3])
    assert ada == pytest.approx(trained.evaluation["sam+adapter"]["all"]["miou"], abs=1e-3) and ada > sam
    result = runner.invoke(app, ["adapter", "eval", "-w", str(workspace.path), "--adapter", str(Path("nope"))])
    assert result.exit_code == 1 and "no such file" in result.output
