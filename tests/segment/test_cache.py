"""segment/cache.py: safetensors embedding cache, layout, atomic writes, hit/miss counting."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from risbench_builder.segment.cache import EmbeddingCache  # noqa: E402

MODEL = "ab" * 32


def entry(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image_embeddings": torch.randn(1, 32, 16, 16, generator=g),
        "original_size": torch.tensor([200, 300]),
        "input_size": torch.tensor([171, 256]),
    }


def test_round_trip_is_exact_and_counts(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    assert cache.get("img-1", MODEL) is None
    tensors = entry()
    path = cache.put("img-1", MODEL, tensors, {"model": "tiny"})
    got = cache.get("img-1", MODEL)
    assert got is not None and set(got) == set(tensors)
    for name, t in tensors.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t)
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.metadata("img-1", MODEL)["model"] == "tiny"
    # layout: root/<model_sha[:16]>/<sha256(key)>.safetensors, nothing else left behind
    assert path == tmp_path / MODEL[:16] / f"{hashlib.sha256(b'img-1').hexdigest()}.safetensors"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [path.name]
    assert len(cache) == 1


def test_file_is_plain_safetensors(tmp_path) -> None:
    path = EmbeddingCache(tmp_path).put("k", MODEL, entry(), {"note": "x"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"]["view_key"] == "k"
    assert header["image_embeddings"]["dtype"] == "F32"


def test_other_model_or_key_misses(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("img-1", MODEL, entry())
    assert cache.get("img-1", "cd" * 32) is None
    assert cache.get("img-2", MODEL) is None
    assert (cache.hits, cache.misses) == (0, 2)


def test_key_recorded_in_file_is_checked(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    path = cache.put("img-1", MODEL, entry())
    other = cache.path("img-2", MODEL)
    other.write_bytes(path.read_bytes())  # a file under the wrong name (e.g. copied by hand)
    assert cache.get("img-2", MODEL) is None


def test_check_rejects_an_entry(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("img-1", MODEL, entry())
    assert cache.get("img-1", MODEL, check=lambda t: t["original_size"].tolist() == [1, 1]) is None
    assert (cache.hits, cache.misses) == (0, 1)


def test_corrupt_file_is_a_miss_and_gets_overwritten(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    path = cache.put("img-1", MODEL, entry())
    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert cache.get("img-1", MODEL) is None
    cache.put("img-1", MODEL, entry(1))
    assert torch.equal(cache.get("img-1", MODEL)["image_embeddings"], entry(1)["image_embeddings"])


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch) -> None:
    import risbench_builder.segment.cache as cache_mod

    cache = EmbeddingCache(tmp_path)
    path = cache.put("img-1", MODEL, entry(0))
    before = path.read_bytes()

    def killed(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a fi")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put("img-1", MODEL, entry(1))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_half_precision_storage(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path, storage_dtype=torch.float16)
    tensors = entry()
    cache.put("img-1", MODEL, tensors)
    got = cache.get("img-1", MODEL)
    assert got["image_embeddings"].dtype == torch.float16
    assert got["original_size"].dtype == torch.int64  # integer tensors are kept as they are
    assert torch.allclose(got["image_embeddings"].float(), tensors["image_embeddings"], atol=1e-2)
    with pytest.raises(ValueError, match="storage_dtype"):
        EmbeddingCache(tmp_path, storage_dtype=torch.int8)


def test_empty_model_checksum_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="empty model checksum"):
        EmbeddingCache(tmp_path).get("img-1", "")


def test_background_writes_are_served_from_memory_then_on_disk(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path, background=True, in_flight=2)
    written = [cache.put(f"img-{i}", MODEL, entry(i)) for i in range(6)]   # more than in flight: put waits
    got = cache.get("img-5", MODEL)                                       # on disk or still in memory
    assert got is not None and torch.equal(got["image_embeddings"], entry(5)["image_embeddings"])
    cache.flush()
    assert all(p.is_file() for p in written) and not list(tmp_path.rglob("*.tmp"))
    fresh = EmbeddingCache(tmp_path)
    for i in range(6):
        assert torch.equal(fresh.get(f"img-{i}", MODEL)["image_embeddings"], entry(i)["image_embeddings"])
    assert cache._pending == {} and cache._thread is None         # no thread left behind after a flush


def test_a_background_entry_is_what_was_put_even_if_the_tensor_changes_after(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path, background=True)
    tensors = entry(1)
    want = tensors["image_embeddings"].clone()
    cache.put("img", MODEL, tensors)
    tensors["image_embeddings"].add_(1.0)              # the caller reuses its buffer before the write
    assert torch.equal(cache.get("img", MODEL)["image_embeddings"], want)
    cache.flush()
    assert torch.equal(EmbeddingCache(tmp_path).get("img", MODEL)["image_embeddings"], want)


def test_a_failed_background_write_is_raised_by_flush(tmp_path, monkeypatch) -> None:
    import risbench_builder.segment.cache as cache_module

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    cache = EmbeddingCache(tmp_path, background=True)
    monkeypatch.setattr(cache_module, "save_file", full_disk)
    cache.put("img-1", MODEL, entry())
    with pytest.raises(OSError, match="background write failed.*No space left"):
        cache.flush()
    cache.flush()                                   # reported once
    assert cache.get("img-1", MODEL) is None and not list(tmp_path.rglob("*.tmp"))
