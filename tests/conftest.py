"""Shared fixtures: the real sample files (skipped when absent), workspaces, and `torchrun`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from risbench_builder.workspace import Workspace, init_workspace

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def real_fixtures_dir() -> Path:
    return Path(os.environ.get("RISBENCH_REAL_FIXTURES", PROJECT_ROOT.parent / "shared" / "fixtures" / "real"))


@pytest.fixture
def real_fixtures() -> Path:
    path = real_fixtures_dir()
    if not path.is_dir():
        pytest.skip(f"real sample files not found at {path} (set RISBENCH_REAL_FIXTURES)")
    return path


@pytest.fixture
def make_workspace(tmp_path: Path):
    """Create a workspace from a pipeline given as a dict."""

    def make(pipeline: dict, name: str = "ws") -> Workspace:
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(yaml.safe_dump(pipeline))
        return init_workspace(tmp_path / name, spec)

    return make


def torchrun(*cli_args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` of ``risbench CLI_ARGS`` with ``ranks`` processes (gloo on the CPU,
    one thread each); stdout and stderr captured as text."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
           "-m", "risbench_builder", *cli_args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def kill_midway(cmd: list[str], catalog: Path, table: str, at_least: int, timeout: float = 120,
                sig: int = signal.SIGKILL) -> subprocess.CompletedProcess:
    """Start ``cmd``, stop it with ``sig`` once ``table`` of ``catalog`` holds ``at_least``
    committed rows, and check that it did not finish first (the resume tests' harness). SIGKILL
    goes to the process alone (its pool workers outlive it, as after an OOM kill); SIGINT to its
    whole process group, as Ctrl-C in a terminal. Returns the exit code and the output.

    The command starts with SIGINT at its default, as from a terminal: a test run started in the
    background (``pytest &`` in a script, as some CI runners do) ignores SIGINT, and children
    inherit that, so Ctrl-C would never reach them."""
    terminal = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if sig == signal.SIGINT else None
    with tempfile.TemporaryFile("w+") as out:     # not a pipe: orphaned workers would hold it open
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                preexec_fn=terminal)
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if catalog.exists():
                try:
                    con = sqlite3.connect(catalog, timeout=1)
                    rows = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    rows = 0
                if rows >= at_least:
                    break
            time.sleep(0.005)
        assert proc.poll() is None, f"{' '.join(cmd[3:6])} finished before it could be stopped"
        if sig == signal.SIGKILL:
            os.kill(proc.pid, sig)
        else:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=60)
        out.seek(0)
        output = out.read()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    return subprocess.CompletedProcess(cmd, proc.returncode, output)
