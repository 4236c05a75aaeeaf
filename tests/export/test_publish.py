"""`risbench publish`: the dry run proves the export offline; no token, no upload; the upload is mocked.

The token comes from the real ``huggingface_hub.get_token`` (HF_TOKEN, then the saved login) with
the saved-login file pointed into a temporary HF home, and the upload call is chosen on the real
``HfApi`` class (its network methods replaced), so nothing here reaches the Hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from risbench_builder.export.publish import UPLOAD_CACHE, PublishError, publish_export, resolve_token, upload
from risbench_builder.workspace import Workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF home: no saved login, no token in the environment (whatever the machine has)."""
    import huggingface_hub.constants as hconst

    home = tmp_path / "hf-home"
    home.mkdir()
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(hconst, "HF_TOKEN_PATH", str(home / "token"))          # read at import time by the hub
    monkeypatch.setattr(hconst, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"), raising=False)
    return home


def save_login(home: Path, token: str) -> None:
    """What `hf auth login` leaves behind: the token in HF_HOME/token."""
    (home / "token").write_text(token)


def test_token_order_argument_then_hf_token_then_saved_login(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_token() is None
    save_login(hf_home, "hf_saved_login")
    assert resolve_token() == "hf_saved_login"                          # a saved login works without HF_TOKEN
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert resolve_token() == "hf_from_env"                             # HF_TOKEN comes first
    assert resolve_token("hf_given") == "hf_given"


def _record_on_real_api(monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    """The real HfApi, with only its network calls replaced by recorders."""
    from huggingface_hub import HfApi

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", self.token, repo_id, kw))

    def upload_folder(self, **kw):
        calls.append(("upload_folder", self.token, kw))
        return type("Commit", (), {"oid": "c0ffee"})()

    def upload_large_folder(self, **kw):
        calls.append(("upload_large_folder", self.token, kw))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    if hasattr(HfApi, "upload_large_folder"):
        monkeypatch.setattr(HfApi, "upload_large_folder", upload_large_folder)


def test_publish_with_a_saved_login_and_the_installed_hub(built, hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    calls: list = []
    _record_on_real_api(monkeypatch, calls)
    save_login(hf_home, "hf_saved_login_secret")
    result = runner.invoke(app, ["publish", "-w", str(built.ws.path), "--repo-id", "me/risbench"])
    assert result.exit_code == 0, result.output
    assert "hf_saved_login_secret" not in result.output
    expected = "upload_large_folder" if hasattr(HfApi, "upload_large_folder") else "upload_folder"
    assert [c[0] for c in calls] == ["create_repo", expected]
    assert calls[0][1] == calls[1][1] == "hf_saved_login_secret"
    assert calls[1][2]["repo_type"] == "dataset" and calls[1][2]["folder_path"] == str(built.ws.exports / "hf")


def test_upload_large_folder_is_used_where_the_hub_has_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """huggingface_hub 0.25-1.x: the resumable upload_large_folder; its report goes to stderr and its
    resume state inside the folder is removed once the upload completes."""
    from huggingface_hub import HfApi

    folder = tmp_path / "hf"
    (folder / "data").mkdir(parents=True)
    calls: list = []

    class HubWithLargeFolder(HfApi):
        def upload_large_folder(self, **kw):
            calls.append(kw)
            state = Path(kw["folder_path"]) / UPLOAD_CACHE / "upload" / "data"
            state.mkdir(parents=True)
            (state / "train-00000-of-00001.parquet.metadata").write_text("done")
            print("---------- 2024-01-01 (0:00:01) ----------\nFiles: hashed 1/1")      # its report

        def upload_folder(self, **kw):      # pragma: no cover - must not be called
            pytest.fail("upload_folder used although upload_large_folder exists")

    used, commit = upload(HubWithLargeFolder(token="t"), "me/risbench", folder, private=True, message="m")
    assert used == "upload_large_folder" and commit == ""
    assert calls == [{"repo_id": "me/risbench", "folder_path": str(folder), "repo_type": "dataset", "private": True}]
    out = capsys.readouterr()
    assert out.out == "" and "Files: hashed" in out.err
    assert not (folder / ".cache").exists()


def test_upload_folder_where_the_hub_has_no_large_folder_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    calls: list = []
    _record_on_real_api(monkeypatch, calls)
    monkeypatch.delattr(HfApi, "upload_large_folder", raising=False)            # huggingface_hub 2.x, or < 0.25
    used, commit = upload(HfApi(token="t"), "me/risbench", tmp_path, private=False, message="risbench export")
    assert (used, commit) == ("upload_folder", "c0ffee")
    kw = calls[0][2]
    assert kw["commit_message"] == "risbench export" and kw["repo_type"] == "dataset"
    assert kw["ignore_patterns"] == [f"{UPLOAD_CACHE}/*"]


def test_an_interrupted_upload_state_does_not_fail_the_proof(built, tmp_path: Path) -> None:
    """Re-running publish after an interrupted upload_large_folder: its state in the folder is not a defect."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(built.ws.path, ws.path)
    state = ws.exports / "hf" / UPLOAD_CACHE / "upload" / "data"
    state.mkdir(parents=True)
    (state / "train-00000-of-00001.parquet.metadata").write_text("partial")
    assert publish_export(ws, "me/risbench", dry_run=True)["masks_bit_exact"]


def test_dry_run_proves_the_export_and_uploads_nothing(built, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: pytest.fail("dry run must not touch the Hub"))
    result = runner.invoke(app, ["publish", "-w", str(built.ws.path), "--repo-id", "me/risbench", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "masks bit-exact" in result.output and "nothing uploaded" in result.output


def test_missing_token_is_one_line_naming_hf_token(built) -> None:
    result = runner.invoke(app, ["publish", "-w", str(built.ws.path), "--repo-id", "me/risbench"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "HF_TOKEN" in lines[0] and "hf auth login" in lines[0] and "--dry-run" in lines[0]


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


def test_no_network_is_one_line_with_the_token_scrubbed(built, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real HfApi against an endpoint nobody listens on (a node without internet), then an
    HTTP library error that echoes the token: both one line, resumable advice, no token."""
    import socket

    import huggingface_hub
    from huggingface_hub import constants as hconst

    with socket.socket() as s:                   # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(hconst, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    result = runner.invoke(app, ["publish", "-w", str(built.ws.path), "--repo-id", "me/risbench"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and lines[-1].startswith("error:"), result.output
    assert "could not reach the Hugging Face Hub (ConnectError" in text and "run publish again" in text
    assert "hf_secret_token_value" not in result.output

    class EchoingApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **kw):
            raise ConnectionError(f"proxy refused: Authorization: Bearer {self.token}")

    monkeypatch.setattr(huggingface_hub, "HfApi", EchoingApi)
    with pytest.raises(PublishError, match=r"could not reach the Hugging Face Hub \(ConnectionError") as raised:
        publish_export(built.ws, "me/risbench")
    assert "hf_secret_token_value" not in str(raised.value) and "***" in str(raised.value)


def test_an_export_older_than_the_last_finalize_is_refused_until_exported_again(built, tmp_path: Path) -> None:
    """A finalize after the export (here: other split ratios, same rows and masks) leaves an export
    the bit-exact proof accepts; status must not call it built, and publish must not upload it."""
    import json

    from risbench_builder.stages.finalize import run_finalize

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(built.ws.path, ws.path)
    with Catalog(ws.catalog_path) as cat, cat.transaction():           # people decided the one pending mask
        cat.add_rejects("review", [(built.pending, "rejected", "planted by the test")], None)
    publish_export(ws, "me/risbench", dry_run=True)                    # fresh: no finalize since the export
    with ws.pipeline_path.open("a") as fh:          # a new draw; no geometry contradiction sent to review
        fh.write("finalize: {geometry_check: flag, split: {ratios: {train: 0.4, val: 0.2, test: 0.4}}}\n")
    run_finalize(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        splits = dict(cat.conn.execute("SELECT split, COUNT(*) FROM final GROUP BY split"))
    exported = json.loads((ws.exports / "hf" / "manifest.json").read_text())["counts"]["splits"]
    assert sum(splits.values()) == sum(s["triplets"] for s in exported.values())   # the same rows ...
    assert splits["train"] != exported["train"]["triplets"]                          # ... split otherwise

    status = json.loads(runner.invoke(app, ["status", "-w", str(ws.path), "--json"]).output)["next"]
    assert status["waiting"].startswith("the final table changed since the last export (hf"), status
    assert status["next"] == f"risbench build -w {ws.path} --stage stats --until export"
    result = runner.invoke(app, ["publish", "-w", str(ws.path), "--repo-id", "me/risbench", "--dry-run"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "is older than the catalog's final table" in text and "--until export" in text
    result = runner.invoke(app, ["train", "-w", str(ws.path), "-c", "tiny", "--device", "no-such-device"])
    text = " ".join(result.output.split())                              # warned, then goes on (to stop at once)
    assert text.startswith(f"warning: {ws.exports / 'hf'} is older than the catalog's final table"), text
    assert "error: device 'no-such-device' is not a device name" in text

    result = runner.invoke(app, status["next"].split()[1:] + ["--no-progress"])     # the command status named
    assert result.exit_code == 0, result.output
    status = json.loads(runner.invoke(app, ["status", "-w", str(ws.path), "--json"]).output)["next"]
    assert status["waiting"] == "the dataset is built", status
    proof = publish_export(ws, "me/risbench", dry_run=True)
    assert proof["rows"] == sum(splits.values()) and proof["splits"]["train"] == splits["train"]
