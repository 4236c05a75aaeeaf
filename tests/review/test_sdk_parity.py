"""Parity with label-studio-sdk, the reference the hand-written client is kept honest against.

The SDK lives in the Label Studio venv (label-studio ships it), not in the project's (why:
``review/client.py``). Each test writes its inputs to a temporary folder, runs a short script
in that venv and compares what comes back: the brush codec both ways, byte for byte, and the
SDK's ``LabelInterface`` accepting the labeling config and every task and prediction a push
sends. Skipped where the venv is missing, like the server tests.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.review.sample import review_items
from risbench_builder.review.sync import _adjudication_payload
from risbench_builder.review.tasks import (
    LABEL_CONFIG, catalog_image_paths, export_import_file, resolve_roots, resource_text, task_payload,
)
from tests.review.conftest import label_studio_venv
from tests.review.test_brush import _blob, _literal_stream
from tests.review.test_import_file import refined  # noqa: F401  (fixture: a refined workspace with a queue)

pytestmark = pytest.mark.labelstudio


def _sdk(script: str, folder: Path) -> None:
    """Run ``script`` with the Label Studio venv's python, ``folder`` as its argument."""
    python = label_studio_venv() / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Label Studio venv at {python.parent.parent} (make test creates it)")
    done = subprocess.run([str(python), "-c", script, str(folder)], capture_output=True, text=True, timeout=120)
    if "No module named 'label_studio_sdk" in done.stderr:
        pytest.skip(f"label_studio_sdk is not installed in {python.parent.parent}")
    assert done.returncode == 0, done.stderr[-3000:]


def _runs(*pixels: int) -> np.ndarray:
    """One row of alternating 0/1 runs of these pixel lengths (x4 bytes in the brush stream)."""
    return np.concatenate([np.full(n, i % 2, np.uint8) for i, n in enumerate(pixels)])[None, :]


# ----------------------------------------------------------------------------- brush codec
_CODEC_SDK = r"""
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle
d = sys.argv[1]
z = np.load(f"{d}/masks.npz")
cases = [z[f"arr_{i}"] for i in range(len(z.files))]
ours = json.load(open(f"{d}/ours.json"))
np.savez(f"{d}/sdk_decoded.npz", *[decode_rle(r).reshape(m.shape + (4,)) for r, m in zip(ours, cases)])
foreign = json.load(open(f"{d}/foreign.json"))
np.savez(f"{d}/sdk_foreign.npz", *[decode_rle(s) for s in foreign])
z = np.load(f"{d}/rgba.npz")
json.dump({"mask2rle": [mask2rle(m.astype(np.uint8) * 255) for m in cases],
           "encode_rle": [encode_rle(z[f"arr_{i}"].ravel()) for i in range(len(z.files))]},
          open(f"{d}/sdk.json", "w"))
"""


def _codec_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        *(_blob(s, 40 + 3 * s, 71 - 2 * s) for s in range(8)),                  # odd sizes, speckle
        (rng.random((33, 47)) > 0.5).astype(np.uint8),                          # runs of one pixel
        np.zeros((1, 1), np.uint8), np.ones((1, 1), np.uint8),
        np.zeros((9, 9), np.uint8), np.ones((9, 9), np.uint8),                  # stream ends on a byte: pad byte
        np.ones((128, 128), np.uint8),                                          # one run of exactly 2**16 bytes
        np.ones((130, 130), np.uint8), np.zeros((257, 255), np.uint8),          # runs split at 2**16
        _runs(1, 2, 3, 4, 5, 64, 65, 16384, 16385, 32768, 32769, 2),           # each width's edges
    ]


def test_brush_codec_matches_the_sdk_both_ways(tmp_path: Path) -> None:
    cases = _codec_cases()
    ours = [masks.brush_encode(m) for m in cases]
    np.savez(tmp_path / "masks.npz", *cases)
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    # streams we do not write: a browser's anti-aliased literal blocks, and the SDK's own
    # encode_rle of arbitrary RGBA (single values, literal blocks, any byte)
    rng = np.random.default_rng(11)
    alphas = [rng.integers(0, 256, (7, 9), dtype=np.uint8), np.where(_blob(3) > 0, 200, 30).astype(np.uint8)]
    (tmp_path / "foreign.json").write_text(json.dumps([_literal_stream(a) for a in alphas]))
    rgba = [rng.integers(0, 256, (5, 6, 4), dtype=np.uint8),
            np.repeat(rng.integers(0, 256, (11, 13, 1), dtype=np.uint8), 4, axis=2),
            np.dstack([np.full((20, 17), 255, np.uint8)] * 3 + [np.where(_blob(4, 20, 17) > 0, 128, 127)]).astype(
                np.uint8)]
    np.savez(tmp_path / "rgba.npz", *rgba)
    _sdk(_CODEC_SDK, tmp_path)
    sdk = json.loads((tmp_path / "sdk.json").read_text())
    decoded = np.load(tmp_path / "sdk_decoded.npz")
    for i, (m, mine, theirs) in enumerate(zip(cases, ours, sdk["mask2rle"])):
        assert mine == theirs, f"case {i} {m.shape}: encoders differ"                  # ours -> bytes == SDK's
        assert np.array_equal(masks.brush_decode(theirs, *m.shape), m), f"case {i}"    # SDK bytes -> our decoder
        rgba_back = decoded[f"arr_{i}"]                                                  # our bytes -> SDK decoder
        assert np.array_equal(rgba_back, np.repeat(m[..., None] * 255, 4, axis=2)), f"case {i}"
    foreign = np.load(tmp_path / "sdk_foreign.npz")
    for i, alpha in enumerate(alphas):
        sdk_alpha = foreign[f"arr_{i}"].reshape(alpha.shape + (4,))[..., 3]
        assert np.array_equal(sdk_alpha, alpha)
        assert np.array_equal(masks.brush_decode(_literal_stream(alpha), *alpha.shape), sdk_alpha > 127)
    for i, (image, stream) in enumerate(zip(rgba, sdk["encode_rle"])):
        assert np.array_equal(masks.brush_decode(stream, *image.shape[:2]), image[..., 3] > 127), f"rgba {i}"


# ----------------------------------------------------------------------------- labeling config, tasks
_INTERFACE_SDK = r"""
import copy, json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface
d = sys.argv[1]
li = LabelInterface(open(f"{d}/config.xml").read())
li.validate()                                          # raises on an invalid config
tasks = json.load(open(f"{d}/tasks.json"))
out = {"controls": sorted(c.name for c in li.controls), "objects": sorted(o.name for o in li.objects),
       "data_ok": [], "errors": [], "decoded": []}
alphas = []
for task in tasks:
    # validate_task(task) with predictions calls validate_prediction() without its argument (SDK
    # 2.1.2): the data is checked alone and each prediction on its own
    out["data_ok"].append(li.validate_task({"data": task["data"]}))
    out["errors"].append([li.validate_prediction(p, return_errors=True) for p in task.get("predictions", [])])
    for p in task.get("predictions", []):
        for region in p["result"]:
            h, w = region["original_height"], region["original_width"]
            alphas.append(decode_rle(region["value"]["rle"]).reshape(h, w, 4)[..., 3])
np.savez(f"{d}/sdk_alphas.npz", *alphas)
# the validator is not a yes-machine: what it must refuse
pred = tasks[0]["predictions"][0]
bad = {"label": copy.deepcopy(pred), "from_name": copy.deepcopy(pred), "score": dict(pred, score=1.5),
       "empty rle": copy.deepcopy(pred)}
bad["label"]["result"][0]["value"]["brushlabels"] = ["other"]
bad["from_name"]["result"][0]["from_name"] = "masks"
bad["empty rle"]["result"][0]["value"]["rle"] = []
out["refused"] = {k: bool(li.validate_prediction(p, return_errors=True)) for k, p in bad.items()}
no_image = {k: v for k, v in tasks[0]["data"].items() if k != "image"}
out["refused"]["task without image"] = not li.validate_task({"data": no_image})
verdict = lambda c: {"result": [{"from_name": "verdict", "to_name": "image", "type": "choices",
                                  "value": {"choices": [c]}}]}
out["answers"] = [li.validate_annotation(verdict(c)) for c in json.load(open(f"{d}/verdicts.json"))]
json.dump(out, open(f"{d}/sdk.json", "w"))
"""


def test_label_interface_accepts_the_config_and_every_pushed_task(refined, tmp_path: Path) -> None:
    cfg = refined.load()
    tasks = json.loads(export_import_file(refined, cfg).path.read_text())      # what push sends
    with Catalog(refined.catalog_path) as cat:
        items = review_items(cat, cfg.review)
        roots = resolve_roots(refined, cfg.review, catalog_image_paths(cat))
        first = items[0]
        # an audited import's task: the dataset's mask, audit's fresh one as a second prediction
        fresh = masks.encode(np.roll(masks.decode(first.rle), 3, axis=1))
        other = dataclasses.replace(first, alternatives=(("sam:vit_b", "ab" * 32, fresh),))
        tasks.append(task_payload(other, roots, "imported"))
        # what pull pushes to the adjudication project, with and without the fused mask
        tasks.append(_adjudication_payload(cat, first.triplet_id, masks.dumps(first.rle), "reviewers disagree",
                                           "majority", roots))
        tasks.append(_adjudication_payload(cat, first.triplet_id, None, "no mask", "majority", roots))
    assert len(tasks) == len(items) + 3 > 3
    expected = [masks.brush_decode(r["value"]["rle"], r["original_height"], r["original_width"])
                for t in tasks for p in t.get("predictions", []) for r in p["result"]]
    config = resource_text(LABEL_CONFIG)
    verdicts = [c.split('"', 1)[0] for c in config.split('<Choice value="')[1:]]
    (tmp_path / "config.xml").write_text(config)
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    (tmp_path / "verdicts.json").write_text(json.dumps(verdicts))
    _sdk(_INTERFACE_SDK, tmp_path)
    sdk = json.loads((tmp_path / "sdk.json").read_text())
    assert sdk["controls"] == ["expression_fix", "mask", "verdict"]
    assert sdk["objects"] == ["category", "expression", "image"]
    assert all(sdk["data_ok"]), [t["data"] for t, ok in zip(tasks, sdk["data_ok"]) if not ok][:2]
    assert not any(e for errors in sdk["errors"] for e in errors), [e for e in sdk["errors"] if any(e)][:2]
    assert sdk["refused"] == dict.fromkeys(("label", "from_name", "score", "empty rle", "task without image"), True)
    assert len(verdicts) == 5 and all(sdk["answers"])
    alphas = np.load(tmp_path / "sdk_alphas.npz")                    # the SDK reads each mask as we meant it
    assert len(alphas.files) == len(expected) == len(items) + 3
    for i, mask in enumerate(expected):
        assert np.array_equal(alphas[f"arr_{i}"] > 127, mask.astype(bool)), f"prediction {i}"
