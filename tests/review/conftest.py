"""A real Label Studio for the review tests: started once per session from .venv-labelstudio.

The server runs on 127.0.0.1 at a free port with a temporary data dir, a preset admin token,
outbound calls off and local-files serving rooted at a temporary folder in which the tests
make their workspaces. It is stopped by PID at the end (the kill test restarts it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import yaml

from risbench_builder.review.localserver import LABEL_STUDIO_SPEC, LocalLabelStudio
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine
from risbench_builder.workspace import Workspace, init_workspace

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOKEN_ENV = "RISBENCH_TEST_LS_TOKEN"


def label_studio_venv() -> Path:
    return Path(os.environ.get("RISBENCH_LABEL_STUDIO_VENV", PROJECT_ROOT / ".venv-labelstudio"))


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory):
    """The running server (``.url``, ``.token``, ``.document_root``, ``.kill()``, ``.start()``)."""
    venv = label_studio_venv()
    if not (venv / "bin" / "label-studio").exists():
        pytest.skip(f"Label Studio is not installed at {venv}: python3 -m venv {venv} && "
                    f"{venv}/bin/pip install '{LABEL_STUDIO_SPEC}' (make test does this)")
    base = tmp_path_factory.mktemp("labelstudio")
    server = LocalLabelStudio(venv, base / "data", base / "root", template=venv / "risbench-test-template")
    server.document_root.mkdir(parents=True, exist_ok=True)
    server.start()
    yield server
    server.stop()


def review_pipeline(server: LocalLabelStudio, scenes: int = 2, **review) -> dict:
    """Synthetic sources, the box segmenter, every mask routed to review, loose finalize rules."""
    return {
        "name": "review-test",
        "synthetic": {"out": "sources", "seed": 5, "scenes": scenes, "patches_per_scene": 2},
        "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
        "refine": {"segmenter": "box", "jitter_k": 0, "route": {"min_area_ratio": 5.0}},
        "finalize": {"min_mask_pixels": 0, "min_mask_box_iou": 0.0, "min_words": 0, "require_distinguisher": False,
                     "dedupe": False, "geometry_check": "off"},
        "review": {"url": server.url, "token_env": TOKEN_ENV, "document_root": str(server.document_root),
                   "min_agreement": 0.6, **review},
    }


@pytest.fixture
def review_workspace(label_studio: LocalLabelStudio, request: pytest.FixtureRequest,
                     monkeypatch: pytest.MonkeyPatch) -> Callable[..., Workspace]:
    """An ingested and refined workspace inside the server's document root, token in the env."""
    monkeypatch.setenv(TOKEN_ENV, label_studio.token)

    def make(name: str | None = None, scenes: int = 2, **review) -> Workspace:
        name = name or request.node.name.replace("[", "-").replace("]", "")
        spec = label_studio.document_root / f"{name}.yaml"
        pipeline = review_pipeline(label_studio, scenes, **review)
        pipeline["review"]["project_title"] = name[:50]
        spec.write_text(yaml.safe_dump(pipeline))
        ws = init_workspace(label_studio.document_root / name, spec)
        run_ingest(ws, ws.load(), progress=False)
        run_refine(ws, ws.load(), progress=False)
        return ws

    return make


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "labelstudio: runs a real Label Studio server (pytest -m labelstudio)")
