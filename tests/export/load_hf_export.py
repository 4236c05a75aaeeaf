"""Load an hf export with whatever `datasets` runs this script, offline, and print one JSON line.

Standalone (imports neither risbench_builder nor pytest) so that it runs in a scratch venv that
holds only an old `datasets`, e.g. the oldest the pyproject allows::

    python3 -m venv /tmp/ds219 && /tmp/ds219/bin/pip install 'datasets==2.19.*' pyarrow pillow
    /tmp/ds219/bin/python tests/export/load_hf_export.py W/exports/hf

It loads the folder three ways: ``load_dataset(folder)`` (card + parquet), the same streaming,
and ``load_dataset("parquet", data_files=...)`` (the parquet ``huggingface`` metadata alone, the
path that fails on a ``List`` feature in datasets < 4). For each it prints the splits, row
counts, the ``bbox`` feature and the first ``bbox`` value, and the mask mode; exit status 1 on
any failure. ``tests/export/test_hf.py`` runs it when ``RISBENCH_OLD_DATASETS_PYTHON`` names
such a venv's python.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile


def describe(ds, streaming: bool) -> dict:
    out = {}
    for split, part in ds.items():
        rows = list(part) if streaming else [part[i] for i in range(part.num_rows)]
        feats = part.features
        first = rows[0]
        out[split] = {"rows": len(rows), "bbox_feature": repr(feats["bbox"]) if feats else None,
                      "bbox": [float(v) for v in first["bbox"]], "bbox_len": {len(r["bbox"]) for r in rows} == {4},
                      "mask_mode": first["mask"].mode, "image_mode": first["image"].mode}
    return out


def main(folder: str) -> int:
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hf-home-"))
    import datasets
    from datasets import load_dataset

    result: dict = {"datasets": datasets.__version__}
    ok = True
    files: dict[str, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "data", "*.parquet"))):
        files.setdefault(os.path.basename(path).split("-")[0], []).append(path)
    ways = {"folder": lambda cache: load_dataset(folder, cache_dir=cache),
            "streaming": lambda cache: load_dataset(folder, streaming=True),
            "parquet": lambda cache: load_dataset("parquet", data_files=files, cache_dir=cache)}
    for name, load in ways.items():
        try:
            with tempfile.TemporaryDirectory(prefix="hf-cache-") as cache:
                result[name] = describe(load(cache), streaming=name == "streaming")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ok = False
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    print(json.dumps(result, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
