"""On-disk cache of image embeddings, keyed by view and model checksum.

Encoding a view is the expensive part of box-prompted SAM (seconds on a CPU, tens of ms on a
GPU); the decoder costs milliseconds per box chunk. Re-running the stage with other boxes,
another jitter or a decoder adapter reuses the stored embedding instead of encoding again.

Layout: ``root/<model_sha[:16]>/<sha256(view key)>.safetensors``. Each file holds the tensors
(e.g. ``image_embeddings`` 1xCxhxw, ``original_size``, ``input_size``) and, as safetensors
string metadata, the full view key and model checksum, which :meth:`EmbeddingCache.get`
checks before trusting a file. Files are written to a temporary name and moved into place with
``os.replace``, so a killed run leaves either the old file, the new one or none; never half of
one. There is no fsync: after a power loss a torn file fails :meth:`EmbeddingCache.get`'s
checks and counts as a miss. Nothing is pickled and nothing goes through ``torch.load``.

With ``background=True`` a :meth:`EmbeddingCache.put` starts the copy of the tensors to the host
(on CUDA without waiting for it) and leaves serialising and writing the file to one writer
thread (a few entries in flight at most), so a GPU stage does not wait for the disk;
:meth:`EmbeddingCache.flush` waits for the writes.

>>> cache = EmbeddingCache(tmp)                                       # doctest: +SKIP
>>> cache.put("img-sha", "model-sha", {"image_embeddings": emb}, {"note": "x"})  # doctest: +SKIP
>>> cache.get("img-sha", "model-sha")["image_embeddings"].shape       # doctest: +SKIP
torch.Size([1, 256, 64, 64])
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

_KEY_FIELD, _MODEL_FIELD = "view_key", "model_sha256"
_STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class EmbeddingCache:
    """Image embeddings in ``root``, one safetensors file per (view key, model checksum).

    ``storage_dtype`` applies to floating tensors only: float32 (default, exact round trip)
    or float16/bfloat16 to halve the disk use (a vit_b embedding is 4 MiB in float32).
    ``hits``/``misses`` count :meth:`get` results since construction. ``background``: files are
    written by a writer thread (started at the first :meth:`put`); entries not yet on disk are
    served from memory by :meth:`get`.
    """

    def __init__(self, root: str | Path, storage_dtype: torch.dtype = torch.float32, background: bool = False,
                 in_flight: int = 4) -> None:
        if storage_dtype not in _STORAGE_DTYPES:
            raise ValueError(f"embedding cache: storage_dtype must be one of {_STORAGE_DTYPES}, got {storage_dtype}")
        self.root = Path(root)
        self.storage_dtype = storage_dtype
        self.hits = 0
        self.misses = 0
        self.background = background
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, in_flight))
        self._pending: dict[Path, tuple[str, str, dict[str, torch.Tensor], torch.cuda.Event | None]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def path(self, key: str, model_sha: str) -> Path:
        """Where the entry for ``key`` under ``model_sha`` lives (whether or not it exists)."""
        if not model_sha:
            raise ValueError("embedding cache: empty model checksum (weight-free backends have nothing to cache)")
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.root / model_sha[:16] / f"{name}.safetensors"

    def get(
        self,
        key: str,
        model_sha: str,
        check: Callable[[dict[str, torch.Tensor]], bool] | None = None,
    ) -> dict[str, torch.Tensor] | None:
        """The stored tensors (on the CPU, as stored), or None on a miss.

        An unreadable file, one whose recorded key or checksum differs, or one that ``check``
        rejects (e.g. a shape that does not fit) counts as a miss and is overwritten by the next
        :meth:`put`.
        """
        path = self.path(key, model_sha)
        tensors = None
        with self._lock:
            pending = self._pending.get(path)
        if pending is not None and pending[:2] == (key, model_sha):
            if pending[3] is not None:
                pending[3].synchronize()
            tensors = dict(pending[2])
        elif path.is_file():
            try:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    meta = f.metadata() or {}
                    if meta.get(_KEY_FIELD) == key and meta.get(_MODEL_FIELD) == model_sha:
                        tensors = {name: f.get_tensor(name) for name in f.keys()}
            except (SafetensorError, OSError, ValueError):
                tensors = None
        if tensors is not None and check is not None and not check(tensors):
            tensors = None
        if tensors is None:
            self.misses += 1
        else:
            self.hits += 1
        return tensors

    def metadata(self, key: str, model_sha: str) -> dict[str, str] | None:
        """The string metadata stored with an entry, or None when there is none (no counting)."""
        path = self.path(key, model_sha)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return dict(f.metadata() or {})
        except (SafetensorError, OSError, ValueError):
            return None

    def put(
        self,
        key: str,
        model_sha: str,
        tensors: dict[str, torch.Tensor],
        metadata: dict[str, str] | None = None,
    ) -> Path:
        """Store ``tensors`` (moved to the CPU) atomically; returns the file path (written by the
        writer thread later with ``background``)."""
        path = self.path(key, model_sha)
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        meta.update({_KEY_FIELD: key, _MODEL_FIELD: model_sha})
        payload, copied = self._host_copies(tensors)
        if not self.background:
            return self._write(path, payload, meta)
        self._raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="embedding-cache", daemon=True)
            self._thread.start()
        with self._lock:
            self._pending[path] = (key, model_sha, payload, copied)
        self._queue.put((path, payload, meta, copied))  # blocks while ``in_flight`` writes wait: memory stays flat
        return path

    def _host_copies(self, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.cuda.Event | None]:
        """The tensors in storage dtype on the host, and for CUDA tensors in the background the
        event after which the copies are complete: cast on the device (half the bytes to move for
        fp16), copied without making the caller wait for the GPU's queued work; the writer thread
        and :meth:`get` wait for the event instead."""
        payload, copied = {}, None
        for name, t in tensors.items():
            t = t.detach()
            if t.is_floating_point():
                t = t.to(self.storage_dtype)
            if t.is_cuda and self.background:
                host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                host.copy_(t, non_blocking=True)
                copied = torch.cuda.Event()
                payload[name] = host
            else:  # a copy in the background: the caller may change its tensor before the write
                payload[name] = t.to("cpu", copy=self.background).contiguous()
        if copied is not None:
            copied.record()             # after every copy above, on the current stream
        return payload, copied

    def flush(self) -> None:
        """Wait until every :meth:`put` is on disk and stop the writer thread (the next put starts
        another: a process with no thread left can fork its worker pools); raises the writer's
        error, if it had one."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise OSError(f"embedding cache: a background write failed: {error}") from error

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            path, payload, meta, copied = item
            try:
                if copied is not None:
                    copied.synchronize()
                self._write(path, payload, meta)
            except BaseException as exc:  # noqa: BLE001 - handed to the next put() or flush()
                self._error = exc
            finally:
                with self._lock:
                    if self._pending.get(path, (None, None, None, None))[2] is payload:
                        del self._pending[path]

    def _write(self, path: Path, payload: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(payload, tmp, metadata=meta)
            os.replace(tmp, path)      # no fsync: a cache entry can be recomputed, and get() checks it
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.safetensors")) if self.root.is_dir() else 0
