"""The sam-refine stage: backends, one encoder call per image, cache, crops, routing, resume,
torchrun sharding and shard-catalog merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.config import RefineConfig
from risbench_builder.segment.base import View
from risbench_builder.segment.box import BoxSegmenter
from risbench_builder.segment.calibrate import calibrate_workspace
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.segment.registry import make_segmenter
from risbench_builder.stages.next_step import next_step
from risbench_builder.stages.refine import _Prompt, run_refine, segment_image
from risbench_builder.workspace import Workspace
from tests.conftest import kill_midway

torch = pytest.importorskip("torch")


def pipeline(scenes: int = 3, **refine) -> dict:
    return {"synthetic": {"out": "sources", "seed": 5, "scenes": scenes, "patches_per_scene": 2},
            "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
            "refine": {"segmenter": "grabcut", "jitter_k": 2, "batch_images": 2, **refine}}


def ingested(make_workspace, name: str = "ws", **kwargs) -> Workspace:
    ws = make_workspace(pipeline(**kwargs), name)
    run_ingest(ws, ws.load(), progress=False)
    return ws


def fingerprint(ws: Workspace) -> str:
    with Catalog(ws.catalog_path) as cat:
        return cat.fingerprint(["proposals", "rejects"])


def test_grabcut_refine_idempotent_and_rerouted_without_recompute(make_workspace) -> None:
    ws = ingested(make_workspace)
    report = run_refine(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        n_triplets, n_images = cat.count("triplets"), cat.count("images")
        rows = dict(cat.conn.execute("SELECT triplet_id, rle FROM proposals"))
        routes = dict(cat.conn.execute("SELECT route, COUNT(*) FROM proposals GROUP BY route"))
    assert report.images == n_images and report.proposals == n_triplets == len(rows)
    assert sum(routes.values()) == n_triplets and report.routes == routes
    assert json.loads((ws.reports / "refine.json").read_text())["proposals"] == n_triplets
    again = run_refine(ws, ws.load(), progress=False)
    assert again.images == 0 and again.proposals == 0 and again.rerouted == 0
    # stricter thresholds re-route what exists; no mask is recomputed
    data = yaml.safe_load(ws.pipeline_path.read_text())
    data["refine"]["route"] = {"min_box_iou": 0.999999}
    ws.pipeline_path.write_text(yaml.safe_dump(data))
    strict = run_refine(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        assert dict(cat.conn.execute("SELECT triplet_id, rle FROM proposals")) == rows
        review = cat.count("proposals", "WHERE route='review'")
    assert review > routes.get("review", 0)
    assert strict.proposals == 0 and strict.rerouted == review - routes.get("review", 0)


def test_tiny_sam_batched_encoder_calls_and_cache_hits(make_workspace) -> None:
    ws = ingested(make_workspace, segmenter="sam", model="tiny", tiny_box=0, jitter_k=4, chunk_size=8,
                  cache_embeddings=True)
    cfg = ws.load()
    seg = make_segmenter(cfg.refine, ws)
    report = run_refine(ws, cfg, progress=False, segmenter=seg)
    with Catalog(ws.catalog_path) as cat:
        n_images, n_triplets = cat.count("images"), cat.count("triplets")
        scores = [json.loads(s) for (s,) in cat.conn.execute("SELECT scores_json FROM proposals")]
        name, sha = cat.conn.execute("SELECT DISTINCT segmenter, model_sha256 FROM proposals").fetchone()
    # tiny_box=0: one view per image, encoded cfg.refine.encoder_batch (8) at a time
    assert n_images == report.images and report.proposals == n_triplets
    assert seg.encoder_calls == -(-n_images // cfg.refine.encoder_batch) < n_images
    assert (name, sha) == ("sam:tiny", seg.model_sha256) and len(sha) == 64
    assert all({"iou_pred", "stability", "multimask_disagreement", "jitter_agreement"} <= s.keys() for s in scores)
    assert all(0 <= s["iou_pred"] <= 1 for s in scores)
    before = fingerprint(ws)
    # --force recomputes the masks, but every embedding comes from the cache
    fresh = make_segmenter(cfg.refine, ws)
    run_refine(ws, cfg, progress=False, segmenter=fresh, force=True)
    assert fresh.encoder_calls == 0 and fresh.cache.hits == n_images
    assert fingerprint(ws) == before
    assert len(list((ws.cache / "embeddings").rglob("*.safetensors"))) == n_images


class DenseOnly:
    """A model backend without ``segment_views``: the stage calls ``segment`` view by view and
    measures the dense masks it gets back on the host."""

    def __init__(self, seg) -> None:
        self.seg, self.name, self.model_sha256 = seg, seg.name, seg.model_sha256

    def segment(self, view: View, boxes: np.ndarray, jitter: np.ndarray):
        return self.seg.segment(view, boxes, jitter)


def test_masks_measured_on_the_device_give_the_rows_of_dense_masks(make_workspace) -> None:
    """sam-refine asks SAM for masks measured where they were made (counts and tight-box crops, no
    dense frames back) and resized in the workers; its rows (RLE, signals, routes, crops pasted
    back) are those of dense masks measured on the host. encoder_batch 1: the same embeddings."""
    prints = {}
    for name, wrap in (("measured", lambda s: s), ("dense", DenseOnly)):
        ws = ingested(make_workspace, name, scenes=2, segmenter="sam", model="tiny", tiny_box=40, encoder_batch=1,
                      workers=2)
        seg = make_segmenter(ws.load().refine, ws)
        report = run_refine(ws, ws.load(), progress=False, segmenter=wrap(seg))
        assert report.crops > 0 and report.proposals > 0
        prints[name] = fingerprint(ws)
    assert prints["measured"] == prints["dense"]


def test_a_failing_model_is_the_error_reported_not_the_cache_flush_after_it(make_workspace) -> None:
    """The stage always waits for the embedding cache's background writes; when the model itself
    failed first, that failure is what the user sees, whatever the flush says."""
    from risbench_builder.segment.sam import SamSegmenter

    class Broken(SamSegmenter):
        def segment_views(self, items, measure=False):
            raise RuntimeError("model broke")

        def flush(self) -> None:
            raise OSError("embedding cache: a background write failed")

    ws = ingested(make_workspace, scenes=1, segmenter="sam", model="tiny", workers=0)
    with pytest.raises(RuntimeError, match="model broke"):
        run_refine(ws, ws.load(), progress=False, segmenter=Broken("tiny"))
    seg = Broken("tiny")
    seg.segment_views = SamSegmenter("tiny").segment_views       # the model works: the flush error stands
    with pytest.raises(OSError, match="background write failed"):
        run_refine(ws, ws.load(), progress=False, segmenter=seg)


def test_views_go_to_the_encoder_in_whole_batches_across_images(make_workspace) -> None:
    """Images bring 1 + (tiny boxes) views each; they queue across images, so only the stream's
    last encoder batch is padded: ceil(views / encoder_batch) encoder calls."""
    ws = ingested(make_workspace, scenes=3, segmenter="sam", model="tiny", tiny_box=40, encoder_batch=4, workers=0)
    seg = make_segmenter(ws.load().refine, ws)
    report = run_refine(ws, ws.load(), progress=False, segmenter=seg)
    views = report.images + report.crops
    assert report.crops > 0 and views % 4 and views > 4
    assert seg.encoder_calls == -(-views // 4)


class RecordingBox(BoxSegmenter):
    def __init__(self) -> None:
        self.views: list[tuple[str, tuple[int, ...], int]] = []

    def segment(self, view: View, boxes: np.ndarray, jitter: np.ndarray):
        self.views.append((view.key, view.image.shape, len(boxes)))
        return super().segment(view, boxes, jitter)


def test_tiny_boxes_are_prompted_on_a_context_crop_and_pasted_back() -> None:
    image = np.zeros((600, 500, 3), np.uint8)
    tiny = np.array([480.0, 100.0, 490.0, 108.0])       # 10 px, near the right edge
    big = np.array([50.0, 60.0, 250.0, 200.0])
    prompts = [_Prompt("t", tiny, None, np.stack([tiny] * 2)), _Prompt("b", big, None, np.stack([big] * 2))]
    seg = RecordingBox()
    outputs, crops = segment_image(seg, image, "sha", prompts, RefineConfig(tiny_box=24, context_min=256))
    assert crops == 1
    assert seg.views[0] == ("sha", (600, 500, 3), 1)                   # the whole image, big box only
    key, shape, n = seg.views[1]
    assert key == "sha@244,0,500,256" and shape == (256, 256, 3) and n == 1  # shifted inside the image
    assert np.array_equal(outputs[0].mask, masks.rasterize_box(tiny, 600, 500).astype(bool))
    assert np.array_equal(outputs[1].mask, masks.rasterize_box(big, 600, 500).astype(bool))
    assert all(j.shape == (600, 500) for j in outputs[0].jitter_masks)


def test_degenerate_box_is_rejected(make_workspace) -> None:
    ws = ingested(make_workspace, segmenter="box")
    with Catalog(ws.catalog_path) as cat:
        image_id = cat.conn.execute("SELECT image_id FROM images LIMIT 1").fetchone()[0]
        with cat.transaction():
            cat.conn.execute("INSERT INTO triplets(triplet_id, image_id, source, source_ref, category, expression, "
                             "box_xyxy) VALUES ('thin', ?, 'test', 'test#thin', 'ship', 'a thin ship', "
                             "'[10, 10, 10.4, 50]')", (image_id,))
    report = run_refine(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        assert cat.conn.execute("SELECT reason FROM rejects WHERE ref='thin'").fetchone() == ("degenerate_box",)
        assert cat.count("proposals") == cat.count("triplets") - 1
    assert report.rejected == {"degenerate_box": 1}


def _cli(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "risbench_builder", "build", "-w", str(ws), "--stage", "sam-refine", *args]


@pytest.mark.parametrize("backend", [{}, {"segmenter": "sam", "model": "tiny", "tiny_box": 40, "encoder_batch": 4}],
                         ids=["grabcut", "tiny-sam"])
def test_resume_after_sigkill_gives_the_same_masks(make_workspace, backend: dict) -> None:
    """Killed anywhere (for SAM: with views in flight, masks measured and results waiting on the
    writer's thread), a rerun ends with the catalog of an uninterrupted run."""
    clean = ingested(make_workspace, "clean", scenes=8, batch_images=1, **backend)
    killed = ingested(make_workspace, "killed", scenes=8, batch_images=1, **backend)
    kill_midway(_cli(killed.path), killed.catalog_path, "proposals", at_least=3)
    with Catalog(killed.catalog_path) as cat:
        partial, total = cat.count("proposals"), cat.count("triplets")
    assert 0 < partial < total
    step = next_step(killed.path)                          # `status` sends the user back to sam-refine
    missing = int(step.waiting.split(" of ")[0])
    assert 0 < missing <= total - partial and step.waiting.endswith(f"of {total} triplets have no mask yet")
    assert "--stage sam-refine" in step.command and step.blocks_finalize
    for ws in (killed, clean):
        result = subprocess.run(_cli(ws.path), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    with Catalog(killed.catalog_path) as cat:
        assert cat.count("proposals") == total
        assert cat.conn.execute("SELECT COUNT(*) FROM (SELECT triplet_id FROM proposals GROUP BY triplet_id "
                                "HAVING COUNT(*) > 1)").fetchone()[0] == 0
    assert fingerprint(killed) == fingerprint(clean)


def test_ctrl_c_is_one_line_and_the_rerun_goes_on(make_workspace) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C) with two GrabCut workers: one
    line, exit 130, no worker tracebacks; the rerun finishes the rest."""
    ws = ingested(make_workspace, scenes=4, batch_images=1, workers=2)
    stopped = kill_midway(_cli(ws.path, "--no-progress"), ws.catalog_path, "proposals", at_least=3,
                          sig=signal.SIGINT)
    assert stopped.returncode == 130, stopped.stdout
    assert "interrupted: what was committed is kept" in stopped.stdout
    assert "Traceback" not in stopped.stdout and "KeyboardInterrupt" not in stopped.stdout, stopped.stdout
    with Catalog(ws.catalog_path) as cat:
        assert 0 < cat.count("proposals") < cat.count("triplets")
    assert subprocess.run(_cli(ws.path, "--no-progress"), capture_output=True).returncode == 0
    with Catalog(ws.catalog_path) as cat:
        assert cat.count("proposals") == cat.count("triplets")


def test_torchrun_two_ranks_split_the_work(make_workspace) -> None:
    single = ingested(make_workspace, "single", scenes=4)
    multi = ingested(make_workspace, "multi", scenes=4)
    run_refine(single, single.load(), progress=False)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "risbench_builder", "build", "-w", str(multi.path), "--stage", "sam-refine"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shards = [json.loads((multi.reports / f"refine-shard{i}of2.json").read_text()) for i in range(2)]
    ids = [set(s["image_ids"]) for s in shards]
    with Catalog(multi.catalog_path) as cat:
        all_images = {r[0] for r in cat.conn.execute("SELECT image_id FROM images")}
    assert ids[0] and ids[1] and not ids[0] & ids[1] and ids[0] | ids[1] == all_images
    assert fingerprint(multi) == fingerprint(single)


def test_shard_catalogs_merge_to_the_single_process_result(make_workspace) -> None:
    single = ingested(make_workspace, "single", segmenter="box")
    multi = ingested(make_workspace, "multi", segmenter="box")
    run_refine(single, single.load(), progress=False)
    for i in range(2):
        run_refine(multi, multi.load(), progress=False, shard=f"{i}/2", shard_catalog=True)
    with Catalog(multi.catalog_path) as cat:
        assert cat.count("proposals") == 0                  # ranks wrote only their own catalogs
        for i in range(2):
            added = cat.merge_from(multi.path / "shards" / f"catalog-{i}of2.sqlite")
            assert added["proposals"] > 0 and added["skipped"] == 0
    assert fingerprint(multi) == fingerprint(single)


def test_a_sharded_round_after_a_merge_starts_from_the_workspace_catalog(make_workspace) -> None:
    """`catalog merge` removes the shards it joined: a later sharded run (round 2 here) copies the
    workspace catalog afresh, with people's decisions, instead of resuming a stale round-1 copy
    that re-decided every mask people had already settled."""
    from typer.testing import CliRunner

    from risbench_builder.cli import app

    ws = ingested(make_workspace, segmenter="box")
    merge = ["catalog", "merge", "-w", str(ws.path), *(str(ws.shards / f"catalog-{i}of2.sqlite") for i in range(2))]
    for i in range(2):
        run_refine(ws, ws.load(), progress=False, shard=f"{i}/2", shard_catalog=True)
    result = CliRunner().invoke(app, merge)
    assert result.exit_code == 0 and result.output.count("; removed") == 2, result.output
    assert not list(ws.shards.glob("*.sqlite"))
    with Catalog(ws.catalog_path) as cat, cat.transaction():            # people settle half the masks
        routed = [r[0] for r in cat.conn.execute("SELECT triplet_id FROM proposals WHERE route='review' ORDER BY 1")]
        decided = routed[::2]
        cat.conn.executemany("INSERT INTO consensus VALUES (?, NULL, 1.0, 'accept', NULL)", [(t,) for t in decided])
    assert len(routed) >= 4
    for i in range(2):
        run_refine(ws, ws.load(), progress=False, shard=f"{i}/2", shard_catalog=True, round_no=2)
    assert CliRunner().invoke(app, merge).exit_code == 0
    with Catalog(ws.catalog_path) as cat:
        rounds = dict(cat.conn.execute("SELECT triplet_id, round FROM proposals WHERE route='review'"))
    assert {t for t, r in rounds.items() if r == 2} == set(routed) - set(decided)


def test_objects_without_an_expression_get_no_mask(make_workspace, tmp_path: Path) -> None:
    """A label source (DOTA's boxes over whole scenes) brings objects no expression refers to:
    masking them is GPU time for nothing (DOTA-v2 has ~1.8 M), and nothing waits on them."""
    from tests.data.dota.data import generate as generate_dota

    generate_dota(tmp_path / "dota")
    spec = pipeline(segmenter="box")
    spec["sources"].append({"kind": "dota", "root": str(tmp_path / "dota"), "labels": "labelTxt", "images": "images"})
    ws = make_workspace(spec)
    run_ingest(ws, ws.load(), progress=False)
    report = run_refine(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        bare = cat.count("triplets", "WHERE expression IS NULL OR TRIM(expression) = ''")
        referred = cat.count("triplets") - bare
        masked = {r[0] for r in cat.conn.execute("SELECT triplet_id FROM proposals")}
        unmasked_bare = cat.count("triplets", "WHERE (expression IS NULL OR TRIM(expression) = '') AND triplet_id "
                                              "NOT IN (SELECT triplet_id FROM proposals)")
    assert bare > 10 and referred > 0 and unmasked_bare == bare
    assert len(masked) == referred == report.proposals
    assert "no mask yet" not in next_step(ws.path).waiting


def test_calibrate_reaches_target_precision_and_writes_thresholds(make_workspace) -> None:
    ws = ingested(make_workspace, scenes=6)
    run_refine(ws, ws.load(), progress=False)
    notes = "# why these sources: see the lab wiki\n"            # a user's pipeline is documentation too
    ws.pipeline_path.write_text(notes + ws.pipeline_path.read_text().replace("refine:\n", "refine:  # tuned\n"))
    result = calibrate_workspace(ws, None, target=0.95, write=True)
    assert ws.pipeline_path.read_text().startswith(notes) and "refine:  # tuned\n" in ws.pipeline_path.read_text()
    assert "previous_pipeline" not in result
    current, proposed = result["current"], result["proposed"]
    assert current["n"] > 20 and 0 < current["mean_iou"] <= 1
    assert current["mean_iou"] > current["mean_iou_box_baseline"]      # GrabCut beats the plain box
    assert result["target_reached"] and proposed["precision"] >= 0.95
    assert yaml.safe_load(ws.pipeline_path.read_text())["refine"]["route"] == proposed["thresholds"]
    rerun = run_refine(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        review = cat.count("proposals", "WHERE route='review'") / cat.count("proposals")
    assert rerun.proposals == 0 and review == pytest.approx(proposed["review_share"], abs=0.05)
    # the synthetic truth named explicitly is the default; a --truth that is not there is an error,
    # not a calibration on the reviewed masks alone
    truth = ws.resolve(ws.load().synthetic.out) / "vrsbench_truth" / "masks.jsonl"
    assert calibrate_workspace(ws, truth)["current"] == calibrate_workspace(ws, None)["current"]
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl: no such truth file"):
        calibrate_workspace(ws, ws.path / "nowhere.jsonl")


def test_a_truth_file_line_that_is_not_a_mask_row_is_named_by_file_and_line(tmp_path: Path) -> None:
    from risbench_builder.synthetic import load_truth

    good = json.dumps({"image": "a/P0001.png", "obj_id": 3, "rle": masks.encode(np.ones((4, 5), np.uint8))})
    path = tmp_path / "masks.jsonl"
    path.write_text(good + "\n\n")
    assert list(load_truth(tmp_path)) == [("P0001.png", 3)]            # a folder holding one, blank lines skipped
    for bad, why in (("{not json", "Expecting property name"), ("[1, 2]", "must be a JSON object, got list"),
                     ('{"image": "x.png", "obj_id": 1}', "lacks rle"),
                     ('{"image": "x.png", "obj_id": true, "rle": {}}', "obj_id must be an integer, got true"),
                     ('{"image": 7, "obj_id": 1, "rle": {}}', "image must be a file name"),
                     ('{"image": "x.png", "obj_id": 1, "rle": {"size": [4, 5], "counts": "zz"}}', "RLE"),
                     ("[" * 100000, "")):
        path.write_text(good + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=rf"masks\.jsonl:2: .*{why}.*fix or remove the line"):
            load_truth(path)


@pytest.mark.parametrize("segmenter, extra", [("grabcut", {}), ("sam", {"model": "tiny", "tiny_box": 40})])
def test_the_catalog_does_not_depend_on_the_number_of_workers(make_workspace, segmenter: str, extra: dict) -> None:
    """Workers decode, prompt (and for CPU backends segment) in other processes; the rows, their
    order of commit aside, are the same as all in one process, and the run records the pipeline."""
    prints = {}
    for workers in (0, 2):
        ws = ingested(make_workspace, f"w{workers}", scenes=2, segmenter=segmenter, workers=workers,
                      batch_images=1, **extra)
        report = run_refine(ws, ws.load(), progress=False)
        prints[workers] = fingerprint(ws)
        pipeline = json.loads((ws.reports / "refine.json").read_text())["pipeline"]
        assert pipeline["workers"] == workers
        assert (pipeline["encoder_batch"] is None) == (segmenter == "grabcut")
        assert report.crops > 0 and report.images == len(report.image_ids)
    assert prints[0] == prints[2]
