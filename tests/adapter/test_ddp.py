"""DDP under torchrun, on the CPU: two gloo ranks train the tiny recipe; they take halves of every
global batch, and the trainer checks at the end that both hold rank 0's weights bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import torchrun


@pytest.mark.slow
def test_two_ranks_under_torchrun(workspace, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    run = torchrun("adapter", "train", "-w", str(workspace.path), "--recipe", "tiny", "--out", str(out),
                   "--max-steps", "3", "--no-evaluate", "--device", "cpu", "--no-progress")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "2 ranks, trainable weights identical on every rank" in run.stdout
    assert run.stdout.count("wrote ") == 1                      # one adapter file, from rank 0
    meta = json.loads((out / "adapter.json").read_text())
    trained = meta["trained"]
    assert trained["world_size"] == 2 and trained["steps"] == 3
    # 16 masks per rank and step: one step covers 32 of the 48 training masks
    assert trained["epochs"] == pytest.approx(3.0) and trained["train_masks"] == 48
