"""A device the machine does not have is one line naming what it has, before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from risbench_builder.cli import app
from risbench_builder.devices import DeviceError, pick_device

from .test_cli import _init

runner = CliRunner()
NO_CUDA = not torch.cuda.is_available()


def test_the_default_is_cuda_where_there_is_one_else_the_cpu() -> None:
    assert pick_device(None).type == ("cpu" if NO_CUDA else "cuda")
    assert pick_device("cpu") == torch.device("cpu")
    if not NO_CUDA:
        assert pick_device(None, local_rank=0) == torch.device("cuda:0")


def test_names_that_are_not_devices_and_gpus_the_machine_lacks_are_refused() -> None:
    with pytest.raises(DeviceError, match="'gpu' is not a device name: use cpu, cuda or cuda:N"):
        pick_device("gpu")
    with pytest.raises(DeviceError, match=f"cuda:{max(torch.cuda.device_count(), 1) + 7}: this machine has"):
        pick_device(f"cuda:{max(torch.cuda.device_count(), 1) + 7}")
    if NO_CUDA:
        with pytest.raises(DeviceError, match="device cuda: this machine has no usable CUDA GPU"):
            pick_device("cuda")


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without a GPU")
def test_sam_refine_on_cuda_without_a_gpu_is_one_line_not_a_cuda_traceback(tmp_path: Path) -> None:
    ws = _init(tmp_path, {"synthetic": {"out": "sources", "seed": 3, "scenes": 1, "patches_per_scene": 1},
                          "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                          "refine": {"segmenter": "sam", "model": "tiny", "device": "cuda"}})
    result = runner.invoke(app, ["build", "-w", str(ws), "--until", "sam-refine", "--no-progress"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "error: device cuda: this machine has no usable CUDA GPU" in text, text
    assert "Traceback" not in text and "NVIDIA driver" not in text
