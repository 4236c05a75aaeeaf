"""The package's image bound: real remote-sensing scenes over Pillow's 179 M pixel default open
(header only); anything over 2**30 pixels is refused before a pixel is decoded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from risbench_builder.images import MAX_IMAGE_PIXELS, open_image
from risbench_builder.masks import MAX_MASK_PIXELS
from risbench_builder.stages.ingest import inspect_image


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (8-bit grey) and ends properly; its pixels do not decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_dota_v2s_largest_scene_opens_and_a_bigger_one_is_refused(tmp_path: Path) -> None:
    dota = tmp_path / "P9999.png"
    dota.write_bytes(png_header(29200, 27620))              # DOTA-v2's largest: 806 M pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(dota)                                     # Pillow's own default refuses it
    default = Image.MAX_IMAGE_PIXELS
    with open_image(dota) as img:
        assert img.size == (29200, 27620)
    assert Image.MAX_IMAGE_PIXELS == default                 # the process keeps Pillow's default
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(40000, 30000))               # 1.2 G pixels: over 2**30
    with pytest.raises(Image.DecompressionBombError, match=r"40000x30000 has 1,200,000,000 pixels, over the bound"):
        open_image(huge)
    assert MAX_MASK_PIXELS == MAX_IMAGE_PIXELS == 2 ** 30

    info = inspect_image(dota, hash_images=False)            # ingest: a real scene, not unreadable_image
    assert (info.width, info.height, info.problem) == (29200, 27620, None)
    problem = inspect_image(huge, hash_images=False).problem
    assert problem is not None and problem[0] == "unreadable_image" and "over the bound of 2**30" in problem[1]


def _open_in_child(path: str, default: int, result) -> None:
    with open_image(path) as img:
        result.put((img.size, Image.MAX_IMAGE_PIXELS == default))


def test_a_fork_in_the_middle_of_an_open_leaves_the_child_a_free_lock(tmp_path: Path) -> None:
    """The state a fork copies while another thread is inside open_image: the lock held, the bound
    raised. Without the at-fork reset the child waits forever on its first image."""
    import multiprocessing
    import risbench_builder.images as images

    path = tmp_path / "small.png"
    Image.new("L", (4, 3)).save(path)
    default = Image.MAX_IMAGE_PIXELS
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    with images._BOUND:                                       # as if mid-open in another thread
        images._saved, Image.MAX_IMAGE_PIXELS = default, MAX_IMAGE_PIXELS
        try:
            child = ctx.Process(target=_open_in_child, args=(str(path), default, result))
            child.start()
        finally:
            Image.MAX_IMAGE_PIXELS, images._saved = default, None
    child.join(30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0 and result.get(timeout=5) == ((4, 3), True)
