"""Publish the hf export to the Hugging Face Hub, after proving it loads.

The proof (all of ``--dry-run``): the format check of the folder (files match the manifest,
masks binary, splits disjoint), then ``datasets.load_dataset(folder, streaming=True)`` with
the Hub switched off, whose features must equal :func:`.schema.features` and whose every mask
must equal, bit for bit, the catalog mask of its triplet. Only then, and only without
``--dry-run``, ``HfApi.create_repo`` and the upload (never printing or logging the token).

The token (:func:`resolve_token`) is ``huggingface_hub.get_token()``: ``HF_TOKEN`` first, then
the login saved by ``hf auth login`` / ``huggingface-cli login`` (``HF_HOME/token``). The upload
(:func:`upload`) is ``upload_large_folder`` where the installed huggingface_hub has it (0.25 to
1.x: resumable, many commits; re-running ``publish`` resumes from ``<export>/.cache/huggingface``,
removed once the upload completes), else ``upload_folder`` (2.x folded the resumable, multi-commit
upload into it when ``hf_xet`` is installed, the default; before 0.25 it is one commit).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import masks
from ..catalog import Catalog
from ..finalize.records import final_records
from .freshness import stale_export_message
from ..text import scrub
from ..workspace import Workspace

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Where ``upload_large_folder`` keeps what it has uploaded, inside the folder (its resume state).
UPLOAD_CACHE = ".cache/huggingface"


class PublishError(ValueError):
    """Publishing cannot go on; the message says why and what to do (never the token)."""


@contextmanager
def offline() -> Iterator[None]:
    """Hub access off for datasets and huggingface_hub, also when they were imported already."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    import datasets.config as dconfig
    import huggingface_hub.constants as hconst

    saved = (dconfig.HF_HUB_OFFLINE, hconst.HF_HUB_OFFLINE)
    dconfig.HF_HUB_OFFLINE = hconst.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        dconfig.HF_HUB_OFFLINE, hconst.HF_HUB_OFFLINE = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def verify_hf_export(folder: Path, truth: dict[str, dict] | None = None) -> dict[str, Any]:
    """Load ``folder`` with ``load_dataset`` offline; features must equal the schema and every
    mask must equal ``truth[triplet_id]`` (COCO RLE) bit for bit. Raises PublishError."""
    from datasets import load_dataset

    from .schema import features

    want = features()
    rows: dict[str, int] = {}
    seen: set[str] = set()
    with offline(), tempfile.TemporaryDirectory(prefix="risbench-hf-") as cache:
        ds = load_dataset(str(folder), streaming=True, cache_dir=cache)
        for split, part in ds.items():
            if part.features != want:
                raise PublishError(f"{folder}: split {split} loads with features that differ from the schema: "
                                   "re-export with `risbench build -w W --stage export --force`")
            n = 0
            for row in part:
                n += 1
                tid = row["triplet_id"]
                seen.add(tid)
                if truth is None:
                    continue
                if tid not in truth:
                    raise PublishError(f"{folder}: triplet {tid} ({split}) is not in the catalog's final table: "
                                       "the export is stale, re-export with --force")
                got = np.asarray(row["mask"])
                want_mask = masks.decode(truth[tid]) * 255
                if got.shape != want_mask.shape or not np.array_equal(got, want_mask):
                    raise PublishError(f"{folder}: the mask of triplet {tid} ({split}) is not bit-exact with the "
                                       "catalog: re-export with --force")
            rows[split] = n
    if truth is not None and seen != set(truth):
        missing = len(set(truth) - seen)
        raise PublishError(f"{folder}: {missing} final triplets are missing from the export: re-export with --force")
    return {"splits": rows, "rows": sum(rows.values()), "features_equal_schema": True,
            "masks_bit_exact": truth is not None}


def resolve_token(token: str | None = None) -> str | None:
    """The Hub token: ``token`` when given, else ``huggingface_hub.get_token()`` (``HF_TOKEN``,
    then the saved login), else None. Never printed."""
    if token:
        return token
    try:
        from huggingface_hub import get_token
    except ImportError:                 # pragma: no cover - huggingface_hub < 0.21
        from huggingface_hub import HfFolder

        get_token = HfFolder.get_token
    return get_token() or None


def upload(api: Any, repo_id: str, folder: Path, *, private: bool, message: str) -> tuple[str, str]:
    """Upload ``folder`` to the dataset repo with the resumable call the installed huggingface_hub
    has; returns (the function used, the commit id or ''). The large-folder report goes to stderr."""
    large = getattr(api, "upload_large_folder", None)
    if callable(large):
        cache = folder / UPLOAD_CACHE
        with _stdout_to_stderr():
            large(repo_id=repo_id, folder_path=str(folder), repo_type="dataset", private=private)
        shutil.rmtree(cache, ignore_errors=True)        # done: the resume state is not part of the export
        if cache.parent.is_dir() and not any(cache.parent.iterdir()):
            cache.parent.rmdir()
        return "upload_large_folder", ""
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset",
                               commit_message=message, ignore_patterns=[f"{UPLOAD_CACHE}/*"])
    return "upload_folder", str(getattr(commit, "oid", "") or getattr(commit, "commit_url", "") or "")


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):
        yield


def _ignorable(failure: Any) -> bool:
    """A leftover resume state of an interrupted upload is not a defect of the export."""
    return failure.kind == "manifest_unlisted_file" and failure.where.startswith(UPLOAD_CACHE + "/")


# module prefixes of the HTTP stacks huggingface_hub has used: requests (< 1.0), httpx (1.x),
# httpx2 (2.x); a prefix, since the stack has been renamed once already
_NETWORK_LIBRARIES = ("httpx", "httpcore", "requests", "urllib3", "h11", "h2", "ssl", "socket")


def _network_error(exc: BaseException) -> bool:
    """A connection, DNS, TLS or timeout failure from the HTTP stack under huggingface_hub:
    a machine without internet, not a bug."""
    return isinstance(exc, (OSError, TimeoutError)) or any(
        cls.__module__.startswith(_NETWORK_LIBRARIES) for cls in type(exc).__mro__)


def publish_export(ws: Workspace, repo_id: str, *, private: bool = False, dry_run: bool = False,
                   token: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """Prove ``W/exports/hf`` and, unless ``dry_run``, upload it to the dataset repo ``repo_id``."""
    if not _REPO_ID.match(repo_id):
        raise PublishError(f"--repo-id {repo_id!r} is not ORG/NAME")
    folder = ws.exports / "hf"
    if not (folder / "README.md").is_file():
        raise PublishError(f"no hf export at {folder}: run `risbench build --workspace {ws.path} --stage export` "
                           "with hf in export.targets first")
    if not dry_run:
        token = resolve_token(token)
        if not token:
            raise PublishError("no Hugging Face token: log in with `hf auth login` (or `huggingface-cli login`) or "
                               "export a write token as HF_TOKEN, or pass --dry-run to check the export without "
                               "uploading")
    from collections import Counter

    from .check import check_export

    stale = stale_export_message(ws, folder)     # same rows and masks, other splits: the proof below passes
    if stale:
        raise PublishError(f"{stale}, then publish")
    report = check_export(folder, "hf", workers)
    failures = [f for f in report.failures if not _ignorable(f)]
    if failures:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(Counter(f.kind for f in failures).items()))
        raise PublishError(f"{folder} fails the format check ({kinds}): see `risbench check {folder}`")
    with Catalog(ws.catalog_path, create=False) as catalog:
        truth = {rec.triplet_id: rec.rle for rec in final_records(catalog)}
    proof = verify_hf_export(folder, truth)
    result: dict[str, Any] = {"folder": str(folder), "repo_id": repo_id, "private": private, "dry_run": dry_run,
                              **proof, "uploaded": False}
    if dry_run:
        return result
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError     # also in huggingface_hub 0.23 (errors: 0.24+)

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        used, commit = upload(api, repo_id, folder, private=private,
                              message=f"risbench-builder export ({proof['rows']} triplets)")
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise PublishError(f"upload to {repo_id} failed (HTTP {status}): check that the token (HF_TOKEN or the "
                           "saved login) has write access to that organisation; run publish again to resume") from None
    except Exception as exc:
        if not _network_error(exc):
            raise
        raise PublishError(f"could not reach the Hugging Face Hub ({type(exc).__name__}: {scrub(str(exc), token)}): "
                           "check this machine's network (HF_ENDPOINT names a mirror), then run publish again; "
                           "it resumes") from None
    result.update(uploaded=True, url=f"https://huggingface.co/datasets/{repo_id}", upload=used, commit=commit)
    return result
