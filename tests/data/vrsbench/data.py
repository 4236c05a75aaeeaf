"""Fake VRSBench release for tests (torchgeo style): the real layout, small and seeded.

Writes ``root`` as the release tree (``Images_train/``, ``Images_val/Images_val/``,
``Annotations_{train,val}/``, ``VRSBench_EVAL_referring.json``) and the true masks to the
sibling ``<root>_truth/masks.jsonl``. Real patches come from 20,264 + 9,350 images; here
6 scenes x 2 patches.
"""

from __future__ import annotations

from pathlib import Path

from risbench_builder.config import SyntheticConfig
from risbench_builder.synthetic import write_vrsbench

CONFIG = SyntheticConfig(seed=7, scenes=6, patches_per_scene=2, val_fraction=0.35)


def generate(root: Path, truth_dir: Path | None = None) -> dict:
    return write_vrsbench(Path(root), CONFIG, truth_dir)
