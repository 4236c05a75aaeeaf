"""Pipeline YAML: defaults, shipped recipes, errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

import yaml

from risbench_builder.config import ConfigError, load_pipeline, parse_pipeline, recipe_path, set_in_yaml


def test_sources_alone_is_a_valid_pipeline() -> None:
    cfg = parse_pipeline({"sources": [{"kind": "vrsbench", "root": "/data/vrsbench"}]})
    assert cfg.ingest.batch_size == 500 and cfg.synthetic is None and cfg.sources[0].patch_size == 512


@pytest.mark.parametrize("name", ["demo", "risbench"])
def test_shipped_recipes_load(name: str) -> None:
    cfg = load_pipeline(recipe_path(name))
    assert cfg.sources and cfg.name == name


def test_a_path_that_is_not_there_is_never_swapped_for_a_shipped_recipe(tmp_path: Path) -> None:
    """`--pipeline ~/mine/demo.yaml` with a typo in the folder used to build the shipped demo."""
    from risbench_builder.adapter.recipe import load_recipe
    from risbench_builder.workspace import init_workspace

    assert recipe_path("pipelines/risbench.yaml") == recipe_path("risbench.yaml") == recipe_path("risbench")
    with pytest.raises(ConfigError, match=r"nowhere/demo.yaml: no such pipeline file \(shipped: audit, demo, "):
        init_workspace(tmp_path / "ws", tmp_path / "nowhere" / "demo.yaml")
    assert not (tmp_path / "ws").exists()
    with pytest.raises(ConfigError, match="no shipped pipeline named 'dmeo'"):
        recipe_path("dmeo")
    assert load_recipe("adapters/tiny.yaml").name == "tiny"
    with pytest.raises(ConfigError, match="no adapter recipe .*nowhere/tiny.yaml"):
        load_recipe(tmp_path / "nowhere" / "tiny.yaml")


@pytest.mark.parametrize("data, key", [
    ({"sources": [{"kind": "landsat", "root": "x"}]}, "sources.0.kind"),
    ({"sources": [{"kind": "dota"}]}, "sources.0.root"),
    ({"sources": [], "ingest": {"batch_size": 0}}, "ingest.batch_size"),
    ({"sources": [], "ingets": {}}, "ingets"),
    ({}, "sources"),
    # sizes, counts and thresholds have ranges
    ({"sources": [{"kind": "vrsbench", "root": "x", "patch_size": 0}]}, "sources.0.patch_size"),
    ({"sources": [{"kind": "vrsbench", "root": "x", "patch_size": -512}]}, "sources.0.patch_size"),
    ({"sources": [], "ingest": {"max_expression_chars": 0}}, "ingest.max_expression_chars"),
    ({"sources": [], "ingest": {"max_json_depth": 1}}, "ingest.max_json_depth"),
    ({"sources": [], "refine": {"route": {"min_iou_pred": 1.5}}}, "refine.route.min_iou_pred"),
    ({"sources": [], "refine": {"jitter_scale": 2}}, "refine.jitter_scale"),
    ({"sources": [], "synthetic": {"scenes": 0}}, "synthetic.scenes"),
    ({"sources": [], "finalize": {"split": {"ratios": {"train": -1}}}}, "finalize.split.ratios"),
    ({"sources": [], "export": {"dataset_name": "../escape"}}, "export.dataset_name"),
    ({"sources": [], "review": {"min_agreement": 1.01}}, "review.min_agreement"),
])
def test_errors_name_the_bad_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"<pipeline>: {key}: "):
        parse_pipeline(data)


def test_each_bad_key_is_one_line_with_its_value() -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline({"sources": [{"kind": "vrsbench", "root": "x", "patch_size": 0}],
                        "ingest": {"batch_size": -3}, "refine": {"route": {"min_box_iou": 7}}})
    lines = str(info.value).splitlines()
    assert lines == [
        "<pipeline>: sources.0.patch_size: Input should be greater than 0 (got 0)",
        "<pipeline>: ingest.batch_size: Input should be greater than or equal to 1 (got -3)",
        "<pipeline>: refine.route.min_box_iou: Input should be less than or equal to 1 (got 7)",
    ]


def test_crobim_config_ranges() -> None:
    from risbench_builder.crobim.config import parse_config

    with pytest.raises(ConfigError, match=r"<config>: model.img_size: Input should be greater than or equal to 32"):
        parse_config({"model": {"img_size": 0}})
    with pytest.raises(ConfigError, match=r"<config>: train.lr: Input should be greater than 0"):
        parse_config({"train": {"lr": 0}})


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(bad)
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load_pipeline(tmp_path / "missing.yaml")
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_pipeline(bad)


def test_config_hash_changes_with_content() -> None:
    a = parse_pipeline({"sources": [{"kind": "dota", "root": "a"}]})
    b = parse_pipeline({"sources": [{"kind": "dota", "root": "b"}]})
    assert a.sha256() != b.sha256() and a.sha256() == parse_pipeline(a.model_dump()).sha256()


@pytest.mark.parametrize("text, kept", [
    (recipe_path("risbench").read_text(), True),                                      # route: a flow mapping
    ("name: x\nrefine:\n  segmenter: sam  # s\n  route:\n    min_iou_pred: 0.5\n  # after\nfinalize: {}\n", True),
    ("name: x  # n\nrefine:\n  segmenter: sam\n  # end of refine\n\nfinalize:\n  a: 1\n", True),  # no route
    ("# only sources\nsources:\n  - {kind: vrsbench, root: v}  # here", True),        # no refine, no newline
    ("# flow\nrefine: {segmenter: box}\n", False),                                     # rewritten, old file kept
])
def test_set_in_yaml_changes_one_value_and_keeps_the_comments(tmp_path: Path, text: str, kept: bool) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    route = {"min_iou_pred": 0.91, "min_box_iou": None}
    backup = set_in_yaml(path, ("refine", "route"), route)
    data, before = yaml.safe_load(path.read_text()), yaml.safe_load(text)
    before.setdefault("refine", {})["route"] = route
    assert data == before                                           # every other value as it was
    comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line and "min_iou_pred: 0.5" not in line]
    assert all(c in path.read_text() for c in comments) == kept
    assert (backup is None) == kept and (kept or backup.read_text() == text)
