"""The dataset card (``README.md``) of the hf export: Hub YAML metadata plus a readable body.

The YAML's ``dataset_info.features`` is rendered from :func:`.schema.features` and its
``configs`` list one ``data_files`` entry per split, so ``load_dataset`` needs nothing else.
The body holds the field table (from :data:`.schema.COLUMNS`), the statistics the ``stats``
stage wrote (``W/reports/STATS.md`` and ``figures/*.png``, copied in when present), the
measured mask quality (``meta["quality"]``, :func:`..finalize.quality.measure_quality`), the
provenance, the review protocol with its agreement figures, and the upstream licences.
Nothing in it depends on the clock, so two exports of one catalog write the same card.

``dataset_info.features`` is written in the legacy form every supported ``datasets`` reads
(:func:`.schema.yaml_features`). The licence (:func:`card_license`) follows the sources unless
the pipeline sets ``export.license`` itself: built on VRSBench / DOTA / DIOR it is ``other``,
with a ``license_name`` naming the terms and ``license_link: LICENSE.md`` (written beside the
card); a synthetic build (``meta["synthetic"]``, the pipeline's ``synthetic:`` block) says it is
synthetic, names no upstream dataset and no expert annotators, and keeps the builder's licence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..finalize.quality import quality_rows
from . import schema
from .base import Context, Ledger

TASK_CATEGORIES = ["image-segmentation"]
TAGS = ["remote-sensing", "aerial-imagery", "referring-expression-segmentation", "vision-language"]

#: Upstream terms, by catalog source kind (from each dataset's README, card or download page).
UPSTREAM = {
    "vrsbench": ("VRSBench (xiang709/VRSBench)", "expressions and attributes CC-BY-4.0; images are DOTA-v2 and "
                                                 "DIOR patches and keep those terms"),
    "dota": ("DOTA-v2", "images for academic purposes only (captain-whu.github.io/DOTA)"),
    "dior": ("DIOR", "images under the DIOR terms (academic research use; cite Li et al., ISPRS 2020)"),
    "dior_r": ("DIOR-R", "images under the DIOR terms"),
    "dior_rsvg": ("DIOR-RSVG", "DIOR images and DIOR-RSVG expressions; DIOR terms"),
}
SOURCE_DATASETS = {"vrsbench": "xiang709/VRSBench", "dota": "DOTA-v2", "dior": "DIOR", "dior_r": "DIOR-R",
                   "dior_rsvg": "DIOR-RSVG"}

#: The licence of what the builder itself makes (masks, ids, the card; all of a synthetic build):
#: also ``export.license``'s default, so an unset licence is recognised even without ``meta["license_explicit"]``.
BUILDER_LICENSE = "cc-by-4.0"
LICENSE_FILE = "LICENSE.md"
#: Parts of ``license_name`` by source kind: the terms each source brings (text, then images).
LICENSE_PARTS = {"vrsbench": ("vrsbench-cc-by-4.0", "dota-academic", "dior-terms"), "dota": ("dota-academic",),
                 "dior": ("dior-terms",), "dior_r": ("dior-terms",), "dior_rsvg": ("dior-terms",)}
#: Upstream terms written into LICENSE.md, by the ``license_name`` part that brings them.
LICENSE_TERMS = {
    "vrsbench-cc-by-4.0": "VRSBench (https://huggingface.co/datasets/xiang709/VRSBench): the referring expressions "
                          "and object attributes are licensed CC-BY-4.0 "
                          "(https://creativecommons.org/licenses/by/4.0/); attribute Li, Ding and Elhoseiny, "
                          "NeurIPS 2024 Datasets and Benchmarks.",
    "dota-academic": "DOTA-v2 (https://captain-whu.github.io/DOTA/): the images may be used for academic purposes "
                     "only; commercial use is prohibited.",
    "dior-terms": "DIOR / DIOR-R / DIOR-RSVG: the images keep the DIOR terms (academic research use; cite Li et al., "
                  "ISPRS Journal of Photogrammetry and Remote Sensing, 2020); check them before any non-research use.",
    "upstream-terms": "Imported datasets: each keeps the terms of its own release; see the source named in the "
                      "`source` column and its licence before redistributing.",
}

CITATION = """@article{dong2024crobim,
  title   = {Cross-Modal Bidirectional Interaction Model for Referring Remote Sensing Image Segmentation},
  author  = {Dong, Zhe and Sun, Yuzhe and Gu, Yanfeng and Liu, Tianzhu},
  journal = {arXiv preprint arXiv:2410.08613},
  year    = {2024}
}"""
VRSBENCH_CITATION = """@inproceedings{li2024vrsbench,
  title     = {VRSBench: A Versatile Vision-Language Benchmark Dataset for Remote Sensing Image Understanding},
  author    = {Li, Xiang and Ding, Jian and Elhoseiny, Mohamed},
  booktitle = {NeurIPS Datasets and Benchmarks Track},
  year      = {2024}
}"""


def size_category(n: int) -> str:
    """The Hub's size bucket.

    >>> size_category(52472), size_category(999), size_category(1000)
    ('10K<n<100K', 'n<1K', '1K<n<10K')
    """
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "n>10M" if n < 10**8 else "other"


def pretty(name: str) -> str:
    return "RISBench" if name.lower() == "risbench" else name


def is_synthetic(meta: dict[str, Any]) -> bool:
    """The build's sources were generated (the pipeline's ``synthetic:`` block), not downloaded."""
    return bool(meta.get("synthetic"))


@dataclass(frozen=True)
class CardLicense:
    license: str                 # the card's ``license``: a Hub licence id, or "other"
    parts: tuple[str, ...] = ()  # with "other": the terms (keys of LICENSE_TERMS) that make it up
    explicit: bool = False       # set by the pipeline's ``export.license``

    @property
    def name(self) -> str | None:
        """``license_name``: an id (lowercase, digits, dots, hyphens) naming the terms, with "other"."""
        return "-".join(self.parts) if self.parts else None

    @property
    def link(self) -> str | None:
        """``license_link``: the LICENSE.md written beside the card, with "other"."""
        return LICENSE_FILE if self.parts else None

    def terms(self) -> list[str]:
        """The LICENSE.md paragraphs, one per part."""
        return [LICENSE_TERMS[p] for p in self.parts]


def card_license(ctx: Context) -> CardLicense:
    """The card's licence metadata.

    An ``export.license`` the pipeline sets is kept as it is (``meta["license_explicit"]``; without
    that key, any value other than the default). Otherwise a synthetic build keeps the builder's
    licence, and a build on real sources is ``other``: ``license_name`` names the terms its sources
    bring (VRSBench gives ``vrsbench-cc-by-4.0-dota-academic-dior-terms``) and ``license_link``
    is the LICENSE.md that states them.
    """
    explicit = ctx.meta.get("license_explicit")
    if explicit is None:
        explicit = bool(ctx.license) and ctx.license != BUILDER_LICENSE
    synthetic = is_synthetic(ctx.meta)
    if explicit and (ctx.license != "other" or synthetic):
        return CardLicense(ctx.license, explicit=True)
    if synthetic:
        return CardLicense(BUILDER_LICENSE)
    parts: list[str] = []
    for kind in sorted(ctx.meta.get("sources", [])):
        for part in LICENSE_PARTS.get(kind, ("upstream-terms",)):
            if part not in parts:
                parts.append(part)
    ordered = tuple(p for p in LICENSE_TERMS if p in parts) or ("upstream-terms",)
    return CardLicense("other", ordered, explicit=bool(explicit))


def license_text(ctx: Context, lic: CardLicense) -> str:
    """LICENSE.md: the upstream terms behind ``license: other``."""
    name = pretty(ctx.dataset_name)
    lines = [f"# {name}: licences", "",
             f"This dataset mixes material under different terms (`license_name: {lic.name}`). Use it only in a "
             "way every one of them allows.", "",
             "- Masks, ids and the dataset card, made by risbench-builder: CC-BY-4.0 "
             "(https://creativecommons.org/licenses/by/4.0/)."]
    lines += [f"- {text}" for text in lic.terms()] + [""]
    if "dota-academic" in lic.parts:
        lines += ["Images derived from DOTA may be used for academic purposes only, so the dataset as a whole is "
                  "not licensed for commercial use.", ""]
    return "\n".join(lines)


def card_yaml(ctx: Context, counts: dict[str, Any], shards: dict[str, list[str]],
              split_bytes: dict[str, int], download_size: int, lic: CardLicense) -> str:
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    synthetic = is_synthetic(ctx.meta)
    sources = [] if synthetic else sorted(ctx.meta.get("sources", []))
    reviewed = bool(ctx.meta.get("review", {}).get("consensus")) and not synthetic   # simulated reviewers are programs
    named = {"license_name": lic.name, "license_link": lic.link} if lic.name else {}
    data = DatasetCardData(
        license=lic.license, **named, language=["en"], task_categories=TASK_CATEGORIES,
        size_categories=[size_category(counts["triplets"])], pretty_name=pretty(ctx.dataset_name),
        tags=TAGS + (["synthetic"] if synthetic else []),
        annotations_creators=["machine-generated", "expert-generated"] if reviewed else ["machine-generated"],
        source_datasets=[SOURCE_DATASETS.get(s, s) for s in sources] or None,
    )
    splits = SplitDict()
    for split in shards:
        splits.add(SplitInfo(name=split, num_bytes=split_bytes.get(split, 0),
                             num_examples=counts["splits"].get(split, {}).get("triplets", 0)))
    info = DatasetInfo(features=schema.features(), splits=splits, download_size=download_size,
                       dataset_size=sum(split_bytes.values()))
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    data["dataset_info"]["features"] = schema.yaml_features()     # the legacy form datasets 2.19-5 read
    MetadataConfigs({"default": {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in shards]}}
                    ).to_dataset_card_data(data)
    return data.to_yaml()


def _stats_section(ctx: Context, ledger: Ledger) -> list[str]:
    out = ["## Statistics", ""]
    stats_md = ctx.reports / "STATS.md"
    figures = sorted((ctx.reports / "figures").glob("*.png")) if (ctx.reports / "figures").is_dir() else []
    text = stats_md.read_text(encoding="utf-8") if stats_md.is_file() else ""
    if text:
        for line in text.strip().splitlines():
            out.append("##" + line if line.startswith("#") else line)   # under this section's heading
        out.append("")
    for fig in figures:
        ledger.write_bytes(f"figures/{fig.name}", fig.read_bytes())
        if f"figures/{fig.name}" not in text:
            out += [f"![{fig.stem.replace('_', ' ')}](figures/{fig.name})", ""]
    if not text and not figures:
        out += ["The statistics stage (`risbench build --stage stats`) had not been run when this export was made;",
                "the counts below come from the export itself.", ""]
    return out


def _quality_section(meta: dict[str, Any]) -> list[str]:
    """The measured mask quality: the statement and one row per route; says so when none was measured."""
    q = meta.get("quality")
    out = ["## Mask quality", ""]
    if not q:
        return out + ["Mask quality was not measured for this build: no audit sample of the automatically "
                      "accepted masks was reviewed (`risbench quality` measures it).", ""]
    out += [q["statement"], ""]
    rows = quality_rows(q)
    if any(r[1] != "0" for r in rows):
        out += ["| masks | measured | IoU >= 0.9 (95 % CI) | IoU >= 0.75 (95 % CI) |", "|---|---|---|---|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out += ["", "IoU against the reviewers' consensus mask; intervals are Wilson 95 % intervals. Auto-accepted "
                "masks are measured on a seeded random audit sample, stratified by category and size, that "
                "reviewers saw as ordinary tasks; for reviewed masks the share says how often the model's "
                "proposal already matched what review settled on.", ""]
    return out


def _review_section(meta: dict[str, Any]) -> list[str]:
    review = meta.get("review") or {}
    origins = meta.get("mask_origins", {})
    out = ["## Curation and review", "",
           f"Boxes from the source annotations prompted the `{meta.get('segmenter') or '?'}` segmenter"
           + (f" (model sha256 `{meta['model_sha256'][:16]}`)" if meta.get("model_sha256") else "") + ". "
           "A quality router accepted a mask automatically only when every quality signal passed (predicted "
           "IoU, stability, box agreement, jitter agreement, components, area ratio); every other mask went to "
           "human review in Label Studio, where reviewers accept, fix (brush) or reject it. Finalize then "
           "drops empty or tiny masks, masks that stray from their box, reviewer rejections, duplicates, "
           "short expressions and ambiguous non-unique expressions, checks position words against the mask, "
           "and splits by source scene.", ""]
    if origins:
        out += ["| mask origin | triplets |", "|---|---|"]
        out += [f"| {k} | {v:,} |" for k, v in sorted(origins.items())] + [""]
    if review.get("consensus") and is_synthetic(meta):
        out += ["This is a synthetic build: the review tasks were answered by simulated reviewers (programs that "
                "draw the synthetic ground truth with planted errors, `risbench demo`), not by people, and "
                "their answers went through the real consensus code. The figures below describe that "
                "simulation, not human agreement.", ""]
    if review.get("consensus"):
        out += ["Review protocol: each task was labelled by several reviewers; the consensus mask and verdict were "
                "computed from their annotations (pairwise IoU, majority vote or STAPLE), and low-agreement tasks "
                "went to adjudication.", "",
                "| review figure | value |", "|---|---|",
                f"| tasks with a consensus | {review['consensus']:,} |",
                f"| reviews | {review.get('reviews', 0):,} |",
                f"| reviewers | {review.get('annotators', 0):,} |",
                f"| reviews per task (mean) | {review.get('reviews_per_task', 0):.2f} |"]
        for key, label in (("agreement_mean", "agreement, mean"), ("agreement_median", "agreement, median"),
                           ("agreement_min", "agreement, minimum")):
            if review.get(key) is not None:
                out.append(f"| {label} | {review[key]:.3f} |")
        for decision, n in sorted(review.get("decisions", {}).items()):
            out.append(f"| decision: {decision} | {n:,} |")
        out.append("")
    else:
        out += ["No human-review consensus exists in this build: every mask is an automatically accepted model "
                "mask.", ""]
    if meta.get("pending"):
        out += [f"{meta['pending']:,} triplets were still waiting for review and are not in this export.", ""]
    return out


SYNTHETIC_NOTE = ("**Synthetic data.** The images, objects and referring expressions were generated by "
                  "risbench-builder's synthetic sources (`risbench demo`), written in the VRSBench file layout; "
                  "this is not VRSBench, DOTA or DIOR data. Use it to try the pipeline, loaders and trainers, "
                  "not to measure models.")


def card_body(ctx: Context, counts: dict[str, Any], ledger: Ledger, lic: CardLicense) -> str:
    name = pretty(ctx.dataset_name)
    meta = ctx.meta
    synthetic = is_synthetic(meta)
    split_list = list(counts["splits"])
    lines = [f"# {name}", "",
             f"{name} is a {'synthetic ' if synthetic else ''}referring remote-sensing image segmentation dataset: "
             f"{counts['triplets']:,} (image, referring expression, mask) triplets on {counts['images']:,} images, "
             "built with risbench-builder.", ""]
    if synthetic:
        lines += [SYNTHETIC_NOTE, ""]
    lines += ["```python", "from datasets import load_dataset", "",
              f'ds = load_dataset("ORG/{ctx.dataset_name}")   # or load_dataset("path/to/this/folder")',
              f'row = ds["{split_list[0] if split_list else "train"}"][0]   '
              '# row["image"], row["mask"] are PIL images; row["expression"] is the text', "```", "",
              "## Splits", "", "| split | triplets | images |", "|---|---|---|"]
    lines += [f"| {s} | {c['triplets']:,} | {c['images']:,} |" for s, c in counts["splits"].items()]
    lines += [f"| **all** | {counts['triplets']:,} | {counts['images']:,} |", "",
              "Splits are grouped by source scene (the large image a patch was cut from): no scene, and so no "
              "image, is in two splits.", "",
              "## Fields", "", "| field | type | meaning |", "|---|---|---|"]
    types = schema.type_names()
    lines += [f"| `{c.name}` | {types[c.name]} | {c.description} |" for c in schema.COLUMNS]
    lines += ["", "Boxes are `[x1, y1, x2, y2]` in pixels with exclusive right/bottom edges. Masks decode to "
              "0/255; `np.array(row['mask']) > 0` is the object.", ""]
    lines += _stats_section(ctx, ledger)
    lines += _quality_section(meta)
    lines += _review_section(meta)
    lines += ["## Provenance", "", "| item | value |", "|---|---|",
              f"| pipeline config sha256 | `{meta.get('config_sha256', '')}` |",
              f"| risbench-builder version | `{meta.get('code_version', '')}` |",
              f"| catalog content sha256 | `{meta.get('input_sha256', '')}` |",
              f"| triplets exported | {counts['triplets']:,} |",
              f"| triplets pending review (not exported) | {meta.get('pending', 0):,} |", ""]
    lines += _license_section(ctx, lic)
    lines += ["## Other formats", "",
              "`risbench build --stage export` also writes the RRSIS-D REFER layout (`refs(unc).p`, "
              "`instances.json`) read by LAVT / RMSIN / CroBIM loaders, the RISBench native layout "
              "(`img_rgb/`, `mask/`, `output_phrase_{split}.txt`) and COCO instances with the expressions; "
              "`risbench check PATH` validates any of them.", "",
              "## Citation", "", "```bibtex", CITATION if synthetic else f"{CITATION}\n{VRSBENCH_CITATION}", "```", ""]
    return "\n".join(lines)


def _license_section(ctx: Context, lic: CardLicense) -> list[str]:
    out = ["## Licences", ""]
    if lic.explicit:
        out.append(f"- This dataset is published under `{lic.license}` (set by the pipeline's `export.license`).")
    if is_synthetic(ctx.meta):
        return out + [f"- Everything here (images, expressions, masks, ids, this card) was generated by "
                      f"risbench-builder and carries no upstream terms: `{lic.license}`.", ""]
    if lic.parts:
        out.append(f"- Card metadata: `license: other`, `license_name: {lic.name}`, terms in "
                   f"[{LICENSE_FILE}]({LICENSE_FILE}).")
    if not lic.explicit:
        out.append(f"- Masks, ids and this card: `{BUILDER_LICENSE}`.")
    out.append("- The expressions and images keep their upstream terms:")
    sources = sorted(ctx.meta.get("sources", [])) or list(UPSTREAM)
    for s in sources:
        label, terms = UPSTREAM.get(s, (s, "see the source's own terms"))
        out.append(f"  - {label}: {terms}.")
    if set(sources) & set(LICENSE_PARTS):
        out.append("- DOTA-derived images may be used for academic purposes only; check the DIOR terms before any "
                   "non-research use.")
    return out + [""]


def write_card(ledger: Ledger, ctx: Context, counts: dict[str, Any], shards: dict[str, list[str]],
               split_bytes: dict[str, int]) -> Path:
    """README.md (and LICENSE.md when the licence is ``other``) into the export."""
    download = sum(ledger.files[rel][1] for files in shards.values() for rel in files)
    lic = card_license(ctx)
    if lic.link:
        ledger.write_text(LICENSE_FILE, license_text(ctx, lic))
    body = card_body(ctx, counts, ledger, lic)
    text = f"---\n{card_yaml(ctx, counts, shards, split_bytes, download, lic)}\n---\n\n{body}"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return ledger.write_text("README.md", text)
