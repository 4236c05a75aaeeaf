"""VRSBench referring objects: the per-image ``Annotations_{train,val}/*.json`` files.

Those files are the source of truth (written by VRSBench ``extract_patch_json.py``): they carry
the class, the corners and the attributes, where the LLaVA conversations and the eval JSON only
carry a sentence and a 0–100 grid box. The eval JSON is read, when present, only to cross-check
our pixel boxes against its floor-truncated grid.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterator

from ..config import IngestConfig, SourceConfig
from ..masks import box_area, polygon_box, repair_polygon
from ..text import shown
from .base import (
    IMAGE_NAME_MISMATCH, INVALID_POLYGON, MALFORMED_FILE, MALFORMED_RECORD, PATH_ESCAPE, BadInput,
    ImageIndex, Item, PathEscapeError, Rejected, SourceLayoutError, SourceRecord, check_box_order,
    check_coordinates, guarded, load_json_bounded, read_unit, to_float, walk_files,
)

_GRID = re.compile(r"\{<(\d+)><(\d+)><(\d+)><(\d+)>(?:\|<-?[\d.]+>)?\}")
EVAL_FILE = "VRSBench_EVAL_referring.json"


def parse_grid_box(text: str) -> tuple[int, int, int, int] | None:
    """``"{<25><40><33><60>}"`` -> (25, 40, 33, 60): VRSBench's 0–100 integer grid.

    >>> parse_grid_box("{<25><40><33><60>}"), parse_grid_box("nope")
    ((25, 40, 33, 60), None)
    """
    m = _GRID.search(text or "")
    return tuple(int(v) for v in m.groups()) if m else None  # type: ignore[return-value]


def grid_box(norm_box: tuple[float, float, float, float], clamp: bool = False) -> tuple[int, ...]:
    """A normalised HBB on VRSBench's grid: ``int(v * 100)`` exactly as the notebook computed it
    (truncation, float error included), optionally clamped to [0, 1] as an earlier version did."""
    vals = [min(max(v, 0.0), 1.0) for v in norm_box] if clamp else list(norm_box)
    return tuple(int(v * 100) for v in vals)


def _split_of(folder: str) -> str | None:
    m = re.match(r"Annotations_(\w+)", folder)
    return m.group(1).lower() if m else None


class VrsbenchReader:
    kind = "vrsbench"
    expects = "Annotations_*/*.json"
    has_expressions = True

    def __init__(self, cfg: SourceConfig, root: Path, limits: IngestConfig | None = None):
        self.cfg, self.root, self.label = cfg, root, cfg.label
        self.limits = limits or IngestConfig()
        if not root.is_dir():
            raise SourceLayoutError(f"vrsbench: source root {root} does not exist")
        self.folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("Annotations"))
        if not self.folders:
            zips = sorted(p.name for p in root.glob("Annotations*.zip"))
            hint = f"unzip {', '.join(zips)} in {root}" if zips else "download Annotations_train.zip and Annotations_val.zip from the xiang709/VRSBench dataset repo"
            raise SourceLayoutError(f"vrsbench: no Annotations_*/ folder in {root}: {hint}")
        self._images: ImageIndex | None = None
        self._eval: dict[tuple[str, str], dict[str, Any]] | None = None

    # ------------------------------------------------------------ lazily built indexes
    @property
    def images(self) -> ImageIndex:
        if self._images is None:
            folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("Images"))
            self._images = ImageIndex(self.root, folders or None)
        return self._images

    @property
    def eval_index(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(image, sentence) -> eval record, for the optional grid cross-check."""
        if self._eval is None:
            self._eval = {}
            name = self.cfg.eval_json or EVAL_FILE
            if (self.root / name).is_file():
                try:     # the cross-check is optional: an unusable eval file counts as absent
                    records = load_json_bounded(read_unit(self.root, name, self.limits), self.limits, name)
                except BadInput:
                    records = []
                for rec in records if isinstance(records, list) else []:
                    if isinstance(rec, dict) and isinstance(rec.get("question"), str):
                        key = (Path(str(rec.get("image_id", ""))).name, rec["question"].strip())
                        self._eval.setdefault(key, rec)
        return self._eval

    # ------------------------------------------------------------ reader protocol
    def units(self) -> list[str]:
        return [u for folder in self.folders for u in walk_files(self.root, folder, (".json",))]

    def read(self, unit: str) -> Iterator[Item]:
        file_ref = f"{self.label}:{unit}"
        try:
            data = load_json_bounded(read_unit(self.root, unit, self.limits), self.limits, unit)
        except BadInput as bad:
            yield Rejected(self.label, file_ref, bad.reason, bad.detail)
            return
        objects = data.get("objects") if isinstance(data, dict) else None
        if not isinstance(objects, list):
            yield Rejected(self.label, file_ref, MALFORMED_FILE, f"{unit}: expected an object with an 'objects' list")
            return
        stem = Path(unit).stem
        image_name = data.get("image") if isinstance(data.get("image"), str) else f"{stem}.png"
        split = self.cfg.split or _split_of(Path(unit).parts[0])
        problem: tuple[str, str] | None = None
        image_path = None
        if Path(image_name.replace("\\", "/")).stem != stem:
            problem = (IMAGE_NAME_MISMATCH, f"{unit}: file names image {image_name!r}, expected {stem}.png")
        else:
            try:
                image_path = self.images.find(image_name)
            except PathEscapeError as exc:
                problem = (PATH_ESCAPE, str(exc))
        seen: set[str] = set()
        for index, obj in enumerate(objects):
            obj_id = obj.get("obj_id") if isinstance(obj, dict) else None
            usable_id = (isinstance(obj_id, int) and not isinstance(obj_id, bool) and abs(obj_id) < 10**9) or (
                isinstance(obj_id, str) and 0 < len(obj_id) <= 64)
            object_ref = f"obj{obj_id}" if usable_id and str(obj_id) not in seen else f"idx{index}"
            if usable_id:
                seen.add(str(obj_id))
            ref = f"{file_ref}#{object_ref}"
            if problem:
                yield Rejected(self.label, ref, *problem)
                continue
            yield guarded(self.label, ref, f"object {index}", self._record, unit, object_ref, ref, image_name,
                          image_path, split, obj)

    # ------------------------------------------------------------ one object
    def _record(self, unit: str, object_ref: str, ref: str, image_name: str, image_path: Path | None,
                split: str | None, obj: Any) -> Item:
        if not isinstance(obj, dict):
            return Rejected(self.label, ref, MALFORMED_RECORD, f"object is a {type(obj).__name__}, not a mapping")
        size = self.cfg.patch_size
        attrs: dict[str, Any] = {k: _attribute(obj[k], k) for k in (
            "obj_id", "is_unique", "obj_position", "obj_rel_position", "obj_size", "obj_rel_size", "flag")
            if k in obj}
        norm = _numbers(obj.get("obj_corner"), 8, "obj_corner")
        if norm is not None:
            scaled = check_coordinates((v * size for v in norm), "obj_corner")
            polygon = list(zip(scaled[0::2], scaled[1::2]))
            attrs["corner_out_of_range"] = any(v < 0 or v > 1 for v in norm)
        else:
            coord = _numbers(obj.get("obj_coord"), 4, "obj_coord")
            if coord is None:
                return Rejected(self.label, ref, MALFORMED_RECORD, "neither obj_corner (8 numbers) nor obj_coord (4 numbers)")
            check_coordinates(coord, "obj_coord")
            check_box_order(tuple(coord), "obj_coord")  # type: ignore[arg-type]
            attrs["box_from"] = "obj_coord"
            attrs["obj_coord_over_1"] = any(v > 1 for v in coord)
            x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in coord)  # values > 1 are a clamping quirk
            polygon = [(x1 * size, y1 * size), (x2 * size, y1 * size), (x2 * size, y2 * size), (x1 * size, y2 * size)]
        box = polygon_box(polygon)
        fixed, why = repair_polygon(polygon)
        if fixed is None and box_area(box) > 0:
            return Rejected(self.label, ref, INVALID_POLYGON, f"obj_corner: {why}")
        if why and fixed is not None:
            attrs["polygon_repaired"] = why
        sentence = obj.get("referring_sentence")
        category = obj.get("obj_cls", "")
        if not isinstance(category, str) or len(category) > 64:
            return Rejected(self.label, ref, MALFORMED_RECORD, f"obj_cls {shown(category)} is not a class name")
        if isinstance(sentence, str) and split == "val" and len(sentence) <= self.limits.max_expression_chars:
            self._cross_check(image_name, sentence, box, attrs)
        return SourceRecord(
            source=self.label, unit=unit, object_ref=object_ref, image_name=Path(image_name).name,
            image_path=image_path, category_raw=category, expression=sentence,
            box_xyxy=box, polygon=fixed, attributes=attrs, origin_split=split,
            expected_size=(size, size),
        )

    def _cross_check(self, image_name: str, sentence: str, box: tuple[float, ...], attrs: dict[str, Any]) -> None:
        rec = self.eval_index.get((Path(image_name).name, sentence.strip()))
        if rec is None:
            return
        truth = parse_grid_box(str(rec.get("ground_truth", "")))
        attrs["eval_question_id"] = rec.get("question_id")
        if truth is None:
            return
        norm = tuple(v / self.cfg.patch_size for v in box)
        attrs["eval_grid"] = list(truth)
        attrs["eval_grid_agrees"] = truth in (grid_box(norm), grid_box(norm, clamp=True))  # type: ignore[arg-type]


def _numbers(value: Any, n: int, what: str) -> list[float] | None:
    """``value`` as exactly ``n`` floats, or None when it is not a list of ``n`` numbers (the
    caller falls back or rejects); :class:`BadInput` (``non_finite_coordinate``) for a number no
    float holds, such as a 400-digit integer. Finiteness is checked after scaling, by the caller."""
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    return [to_float(v, what) for v in value]


_ATTRIBUTE_CHARS = 200


def _attribute(value: Any, key: str) -> Any:
    """A VRSBench attribute as the format defines it (a bool or a short word), else malformed."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and len(value) <= _ATTRIBUTE_CHARS):
        return value
    if isinstance(value, int) and abs(value) < 10**9 or isinstance(value, float) and math.isfinite(value):
        return value
    raise BadInput(MALFORMED_RECORD, f"attribute {key} {shown(value)} is not a bool, a number or a short word")


READERS = {"vrsbench": VrsbenchReader}
