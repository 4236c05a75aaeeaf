"""Paths named inside untrusted files (annotations, downloaded datasets) stay inside their folder.

One rule for every reader: a name is relative, has no ``..`` component and no NUL byte, and
what it resolves to (symlinks followed) lies inside the dataset folder. The one outside target
allowed is a Hugging Face Hub cache snapshot's own ``blobs/`` folder, where ``snapshot_download``
puts every file of a snapshot behind a relative link (``snapshots/<rev>/x -> ../../blobs/<sha>``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_DRIVE = re.compile(r"^[A-Za-z]:")


class PathEscapeError(ValueError):
    """A path named inside a file points outside the folder it belongs to."""


def name_escape(name: Any) -> str | None:
    """Why a file name read from a dataset file cannot be used as a relative path, on its own
    (no file system access), or None.

    >>> [name_escape(n) for n in ("a/b.png", "../x.png", "/etc/passwd", "C:/x")]
    [None, "has a '..' component", 'is an absolute path', 'is an absolute path']
    """
    if not isinstance(name, str) or not name:
        return "is not a relative file name"
    if "\x00" in name:
        return "holds a NUL byte"
    if name.startswith(("/", "\\")) or os.path.isabs(name) or _DRIVE.match(name):
        return "is an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "has a '..' component"
    return None


def _hub_blobs(root: Path) -> Path | None:
    """``<repo>/blobs`` when ``root`` is (inside) a Hub cache snapshot ``<repo>/snapshots/<rev>``."""
    parts = root.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts) and parts[i - 1].startswith(("datasets--", "models--")):
            return Path(*parts[:i]) / "blobs"
    return None


def path_escape(root: Path, base: Path, name: Any) -> str | None:
    """Why ``base / name`` (``base``: the folder inside ``root`` the format joins ``name`` to)
    leaves the dataset folder ``root``, or None. Nothing is opened."""
    reason = name_escape(name)
    if reason:
        return reason
    root = Path(root).absolute()
    try:
        inside = root.resolve()
        target = (Path(base).absolute() / name).resolve()
    except (OSError, RuntimeError):         # a symlink loop: nothing outside is read, opening it fails later
        return None
    except ValueError:
        return "cannot be placed inside the dataset folder"
    if target.is_relative_to(inside):
        return None
    blobs = _hub_blobs(root)
    if blobs is not None and target.is_relative_to(blobs.resolve()):
        return None
    return "resolves outside the dataset folder (a symlink out?)"


def confine_path(root: Path, base: Path, name: Any) -> Path:
    """``base / name`` for a path named inside a dataset file, or :class:`PathEscapeError` whose
    message is the name and :func:`path_escape`'s reason."""
    reason = path_escape(root, base, name)
    if reason:
        raise PathEscapeError(f"{name!r} {reason}")
    return Path(base) / name
