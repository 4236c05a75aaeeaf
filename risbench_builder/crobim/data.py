"""Readers for our exports (``hf``, ``refer``, ``native``) and the torch dataset the trainer uses.

Every reader gives the same record, :class:`RefSample`: one referring expression with its image
and mask (decoded lazily), ``image_id`` (referred objects of one image share it: the smoke
test's shuffle control needs that), ``is_unique`` where known, and the provenance fields.

Layouts (our exports, and the public loaders they mirror):
- ``hf`` (our HF export, ``export/hf.py``): ``data/{split}-{i:05d}-of-{n:05d}.parquet`` with ``image`` and
  ``mask`` as HF ``Image()`` structs ``{bytes, path}`` (PNG bytes embedded), ``expression``,
  ``category``, ``bbox``, ``triplet_id``, ``image_id``, ``scene_id``, ``source``, ``is_unique``.
  Read with pyarrow only (no ``datasets`` needed).
- ``refer`` (RRSIS-D; RMSIN / LAVT ``refer/refer.py``): ``<name>/refs(unc).p`` + ``<name>/instances.json``
  and images in ``images/<name>/JPEGImages/`` (or ``images/``). The pickle is read with a
  restricted unpickler that builds only builtin containers and scalars.
- ``native`` (RefSegRS: FIANet loader; RISBench: RSRefSeg2 converter): ``images/`` or ``img_rgb/``, ``masks/`` or ``mask/``,
  ``output_phrase_{split}.txt`` with ``<name> <expression>`` lines (name with or without
  extension; RefSegRS appends ``.tif``).

Masks decode through :mod:`risbench_builder.masks` (RLE, polygons, PNG); REFER semantics are
kept: pixels covered by two or more segments of one annotation are background.

A dataset is untrusted input: every path named inside it (REFER ``file_name``, a phrase-file
name, an HF ``path`` without bytes) must stay inside the dataset folder. One that is absolute,
has a ``..`` component or resolves outside through a symlink raises :class:`DatasetRefused`
(a ValueError) naming the dataset file and the value, before anything outside is opened.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .. import masks
from ..export.refer import load_plain_pickle
from ..images import open_image
from ..paths import PathEscapeError, path_escape

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUTS = ("hf", "refer", "native")


class DatasetRefused(PathEscapeError):
    """A path named inside a dataset file leaves the dataset folder: the dataset is refused."""


def _confined(root: Path, base: Path, name: Any, dataset_file: Path | str, what: str) -> Path:
    """``base / name`` when it stays inside ``root`` (see :func:`..paths.path_escape`)."""
    reason = path_escape(root, base, name)
    if reason:
        raise DatasetRefused(f"{dataset_file}: {what} {name!r} {reason}; refusing this dataset ({root})")
    return Path(base) / name


# ------------------------------------------------------------------ the record
def _open_rgb(src: bytes | Path) -> Image.Image:
    img = open_image(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
    return img.convert("RGB")


def _png_mask(src: bytes | Path) -> np.ndarray:
    return masks.read_png_mask(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)


@dataclass
class RefSample:
    """One referring expression: image, mask and what the metrics and the controls need."""

    triplet_id: str
    image_id: str
    split: str
    expression: str
    image_src: bytes | Path
    mask_src: Any                           # PNG bytes | Path | RLE dict | list of segments
    category: str | None = None
    is_unique: bool | None = None
    bbox: list[float] | None = None
    source: str | None = None
    scene_id: str | None = None
    mask_kind: str = "png"                  # png | rle | refer
    size: tuple[int, int] | None = None     # (H, W) when known without decoding
    extra: dict = field(default_factory=dict)

    def image(self) -> Image.Image:
        return _open_rgb(self.image_src)

    def mask(self) -> np.ndarray:
        """uint8 (H, W) 0/1 at the image's own resolution."""
        if self.mask_kind == "rle":
            return masks.decode(self.mask_src)
        if self.mask_kind == "refer":
            return _refer_mask(self.mask_src, *self._hw())
        return _png_mask(self.mask_src)

    def _hw(self) -> tuple[int, int]:
        if self.size is None:
            w, h = self.image().size
            self.size = (h, w)
        return self.size


def _refer_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """REFER ``getMask``: polygons or a list of RLEs, summed; only pixels covered once are foreground."""
    if isinstance(segmentation, dict):                 # a bare RLE (REFER itself would fail)
        segmentation = [segmentation]
    total = np.zeros((height, width), np.int32)
    for seg in segmentation:
        if isinstance(seg, dict):
            m = masks.decode(seg)
        else:
            m = masks.rasterize_polygon(np.asarray(seg, np.float64).reshape(-1, 2), height, width)
        total += m
    return (total == 1).astype(np.uint8)


# ------------------------------------------------------------------ layout detection
def detect_layout(root: Path) -> str:
    root = Path(root)
    if list(root.glob("data/*.parquet")):
        return "hf"
    if list(root.glob("refs(*).p")) or list(root.glob("*/refs(*).p")):
        return "refer"
    if list(root.glob("output_phrase_*.txt")):
        return "native"
    for sub in LAYOUTS:                                # an exports/ folder holding several layouts
        if (root / sub).is_dir():
            try:
                return f"{sub}:{detect_layout(root / sub)}"
            except FileNotFoundError:
                continue
    raise FileNotFoundError(f"{root}: not an export (expected data/*.parquet, <name>/refs(unc).p + instances.json, "
                            f"or output_phrase_<split>.txt)")


def load_split(root: str | Path, split: str, layout: str | None = None) -> list[RefSample]:
    """All samples of ``split`` in the export at ``root`` (layout detected when not given)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such export folder")
    layout = layout or detect_layout(root)
    if ":" in layout:
        sub, layout = layout.split(":", 1)
        root = root / sub
    readers: dict[str, Callable[[Path, str], list[RefSample]]] = {"hf": read_hf, "refer": read_refer, "native": read_native}
    if layout not in readers:
        raise ValueError(f"unknown export layout {layout!r}; one of {', '.join(LAYOUTS)}")
    return readers[layout](root, split)


def available_splits(root: str | Path) -> list[str]:
    root = Path(root)
    layout = detect_layout(root)
    if ":" in layout:
        sub, layout = layout.split(":", 1)
        root = root / sub
    if layout == "hf":
        return sorted({_HF_SPLIT_ALIASES.get(n, n) for n in (p.name.split("-")[0] for p in root.glob("data/*.parquet"))})
    if layout == "native":
        return sorted(p.stem[len("output_phrase_"):] for p in root.glob("output_phrase_*.txt"))
    refs = _load_refs(_refer_files(root)[0])
    return sorted({str(r.get("split")) for r in refs})


# ------------------------------------------------------------------ hf
_HF_FILE = re.compile(r"^(?P<split>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")
# the hf export names the catalog's `val` split `validation` (Hub convention); older exports say `val`
_HF_SPLIT_ALIASES = {"validation": "val"}
_HF_FILE_NAMES = {"val": ("validation", "val"), "validation": ("validation", "val")}


def read_hf(root: Path, split: str) -> list[RefSample]:
    """Streams the shards batch by batch; an image's bytes are kept once however many triplets share it."""
    import pyarrow.parquet as pq

    files: list[Path] = []
    for name in _HF_FILE_NAMES.get(split, (split,)):
        files = sorted(p for p in (Path(root) / "data").glob(f"{name}-*.parquet") if _HF_FILE.match(p.name))
        if files:
            break
    if not files:
        raise FileNotFoundError(f"{root}/data: no {split}-XXXXX-of-XXXXX.parquet files")
    out: list[RefSample] = []
    images: dict[str, bytes | Path] = {}
    for path in files:
        pf = pq.ParquetFile(path)
        missing = {"image", "mask", "expression"} - set(pf.schema_arrow.names)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        k = 0
        for batch in pf.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                image = row["image"]
                image_id = str(row.get("image_id") or _blob_key(image))
                if image_id not in images:
                    images[image_id] = _hf_blob(image, root, path)
                out.append(RefSample(
                    triplet_id=str(row.get("triplet_id") or f"{path.stem}:{k}"), image_id=image_id,
                    split=split, expression=str(row["expression"]),
                    image_src=images[image_id], mask_src=_hf_blob(row["mask"], root, path),
                    category=row.get("category"), is_unique=row.get("is_unique"),
                    bbox=list(row["bbox"]) if row.get("bbox") is not None else None,
                    source=row.get("source"), scene_id=row.get("scene_id")))
                k += 1
    return out


def _blob_key(blob: dict) -> str:
    import hashlib

    return str(blob.get("path") or hashlib.sha1(blob.get("bytes") or b"").hexdigest())


def _hf_blob(blob: dict | None, root: Path, where: Path) -> bytes | Path:
    """HF ``Image()`` struct -> embedded bytes, else the file it points to (relative to the export)."""
    if not blob:
        raise ValueError(f"{where}: empty image/mask cell")
    if blob.get("bytes"):
        return bytes(blob["bytes"])
    if blob.get("path"):
        return _confined(Path(root), Path(root), blob["path"], where, "image/mask path")
    raise ValueError(f"{where}: image/mask cell has neither bytes nor path")


# ------------------------------------------------------------------ refer
def _load_refs(path: Path) -> list[dict]:
    refs = load_plain_pickle(path.read_bytes())
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def _refer_files(root: Path) -> tuple[Path, Path]:
    found = sorted(Path(root).glob("refs(*).p")) or sorted(Path(root).glob("*/refs(*).p"))
    if not found:
        raise FileNotFoundError(f"{root}: no refs(<splitBy>).p")
    refs = next((p for p in found if p.name == "refs(unc).p"), found[0])
    inst = refs.parent / "instances.json"
    if not inst.is_file():
        raise FileNotFoundError(f"{inst}: missing (REFER needs instances.json beside {refs.name})")
    return refs, inst


def _refer_image_dir(root: Path, name: str) -> Path:
    for cand in (root / "images" / name / "JPEGImages", root / "images" / name, root / "images",
                 root / name / "images", root / "JPEGImages"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"{root}: no image folder (looked for images/{name}/JPEGImages and images/)")


def read_refer(root: Path, split: str) -> list[RefSample]:
    root = Path(root)
    refs_path, inst_path = _refer_files(root)
    refs = _load_refs(refs_path)
    inst = json.loads(inst_path.read_text(encoding="utf-8"))
    images = {int(im["id"]): im for im in inst["images"]}
    anns = {int(a["id"]): a for a in inst["annotations"]}
    cats = {int(c["id"]): c.get("name") for c in inst.get("categories", [])}
    image_dir = _refer_image_dir(root, refs_path.parent.name)
    paths = {i: _confined(root, image_dir, im.get("file_name"), inst_path, f"image {i} file_name")
             for i, im in images.items()}                  # every image, whatever the split: refuse early
    # REFER getRefIds: train / val match exactly, test matches any split containing 'test'
    keep = (lambda s: "test" in s) if split == "test" else (lambda s: s == split)
    out: list[RefSample] = []
    for ref in refs:
        if not keep(str(ref.get("split"))):
            continue
        ann = anns.get(int(ref["ann_id"]))
        if ann is None:
            raise ValueError(f"{refs_path}: ref {ref.get('ref_id')} points at missing annotation {ref['ann_id']}")
        im = images[int(ref["image_id"])]
        sent_ids = ref.get("sent_ids") or [s.get("sent_id") for s in ref["sentences"]]
        for sent, sid in zip(ref["sentences"], sent_ids):
            out.append(RefSample(
                triplet_id=str(sent.get("triplet_id") or f"{ref['ref_id']}:{sid}"),
                image_id=str(im["id"]), split=str(ref["split"]),
                expression=str(sent.get("raw") or sent.get("sent", "")).strip(),
                image_src=paths[int(im["id"])], mask_src=ann["segmentation"], mask_kind="refer",
                category=cats.get(int(ref.get("category_id", -1))), bbox=ann.get("bbox"),
                is_unique=ref.get("is_unique"), source=ref.get("source"), scene_id=ref.get("scene_id"),
                size=(int(im["height"]), int(im["width"])), extra={"object": int(ref["ann_id"])}))
    return out


# ------------------------------------------------------------------ native
_RISBENCH_NAME = re.compile(r"^(?P<image>[a-z]+_\d+)_\d+$")


def _native_dirs(root: Path) -> tuple[Path, Path]:
    img = next((root / d for d in ("img_rgb", "images") if (root / d).is_dir()), None)
    msk = next((root / d for d in ("mask", "masks") if (root / d).is_dir()), None)
    if img is None or msk is None:
        raise FileNotFoundError(f"{root}: need images/ or img_rgb/ and masks/ or mask/")
    return img, msk


def _find(root: Path, folder: Path, name: str, where: Path) -> Path:
    """The file for ``name`` in ``folder`` (extension optional); each candidate is confined to
    ``root`` before it is looked at."""
    p = _confined(root, folder, name, where, "file name")
    if p.suffix and p.is_file():
        return p
    for ext in (".tif", ".png", ".jpg", ".tiff", ".jpeg"):
        if _confined(root, folder, name + ext, where, "file name").is_file():
            return folder / (name + ext)
    raise FileNotFoundError(f"{folder}: no file for {name!r}")


def read_native(root: Path, split: str) -> list[RefSample]:
    root = Path(root)
    phrases = root / f"output_phrase_{split}.txt"
    if not phrases.is_file():
        raise FileNotFoundError(f"{phrases}: missing")
    img_dir, mask_dir = _native_dirs(root)
    out: list[RefSample] = []
    for k, line in enumerate(phrases.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        name, _, expr = line.strip().partition(" ")
        stem = Path(name).stem if Path(name).suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".jpeg") else name
        m = _RISBENCH_NAME.match(stem)
        out.append(RefSample(
            triplet_id=f"{split}:{k}:{stem}", image_id=m.group("image") if m else stem, split=split,
            expression=expr.strip(), image_src=_find(root, img_dir, name, phrases),
            mask_src=_find(root, mask_dir, name, phrases)))
    return out


# ------------------------------------------------------------------ controls
def multi_object_images(samples: Sequence[RefSample]) -> set[str]:
    """image_ids with two or more referred objects (distinct masks)."""
    seen: dict[str, set[str]] = {}
    for s in samples:
        seen.setdefault(s.image_id, set()).add(str(s.extra.get("object", s.triplet_id)))
    return {i for i, objs in seen.items() if len(objs) >= 2}


def _cycle(n: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(n)                      # one random n-cycle: no fixed point
    perm = np.empty(n, np.int64)
    perm[order] = np.roll(order, -1)
    return perm


def shuffle_expressions(samples: Sequence[RefSample], seed: int = 0) -> list[RefSample]:
    """The negative control: expressions permuted among the referred objects of the same image
    (no one keeps its own); images with one referred object swap expressions across images.
    Images and masks stay where they are, so only the language-to-mask link is broken."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.image_id, []).append(i)
    out = list(samples)
    singles = []
    for idx in groups.values():
        if len(idx) < 2:
            singles += idx
            continue
        perm = _cycle(len(idx), rng)
        for a, b in zip(idx, perm):
            out[a] = replace(samples[a], expression=samples[idx[b]].expression)
    if len(singles) >= 2:
        perm = _cycle(len(singles), rng)
        for a, b in zip(singles, perm):
            out[a] = replace(samples[a], expression=samples[singles[b]].expression)
    return out


def rotate_masks(samples: Sequence[RefSample], by: int = 1) -> list[RefSample]:
    """A deliberately broken export: every triplet gets the mask of the triplet ``by`` later."""
    n = len(samples)
    return [replace(s, mask_src=samples[(i + by) % n].mask_src, mask_kind=samples[(i + by) % n].mask_kind,
                    size=samples[(i + by) % n].size) for i, s in enumerate(samples)]


# ------------------------------------------------------------------ torch dataset
class RefSegDataset:
    """Samples resized to ``size`` x ``size`` (bilinear image, NEAREST mask), ImageNet-normalised.

    ``cache=True`` keeps the resized arrays in memory (small sets: the smoke test, tests).
    Items: ``{"image": float (3, S, S), "mask": uint8 (S, S), "text": str, "index": int}``.
    """

    def __init__(self, samples: Sequence[RefSample], size: int, cache: bool = False) -> None:
        self.samples, self.size, self.cache = list(samples), size, cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Resized (S, S, 3) uint8 image and (S, S) uint8 mask."""
        if i in self._cache:
            return self._cache[i]
        s = self.samples[i]
        img = s.image()
        m = s.mask()
        if m.shape != (img.size[1], img.size[0]):
            raise ValueError(f"{s.triplet_id}: mask {m.shape} does not match image {img.size[1]}x{img.size[0]}")
        img = np.array(img.resize((self.size, self.size), Image.BILINEAR))
        m = np.array(Image.fromarray(m).resize((self.size, self.size), Image.NEAREST))
        if self.cache:
            self._cache[i] = (img, m)
        return img, m

    def __getitem__(self, i: int) -> dict:
        import torch

        img, m = self.arrays(i)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255)
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_STD)[:, None, None]
        return {"image": (x - mean) / std, "mask": torch.from_numpy(np.ascontiguousarray(m)),
                "text": self.samples[i].expression, "index": i}


def make_collate(tokenize: Callable[[Sequence[str]], tuple[Any, Any]]) -> Callable[[list[dict]], dict]:
    def collate(items: list[dict]) -> dict:
        import torch

        ids, mask = tokenize([it["text"] for it in items])
        return {"image": torch.stack([it["image"] for it in items]), "mask": torch.stack([it["mask"] for it in items]),
                "input_ids": ids, "attention_mask": mask, "index": torch.tensor([it["index"] for it in items])}

    return collate


def subset_by_images(samples: Sequence[RefSample], max_samples: int, seed: int = 0, prefer_multi: bool = False,
                     keep: Callable[[RefSample], bool] | None = None) -> list[RefSample]:
    """Whole images (all their referred objects that pass ``keep``) in a seeded order until
    ``max_samples``; ``keep`` is only called on the images looked at."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[RefSample]] = {}
    for s in samples:
        groups.setdefault(s.image_id, []).append(s)
    keys = list(groups)
    order = [keys[i] for i in rng.permutation(len(keys))]
    if prefer_multi:
        order.sort(key=lambda k: len(groups[k]) < 2)
    out: list[RefSample] = []
    for k in order:
        group = [s for s in groups[k] if keep is None or keep(s)]
        if not group or (len(out) + len(group) > max_samples and out):
            continue
        out += group
        if len(out) >= max_samples:
            break
    return out


def min_mask_fraction(fraction: float) -> Callable[[RefSample], bool]:
    """A ``keep`` predicate: the mask covers at least ``fraction`` of its image."""
    return lambda s: fraction <= 0 or float(s.mask().mean()) >= fraction
