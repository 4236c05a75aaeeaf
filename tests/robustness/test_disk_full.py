"""A full disk stops a stage with one line that says to free space, and the rerun goes on.

The end-to-end case fills a real filesystem (a small tmpfs), so it needs root to mount one and
skips elsewhere; the message mapping is checked everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from risbench_builder.console import DISK_FULL, EXIT_ERROR, friendly

runner = CliRunner()


def _raising(exc: BaseException):
    @friendly
    def command() -> None:
        raise exc
    return command


@pytest.mark.parametrize("exc, says", [
    (sqlite3.OperationalError("database or disk is full"), DISK_FULL),
    (OSError(errno.ENOSPC, "No space left on device"), DISK_FULL),
    (sqlite3.OperationalError("attempt to write a readonly database"), "writable by this user"),
    (sqlite3.DatabaseError("file is not a database"), "restore catalog.sqlite from a backup"),
    (sqlite3.OperationalError("disk I/O error"), "is the disk full (df -h) or failing? Free space"),
])
def test_machine_errors_are_one_line_with_what_to_do(exc: BaseException, says: str, capsys) -> None:
    with pytest.raises(typer.Exit) as stopped:
        _raising(exc)()
    assert stopped.value.exit_code == EXIT_ERROR
    line = " ".join(capsys.readouterr().err.split())
    assert line.startswith("error:") and says in line and str(exc).split(": ")[-1] in line


def test_a_constraint_failure_is_a_bug_and_keeps_its_traceback() -> None:
    with pytest.raises(sqlite3.IntegrityError):
        _raising(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))()


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _leave_free(disk: Path, kib: int) -> Path:
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free // 1024
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - kib) * 1024)
    return filler


def test_sam_refine_on_a_full_disk_says_so_and_the_rerun_goes_on(small_disk: Path, tmp_path: Path) -> None:
    sources = tmp_path / "sources"                       # the sources live elsewhere, the workspace on the small disk
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump({"synthetic": {"out": str(sources), "seed": 6, "scenes": 8, "patches_per_scene": 2},
                                    "sources": [{"kind": "vrsbench", "root": str(sources / "vrsbench")}],
                                    "refine": {"segmenter": "box", "jitter_k": 0, "batch_images": 1}}))
    ws = small_disk / "ws"
    assert runner.invoke(app, ["init", str(ws), "--pipeline", str(spec)]).exit_code == 0
    assert runner.invoke(app, ["build", "-w", str(ws), "--stage", "ingest", "--no-progress"]).exit_code == 0
    filler = _leave_free(small_disk, 24)
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "sam-refine", "--no-progress"])
    text = " ".join(result.output.split())
    assert result.exit_code == EXIT_ERROR and "Traceback" not in text, text
    # SQLite says "database or disk is full", or under WAL "disk I/O error", for the same full disk
    assert text.startswith("error: the catalog: ") and "free space on the workspace's disk" in text.lower(), text
    filler.unlink()
    assert runner.invoke(app, ["build", "-w", str(ws), "--stage", "sam-refine", "--no-progress"]).exit_code == 0
    with Catalog(ws / "catalog.sqlite") as cat:
        assert cat.count("triplets") and cat.count("proposals") == cat.count("triplets")
