"""The DOTA writer: ``images/`` + ``labelTxt/`` with DOTA's quirks."""

from __future__ import annotations

from pathlib import Path

from .io_helpers import _class_counts, _seed_rng, _truth_row, _write_image, _write_truth
from .scene import DOTA_CLASSES, DOTA_NAMES, SceneObject, render_scene


def _dota_line(o: SceneObject, as_float: bool) -> str:
    coords = [f"{v:.1f}" if as_float else str(int(round(v))) for v in o.quad.reshape(-1)]
    name = DOTA_NAMES[o.category]
    if o.category == "vehicle" and o.subtype == "large":
        name = "large-vehicle"
    difficult = int(o.visible_fraction < 0.6 or (o.category == "vehicle" and o.length < 11))
    return " ".join(coords + [name, str(difficult)])


def write_dota(root: Path, seed: int = 0, n_images: int = 4, size: int = 640,
               truth_dir: Path | None = None) -> dict:
    """A DOTA tree: ``images/P####.png`` + ``labelTxt/P####.txt``, every object of each image.

    Real DOTA images are 800-20,000 px; smaller here. Quirks reproduced: CRLF line endings,
    ``imagesource:``/``gsd:`` headers on even files only, integer coordinates on some files and
    ``398.0``-style floats on others, and one empty label file (the last image has no objects).
    """
    root = Path(root)
    rows, categories, empty = [], [], []
    for i in range(n_images):
        name = f"P{i + 1:04d}"
        rng = _seed_rng(seed, 2, i)
        is_empty = n_images > 1 and i == n_images - 1
        scene = render_scene(rng, size, DOTA_CLASSES, 0 if is_empty else 14)
        _write_image(root / "images" / f"{name}.png", scene.image)
        lines = [] if is_empty or i % 2 else ["imagesource:GoogleEarth", f"gsd:{rng.uniform(0.1, 0.6):.12f}"]
        lines += [_dota_line(o, as_float=i % 3 == 1) for o in scene.objects]
        (root / "labelTxt").mkdir(parents=True, exist_ok=True)
        (root / "labelTxt" / f"{name}.txt").write_bytes("".join(x + "\r\n" for x in lines).encode())
        if not scene.objects:
            empty.append(f"labelTxt/{name}.txt")
        rows += [_truth_row(f"{name}.png", k, o) for k, o in enumerate(scene.objects)]
        categories += [o.category for o in scene.objects]
    if truth_dir is not None:
        _write_truth(Path(truth_dir), rows)
    return {"kind": "dota", "root": str(root), "images": n_images, "objects": len(categories),
            "classes": _class_counts(categories), "empty_label_files": empty}
