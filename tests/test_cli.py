"""The `risbench` command surface: init, build (--stage/--until/--max-reject-rate), status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from tests.sources.test_vrsbench import write_p0003_tree

runner = CliRunner()


def _init(tmp_path: Path, pipeline: dict) -> Path:
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump(pipeline))
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["init", str(ws), "--pipeline", str(spec)])
    assert result.exit_code == 0, result.output
    assert (ws / "pipeline.yaml").read_text() == spec.read_text()
    return ws


def test_init_build_status(tmp_path: Path) -> None:
    root = write_p0003_tree(tmp_path / "vrsbench")
    ws = _init(tmp_path, {"sources": [{"kind": "vrsbench", "root": str(root)}]})
    result = runner.invoke(app, ["build", "--workspace", str(ws), "--stage", "ingest", "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["status", "--workspace", str(ws), "--json"])
    info = json.loads(result.output)
    assert info["counts"]["triplets"] == 1 and info["triplets_by_origin_split"] == {"val": 1}
    assert info["runs"][0]["stage"] == "ingest" and info["runs"][0]["finished"]
    # --stage all and --until run what exists, in order
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "all", "--until", "ingest", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["status", "-w", str(ws)]).exit_code == 0
    for stage in ("stats", "export"):          # nothing final yet: the step that comes next, not finalize
        result = runner.invoke(app, ["build", "-w", str(ws), "--stage", stage, "--no-progress"])
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and f"next: no masks yet: risbench build -w {ws} --stage sam-refine" in text


def test_init_refuses_to_overwrite_and_names_the_bad_key(tmp_path: Path) -> None:
    ws = _init(tmp_path, {"sources": []})
    spec = tmp_path / "p.yaml"
    result = runner.invoke(app, ["init", str(ws), "--pipeline", str(spec)])
    assert result.exit_code == 1 and "--overwrite" in result.output
    spec.write_text(yaml.safe_dump({"sources": [{"kind": "vrsbench", "root": "x", "rooot": 1}]}))
    result = runner.invoke(app, ["init", str(tmp_path / "other"), "--pipeline", str(spec)])
    assert result.exit_code == 1 and "sources.0.rooot" in result.output
    assert not (tmp_path / "other").exists()


def test_clear_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", "--workspace", str(tmp_path / "nowhere"), "--stage", "ingest"])
    assert result.exit_code == 1 and "risbench init" in result.output
    (tmp_path / "a-file").write_text("")
    result = runner.invoke(app, ["init", str(tmp_path / "a-file" / "ws"), "--pipeline", "demo"])
    assert result.exit_code == 1 and "Not a directory" in result.output and result.exception is not None
    assert "Traceback" not in result.output
    ws = _init(tmp_path, {"sources": [{"kind": "vrsbench", "root": str(tmp_path / "missing")}]})
    result = runner.invoke(app, ["build", "--workspace", str(ws), "--stage", "bogus"])
    assert result.exit_code == 2 and "'bogus' is not one of" in " ".join(result.output.split())   # a choice
    result = runner.invoke(app, ["build", "--workspace", str(ws), "--stage", "ingest"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and f"sources[0].root: {tmp_path / 'missing'} is not a folder" in text
    assert f"set sources[0].root in {ws.resolve() / 'pipeline.yaml'}" in text
    assert not (ws / "catalog.sqlite").exists()       # stopped before a run started
    result = runner.invoke(app, ["status", "--workspace", str(ws)])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "no catalog at" in text and "sources[0].root" in text
    assert f"risbench build -w {ws.resolve()} --stage ingest" in text
    for command in (["report"], ["quality"], ["review", "status"]):   # each names the workspace to build
        result = runner.invoke(app, [*command, "--workspace", str(ws)])
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and f"risbench build -w {ws} --stage ingest" in text, command


def test_init_of_a_shipped_pipeline_says_which_source_to_point_at_a_copy(tmp_path: Path) -> None:
    """The `risbench` and `audit` recipes name placeholder roots: init's next step is to edit the
    pipeline, not a build that would fail; the demo (synthetic sources) goes straight to build."""
    for recipe, kind in (("risbench", "vrsbench"), ("audit", "refer")):
        ws = tmp_path / recipe
        text = " ".join(runner.invoke(app, ["init", str(ws), "--pipeline", recipe]).output.split())
        assert f"next: sources[0].root {ws.resolve() / kind.replace('refer', 'rrsisd')} is not there" in text
        assert f"to your {kind} copy, then risbench build -w {ws.resolve()} --stage ingest" in text
    text = " ".join(runner.invoke(app, ["init", str(tmp_path / "demo"), "--pipeline", "demo"]).output.split())
    assert f"next: risbench build --workspace {(tmp_path / 'demo').resolve()} --stage all" in text


def test_max_reject_rate_exits_non_zero(tmp_path: Path) -> None:
    root = write_p0003_tree(tmp_path / "vrsbench")
    (root / "Images_val" / "Images_val" / "P0003_0002.png").unlink()
    ws = _init(tmp_path, {"sources": [{"kind": "vrsbench", "root": str(root)}]})
    result = subprocess.run([sys.executable, "-m", "risbench_builder", "build", "-w", str(ws), "--stage", "ingest",
                             "--max-reject-rate", "0.5"], capture_output=True, text=True)
    assert result.returncode == 3
    assert "100.0% of records rejected" in result.stderr and "1 missing_image" in result.stderr
    assert "rejects.csv" in result.stderr


def test_build_all_stops_at_review_then_goes_on_after_it(tmp_path: Path) -> None:
    """`--stage all` on masks routed to people: exit 0, the waiting count and the next command (not
    a later stage's error); after the review it runs through export."""
    from risbench_builder.review.simulate import simulate_review
    from risbench_builder.workspace import Workspace

    ws = _init(tmp_path, {"synthetic": {"out": "sources", "seed": 2, "scenes": 2, "patches_per_scene": 2},
                          "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                          "refine": {"segmenter": "box", "jitter_k": 0, "route": {"min_area_ratio": 5.0}},
                          "finalize": {"min_words": 0, "require_distinguisher": False, "geometry_check": "off"},
                          "export": {"targets": ["native"]}})
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "all", "--no-progress"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "error" not in text.lower() and "finalize:" not in text
    with Catalog(ws / "catalog.sqlite") as cat:
        waiting = cat.count("proposals", "WHERE route='review'")
    assert waiting and f"{waiting} masks await review" in text
    assert f"risbench review push -w {ws.resolve()}" in text
    status = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)
    assert status["next"]["waiting"] == f"{waiting} masks await review"
    assert "export what is decided now" in status["next"]["next"]
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "finalize", "--until", "export", "--no-progress"])
    assert result.exit_code == 0, result.output
    status = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)
    assert status["next"]["waiting"] == f"{waiting} masks await review"     # done once: not offered again
    assert "export what is decided now" not in status["next"]["next"]

    w = Workspace(ws.resolve())
    simulate_review(w, w.load(), ws / "sources" / "vrsbench_truth")
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "all", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (ws / "exports" / "native" / "manifest.json").is_file()
    assert "the dataset is built" in " ".join(result.output.split())


def test_after_ingest_force_the_next_step_is_sam_refine_again(tmp_path: Path) -> None:
    """`ingest --force` drops every mask; the last finished sam-refine run still names its set, so
    the next step must come from the masks there are, not from the runs."""
    ws = _init(tmp_path, {"synthetic": {"out": "sources", "seed": 4, "scenes": 1, "patches_per_scene": 1},
                          "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                          "refine": {"segmenter": "box", "jitter_k": 0}})
    assert runner.invoke(app, ["build", "-w", str(ws), "--until", "sam-refine", "--no-progress"]).exit_code == 0
    assert runner.invoke(app, ["build", "-w", str(ws), "--stage", "ingest", "--force", "--no-progress"]).exit_code == 0
    with Catalog(ws / "catalog.sqlite") as cat:
        triplets = cat.count("triplets")
        assert triplets and not cat.count("proposals")
    step = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)["next"]
    assert step["waiting"] == f"{triplets} of {triplets} triplets have no mask yet" and step["blocks_finalize"]
    assert f"risbench build -w {ws.resolve()} --stage sam-refine" in step["next"]
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "all", "--no-progress"])
    assert result.exit_code == 0 and "no mask yet" not in result.output, result.output
    with Catalog(ws / "catalog.sqlite") as cat:
        assert cat.count("proposals") == triplets

    # once people have reviewed, --force (also through --stage all) stops before deleting their work
    tid = next(iter(dict(Catalog(ws / "catalog.sqlite").conn.execute("SELECT triplet_id, 1 FROM triplets"))))
    with Catalog(ws / "catalog.sqlite") as cat, cat.transaction():
        cat.insert("reviews", ("triplet_id", "task_id", "annotator", "verdict"), [(tid, "t1", "ann@x.org", "accept")])
        cat.insert("consensus", ("triplet_id", "decision"), [(tid, "accept")])
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "all", "--force", "--no-progress"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "ingest --force would delete 1 reviews and 1 decisions people made" in text
    assert "add --discard-reviews" in text
    with Catalog(ws / "catalog.sqlite") as cat:
        assert cat.count("reviews") == 1 and cat.count("proposals") == triplets
    result = runner.invoke(app, ["build", "-w", str(ws), "--stage", "ingest", "--force", "--discard-reviews",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    [backup] = (ws / "backups").glob("catalog-before-ingest-force-*.sqlite")
    with Catalog(backup, create=False) as kept, Catalog(ws / "catalog.sqlite") as cat:
        assert kept.count("reviews") == 1 and cat.count("reviews") == 0


def test_a_missing_sam_checkpoint_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    ws = _init(tmp_path, {"synthetic": {"out": "sources", "seed": 3, "scenes": 1, "patches_per_scene": 1},
                          "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                          "refine": {"segmenter": "sam", "model": "vit_b", "checkpoint": "/models/absent.pth"}})
    result = runner.invoke(app, ["build", "-w", str(ws), "--until", "sam-refine", "--no-progress"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "error: sam:vit_b: checkpoint /models/absent.pth not found" in text, text
    assert "download sam_vit_b_01ec64.pth" in text and "Traceback" not in text


def test_a_review_in_the_same_second_as_the_last_finalize_is_newer(tmp_path: Path) -> None:
    from risbench_builder.stages.next_step import finalized_since_decisions

    with Catalog(tmp_path / "catalog.sqlite") as cat:
        def run(run_id: str, stage: str, started: str) -> None:
            cat.conn.execute("INSERT INTO runs(run_id, stage, started, finished) VALUES (?, ?, ?, ?)",
                             (run_id, stage, started, started))
        assert not finalized_since_decisions(cat)                       # nothing finalized yet
        run("a", "sam-refine", "2026-12-06T07:00:00")
        run("b", "finalize", "2026-12-06T07:00:01")
        assert finalized_since_decisions(cat)
        run("c", "review", "2026-12-06T07:00:01")                       # same second, inserted after
        assert not finalized_since_decisions(cat)
        run("d", "finalize", "2026-12-06T07:00:01")
        assert finalized_since_decisions(cat)


def test_label_sources_only_say_there_is_nothing_to_refer_to_and_an_added_source_is_named(tmp_path: Path) -> None:
    from tests.data.dota.data import generate as generate_dota

    generate_dota(tmp_path / "dota")
    ws = _init(tmp_path, {"sources": [{"kind": "dota", "root": str(tmp_path / "dota"), "labels": "labelTxt",
                                       "images": "images"}], "refine": {"segmenter": "box"}})
    result = runner.invoke(app, ["build", "-w", str(ws), "--until", "sam-refine", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    step = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)["next"]
    assert step["waiting"].startswith("no triplet has a referring expression"), step
    assert "add a vrsbench or dior_rsvg source" in step["next"]
    # ... and when one is added, status names it until an ingest reads it (not "no masks yet")
    from tests.data.dior_rsvg.data import generate as generate_rsvg

    generate_rsvg(tmp_path / "rsvg")
    cfg = yaml.safe_load((ws / "pipeline.yaml").read_text())
    cfg["sources"].append({"kind": "dior_rsvg", "root": str(tmp_path / "rsvg"), "name": "rsvg"})
    (ws / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    step = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)["next"]
    assert step["waiting"] == f"rsvg in {ws / 'pipeline.yaml'} not ingested yet", step
    assert step["next"] == f"risbench build -w {ws} --stage ingest"
    assert runner.invoke(app, ["build", "-w", str(ws), "--stage", "ingest", "--no-progress"]).exit_code == 0
    step = json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).output)["next"]
    assert step["waiting"].endswith("triplets have no mask yet"), step
