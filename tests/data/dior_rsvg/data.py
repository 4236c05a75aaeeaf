"""Fake DIOR-RSVG tree for tests (torchgeo style).

``Annotations/*.xml`` (referred objects with ``<description>``), ``JPEGImages/*.jpg`` and
``{train,val,test}.txt`` with global object indices. DIOR-RSVG images are 800x800; 320 here.
"""

from __future__ import annotations

from pathlib import Path

from risbench_builder.synthetic import write_dior_rsvg


def generate(root: Path, truth_dir: Path | None = None) -> dict:
    return write_dior_rsvg(Path(root), seed=17, n_images=6, size=320, truth_dir=truth_dir)
