"""Fake DOTA tree for tests (torchgeo style): ``images/P####.png`` + ``labelTxt/P####.txt``.

CRLF endings, headers on some files, int and float coordinates, one empty label file.
DOTA images are 800-20,000 px; 320 px here.
"""

from __future__ import annotations

from pathlib import Path

from risbench_builder.synthetic import write_dota


def generate(root: Path, truth_dir: Path | None = None) -> dict:
    return write_dota(Path(root), seed=11, n_images=4, size=320, truth_dir=truth_dir)
