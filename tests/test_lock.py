"""One writer per workspace: a second writing command stops at once and names the first; a
killed holder leaves no stale lock; sharded sam-refine ranks share it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from risbench_builder.lock import EXIT_BUSY, WorkspaceBusy, current_holder, lock_path, workspace_lock
from risbench_builder.review import push
from tests.sources.test_vrsbench import write_p0003_tree

runner = CliRunner()
HOLD = ("import sys, time; from pathlib import Path; from risbench_builder.lock import workspace_lock\n"
        "with workspace_lock(Path(sys.argv[1]), sys.argv[2], shared=sys.argv[3] == '1'):\n"
        "    print('held', flush=True); time.sleep(120)")


def hold(ws: Path, what: str, shared: bool = False) -> subprocess.Popen:
    """Another process holding ``ws``'s lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ws), what, "1" if shared else "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def ws(make_workspace, tmp_path: Path):
    root = write_p0003_tree(tmp_path / "vrsbench")
    return make_workspace({"sources": [{"kind": "vrsbench", "root": str(root)}]})


def test_second_writer_stops_and_names_the_first_and_a_killed_holder_leaves_no_lock(ws) -> None:
    holder = hold(ws.path, "build --stage sam-refine")
    try:
        result = runner.invoke(app, ["build", "-w", str(ws.path), "--stage", "ingest", "--no-progress"])
        text = " ".join(result.output.split())
        assert result.exit_code == EXIT_BUSY, result.output
        assert f"`risbench build --stage sam-refine` (pid {holder.pid}" in text and "Traceback" not in text
        assert not ws.catalog_path.exists()                      # nothing ran
        with pytest.raises(WorkspaceBusy):
            push(ws)                                             # refused before any server is asked
        assert current_holder(ws.path)["pid"] == holder.pid
    finally:
        kill(holder)
    assert current_holder(ws.path) is None                       # the kernel dropped it with the process
    result = runner.invoke(app, ["build", "-w", str(ws.path), "--stage", "ingest", "--no-progress"])
    assert result.exit_code == 0, result.output
    with Catalog(ws.catalog_path) as catalog:
        assert catalog.count("triplets") == 1
    status = json.loads(runner.invoke(app, ["status", "-w", str(ws.path), "--json"]).output)
    assert status["running"] is None


def test_status_names_the_running_command(ws) -> None:
    assert runner.invoke(app, ["build", "-w", str(ws.path), "--stage", "ingest", "--no-progress"]).exit_code == 0
    holder = hold(ws.path, "review pull")
    try:
        result = runner.invoke(app, ["status", "-w", str(ws.path)])
        assert result.exit_code == 0 and f"running now: `risbench review pull` (pid {holder.pid}" in result.output
        running = json.loads(runner.invoke(app, ["status", "-w", str(ws.path), "--json"]).output)["running"]
        assert running["command"] == "review pull" and running["pid"] == holder.pid
    finally:
        kill(holder)


def test_sharded_refine_ranks_share_the_lock_and_keep_other_writers_out(ws) -> None:
    ranks = [hold(ws.path, f"build --stage sam-refine --shard {i}/2", shared=True) for i in range(2)]
    try:
        with workspace_lock(ws.path, "build --stage sam-refine --shard 2/3", shared=True):
            pass
        with pytest.raises(WorkspaceBusy, match="being written by `risbench build --stage sam-refine --shard"):
            with workspace_lock(ws.path, "build --stage finalize"):
                pass
    finally:
        for proc in ranks:
            kill(proc)
    with workspace_lock(ws.path, "build --stage finalize"):
        pass


def test_reentrant_in_one_process_and_forked_children_do_not_keep_it(ws) -> None:
    with workspace_lock(ws.path, "demo"):
        with workspace_lock(ws.path, "build --stage ingest"):     # a stage inside `demo`
            pass
        pid = os.fork()
        if pid == 0:                                              # a worker that outlives its parent's lock
            import time
            time.sleep(3)
            os._exit(0)
    try:
        # released although the child still runs: it closed its copy of the fd at the fork
        with workspace_lock(ws.path, "build --stage ingest"):
            assert json.loads(lock_path(ws.path).read_text())["command"] == "build --stage ingest"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
