"""Opening image files under this package's pixel bound, the one every stage uses.

Pillow refuses an image over twice ``Image.MAX_IMAGE_PIXELS`` (about 179 M pixels) as a
decompression bomb, already in ``Image.open``, and warns above half that. Remote-sensing scenes
are that large: DOTA's largest, a DOTA-v2 scene, is 29,200 x 27,620 (806 M pixels), so Pillow's
default rejected real DOTA scenes at ingest as unreadable. The bound here is 2**30 pixels
(32,768 x 32,768), which holds it: the bound masks have too (``masks.MAX_MASK_PIXELS``), and
OpenCV's default decode limit. Anything larger is still refused, before any pixel is decoded.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import IO

from PIL import Image

MAX_IMAGE_PIXELS = 2 ** 30

# Pillow reads its bound from a module global; it is raised only while one open() runs, under a
# lock, and restored: other code in the process keeps Pillow's own default.
_BOUND = threading.Lock()
_saved: int | None = None            # Pillow's bound while an open() has it raised


def _after_fork_in_child() -> None:
    """A fork while another thread is inside :func:`open_image` copies a held lock and the raised
    bound: the child would wait forever on its first image. It gets a free lock and the bound back."""
    global _BOUND
    if _BOUND.locked() and _saved is not None:
        Image.MAX_IMAGE_PIXELS = _saved
    _BOUND = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def open_image(src: str | Path | IO[bytes]) -> Image.Image:
    """``Image.open`` with :data:`MAX_IMAGE_PIXELS` in place of Pillow's bound (lazy, as Pillow:
    only the header is read). Raises ``Image.DecompressionBombError`` over the bound and what
    ``Image.open`` raises for anything that is not an image."""
    global _saved
    with _BOUND, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        _saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS
        try:
            img = Image.open(src)
        finally:
            Image.MAX_IMAGE_PIXELS, _saved = _saved, None
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        img.close()
        raise Image.DecompressionBombError(f"image {width}x{height} has {width * height:,} pixels, over the "
                                           f"bound of 2**30 ({MAX_IMAGE_PIXELS:,})")
    return img
