"""CroBIM tests need the `train` extra (torch, timm, transformers) and pyarrow; skipped without them."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("transformers")
pytest.importorskip("pyarrow")

import torch  # noqa: E402

from risbench_builder.crobim.config import load_config  # noqa: E402

torch.set_num_threads(int(os.environ.get("RISBENCH_TORCH_THREADS", "2")))


@pytest.fixture(autouse=True)
def _quiet_random_init():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random init")
        yield


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_config("tiny")


@pytest.fixture(scope="session")
def small_export(tmp_path_factory) -> Path:
    """A small hf export: 6 synthetic scenes x 2 patches (train and val)."""
    from tests.crobim.exports import make_hf_export

    return make_hf_export(tmp_path_factory.mktemp("crobim_small"), scenes=6, patches_per_scene=2, seed=7)
