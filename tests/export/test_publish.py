"""`risbench publish`: the dry run proves the export offline; no token, no upload; the upload is mocked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from risbench_builder.export.publish import PublishError, publish_export
from risbench_builder.workspace import Workspace

runner = CliRunner()


def test_dry_run_proves_the_export_and_uploads_nothing(built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: pytest.fail("dry run must not touch the Hub"))
    result = runner.invoke(app, ["publish", "-w", str(built.ws.path), "--repo-id", "me/risbench", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "masks bit-exact" in result.output and "nothing uploaded" in result.output


def test_missing_token_is_one_line_naming_hf_token(built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = runner.invoke(app, ["publish", "-w", str(built.ws.path), "--repo-id", "me/risbench"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "HF_TOKEN" in lines[0] and lines[0].startswith("error:")


def test_upload_with_mocked_hub_never_prints_the_token(built, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))
            return type("Commit", (), {"oid": "abc123"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    result = runner.invoke(app, ["publish", "-w", str(built.ws.path), "--repo-id", "me/risbench", "--private"])
    assert result.exit_code == 0, result.output
    assert "hf_secret_token_value" not in result.output and "huggingface.co/datasets/me/risbench" in result.output
    assert calls[0] == ("init", "hf_secret_token_value")
    assert calls[1] == ("create_repo", "me/risbench", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls[2][1]["repo_type"] == "dataset" and calls[2][1]["folder_path"] == str(built.ws.exports / "hf")


def test_stale_export_fails_the_bit_exact_proof(built, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(built.ws.path, ws.path)
    with Catalog(ws.catalog_path) as cat, cat.transaction():
        tid, rle = cat.conn.execute("SELECT c.triplet_id, c.rle FROM consensus c").fetchone()
        m = masks.decode(masks.loads(rle))
        m[0, 0] = 1 - m[0, 0]
        cat.conn.execute("UPDATE consensus SET rle=? WHERE triplet_id=?", (masks.dumps(masks.encode(m)), tid))
    with pytest.raises(PublishError, match=f"mask of triplet {tid}.*not bit-exact"):
        publish_export(ws, "me/risbench", dry_run=True)
    with pytest.raises(PublishError, match="not ORG/NAME"):
        publish_export(ws, "risbench", dry_run=True)
