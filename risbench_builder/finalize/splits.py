"""Leak-free splits: whole scenes go to one split, categories stay balanced, a seed fixes it all.

Patches cut from one large DOTA/DIOR image share objects, background and often the very same
object; putting them in different splits leaks test content into training. Scenes are
therefore the unit of assignment: they are taken in a seeded order, largest first, and each
goes to the split whose per-category share lags its target most.

A greedy draw over all scenes moves about a quarter of them when one triplet comes or goes, so
a later finalize (another review round, a new source, a release v2) would put yesterday's test
scenes into training. Scenes that already have a split therefore keep it (``fixed``: the
catalog's ``scene_splits``); only scenes never seen are drawn, towards the ratios given what
the kept scenes hold. Another seed, protocol or ratio draws every scene afresh.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from ..config import SplitConfig


@dataclass(frozen=True)
class Item:
    triplet_id: str
    scene_id: str
    category: str
    origin_split: str | None


def grouped_split(items: Iterable[Item], ratios: Mapping[str, float], seed: int,
                  fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """triplet_id -> split with no scene in two splits, stratified by category; a scene in
    ``fixed`` (scene -> split) keeps that split, the others are drawn around them."""
    items = list(items)
    fixed = {scene: split for scene, split in (fixed or {}).items() if split in ratios}
    names = list(ratios)
    target = np.array([ratios[n] for n in names], float)
    target = target / target.sum()
    scenes: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        scenes[it.scene_id].append(it)
    totals = Counter(it.category for it in items)
    rng = np.random.default_rng(seed)
    order = sorted(scenes)
    rng.shuffle(order)
    order.sort(key=lambda s: -len(scenes[s]))          # stable: size first, seeded order within a size
    order.sort(key=lambda s: s not in fixed)           # kept scenes first, so the draw sees what they hold
    have = {n: Counter() for n in names}
    size = np.zeros(len(names))
    out: dict[str, str] = {}
    for scene in order:
        cats = Counter(it.category for it in scenes[scene])
        need = np.zeros(len(names))
        for k, name in enumerate(names):
            need[k] = sum(n * (target[k] - have[name][c] / totals[c]) for c, n in cats.items())
        need += 1e-3 * (target * (size.sum() + 1) - size)      # overall size breaks ties
        k = names.index(fixed[scene]) if scene in fixed else int(np.argmax(need))
        have[names[k]].update(cats)
        size[k] += len(scenes[scene])
        out.update({it.triplet_id: names[k] for it in scenes[scene]})
    return out


def drawn(items: Iterable[Item], cfg: SplitConfig) -> list[Item]:
    """The items whose split is drawn by scene (the rest follow their upstream split): all of them
    under ``grouped``, VRSBench train under ``risbench``, none under ``origin``."""
    if cfg.protocol == "origin":
        return []
    return [it for it in items if cfg.protocol == "grouped" or it.origin_split == "train"]


def assign(items: Iterable[Item], cfg: SplitConfig, fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """Triplet id -> split. ``origin`` keeps the upstream split of each triplet that has one (a
    repaired dataset keeps its splits; ``audit`` reports the scenes they leak), and leaves the
    rest out. ``risbench`` (the paper's protocol): test = the VRSBench eval refers, train and val
    drawn from VRSBench train in the paper's proportion. ``fixed`` scenes keep their split."""
    items = list(items)
    if cfg.protocol == "origin":
        return {it.triplet_id: it.origin_split for it in items if it.origin_split}
    ratios = dict(zip(("train", "val"), cfg.train_val)) if cfg.protocol == "risbench" else cfg.ratios
    out = {it.triplet_id: "test" for it in items if cfg.protocol == "risbench" and it.origin_split == "val"}
    out.update(grouped_split(drawn(items, cfg), ratios, cfg.seed, fixed))
    return out


def scene_leaks(splits: Mapping[str, str], scene_of: Mapping[str, str]) -> dict[str, list[str]]:
    """Scenes that appear in more than one split, with those splits (empty when leak-free)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for tid, split in splits.items():
        seen[scene_of[tid]].add(split)
    return {scene: sorted(s) for scene, s in sorted(seen.items()) if len(s) > 1}
