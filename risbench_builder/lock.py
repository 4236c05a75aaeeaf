"""One writer per workspace: an advisory ``flock`` on ``W/.risbench-lock``.

Two commands writing one catalog at once do not corrupt SQLite, but they do break each other:
``ingest --force`` under a running sam-refine made its next commit fail (FOREIGN KEY), and two
``review push`` could both import a task. So every command that writes the catalog holds the
lock; a second one stops at once and names the first. The kernel drops the lock when its
process dies, so a killed run never leaves a stale lock behind, and its rerun resumes as before.

Ranks of one sharded sam-refine (torchrun, ``--shard i/n``) hold it shared: they are meant to run
side by side, and anything else that writes waits for all of them. Where the filesystem cannot
lock (some network mounts) or there is no ``fcntl`` (Windows), commands run unlocked, as before.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".risbench-lock"
EXIT_BUSY = 75                     # sysexits' EX_TEMPFAIL: try again later
_RETRY_S = 1.0                     # rides over another command's brief look (``status``)
_BUSY = (errno.EAGAIN, errno.EACCES)

F = TypeVar("F", bound=Callable[..., Any])
_held: dict[Path, list[int]] = {}  # lock file -> [fd, depth] held by this process
_guard = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked worker drops its copies of the lock's fd: a flock lasts while any copy is open,
    so workers outliving a killed parent would otherwise keep its rerun out."""
    global _guard
    _guard = threading.Lock()                          # another thread may have held it at the fork
    for fd, _depth in _held.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class WorkspaceBusy(RuntimeError):
    """Another process is writing the workspace."""


def lock_path(workspace: Path) -> Path:
    return workspace / LOCK_NAME


@contextmanager
def workspace_lock(workspace: Path, what: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the workspace's write lock for ``what`` (the command, as the user typed it).

    Reentrant within a process: a stage inside ``demo`` or ``build --stage all`` runs under the
    lock its command already holds.
    """
    path = lock_path(Path(workspace).resolve())
    with _guard:
        entry = _held.get(path)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        fd = _acquire(path, what, shared)
        if fd is None:                                 # this filesystem cannot lock: run unlocked
            yield
            return
        with _guard:
            _held[path] = [fd, 1]
    try:
        yield
    finally:
        _release(path)


def holds_lock(what: str) -> Callable[[F], F]:
    """Run ``fn(ws, ...)`` under ``ws``'s lock: for the commands that write its catalog."""
    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(ws: Any, *args: Any, **kwargs: Any) -> Any:
            with workspace_lock(ws.path, what):
                return fn(ws, *args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate


def _acquire(path: Path, what: str, shared: bool) -> int | None:
    if fcntl is None or not path.parent.is_dir():
        return None                                    # a missing workspace fails later, with its own message
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None                                    # read-only workspace: nothing here can write it either
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + _RETRY_S
    while True:
        try:
            fcntl.flock(fd, mode)
            break
        except OSError as exc:
            if exc.errno not in _BUSY:
                os.close(fd)
                return None                            # the filesystem cannot lock (ENOLCK, EOPNOTSUPP)
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                os.close(fd)
                raise WorkspaceBusy(busy_message(path.parent, holder)) from None
            time.sleep(0.05)
    _write_holder(fd, what)
    return fd


def _release(path: Path) -> None:
    with _guard:
        entry = _held[path]
        entry[1] -= 1
        if entry[1]:
            return
        del _held[path]
    os.close(entry[0])                                 # closing drops the flock


def _write_holder(fd: int, what: str) -> None:
    """Who holds the lock, for the message another command prints (informative only)."""
    record = {"command": what[:300], "pid": os.getpid(), "host": socket.gethostname()[:100],
              "since": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())}   # as runs.started
    data = (json.dumps(record) + "\n").encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        pass


def _read_holder(fd: int) -> dict[str, object] | None:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe(holder: dict[str, object] | None) -> str:
    if not holder:
        return "another risbench command"
    where = f"pid {holder.get('pid')}" + (f" on {holder['host']}" if holder.get("host") else "")
    return f"`risbench {holder.get('command')}` ({where}, since {holder.get('since')})"


def busy_message(workspace: Path, holder: dict[str, object] | None) -> str:
    return (f"{workspace} is being written by {describe(holder)}: wait for it to finish, or stop it "
            f"(a stopped build resumes where it was); `risbench status -w {workspace}` shows its progress")


def current_holder(workspace: Path) -> dict[str, object] | None:
    """The command writing ``workspace`` now (``{}`` when it left no record), or None.

    The probe takes the lock for an instant; a command starting in that instant retries
    (``_RETRY_S``) rather than fail. Of a sharded sam-refine it names one rank of several.
    """
    path = lock_path(Path(workspace).resolve())
    if fcntl is None or not path.is_file():
        return None
    with _guard:
        if path in _held:
            return _read_holder(_held[path][0])
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return (_read_holder(fd) or {}) if exc.errno in _BUSY else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
