"""The ``hf`` check: parquet shards (names, schema, every row's image, mask, expression, category,
bbox and area) and the dataset card's features and split sizes.

Split names are the shards' own: ``validation`` as written now, and ``val`` from exports made
before the Hub's names were used, both pass (a note says so). So does a ``bbox`` written as
``List`` (``datasets`` >= 4) by older exports, with a note that ``datasets`` < 4 cannot load it."""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ...images import open_image
from ...paths import name_escape
from ..manifest import inode, sha256_file
from ..schema import uses_list_type
from .report import (CheckReport, Digest, Failure, Runner, SplitEntry, category_failures, duplicate_failures,
                     expression_failures, fast_grey_png, image_failures, mask_array_failures)


_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")
_HF_COLUMNS = ("image", "mask", "expression", "category", "triplet_id", "image_id", "scene_id", "width",
               "height", "bbox", "area")


HF_GROUPS_PER_TASK = 10      # row groups (of 100 rows) per task: small enough to balance two workers


def _hf_task(task: tuple) -> tuple[list[Failure], list[tuple], Digest | None]:
    """("hash", path): one sequential read of the file for its sha256; ("rows", path, rel, first,
    last, offset): the rows of row groups first..last-1. A file's hash task is queued just before
    its row tasks, so they read it from the page cache and each byte comes off the disk once."""
    if task[0] == "hash":
        return [], [], (inode(Path(task[1])), sha256_file(Path(task[1])))
    _, path, rel, first, last, offset = task
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    out: list[Failure] = []
    rows: list[tuple] = []
    for g in range(first, last):
        table = pf.read_row_group(g, columns=list(_HF_COLUMNS))
        failures, got = _hf_rows(table.to_pylist(), rel, offset)
        out += failures
        rows += got
        offset += table.num_rows
    return out, rows, None


def _hf_rows(pylist: list[dict[str, Any]], rel: str, offset: int) -> tuple[list[Failure], list[tuple]]:
    out: list[Failure] = []
    rows = []
    last: tuple[bytes, tuple[int, int]] | None = None     # rows come grouped by image
    for i, r in enumerate(pylist):
        where = f"{rel} row {offset + i} (triplet {r['triplet_id']})"
        out += expression_failures(r["expression"], where)
        out += category_failures(r["category"], where, exact=True)
        image = (r["image"] or {}).get("bytes")
        size = None
        for col in ("image", "mask"):
            named = (r[col] or {}).get("path")
            if not (r[col] or {}).get("bytes") and named is not None and name_escape(named):
                out.append(Failure("path_escape", f"{where} {col}", f"path {named!r} {name_escape(named)}; not read"))
        if image is None:
            out.append(Failure("unreadable_image", where, "image has no embedded bytes"))
        elif last is not None and last[0] == image and last[1] == (r["width"], r["height"]):
            size = last[1]                                   # the same bytes passed just before
        else:
            bad, size = image_failures(image, (r["width"], r["height"]), where)
            out += bad
            last = (image, size) if not bad and size else None
        mask_sha = None
        mask = (r["mask"] or {}).get("bytes")
        if mask is None:
            out.append(Failure("unreadable_mask", where, "mask has no embedded bytes"))
            rows.append((r["triplet_id"], r["image_id"], r["scene_id"], None, None))
            continue
        try:
            arr = fast_grey_png(mask)
            if arr is None:
                with open_image(io.BytesIO(mask)) as im:
                    arr = np.asarray(im)
        except Exception:  # noqa: BLE001 - any decoder error means unreadable
            arr = None
        if arr is None:
            out.append(Failure("unreadable_mask", where, "mask bytes do not decode"))
            rows.append((r["triplet_id"], r["image_id"], r["scene_id"], None, None))
            continue
        bad = mask_array_failures(arr, size or (r["width"], r["height"]), where)
        out += bad
        if not bad:
            area = int(np.count_nonzero(arr if arr.ndim == 2 else arr[..., 0]))
            if r["area"] is not None and area != r["area"]:
                out.append(Failure("format_violation", where, f"area column says {r['area']}, mask has {area} pixels"))
            mask_sha = hashlib.sha256(mask).hexdigest()
        rows.append((r["triplet_id"], r["image_id"], r["scene_id"], mask_sha, (arr.shape[1], arr.shape[0])))
        x1, y1, x2, y2 = r["bbox"] or (0, 0, 0, 0)
        if not (0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"]):
            out.append(Failure("format_violation", where, f"bbox {r['bbox']} is not x1<x2, y1<y2 inside the image"))
    return out, rows


def check_hf(root: Path, report: CheckReport, runner: Runner) -> list[SplitEntry]:
    import pyarrow.parquet as pq
    from ..schema import features

    want = features()
    files = sorted((root / "data").glob("*.parquet"))
    tasks = []
    shards: dict[str, list[tuple[int, int]]] = defaultdict(list)
    split_of: dict[str, str] = {}
    rows_per_split: Counter = Counter()
    list_typed: list[str] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        m = _SHARD.match(path.name)
        if not m:
            report.failures.append(Failure("format_violation", rel, "name is not {split}-{i:05d}-of-{n:05d}.parquet"))
            continue
        split = m["split"]
        shards[split].append((int(m["i"]), int(m["n"])))
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001
            report.failures.append(Failure("unreadable_file", rel, f"{type(exc).__name__}: {str(exc)[:120]}"))
            continue
        from datasets import Features

        got = Features.from_arrow_schema(pf.schema_arrow)
        if uses_list_type(pf.schema_arrow.metadata):
            list_typed.append(rel)
        if got != want:
            diff = sorted(set(got) ^ set(want)) or [k for k in want if k in got and got[k] != want[k]]
            report.failures.append(Failure("schema_mismatch", rel, f"columns differ from the schema: {diff[:8]}"))
            if not set(_HF_COLUMNS) <= set(got):
                continue
        tasks.append(("hash", str(path)))
        offset = 0
        for first in range(0, pf.num_row_groups, HF_GROUPS_PER_TASK):
            last = min(first + HF_GROUPS_PER_TASK, pf.num_row_groups)
            tasks.append(("rows", str(path), rel, first, last, offset))
            offset += sum(pf.metadata.row_group(g).num_rows for g in range(first, last))
        rows_per_split[split] += pf.metadata.num_rows
        split_of[rel] = split
    if list_typed:
        report.notes.append(f"{len(list_typed)} shard(s) (e.g. {list_typed[0]}) declare bbox as the datasets>=4 "
                            "List type, which datasets<4 cannot load: re-export to write the legacy Sequence form")
    if "val" in shards:
        report.notes.append("data/val-*: an export from before the Hub's split names (now `validation`); "
                            "load_dataset renames it to validation")
    for split, got_shards in sorted(shards.items()):
        ns = {n for _, n in got_shards}
        idx = sorted(i for i, _ in got_shards)
        if len(ns) != 1 or idx != list(range(next(iter(ns)))):
            report.failures.append(Failure("format_violation", f"data/{split}-*", f"shards {idx} of {sorted(ns)}: "
                                                                                 "numbering has gaps or disagrees"))
    samples: list[SplitEntry] = []
    triplet_ids: list[str] = []
    for task, (failures, rows, digest) in zip(tasks, runner.map(_hf_task, tasks, sum(rows_per_split.values()))):
        report.failures += failures
        if digest is not None:
            report.digests[digest[0]] = digest[1]
            continue
        split = split_of[task[2]]
        for tid, image_id, scene, mask_sha, mask_wh in rows:
            triplet_ids.append(tid)
            samples.append(SplitEntry(split, image_id, scene))
            if mask_sha is not None:
                report.seen.masks[mask_sha] = mask_wh
    report.failures += duplicate_failures(triplet_ids, "triplet_id", "data/")
    _check_card(root, want, rows_per_split, report)
    return samples


def _check_card(root: Path, want: Any, rows: Counter, report: CheckReport) -> None:
    readme = root / "README.md"
    if not readme.is_file():
        report.failures.append(Failure("card_mismatch", "README.md", "no dataset card"))
        return
    try:
        from datasets.info import DatasetInfosDict
        from huggingface_hub import DatasetCard

        card = DatasetCard.load(str(readme))
        infos = DatasetInfosDict.from_dataset_card_data(card.data)
    except Exception as exc:  # noqa: BLE001
        report.failures.append(Failure("card_mismatch", "README.md", f"YAML metadata unreadable: {str(exc)[:160]}"))
        return
    info = infos.get("default") or (next(iter(infos.values())) if infos else None)
    if info is None or info.features is None:
        report.failures.append(Failure("card_mismatch", "README.md", "no dataset_info features"))
        return
    if info.features != want:
        report.failures.append(Failure("card_mismatch", "README.md", "dataset_info features differ from the schema"))
    card_splits = set(info.splits) if info.splits else set()
    for split in sorted(card_splits | set(rows)):
        declared = info.splits[split].num_examples if split in card_splits else None
        n = rows.get(split, 0)
        if declared != n:
            report.failures.append(Failure("card_mismatch", "README.md", f"split {split}: card says {declared} "
                                                                         f"examples, parquet has {n}"))
    configs = (card.data.to_dict().get("configs") or [])
    listed = {f.get("split") for c in configs for f in (c.get("data_files") or []) if isinstance(f, dict)}
    if set(rows) - listed:
        report.failures.append(Failure("card_mismatch", "README.md", f"configs lack data_files for "
                                                                     f"{sorted(set(rows) - listed)}"))
