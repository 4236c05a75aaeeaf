"""What every ``risbench`` command shares: the two consoles, exit codes and error handling.

Its own module so that sub-apps (``risbench adapter``) use the same one-line errors as the main
CLI without importing it (which imports them).
"""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable

import typer
from rich.console import Console

from .catalog import CatalogError
from .config import ConfigError
from .stages.ingest import RejectRateExceeded

console = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_ERROR, EXIT_REJECTS = 1, 3
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
        except (ConfigError, CatalogError, FileNotFoundError, ValueError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def plain(text: str) -> None:
    """A log line as is: no markup, no highlighting, no hard wrap (logs are read by programs too)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
