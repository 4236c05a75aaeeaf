"""`--json` on the commands people script: piped, stdout holds exactly one JSON document and the
human lines (progress, tables, logs) go to stderr; `--version`; stage names as choices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROUTE_ALL_ACCEPT = {k: None for k in ("min_iou_pred", "min_stability", "min_box_iou", "min_jitter_agreement",
                                      "max_multimask_disagreement", "max_components", "min_area_ratio",
                                      "max_area_ratio", "min_polygon_iou")}


def risbench(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "risbench_builder", *args], capture_output=True, text=True,
                          timeout=600)
    if ok:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def as_json(done: subprocess.CompletedProcess):
    return json.loads(done.stdout)            # the whole of stdout is one JSON document


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-json")
    spec = root / "p.yaml"
    spec.write_text(yaml.safe_dump({
        "synthetic": {"out": "sources", "seed": 6, "scenes": 3, "patches_per_scene": 2},
        "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
        "refine": {"segmenter": "box", "jitter_k": 0, "route": ROUTE_ALL_ACCEPT},
        "review": {"audit_fraction": 0.0, "audit_min": 0},
        "finalize": {"min_words": 0, "require_distinguisher": False, "geometry_check": "off"},
        "export": {"targets": ["native", "hf"]}}))
    risbench("init", str(root / "ws"), "--pipeline", str(spec))
    return root / "ws"


def test_build_status_check_quality_calibrate_print_only_json(workspace: Path) -> None:
    built = risbench("build", "-w", str(workspace), "--stage", "all", "--json", "--no-progress")
    data = as_json(built)
    assert list(data["stages"]) == ["ingest", "sam-refine", "finalize", "stats", "export"]
    assert data["stopped"] is None and data["next"]["waiting"] == "the dataset is built"
    status = as_json(risbench("status", "-w", str(workspace), "--json"))
    assert status["counts"]["final"] > 0 and status["next"]["next"].startswith("risbench train --smoke")
    checked = as_json(risbench("check", str(workspace / "exports"), "--json"))
    assert {r["format"] for r in checked} >= {"native", "hf"} and all(r["ok"] for r in checked)
    assert "statement" in as_json(risbench("quality", "-w", str(workspace), "--json"))
    calibrated = as_json(risbench("calibrate", "-w", str(workspace), "--json"))
    assert {"current", "proposed", "target_reached"} <= set(calibrated)


def test_publish_dry_run_json(workspace: Path) -> None:
    risbench("build", "-w", str(workspace), "--stage", "all", "--no-progress")
    done = risbench("publish", "-w", str(workspace), "--repo-id", "org/name", "--dry-run", "--json")
    data = as_json(done)
    assert data["uploaded"] is False and data["rows"] > 0


def test_version_and_stage_choices() -> None:
    from risbench_builder import __version__

    assert risbench("--version").stdout.strip() == f"risbench-builder {__version__}"
    refused = risbench("build", "-w", "nowhere", "--stage", "review", ok=False)
    assert refused.returncode == 2 and "'review' is not one of" in " ".join(refused.stderr.split())
