"""The Slurm array example, run as Slurm would run its tasks (array environment variables, one
process per task), then merged: the catalog equals one sam-refine run over every image."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from risbench_builder.catalog import Catalog
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine
from risbench_builder.workspace import init_workspace

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "slurm_sam_refine.sbatch"


def _workspace(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "p.yaml"
    spec.write_text(yaml.safe_dump({"synthetic": {"out": "sources", "seed": 8, "scenes": 3, "patches_per_scene": 2},
                                    "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                                    "refine": {"segmenter": "box", "jitter_k": 0}}))
    ws = init_workspace(root / "ws", spec)
    run_ingest(ws, ws.load(), progress=False)
    return ws


def test_the_slurm_array_example_then_merge_equals_one_run(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "array")
    bindir = Path(sys.executable).parent            # `risbench` of this venv
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "SLURM_ARRAY_TASK_COUNT": "3",
           "SLURM_ARRAY_TASK_MIN": "10"}
    for task in (10, 11, 12):                          # --array=10-12: indices need not start at 0
        done = subprocess.run(["bash", str(SCRIPT), str(ws.path)], env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-1500:]
    shards = sorted((ws.path / "shards").glob("*.sqlite"))
    assert [p.name for p in shards] == [f"catalog-{i}of3.sqlite" for i in range(3)]
    merged = subprocess.run([str(bindir / "risbench"), "catalog", "merge", *map(str, shards), "-w", str(ws.path)],
                            capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr[-1500:]

    single = _workspace(tmp_path / "single")
    run_refine(single, single.load(), progress=False)
    with Catalog(ws.catalog_path) as a, Catalog(single.catalog_path) as b:
        assert a.count("proposals") == b.count("proposals") > 0
        assert a.fingerprint(["proposals"]) == b.fingerprint(["proposals"])
