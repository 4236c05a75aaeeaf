"""Small loader-test exports made from the synthetic scenes (torchgeo style: real layouts, seeded).

Until the export stage exists, these stand in for our ``hf`` export (formats: see
risbench_builder/crobim/data.py): a synthetic VRSBench tree plus its TRUE masks become one
triplet per referred object, image and mask as HF ``Image()`` structs with embedded PNG bytes.
Images stay 512x512 as the real export (the loader resizes). Also tiny ``refer`` and
``native`` trees for the reader tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from risbench_builder import masks
from risbench_builder.config import SyntheticConfig
from risbench_builder.sources.base import scene_id_from_name
from risbench_builder.synthetic import load_truth, write_vrsbench


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def vrsbench_triplets(vrs_root: Path, truth_dir: Path) -> list[dict]:
    """One dict per referred object of the synthetic VRSBench tree, with its true mask (0/1)."""
    truth = load_truth(truth_dir)
    rows = []
    for split in ("train", "val"):
        for ann_path in sorted((vrs_root / f"Annotations_{split}").glob("*.json")):
            doc = json.loads(ann_path.read_text())
            name = doc["image"]
            img_path = (vrs_root / "Images_train" / name if split == "train"
                        else vrs_root / "Images_val" / "Images_val" / name)
            image = np.asarray(Image.open(img_path).convert("RGB"))
            for obj in doc["objects"]:
                t = truth[(name, int(obj["obj_id"]))]
                tid = hashlib.sha1(f"vrsbench|{name}|{obj['obj_id']}|{obj['referring_sentence']}".encode()).hexdigest()[:16]
                rows.append({"split": split, "image_id": Path(name).stem, "image": image,
                             "mask": masks.decode(t["rle"]), "expression": obj["referring_sentence"],
                             "category": obj["obj_cls"], "bbox": [float(v) for v in t["box_xyxy"]],
                             "triplet_id": tid, "scene_id": scene_id_from_name(name), "source": "vrsbench",
                             "is_unique": bool(obj["is_unique"]), "obj_id": int(obj["obj_id"])})
    return rows


def _png_all(arrays: list[np.ndarray]) -> list[bytes]:
    """:func:`png_bytes` of each array, in a process pool when there are many (a 250-scene export
    encodes ~1,600 PNGs)."""
    from risbench_builder.parallel import default_workers, make_pool

    pool = make_pool(default_workers() if len(arrays) >= 64 else 0)
    if pool is None:
        return [png_bytes(a) for a in arrays]
    try:
        return pool.map(png_bytes, arrays, chunksize=16)
    finally:
        pool.terminate()
        pool.join()


def _write_table(table, path: Path) -> None:
    """One parquet file as the export writes it: image and mask bytes uncompressed (they are PNG
    already; snappy over them costs most of the write), the other columns snappy."""
    import pyarrow.parquet as pq

    leaves = [name for name in table.schema.names if name not in ("image", "mask")]
    compression = {**{f"{c}.{f}": "none" if f == "bytes" else "snappy" for c in ("image", "mask") for f in ("bytes", "path")},
                   **{name: "snappy" for name in leaves}}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression=compression)


def write_hf(rows: list[dict], out: Path, shards: int = 1) -> Path:
    """``out/data/{split}-{i:05d}-of-{n:05d}.parquet`` with HF Image() structs (embedded PNG)."""
    import pyarrow as pa

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", image_type), ("mask", image_type), ("expression", pa.string()),
                        ("category", pa.string()), ("bbox", pa.list_(pa.float32())), ("triplet_id", pa.string()),
                        ("image_id", pa.string()), ("scene_id", pa.string()), ("source", pa.string()),
                        ("is_unique", pa.bool_())])
    first: dict[str, int] = {}                           # image_id -> its first row (one PNG per image)
    for k, r in enumerate(rows):
        first.setdefault(r["image_id"], k)
    encoded = _png_all([rows[k]["image"] for k in first.values()]
                       + [(r["mask"] * 255).astype(np.uint8) for r in rows])
    image_png = dict(zip(first, encoded[: len(first)]))
    mask_png = encoded[len(first):]
    for split in sorted({r["split"] for r in rows}):
        part = [k for k, r in enumerate(rows) if r["split"] == split]
        chunks = np.array_split(np.arange(len(part)), min(shards, len(part)))
        for i, idx in enumerate(chunks):
            cols: dict[str, list] = {f.name: [] for f in schema}
            for j in idx:
                k = part[int(j)]
                r = rows[k]
                cols["image"].append({"bytes": image_png[r["image_id"]], "path": f"{r['image_id']}.png"})
                cols["mask"].append({"bytes": mask_png[k], "path": f"{r['triplet_id']}.png"})
                for key in ("expression", "category", "bbox", "triplet_id", "image_id", "scene_id", "source",
                            "is_unique"):
                    cols[key].append(r[key])
            _write_table(pa.table(cols, schema=schema), out / "data" / f"{split}-{i:05d}-of-{len(chunks):05d}.parquet")
    return out


def make_hf_export(base: Path, scenes: int = 8, patches_per_scene: int = 2, seed: int = 7,
                   val_fraction: float = 0.35, shards: int = 1) -> Path:
    """Render a synthetic VRSBench tree under ``base`` and turn it into ``base/export`` (hf layout)."""
    cfg = SyntheticConfig(seed=seed, scenes=scenes, patches_per_scene=patches_per_scene, val_fraction=val_fraction)
    write_vrsbench(base / "vrsbench", cfg, base / "vrsbench_truth")
    return write_hf(vrsbench_triplets(base / "vrsbench", base / "vrsbench_truth"), base / "export", shards)


def write_misaligned(base: Path) -> Path:
    """``base/misaligned``: the export of ``make_hf_export(base, ...)`` with every mask moved to the
    next triplet (export order: the shards in name order, train before val, the last row's mask
    from the first), the deliberately broken copy of the smoke validation. Read from the export's
    parquet files, so no PNG is decoded or encoded again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((base / "export" / "data").glob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    mask_bytes = pa.concat_tables(tables).column("mask").combine_chunks().field("bytes")
    rotated = pa.concat_arrays([mask_bytes.slice(1), mask_bytes.slice(0, 1)])   # a row keeps its mask's path
    start = 0
    for f, table in zip(files, tables):
        n = table.num_rows
        paths = table.column("mask").combine_chunks().field("path")
        mask = pa.StructArray.from_arrays([rotated.slice(start, n), paths], fields=list(table.schema.field("mask").type))
        table = table.set_column(table.schema.get_field_index("mask"), "mask", mask)
        _write_table(table, base / "misaligned" / "data" / f.name)
        start += n
    return base / "misaligned"


def write_refer(rows: list[dict], out: Path, name: str = "risbench") -> Path:
    """REFER layout (RMSIN / LAVT ``refer/refer.py``): ``out/<name>/refs(unc).p``, ``instances.json``,
    ``out/images/<name>/JPEGImages/*.png``; list-wrapped RLE, xyxy bbox, ``categories_id``."""
    img_dir = out / "images" / name / "JPEGImages"
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / name).mkdir(parents=True, exist_ok=True)
    image_ids: dict[str, int] = {}
    images, anns, refs = [], [], []
    cats = sorted({r["category"] for r in rows})
    for k, r in enumerate(rows):
        if r["image_id"] not in image_ids:
            image_ids[r["image_id"]] = len(image_ids) + 1
            Image.fromarray(r["image"]).save(img_dir / f"{r['image_id']}.png")
            h, w = r["mask"].shape
            images.append({"id": image_ids[r["image_id"]], "file_name": f"{r['image_id']}.png", "height": h, "width": w})
        rle = masks.encode(r["mask"])
        cid = cats.index(r["category"])
        anns.append({"id": k + 1, "image_id": image_ids[r["image_id"]], "category_id": cid, "categories_id": cid,
                     "bbox": r["bbox"], "area": masks.area(rle), "iscrowd": 0, "segmentation": [rle]})
        refs.append({"ref_id": k + 1, "ann_id": k + 1, "image_id": image_ids[r["image_id"]], "category_id": cid,
                     "split": r["split"], "file_name": f"{r['image_id']}.png", "sent_ids": [k + 1],
                     "sentences": [{"sent_id": k + 1, "raw": r["expression"], "sent": r["expression"].lower(),
                                    "tokens": r["expression"].lower().split()}]})
    with open(out / name / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=4)
    (out / name / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": i, "name": c} for i, c in enumerate(cats)]}))
    return out


def write_native(rows: list[dict], out: Path) -> Path:
    """RISBench native layout (as RSRefSeg2 reads it): img_rgb/<split>_<img>_<obj>.png, mask/, phrases with .png."""
    (out / "img_rgb").mkdir(parents=True, exist_ok=True)
    (out / "mask").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {}
    image_index: dict[str, int] = {}
    per_image: dict[str, int] = {}
    for r in rows:
        img_idx = image_index.setdefault(r["image_id"], len(image_index))
        obj = per_image.get(r["image_id"], 0)
        per_image[r["image_id"]] = obj + 1
        fname = f"{r['split']}_{img_idx}_{obj}.png"
        Image.fromarray(r["image"]).save(out / "img_rgb" / fname)
        m3 = np.repeat((r["mask"] * 255).astype(np.uint8)[..., None], 3, axis=2)    # 3-channel quirk
        Image.fromarray(m3).save(out / "mask" / fname)
        lines.setdefault(r["split"], []).append(f"{fname} {r['expression']}")
    for split, ls in lines.items():
        (out / f"output_phrase_{split}.txt").write_text("\n".join(ls) + "\n", encoding="utf-8")
    return out
