"""Image paths follow a moved workspace or a moved source root (set anew in the pipeline); a
source whose images are all gone stops the build with the key to fix, not a reject per triplet."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from tests.data.hf.data import make_hf

runner = CliRunner()


def _build(ws: Path, *args: str):
    return runner.invoke(app, ["build", "-w", str(ws), "--no-progress", *args])


def _paths(ws: Path) -> list[str]:
    with Catalog(ws / "catalog.sqlite") as cat:
        return [p for (p,) in cat.conn.execute("SELECT path FROM images ORDER BY image_id")]


def _rejects(ws: Path) -> int:
    with Catalog(ws / "catalog.sqlite") as cat:
        return cat.count("rejects", "WHERE stage='sam-refine'")


def _init(ws: Path, spec: dict) -> None:
    file = ws.parent / f"{ws.name}.yaml"
    file.write_text(yaml.safe_dump(spec))
    assert runner.invoke(app, ["init", str(ws), "--pipeline", str(file)]).exit_code == 0


def test_a_moved_workspace_and_its_imported_images_follow(tmp_path: Path) -> None:
    """Sources inside the workspace (a relative root) and an hf import's extracted images (under
    the workspace, not under its source root) both move with it."""
    make_hf(tmp_path / "hf")
    first = tmp_path / "first"
    _init(first, {"synthetic": {"out": "sources", "seed": 3, "scenes": 1, "patches_per_scene": 2},
                  "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"},
                              {"kind": "hf", "root": str(tmp_path / "hf")}],
                  "refine": {"segmenter": "box", "jitter_k": 0}})
    assert _build(first, "--until", "ingest").exit_code == 0
    before = _paths(first)
    assert any("/imported/" in p for p in before) and any("/sources/vrsbench/" in p for p in before)
    copy = tmp_path / "copy"                             # a copy reads the original's files while they are there
    shutil.copytree(first, copy)
    result = _build(copy, "--stage", "sam-refine")
    assert result.exit_code == 0 and "moved:" not in result.output and _paths(copy) == before, result.output
    moved = tmp_path / "elsewhere" / "second"
    moved.parent.mkdir()
    shutil.move(first, moved)
    result = _build(moved, "--stage", "sam-refine")
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    assert "moved: the catalog's image paths followed" in text and "of vrsbench" in text and "of workspace" in text
    assert _paths(moved) == [p.replace(str(first), str(moved)) for p in before]
    assert all(Path(p).is_file() for p in _paths(moved)) and _rejects(moved) == 0
    with Catalog(moved / "catalog.sqlite") as cat:
        assert cat.count("proposals", "WHERE segmenter='box'") == cat.count("triplets")
    assert "moved:" not in _build(moved, "--stage", "sam-refine").output        # once only


def test_a_moved_source_stops_the_build_until_its_root_is_set_and_old_rejects_are_retried(tmp_path: Path) -> None:
    sources = tmp_path / "data" / "sources"
    ws = tmp_path / "ws"
    spec = {"synthetic": {"out": str(sources), "seed": 4, "scenes": 1, "patches_per_scene": 2},
            "sources": [{"kind": "vrsbench", "root": str(sources / "vrsbench")}],
            "refine": {"segmenter": "box", "jitter_k": 0}}
    _init(ws, spec)
    assert _build(ws, "--until", "ingest").exit_code == 0
    new_root = tmp_path / "bigger-disk" / "vrsbench"
    new_root.parent.mkdir()
    shutil.move(sources / "vrsbench", new_root)

    result = _build(ws, "--stage", "sam-refine")
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "none of source 'vrsbench''s images is where the catalog has them" in text
    assert f"set sources[0].root in {ws / 'pipeline.yaml'} to where they are now" in text
    assert _rejects(ws) == 0                                  # nothing rejected one by one

    with Catalog(ws / "catalog.sqlite") as cat, cat.transaction():   # what sam-refine did before this check
        cat.add_rejects("sam-refine", [(t, "unreadable_image", "gone") for (t,) in
                                       cat.conn.execute("SELECT triplet_id FROM triplets")], None)
    pipeline = yaml.safe_load((ws / "pipeline.yaml").read_text())
    pipeline["sources"][0]["root"] = str(new_root)
    pipeline["synthetic"] = None
    (ws / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    result = _build(ws, "--stage", "sam-refine")
    assert result.exit_code == 0 and "of vrsbench" in result.output, result.output
    assert all(p.startswith(str(new_root) + "/") for p in _paths(ws)) and _rejects(ws) == 0
    with Catalog(ws / "catalog.sqlite") as cat:
        assert cat.count("proposals") == cat.count("triplets") > 0
