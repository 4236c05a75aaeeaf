"""The audit sample of auto-accepted masks: seeded, stratified by category and size, disjoint from
the review queue, drawn once per data-engine round, and sent among the queue's tasks."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml

from risbench_builder.catalog import Catalog
from risbench_builder.config import ReviewConfig
from risbench_builder.finalize.stats import size_bin
from risbench_builder.readmodel import queued_count, review_queue, sample_queue
from risbench_builder.review.sample import allocate, draw_sample, interleave, review_items
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine
from risbench_builder.workspace import init_workspace


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A refined workspace (box masks), every fifth proposal sent to review; its catalog is copied per test."""
    root = tmp_path_factory.mktemp("sample")
    spec = root / "p.yaml"
    spec.write_text(yaml.safe_dump({"synthetic": {"out": "sources", "seed": 3, "scenes": 10, "patches_per_scene": 2},
                                    "sources": [{"kind": "vrsbench", "root": "sources/vrsbench"}],
                                    "refine": {"segmenter": "box", "jitter_k": 0}}))
    ws = init_workspace(root / "ws", spec)
    run_ingest(ws, ws.load(), progress=False)
    run_refine(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat, cat.transaction():
        ids = [t for (t,) in cat.conn.execute("SELECT triplet_id FROM proposals ORDER BY triplet_id")]
        cat.conn.execute("UPDATE proposals SET route='accept'")
        cat.conn.executemany("UPDATE proposals SET route='review' WHERE triplet_id=?", [(t,) for t in ids[::5]])
    return ws.catalog_path


@pytest.fixture
def catalog(built: Path, tmp_path: Path):
    with Catalog(built) as source:
        source.copy_to(tmp_path / "catalog.sqlite")
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        yield cat


def _strata(cat: Catalog) -> dict[str, str]:
    return {tid: f"{category}|{size_bin(int(json.loads(scores)['area']))}" for tid, category, scores in cat.conn.execute(
        "SELECT p.triplet_id, t.category, p.scores_json FROM proposals p JOIN triplets t USING (triplet_id) "
        "WHERE p.route='accept' AND t.expression IS NOT NULL")}


def test_the_sample_is_stratified_disjoint_from_the_queue_and_sized(catalog: Catalog) -> None:
    cfg = ReviewConfig(audit_fraction=0.25, audit_min=3)
    drawn = draw_sample(catalog, cfg)
    strata = _strata(catalog)
    sample = dict(catalog.conn.execute("SELECT triplet_id, stratum FROM samples"))
    assert drawn.population == len(strata) and drawn.drawn == len(sample) == math.ceil(0.25 * len(strata))
    assert all(strata[t] == s for t, s in sample.items())                       # recorded in its own stratum
    sizes = Counter(strata.values())
    assert Counter(sample.values()) == Counter({k: v for k, v in allocate(dict(sizes), len(sample)).items() if v})
    queue = {q.triplet_id for q in review_queue(catalog)}
    assert queue and not queue & set(sample)                                    # disjoint from the queue
    assert {q.triplet_id for q in sample_queue(catalog)} == set(sample)
    assert queued_count(catalog) == len(queue) + len(sample)                    # what `risbench status` counts
    assert draw_sample(catalog, cfg).drawn == 0                                 # once per round


def test_the_sample_is_seeded(built: Path, tmp_path: Path) -> None:
    def sample_with(seed: int, name: str) -> set[str]:
        with Catalog(built) as source:
            source.copy_to(tmp_path / name)
        with Catalog(tmp_path / name) as cat:
            draw_sample(cat, ReviewConfig(audit_fraction=0.3, audit_seed=seed))
            return {t for (t,) in cat.conn.execute("SELECT triplet_id FROM samples")}

    assert sample_with(1, "a.sqlite") == sample_with(1, "b.sqlite")
    assert sample_with(1, "a2.sqlite") != sample_with(2, "c.sqlite")


def test_audit_min_and_a_zero_fraction(catalog: Catalog) -> None:
    assert draw_sample(catalog, ReviewConfig(audit_fraction=0.0, audit_min=0)).drawn == 0
    assert draw_sample(catalog, ReviewConfig(audit_fraction=0.01, audit_min=7)).drawn == 7


def test_sampled_tasks_are_spread_through_the_queue_and_look_alike(catalog: Catalog) -> None:
    items = review_items(catalog, ReviewConfig(audit_fraction=0.3))
    sampled = {t for (t,) in catalog.conn.execute("SELECT triplet_id FROM samples")}
    positions = [i for i, q in enumerate(items) if q.triplet_id in sampled]
    assert len(items) == len(review_queue(catalog)) + len(sampled)
    assert positions[0] < len(items) // 2 < positions[-1]                       # not all at the end
    assert {type(q) for q in items} == {type(items[0])} and all(not q.alternatives for q in items)
    assert interleave(items, [], 0) == items


def test_allocate_never_exceeds_a_stratum() -> None:
    assert allocate({"a": 1, "b": 100}, 50) == {"a": 0, "b": 50}              # proportional, largest remainder
    assert allocate({"a": 2, "b": 3}, 10) == {"a": 2, "b": 3}
