"""RRSIS-D / REFER datasets (downloaded, or our own ``refer`` export) read back as records with masks.

Layout (RMSIN / LAVT ``refer/refer.py``), ``root`` being the REFER data root::

    <name>/refs(unc).p                 pickle list of refs (one unit per refs file)
    <name>/instances.json              {"images", "annotations", "categories"}
    images/<name>/JPEGImages/<file_name>
    images/<name>/ann_split/<stem>.xml optional DIOR-RSVG-style XML per image (RRSIS-D only)

One :class:`SourceRecord` per *sentence* of each ref, because a sentence is what a triplet is;
``object_ref`` is ``ref{ref_id}.sent{sent_id}``. The pitfalls of the real files are followed, not
fixed: ``bbox`` is x1,y1,x2,y2 (RRSIS-D style, although REFER's ``getRefBox`` documents x,y,w,h),
the class id may only be under the misspelled ``categories_id``, category ids start at 0 and
name DIOR classes (ingest normalises them). The instances image's size goes to
``attributes["declared_size"]`` rather than ``expected_size``: RRSIS-D ships 800x801 images whose
masks and entries say 800x800, and ingest fits such masks instead of rejecting the image.

Masks are passed through undecoded as :class:`~.base.ImportedMask` ``rle`` (ingest decodes them
against the image), in one of three shapes:

- ``{"size": [h, w], "counts": str | list}``: a list holding one RLE dict (what RRSIS-D and our
  export write) or a bare RLE dict (which REFER's ``getMask`` cannot read, but the intent is
  plain), passed as the dataset stores it;
- ``{"size": [h, w], "parts": [rle, rle, ...]}``: several RLE dicts in one segmentation, to be
  united;
- ``{"size": [h, w], "polygons": [[x1, y1, x2, y2, ...], ...]}``: COCO polygons, rasterised at
  ``size``.

For ``parts`` and ``polygons``, ``size`` is the instances image's ``[height, width]`` and is left
out when the image does not declare both. A segmentation that is absent or empty gives
``mask=None`` with ``attributes["mask_problem"] = "missing_mask: ..."``; one of no known shape
(an int, a list mixing RLEs and polygons) gives ``mask=None`` with ``"undecodable_mask: ..."``.
Ingest keeps such records as triplets to repair.

RMSIN issue #32: ``ann_split/<stem>.xml`` describes several objects per image, but only the last
has a ``<segmentation>`` and only that one is in the refs. The other descriptions (those that are
not already a sentence of a ref on that image) are yielded too, with the XML box, ``mask=None``
and ``attributes["lost_mask"] = True``, after the refs of the first refs file of the dataset.

The refs pickle is untrusted: :func:`load_plain_pickle` refuses every class and function, so a
pickle that would import code is a ``malformed_file`` reject and nothing in it runs.
"""

from __future__ import annotations

import io
import pickle
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..config import IngestConfig, SourceConfig
from ..masks import Box
from ..paths import PathEscapeError, confine_path
from ..text import shown, unexpected
from .base import (
    MALFORMED_FILE, MALFORMED_RECORD, MISSING_MASK, PATH_ESCAPE, UNDECODABLE_MASK, BadInput, ImportedMask,
    Item, Rejected, SourceRecord, check_box_order, check_coordinates, guarded, load_json_bounded,
    normalize_expression, read_unit, to_float, walk_files,
)
from .dior import parse_bndbox, parse_xml

IMAGE_DIR = "JPEGImages"
XML_DIR = "ann_split"


# ------------------------------------------------------------------ the untrusted pickle
class _PlainUnpickler(pickle.Unpickler):
    """REFER refs are lists, dicts, str, int and float: anything that would import code is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refs pickle refers to {module}.{name}; only plain lists/dicts/str/int are "
                                     "allowed (refusing to load arbitrary objects)")


def load_plain_pickle(raw: bytes) -> Any:
    """An untrusted ``refs(unc).p``: builtin containers and scalars only, never a class or a
    function (``pickle.UnpicklingError`` otherwise).

    >>> load_plain_pickle(pickle.dumps([{"ref_id": 1, "split": "train"}], protocol=4))
    [{'ref_id': 1, 'split': 'train'}]
    >>> load_plain_pickle(b"cos\\nsystem\\n(S'true'\\ntR.")
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: refs pickle refers to os.system; only plain lists/dicts/str/int are allowed (refusing to load arbitrary objects)
    """
    return _PlainUnpickler(io.BytesIO(raw)).load()


# ------------------------------------------------------------------ small helpers
def _key(value: Any) -> int | str | None:
    """An id usable as a dict key and in a ref: an int (not a bool) or a short string."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**15:
        return value
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable() and "#" not in value:
        return value
    return None


def _text(value: Any, limit: int = 200) -> str | None:
    """A short provenance string from the file, or None when it is not one."""
    return value if isinstance(value, str) and len(value) <= limit else None


def _declared_size(image: dict[str, Any]) -> tuple[int, int] | None:
    """(width, height) an instances image claims, when both are positive ints."""
    w, h = image.get("width"), image.get("height")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10**6 for v in (w, h))
    return (w, h) if ok else None


def _box(bbox: Any, what: str) -> Box | None:
    """``bbox`` read as x1,y1,x2,y2 (RRSIS-D), or None when the annotation has none."""
    if bbox is None:
        return None
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise BadInput(MALFORMED_RECORD, f"{what} {shown(bbox)} is not [x1, y1, x2, y2]")
    values = check_coordinates((to_float(v, what) for v in bbox), what)
    return check_box_order(tuple(values), what)  # type: ignore[arg-type]


def _is_rle(value: Any) -> bool:
    return isinstance(value, dict) and "counts" in value


def mask_of(segmentation: Any, size: tuple[int, int] | None, where: str) -> tuple[ImportedMask | None, str | None]:
    """A REFER ``segmentation`` as (mask, problem): the mask in one of the module's three shapes,
    or None and ``"<reason>: <detail>"``. Nothing is decoded.

    >>> mask_of([{"size": [2, 2], "counts": "04"}], (2, 2), "a")[0].rle
    {'size': [2, 2], 'counts': '04'}
    >>> mask_of([[0, 0, 1, 0, 1, 1]], (3, 2), "a")[0].rle
    {'polygons': [[0, 0, 1, 0, 1, 1]], 'size': [2, 3]}
    >>> mask_of([], None, "a")
    (None, 'missing_mask: a: segmentation is empty')
    """
    if segmentation is None or (isinstance(segmentation, (list, tuple, dict)) and not segmentation):
        return None, f"{MISSING_MASK}: {where}: segmentation is {'absent' if segmentation is None else 'empty'}"
    if _is_rle(segmentation):
        return ImportedMask(rle=segmentation, where=where), None
    if isinstance(segmentation, (list, tuple)):
        items = list(segmentation)
        sized: dict[str, Any] = {} if size is None else {"size": [size[1], size[0]]}
        if all(_is_rle(s) for s in items):
            if len(items) == 1:
                return ImportedMask(rle=items[0], where=where), None
            return ImportedMask(rle={"parts": items, **(sized or {"size": items[0].get("size")})}, where=where), None
        if all(isinstance(s, (list, tuple)) for s in items):
            return ImportedMask(rle={"polygons": [list(s) for s in items], **sized}, where=where), None
        kinds = sorted({type(s).__name__ for s in items})
        return None, f"{UNDECODABLE_MASK}: {where}: segmentation mixes {', '.join(kinds)} (neither RLE dicts nor polygons)"
    return None, f"{UNDECODABLE_MASK}: {where}: segmentation is a {type(segmentation).__name__}, not RLE or polygons"


class _Instances:
    """``instances.json`` indexed by id (first entry wins for a repeated id; non-dicts skipped)."""

    def __init__(self, data: Any, what: str):
        if not isinstance(data, dict):
            raise BadInput(MALFORMED_FILE, f"{what}: expected an object with images/annotations/categories")
        lists = {k: data.get(k, []) for k in ("images", "annotations", "categories")}
        for key, value in lists.items():
            if not isinstance(value, list):
                raise BadInput(MALFORMED_FILE, f"{what}: {key!r} is a {type(value).__name__}, not a list")
        self.images = self._index(lists["images"])
        self.annotations = self._index(lists["annotations"])
        self.categories = self._index(lists["categories"])

    @staticmethod
    def _index(entries: list[Any]) -> dict[int | str, dict[str, Any]]:
        out: dict[int | str, dict[str, Any]] = {}
        for entry in entries:
            key = _key(entry.get("id")) if isinstance(entry, dict) else None
            if key is not None:
                out.setdefault(key, entry)
        return out


@dataclass
class _Ref:
    """What the sentences of one ref share, resolved against instances.json."""

    image_name: str
    image_path: Path | None
    category: str
    box: Box | None
    mask: ImportedMask | None
    split: str | None
    sentences: list[Any]
    sent_ids: list[Any]
    attributes: dict[str, Any]
    scene_id: str | None


# ------------------------------------------------------------------ the reader
class ReferReader:
    """REFER refs files: one unit per ``<name>/refs(*).p``, one record per sentence."""

    kind = "refer"
    expects = "<name>/refs(unc).p"

    def __init__(self, cfg: SourceConfig, root: Path, limits: IngestConfig | None = None):
        self.cfg, self.root = cfg, Path(root)
        self.limits = limits or IngestConfig()
        self.source = cfg.label
        self._instances: tuple[str, _Instances | BadInput] | None = None    # the last one read

    def units(self) -> list[str]:
        return list(self._units)

    @cached_property
    def _units(self) -> tuple[str, ...]:
        if not self.root.is_dir():
            return ()
        found = [p.relative_to(self.root).as_posix() for p in self.root.glob("*/refs(*).p")]
        return tuple(sorted(u for u in found if PurePosixPath(u).parts[0] != "images"))

    def _first_of(self, name: str) -> str | None:
        """The first refs file of dataset ``name``: the unit that also carries its ann_split XML."""
        return next((u for u in self._units if PurePosixPath(u).parts[0] == name), None)

    # ------------------------------------------------------------ files
    def instances(self, name: str) -> _Instances:
        """``<name>/instances.json``, parsed once for the refs files that share it."""
        if self._instances is None or self._instances[0] != name:
            rel = f"{name}/instances.json"
            try:
                value: _Instances | BadInput = _Instances(
                    load_json_bounded(read_unit(self.root, rel, self.limits), self.limits, rel), rel)
            except BadInput as bad:
                value = bad
            self._instances = (name, value)
        value = self._instances[1]
        if isinstance(value, BadInput):
            raise value
        return value

    def _refs(self, unit: str) -> list[Any]:
        raw = read_unit(self.root, unit, self.limits)
        try:
            refs = load_plain_pickle(raw)
        except Exception as exc:          # refused classes, truncation, garbage opcodes, memory
            raise BadInput(MALFORMED_FILE, f"{unit}: not a plain refs pickle: {unexpected(exc)}") from None
        if not isinstance(refs, list):
            raise BadInput(MALFORMED_FILE, f"{unit}: refs pickle holds a {type(refs).__name__}, not a list of refs")
        return refs

    def read(self, unit: str) -> Iterator[Item]:
        file_ref = f"{self.source}:{unit}"
        name = PurePosixPath(unit).parts[0]
        try:
            refs = self._refs(unit)
            inst = self.instances(name)
        except BadInput as bad:
            yield Rejected(self.source, file_ref, bad.reason, bad.detail)
            return
        image_dir = self.root / "images" / name / IMAGE_DIR
        seen: set[str] = set()
        sentences_on: dict[str, set[str]] = {}        # image file_name -> normalised sentences (for ann_split)
        split_on: dict[str, str] = {}
        for i, ref in enumerate(refs):
            ref_id = _key(ref.get("ref_id")) if isinstance(ref, dict) else None
            ref_key = f"ref{ref_id}" if ref_id is not None else f"idx{i}"
            shared = guarded(self.source, f"{file_ref}#{ref_key}", f"ref {i}", self._resolve, unit, name, inst,
                             image_dir, ref)
            if isinstance(shared, Rejected):
                yield shared
                continue
            if shared.split is not None and shared.image_name:
                split_on.setdefault(shared.image_name, shared.split)
            for j, sentence in enumerate(shared.sentences):
                sent_id = _key(sentence.get("sent_id")) if isinstance(sentence, dict) else None
                if sent_id is None and j < len(shared.sent_ids):
                    sent_id = _key(shared.sent_ids[j])
                object_ref = f"{ref_key}.sent{sent_id if sent_id is not None else f'idx{j}'}"
                if object_ref in seen:
                    object_ref = f"idx{i}.sent{j}"
                seen.add(object_ref)
                item = guarded(self.source, f"{file_ref}#{object_ref}", f"ref {i} sentence {j}", self._record,
                               unit, object_ref, shared, sentence, sent_id)
                if isinstance(item, SourceRecord) and item.expression:
                    sentences_on.setdefault(item.image_name, set()).add(normalize_expression(item.expression))
                yield item
        if self._first_of(name) in (unit, None):
            yield from self._lost_expressions(unit, name, inst, image_dir, sentences_on, split_on)

    # ------------------------------------------------------------ one ref, one sentence
    def _resolve(self, unit: str, name: str, inst: _Instances, image_dir: Path, ref: Any) -> _Ref:
        if not isinstance(ref, dict):
            raise BadInput(MALFORMED_RECORD, f"ref is a {type(ref).__name__}, not a mapping")
        ann_id = _key(ref.get("ann_id"))
        ann = inst.annotations.get(ann_id) if ann_id is not None else None
        if ann is None:
            raise BadInput(MALFORMED_RECORD, f"ann_id {shown(ref.get('ann_id'))} is not in {name}/instances.json annotations")
        ref_image, ann_image = _key(ref.get("image_id")), _key(ann.get("image_id"))
        if ref_image is not None and ann_image is not None and ref_image != ann_image:
            raise BadInput(MALFORMED_RECORD, f"ref image_id {shown(ref_image)} but annotation {shown(ann_id)} is on "
                                             f"image {shown(ann_image)}")
        image_id = ref_image if ref_image is not None else ann_image
        image = inst.images.get(image_id) if image_id is not None else None
        if image is None:
            raise BadInput(MALFORMED_RECORD, f"image_id {shown(ref.get('image_id', ann.get('image_id')))} is not in "
                                             f"{name}/instances.json images")
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name or len(file_name) > 255:
            raise BadInput(MALFORMED_RECORD, f"image {shown(image_id)} has file_name {shown(file_name)}")
        try:
            path: Path | None = confine_path(self.root, image_dir, file_name)
        except PathEscapeError as exc:
            raise BadInput(PATH_ESCAPE, f"image {exc}") from None
        if not path.is_file():
            path = None
        category = self._category(inst, name, ref, ann)
        size = _declared_size(image)
        where = f"{name}/instances.json annotation {ann_id}"
        mask, problem = mask_of(ann.get("segmentation"), size, where)
        sentences = ref.get("sentences")
        if not isinstance(sentences, list):
            raise BadInput(MALFORMED_RECORD, f"sentences is {shown(sentences)}, not a list")
        sent_ids = ref.get("sent_ids") if isinstance(ref.get("sent_ids"), list) else []
        split = ref.get("split")
        attributes: dict[str, Any] = {"file": unit, "ref_id": _key(ref.get("ref_id")), "ann_id": ann_id,
                                      "image_file": file_name}
        for key, out in (("triplet_id", "origin_triplet_id"), ("mask_origin", "mask_origin")):
            if _text(ref.get(key)):
                attributes[out] = ref[key]
        if size:
            attributes["declared_size"] = list(size)
        if problem:
            attributes["mask_problem"] = problem
        scene = image.get("scene_id")
        return _Ref(image_name=file_name, image_path=path, category=category, box=_box(ann.get("bbox"), "bbox"),
                    mask=mask, split=_text(split, 64), sentences=sentences, sent_ids=sent_ids,
                    attributes=attributes, scene_id=scene if _text(scene) else None)

    @staticmethod
    def _category(inst: _Instances, name: str, ref: dict[str, Any], ann: dict[str, Any]) -> str:
        """The class name for the ref's ``category_id``, else the annotation's ``category_id`` or
        misspelled ``categories_id`` (RRSIS-D annotations have only the latter)."""
        for holder, key in ((ref, "category_id"), (ann, "category_id"), (ann, "categories_id")):
            if key in holder:
                cid = _key(holder[key])
                cat = inst.categories.get(cid) if cid is not None else None
                if cat is None:
                    raise BadInput(MALFORMED_RECORD, f"{key} {shown(holder[key])} is not in {name}/instances.json categories")
                cname = cat.get("name")
                if not isinstance(cname, str) or not cname.strip() or len(cname) > 64:
                    raise BadInput(MALFORMED_RECORD, f"category {shown(cid)} has name {shown(cname)}")
                return cname
        raise BadInput(MALFORMED_RECORD, "neither the ref nor its annotation has a category_id")

    def _record(self, unit: str, object_ref: str, shared: _Ref, sentence: Any, sent_id: Any) -> SourceRecord:
        if not isinstance(sentence, dict):
            raise BadInput(MALFORMED_RECORD, f"sentence is a {type(sentence).__name__}, not a mapping")
        expression = sentence.get("raw")
        if not isinstance(expression, str) or not expression.strip():
            expression = sentence.get("sent")
        if not isinstance(expression, str) or not expression.strip():
            tokens = sentence.get("tokens")
            expression = " ".join(t for t in tokens if isinstance(t, str)) if isinstance(tokens, list) else ""
        return SourceRecord(
            source=self.source, unit=unit, object_ref=object_ref, image_name=shared.image_name,
            image_path=shared.image_path, category_raw=shared.category, expression=expression,
            box_xyxy=shared.box, attributes={**shared.attributes, "sent_id": sent_id},
            origin_split=self.cfg.split or shared.split, mask=shared.mask, scene_id=shared.scene_id,
        )

    # ------------------------------------------------------------ RMSIN #32: expressions without masks
    def _lost_expressions(self, unit: str, name: str, inst: _Instances, image_dir: Path,
                          sentences_on: dict[str, set[str]], split_on: dict[str, str]) -> Iterator[Item]:
        folder = f"images/{name}/{XML_DIR}"
        if not (self.root / folder).is_dir():
            return
        by_file = {im.get("file_name"): im for im in inst.images.values()}
        for rel in walk_files(self.root, folder, (".xml",)):
            stem = PurePosixPath(rel).stem
            file_ref = f"{self.source}:{unit}#{stem}.xml"
            try:
                tree = parse_xml(read_unit(self.root, rel, self.limits))
            except BadInput as bad:
                yield Rejected(self.source, file_ref, bad.reason, bad.detail)
                continue
            except Exception as exc:         # ValueError from parse_xml, expat on hostile input
                yield Rejected(self.source, file_ref, MALFORMED_FILE, f"{rel}: {unexpected(exc)}")
                continue
            image_name = (tree.findtext("filename") or "").strip()[:255] or f"{stem}.jpg"
            known = sentences_on.get(image_name, set())
            for k, obj in enumerate(tree.findall("object")):
                ref = f"{file_ref}.obj{k}"
                description = " ".join((obj.findtext("description") or "").split())
                if description and normalize_expression(description) in known:
                    continue                 # the object the refs already hold, with its mask
                yield guarded(self.source, ref, f"{rel} object {k}", self._xml_record, unit, f"{stem}.xml.obj{k}",
                              rel, k, obj, image_dir, image_name, by_file.get(image_name), split_on.get(image_name))

    def _xml_record(self, unit: str, object_ref: str, rel: str, index: int, obj: ET.Element, image_dir: Path,
                    image_name: str, image: dict[str, Any] | None, split: str | None) -> SourceRecord:
        category = (obj.findtext("name") or "").strip()
        if not category or len(category) > 64:
            raise BadInput(MALFORMED_RECORD, f"<name> {shown(category)} is not a class name")
        description = obj.findtext("description")
        if description is None:
            raise BadInput(MALFORMED_RECORD, "object has no <description>")
        box = parse_bndbox(obj)
        try:
            path: Path | None = confine_path(self.root, image_dir, image_name)
        except PathEscapeError as exc:
            raise BadInput(PATH_ESCAPE, f"image {exc}") from None
        if not path.is_file():
            path = None
        scene = image.get("scene_id") if image else None
        return SourceRecord(
            source=self.source, unit=unit, object_ref=object_ref, image_name=image_name, image_path=path,
            category_raw=category, expression=description, box_xyxy=box,
            attributes={"file": rel, "object_index": index, "lost_mask": True},
            origin_split=self.cfg.split or split, mask=None, scene_id=scene if _text(scene) else None,
        )


READERS = {"refer": ReferReader}
