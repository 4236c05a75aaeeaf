"""Synthetic sources in the exact real on-disk formats (the generator lives in :mod:`.scene`)."""

from .scene import (
    DIOR_CLASSES, DIOR_NAMES, DOTA_CLASSES, DOTA_NAMES, DRAWABLE_CLASSES, GENERATOR_VERSION, GRID_POSITIONS,
    PATCH, Referent, Scene, SceneObject, colour_name, config_hash, dominant_colour, generate_sources,
    ground_truth_tokens, load_truth, noisy_quad, refer_objects, render_scene, write_dior, write_dior_rsvg,
    write_dota, write_vrsbench, write_vrsbench_placeholders,
)

__all__ = [
    "DIOR_CLASSES", "DIOR_NAMES", "DOTA_CLASSES", "DOTA_NAMES", "DRAWABLE_CLASSES", "GENERATOR_VERSION",
    "GRID_POSITIONS", "PATCH", "Referent", "Scene", "SceneObject", "colour_name", "config_hash",
    "dominant_colour", "generate_sources", "ground_truth_tokens", "load_truth", "noisy_quad", "refer_objects",
    "render_scene", "write_dior", "write_dior_rsvg", "write_dota", "write_vrsbench", "write_vrsbench_placeholders",
]
