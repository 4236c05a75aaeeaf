"""Dataset statistics as the CroBIM paper reports them (Table I, Fig. 3, Fig. 4), per split.

One streaming pass over :func:`final_records` collects counters; figures are drawn from the
counters, so a 52k-triplet dataset needs no more memory than its vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import masks
from ..finalize.records import FinalRecord

# COCO's object-size bins by mask area (px): small < 32^2 <= medium < 96^2 <= large.
SIZE_BINS = (("small", 32 ** 2), ("medium", 96 ** 2), ("large", float("inf")))
ATTRIBUTES = ("is_unique", "obj_position", "obj_rel_position", "obj_size", "obj_rel_size", "flag",
              "difficult", "colour")
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def size_bin(area: int) -> str:
    return next(name for name, limit in SIZE_BINS if area < limit)


@dataclass
class SplitStats:
    triplets: int = 0
    images: set = field(default_factory=set)
    scenes: set = field(default_factory=set)
    categories: Counter = field(default_factory=Counter)
    attribute_types: set = field(default_factory=set)
    words: int = 0
    lengths: Counter = field(default_factory=Counter)
    vocabulary: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    origins: Counter = field(default_factory=Counter)
    image_sizes: set = field(default_factory=set)
    gsd: list = field(default_factory=list)          # [min, max]

    def add(self, r: FinalRecord) -> None:
        tokens = _WORD.findall(r.expression.lower())
        self.triplets += 1
        self.images.add(r.image_id)
        self.scenes.add(r.scene_id)
        self.categories[r.category] += 1
        self.attribute_types.update(k for k, v in r.attributes.items() if k in ATTRIBUTES and v not in ("", None))
        self.words += len(tokens)
        self.lengths[len(tokens)] += 1
        self.vocabulary.update(tokens)
        self.sizes[size_bin(masks.area(r.rle))] += 1
        self.origins[r.mask_origin] += 1
        self.image_sizes.add((r.width, r.height))
        if r.gsd is not None:
            self.gsd = [min(self.gsd[0], r.gsd), max(self.gsd[1], r.gsd)] if self.gsd else [r.gsd, r.gsd]

    def summary(self) -> dict[str, Any]:
        sides = [s for wh in self.image_sizes for s in wh]
        return {
            "triplets": self.triplets, "images": len(self.images), "scenes": len(self.scenes),
            "categories": len(self.categories), "attribute_types": len(self.attribute_types),
            "mean_words": round(self.words / self.triplets, 2) if self.triplets else 0.0,
            "vocabulary": len(self.vocabulary),
            "image_size": [min(sides), max(sides)] if sides else None,
            "gsd_m": self.gsd or None,
            "mask_origin": dict(self.origins),
            "object_sizes": {name: self.sizes.get(name, 0) for name, _ in SIZE_BINS},
            "category_counts": dict(self.categories.most_common()),
        }


def collect(records: Iterable[FinalRecord]) -> tuple[SplitStats, dict[str, SplitStats]]:
    overall, per_split = SplitStats(), {}
    for r in records:
        overall.add(r)
        per_split.setdefault(r.split, SplitStats()).add(r)
    order = {"train": 0, "val": 1, "test": 2}
    return overall, dict(sorted(per_split.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))


def markdown_table(overall: SplitStats, per_split: dict[str, SplitStats]) -> str:
    """A Table-I style summary: one column per split plus the total."""
    cols = [*per_split, "all"]
    data = {**{k: v.summary() for k, v in per_split.items()}, "all": overall.summary()}
    fmt_range = lambda r: "–" if not r else (f"{r[0]:g}" if r[0] == r[1] else f"{r[0]:g}–{r[1]:g}")  # noqa: E731
    rows = [("triplets", "triplets"), ("images", "images"), ("scenes", "scenes"), ("categories", "categories"),
            ("attribute types", "attribute_types"), ("mean words / expression", "mean_words"),
            ("vocabulary (words)", "vocabulary")]
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {label} | " + " | ".join(str(data[c][key]) for c in cols) + " |" for label, key in rows]
    lines.append("| image size (px) | " + " | ".join(fmt_range(data[c]["image_size"]) for c in cols) + " |")
    lines.append("| GSD (m) | " + " | ".join(fmt_range(data[c]["gsd_m"]) for c in cols) + " |")
    return "\n".join(lines)


def draw_figures(overall: SplitStats, per_split: dict[str, SplitStats], out: Path) -> list[Path]:
    """Word-length histogram, category distribution, object sizes, word cloud (PNG files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110, metadata={"Software": None})   # no version stamp: reproducible bytes
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    top = max(overall.lengths or {0: 0})
    bottom = [0] * (top + 1)
    for name, st in per_split.items():                      # stacked histogram, one colour per split
        counts = [st.lengths.get(n, 0) for n in range(top + 1)]
        ax.bar(range(top + 1), counts, bottom=bottom, label=name, width=0.9)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set(xlabel="words per expression", ylabel="expressions",
           title=f"Expression length (mean {overall.words / max(overall.triplets, 1):.2f} words)")
    ax.legend()
    save(fig, "word_lengths.png")

    cats = overall.categories.most_common()
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(cats) + 1)))
    ax.barh([c for c, _ in cats][::-1], [n for _, n in cats][::-1], color="#3b7dd8")
    ax.set(xlabel="triplets", title="Categories")
    save(fig, "categories.png")

    fig, ax = plt.subplots(figsize=(6, 3.4))
    names = [n for n, _ in SIZE_BINS]
    width = 0.8 / max(len(per_split), 1)
    for i, (split, st) in enumerate(per_split.items()):
        ax.bar([k + i * width for k in range(len(names))], [st.sizes.get(n, 0) for n in names], width, label=split)
    ax.set_xticks([k + width * (len(per_split) - 1) / 2 for k in range(len(names))],
                  [f"{n}\n(< {int(limit ** 0.5)}² px)" if limit != float("inf") else f"{n}\n(≥ 96² px)"
                   for n, limit in SIZE_BINS])
    ax.set(ylabel="objects", title="Object size by mask area")
    ax.legend()
    save(fig, "object_sizes.png")

    from wordcloud import STOPWORDS, WordCloud

    freqs = {w: n for w, n in overall.vocabulary.items() if w not in STOPWORDS and len(w) > 2}
    if freqs:
        cloud = WordCloud(width=900, height=450, background_color="white", random_state=0,
                          collocations=False).generate_from_frequencies(freqs)
        fig, ax = plt.subplots(figsize=(9, 4.5))
        ax.imshow(cloud, interpolation="bilinear")
        ax.axis("off")
        save(fig, "wordcloud.png")
    return written
