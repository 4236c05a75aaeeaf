"""Confinement of paths named inside untrusted files (risbench_builder.paths)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from risbench_builder.paths import PathEscapeError, confine_path, path_escape


def test_names_and_links_that_leave_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"x")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"s")
    (root / "images" / "out.png").symlink_to(outside)
    (root / "images" / "in.png").symlink_to(root / "images" / "a.png")
    assert path_escape(root, root / "images", "a.png") is None
    assert path_escape(root, root / "images", "in.png") is None                 # a link that stays inside
    assert path_escape(root, root / "images", "out.png") == "resolves outside the dataset folder (a symlink out?)"
    assert path_escape(root, root, "../secret.png") == "has a '..' component"
    assert path_escape(root, root, str(outside)) == "is an absolute path"
    assert path_escape(root, root, "a\x00b") == "holds a NUL byte"
    assert path_escape(root, root, 7) == "is not a relative file name"
    with pytest.raises(PathEscapeError, match="out.png' resolves outside"):
        confine_path(root, root / "images", "out.png")


def test_a_hub_cache_snapshot_may_link_into_its_own_blobs(tmp_path: Path) -> None:
    """``huggingface_hub.snapshot_download`` lays files out as relative links into ``../../blobs``."""
    repo = tmp_path / "hub" / "datasets--someone--rrsis"
    snapshot = repo / "snapshots" / "0123abcd"
    (snapshot / "data").mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "blobs" / "f00d").write_bytes(b"parquet")
    os.symlink("../../../blobs/f00d", snapshot / "data" / "train-00000.parquet")
    (tmp_path / "elsewhere").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", snapshot / "data" / "evil.parquet")
    assert path_escape(snapshot, snapshot, "data/train-00000.parquet") is None
    assert path_escape(snapshot, snapshot, "data/evil.parquet") is not None
    # the same link layout outside a Hub cache is refused
    plain = tmp_path / "plain" / "snapshots" / "r"
    (plain / "data").mkdir(parents=True)
    (tmp_path / "plain" / "blobs").mkdir()
    (tmp_path / "plain" / "blobs" / "f00d").write_bytes(b"p")
    os.symlink("../../../blobs/f00d", plain / "data" / "x.parquet")
    assert path_escape(plain, plain, "data/x.parquet") is not None
