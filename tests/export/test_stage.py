"""The export stage: byte-identical reruns, the worker pool, idempotence, pending, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from risbench_builder.catalog import Catalog
from risbench_builder.export.base import ExportError
from risbench_builder.export.manifest import manifest_sha256, read_manifest
from risbench_builder.stages import implementations, plan
from risbench_builder.stages.export import pending_count, run_export

from .conftest import build

TARGETS = ("hf", "refer", "native", "coco")


def shas(ws) -> dict[str, str | None]:
    return {t: manifest_sha256(ws.exports / t) for t in TARGETS}


def test_two_exports_are_byte_identical_in_process_and_in_the_pool(built, tmp_path: Path) -> None:
    first = shas(built.ws)
    first_files = {t: read_manifest(built.ws.exports / t)["files"] for t in TARGETS}
    again = run_export(built.ws, built.ws.load(), progress=False, force=True, workers=0)
    assert not again.up_to_date and shas(built.ws) == first
    assert {t: again.targets[t]["manifest_sha256"] for t in TARGETS} == first
    pooled = run_export(built.ws, built.ws.load(), progress=False, force=True, workers=2)
    assert pooled.workers == 2 and shas(built.ws) == first
    for t in TARGETS:   # the manifests agree, and so do the files they describe
        assert read_manifest(built.ws.exports / t)["files"] == first_files[t]
    assert not (built.ws.exports / ".staging").exists()
    # a second workspace built from the same sources gives the same bytes too
    other = build(tmp_path)
    run_export(other.ws, other.ws.load(), progress=False)
    for t in ("refer", "native", "coco"):
        assert read_manifest(other.ws.exports / t)["files"] == first_files[t]


def test_a_failed_export_keeps_the_old_one_and_leaves_no_staging_copy(built) -> None:
    """An image gone (as a full disk, or Ctrl-C) stops the export midway: the exports there were
    stay whole, and the half-written copy is removed rather than left to fill the disk."""
    before = shas(built.ws)
    with Catalog(built.ws.catalog_path) as cat:
        path = Path(cat.conn.execute("SELECT i.path FROM final JOIN triplets USING (triplet_id) JOIN images i "
                                     "USING (image_id) ORDER BY i.image_id DESC LIMIT 1").fetchone()[0])
    hidden = path.with_suffix(".hidden")
    path.rename(hidden)
    try:
        with pytest.raises(ExportError, match="cannot be read"):
            run_export(built.ws, built.ws.load(), progress=False, force=True, workers=0)
    finally:
        hidden.rename(path)
    assert shas(built.ws) == before and not (built.ws.exports / ".staging").exists()


def test_rerun_is_a_no_op_until_the_catalog_changes(built) -> None:
    before = shas(built.ws)
    mtime = (built.ws.exports / "hf" / "manifest.json").stat().st_mtime_ns
    report = run_export(built.ws, built.ws.load(), progress=False)
    assert report.up_to_date and report.pending == 1
    assert (built.ws.exports / "hf" / "manifest.json").stat().st_mtime_ns == mtime and shas(built.ws) == before


def test_report_counts_pending_and_manifest_counts(built, tmp_path: Path) -> None:
    b = build(tmp_path, targets=["native"])
    report = run_export(b.ws, b.ws.load(), progress=False)
    with Catalog(b.ws.catalog_path) as cat:
        assert pending_count(cat) == report.pending == 1          # the rejected one is not pending
        n_final = cat.count("final")
        images = cat.conn.execute("SELECT COUNT(DISTINCT t.image_id) FROM final JOIN triplets t USING "
                                  "(triplet_id)").fetchone()[0]
    manifest = read_manifest(b.ws.exports / "native")
    assert manifest["counts"]["triplets"] == n_final and manifest["counts"]["images"] == images
    assert manifest["provenance"]["pending"] == 1 and manifest["format"] == "native"
    saved = json.loads((b.ws.reports / "export.json").read_text())
    assert saved["pending"] == 1 and set(saved["targets"]) == {"native"}
    assert not (b.ws.exports / "hf").exists()


def test_refer_refuses_non_refer_split_names(tmp_path: Path) -> None:
    b = build(tmp_path, targets=["refer"])
    with Catalog(b.ws.catalog_path) as cat, cat.transaction():
        cat.conn.execute("UPDATE final SET split='holdout' WHERE split='test'")
    with pytest.raises(ExportError, match="refer needs splits named train/val/test"):
        run_export(b.ws, b.ws.load(), progress=False)


def test_export_is_a_registered_stage() -> None:
    assert "export" in implementations() and plan("export", None) == ["export"]
