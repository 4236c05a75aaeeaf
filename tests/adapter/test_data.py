"""adapter/noise.py, data.py and recipe.py: noise profile, trusted samples, scene split, recipes."""

from __future__ import annotations

import numpy as np
import pytest

from risbench_builder import masks
from risbench_builder.adapter.data import crop_samples, split_by_scene, trusted_samples
from risbench_builder.adapter.noise import BoxNoise, NoiseProfile, apply_error, box_error
from risbench_builder.adapter.recipe import load_recipe, shipped_recipe
from risbench_builder.catalog import Catalog
from risbench_builder.config import ConfigError


def test_box_error_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = np.sort(rng.uniform(0, 200, 4).reshape(2, 2), axis=0).T.reshape(-1)[[0, 2, 1, 3]]
        truth = np.array([truth[0], truth[1], truth[0] + 5 + truth[2], truth[1] + 5 + truth[3]])
        err = rng.normal(0, 0.2, 4)
        assert np.allclose(box_error(apply_error(truth, err), truth), err)


def test_noise_profile_and_clipping() -> None:
    pairs = [((0, 0, 12, 12), (1, 1, 11, 11)), ((5, 5, 25, 15), (5, 5, 25, 15)), ((0, 0, 0, 5), (0, 0, 5, 5))]
    profile = NoiseProfile.measure(pairs)
    assert len(profile) == 2  # the degenerate pair is skipped
    s = profile.summary()
    assert s["pairs"] == 2 and 0 < s["mean_box_iou"] <= 1 and s["log_scale_mean"] > 0
    noise = BoxNoise(0.3, 0.3, 0.3, 1.0, profile)
    rng = np.random.default_rng(1)
    for _ in range(200):
        b = noise.apply((90, 40, 100, 60), rng, 100, 60)
        assert 0 <= b[0] < b[2] <= 100 and 0 <= b[1] < b[3] <= 60 and b[2] - b[0] >= 1


def test_trusted_samples_split_by_scene_and_crops(workspace) -> None:
    samples = trusted_samples(workspace)
    with Catalog(workspace.catalog_path) as cat:
        assert len(samples) == cat.count("triplets")  # every synthetic triplet has a true mask
    train, held = split_by_scene(samples, 0.25, 0)
    assert train and held and len(train) + len(held) == len(samples)
    assert not {s.scene_id for s in train} & {s.scene_id for s in held}
    assert split_by_scene(samples, 0.25, 0) == (train, held)  # seeded
    # the workspace's boxes are noisy: that is what the profile measures
    assert np.mean([masks.box_iou(s.prompt_box, s.truth_box) for s in samples]) < 0.9
    crops = crop_samples(samples, 128)
    c = crops[0]
    assert c.window is not None and c.width >= 128 and c.view().image.shape[:2] == (c.height, c.width)
    assert "@" in c.image_key and masks.area(c.truth) > 0


def test_trusted_samples_use_reviewed_final_rows_only(workspace, tmp_path) -> None:
    # with a truth file that holds no row, only consensus/adjudicated rows that reached `final` count
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no trusted masks"):
        trusted_samples(workspace, truth=tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="no such truth file"):     # not silently "no truth"
        trusted_samples(workspace, truth=tmp_path / "none")


def test_shipped_recipes_resolve_anywhere(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the checkout: adapters/ resolves from the package
    for name in ("adapters/pa_sam_vit_h.yaml", "pa_sam_vit_b", "tiny"):
        r = load_recipe(name)
        assert r.adapter.points == 4 and r.losses.mask > 0
    assert load_recipe("pa_sam_vit_h").sam.model == "vit_h" and shipped_recipe("tiny").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nadapter: {trainable: [encoder]}\n")
    with pytest.raises(ConfigError, match="unknown decoder parts"):
        load_recipe(bad)
