"""Fake DIOR + DIOR-R tree for tests (torchgeo style).

``JPEGImages-{trainval,test}/``, ``Annotations/Horizontal Bounding Boxes/``,
``Annotations/Oriented Bounding Boxes/`` (angle as a sibling of robndbox) and
``ImageSets/Main/{train,val,test}.txt``. DIOR uses 800x800; 320x320 here.
"""

from __future__ import annotations

from pathlib import Path

from risbench_builder.synthetic import write_dior


def generate(root: Path, truth_dir: Path | None = None) -> dict:
    return write_dior(Path(root), seed=13, n_images=5, size=320, truth_dir=truth_dir)
