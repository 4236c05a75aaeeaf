"""Synthetic sources in the exact real on-disk formats, with the true masks kept beside them.

Why: the later stages (box-prompted SAM or GrabCut) can only report *real* mask quality when the
true masks are known. One scene generator, :func:`render_scene`, draws an aerial-like patch
(textured ground, fields, roads, water, buildings, trees) with oriented, textured objects of
11 RISBench classes, and keeps every object's exact quad and visible mask. The writers put the
same scenes on disk as VRSBench (the demo source, with loose boxes like VRSBench's), DOTA,
DIOR / DIOR-R and DIOR-RSVG trees; the torchgeo-style generators in ``tests/data/*/data.py``
call them with small parameters. The truth never goes into the annotation files: it is a
``masks.jsonl`` (COCO RLE via :mod:`risbench_builder.masks`) in a separate folder.

>>> import numpy as np
>>> scene = render_scene(np.random.default_rng(0))
>>> scene.image.shape, scene.image.dtype, all(o.mask.sum() >= 30 for o in scene.objects)
((512, 512, 3), dtype('uint8'), True)

Modules: :mod:`.scene` (vocabulary, public types, attributes, :func:`render_scene`) over
:mod:`.paint`, :mod:`.placement`, :mod:`.ground`, :mod:`.texture` and :mod:`.geometry`;
:mod:`.language` (sentences, captions, QA); one writer per format (:mod:`.vrsbench`, :mod:`.dota`,
:mod:`.dior`, :mod:`.dior_rsvg`) on :mod:`.io_helpers`. The benchmark-only placeholder tree is
``benchmarks/placeholders.py``.
"""

from .dior import write_dior
from .dior_rsvg import write_dior_rsvg
from .dota import write_dota
from .io_helpers import load_truth
from .language import refer_objects
from .scene import (
    DIOR_CLASSES, DIOR_NAMES, DOTA_CLASSES, DOTA_NAMES, DRAWABLE_CLASSES, GRID_POSITIONS, PATCH, Referent,
    Scene, SceneObject, colour_name, dominant_colour, render_scene,
)
from .vrsbench import (GENERATOR_VERSION, TRUTH, config_hash, default_truth, generate_sources, ground_truth_tokens,
                       noisy_quad, write_vrsbench)

__all__ = [
    "DIOR_CLASSES", "DIOR_NAMES", "DOTA_CLASSES", "DOTA_NAMES", "DRAWABLE_CLASSES", "GENERATOR_VERSION",
    "GRID_POSITIONS", "PATCH", "Referent", "Scene", "SceneObject", "colour_name", "config_hash",
    "TRUTH", "default_truth", "dominant_colour", "generate_sources", "ground_truth_tokens", "load_truth",
    "noisy_quad", "refer_objects",
    "render_scene", "write_dior", "write_dior_rsvg", "write_dota", "write_vrsbench",
]
