"""Adapter tests: one synthetic workspace with noisy VRSBench-style boxes and one tiny-SAM
adapter trained on it, shared by the module that needs them.

The tiny models are far too small for several CPU threads: on a shared 2-core machine the
thread hand-off costs 40x more than the work, so these tests run torch on one thread.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from risbench_builder.stages.ingest import run_ingest  # noqa: E402
from risbench_builder.workspace import Workspace, init_workspace  # noqa: E402


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pipeline(**refine) -> dict:
    # 12 scenes x 2 patches: ~57 referred objects with loose VRSBench-style boxes and true masks
    return {"synthetic": {"out": "sources", "seed": 3, "scenes": 12, "patches_per_scene": 2},
            "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
            "refine": {"segmenter": "sam", "model": "tiny", "jitter_k": 2, "tiny_box": 0, **refine}}


def make_ingested(root: Path, **refine) -> Workspace:
    spec = root.parent / f"{root.name}.yaml"
    spec.write_text(yaml.safe_dump(pipeline(**refine)))
    ws = init_workspace(root, spec)
    run_ingest(ws, ws.load(), progress=False)
    return ws


@pytest.fixture(scope="package")
def workspace(tmp_path_factory) -> Workspace:
    return make_ingested(tmp_path_factory.mktemp("adapter") / "ws")


@pytest.fixture(scope="package")
def trained(workspace):
    """The tiny recipe trained to the end on the shared workspace (evaluated on held-out scenes)."""
    from risbench_builder.adapter.recipe import load_recipe
    from risbench_builder.adapter.train import train_adapter

    return train_adapter(workspace, load_recipe("tiny"), progress=False, log=lambda _m: None)
