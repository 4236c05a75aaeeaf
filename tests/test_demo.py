"""The demo build (what `make demo` runs) as two data-engine rounds with an audit sample: round 2
sends fewer tasks to people at no lower measured precision, or the quality statement says it did
not; the statement is printed and carried by the hf dataset card."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from risbench_builder.cli import app


def test_the_demo_runs_two_rounds_and_states_its_measured_quality(tmp_path: Path) -> None:
    ws = tmp_path / "demo-workspace"
    out = CliRunner().invoke(app, ["demo", "-w", str(ws), "--no-progress"])
    assert out.exit_code == 0, out.output
    quality = json.loads((ws / "reports/quality.json").read_text())
    statement = quality["statement"]
    assert "Auto-accepted masks" in statement and " ".join(statement.split()) in " ".join(out.output.split())
    assert [r["round"] for r in quality["rounds"]] == [1, 2]
    for r in quality["rounds"]:          # the printed task counts are the report's, an earlier round's open samples aside
        line = next(x for x in out.output.splitlines() if x.strip().startswith(f"round {r['round']} "))
        earlier = re.search(r"; (\d+) of those drawn in an earlier round", line)
        assert int(re.search(r": (\d+) tasks sent", line)[1]) - int(earlier[1] if earlier else 0) == r["review_tasks"]
    assert quality["auto_accepted"]["sampled"] >= 2                      # an audit sample in each round
    comparison = quality["round_comparison"]
    t1, t2 = comparison["review_tasks"]
    if comparison["fewer_tasks"] and comparison["precision_not_lower"]:
        assert t2 < t1 and "at no lower measured precision" in statement
    else:                                                                 # the report says it did not
        assert ("not fewer tasks" in statement) or ("a lower measured precision" in statement) or \
            ("not measured in both rounds" in statement)
    card = (ws / "exports/hf/README.md").read_text()
    assert "**Synthetic data.**" in card and "expert-generated" not in card      # says what it is
    assert "## Mask quality" in card and " ".join(statement.split())[:60] in " ".join(card.split())
    assert (ws / "reports/QUALITY.md").is_file()


def test_a_second_demo_starts_over_and_gives_the_same_dataset(tmp_path: Path) -> None:
    """Round 2's calibration rewrites the pipeline's thresholds: a rerun on them and on the old
    catalog printed other numbers. A rerun starts over and gives the same catalog, keeping the
    size it was built at. A workspace that is not the demo's is refused before anything runs."""
    from risbench_builder.catalog import Catalog

    ws = tmp_path / "demo-workspace"
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "-w", str(ws), "--scenes", "4", "--no-progress"]).exit_code == 0
    with Catalog(ws / "catalog.sqlite") as cat:
        first, final = cat.fingerprint(), cat.count("final")
    out = runner.invoke(app, ["demo", "-w", str(ws), "--no-progress"])
    assert out.exit_code == 0 and "starting over: the earlier demo build" in out.output, out.output
    with Catalog(ws / "catalog.sqlite") as cat:
        assert cat.fingerprint() == first and cat.count("final") == final > 0
    spec = tmp_path / "real.yaml"
    spec.write_text("sources: [{kind: vrsbench, root: /data/vrsbench}]\n")
    assert runner.invoke(app, ["init", str(tmp_path / "real"), "--pipeline", str(spec)]).exit_code == 0
    out = runner.invoke(app, ["demo", "-w", str(tmp_path / "real"), "--no-progress"])
    assert out.exit_code == 1 and "is not a demo workspace" in " ".join(out.output.split())
    assert not (tmp_path / "real" / "catalog.sqlite").exists()


def test_a_size_out_of_range_leaves_no_pipeline_that_blocks_the_next_demo(tmp_path: Path) -> None:
    """`demo --scenes 100000000` used to write that size into pipeline.yaml before validating it:
    every later `risbench demo -w` on the folder then failed on the same key."""
    import yaml

    ws = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "-w", str(ws), "--scenes", "100000000"])
    assert result.exit_code == 1 and "synthetic.scenes: Input should be less than or equal to" in result.output
    assert yaml.safe_load((ws / "pipeline.yaml").read_text())["synthetic"]["scenes"] == 12   # the shipped size
    assert not (ws / "catalog.sqlite").exists()
