"""The dataset card (``README.md``) of the hf export: Hub YAML metadata plus a readable body.

The YAML's ``dataset_info.features`` is rendered from :func:`.schema.features` and its
``configs`` list one ``data_files`` entry per split, so ``load_dataset`` needs nothing else.
The body holds the field table (from :data:`.schema.COLUMNS`), the statistics the ``stats``
stage wrote (``W/reports/STATS.md`` and ``figures/*.png``, copied in when present), the
measured mask quality (``meta["quality"]``, :func:`..finalize.quality.measure_quality`), the
provenance, the review protocol with its agreement figures, and the upstream licences.
Nothing in it depends on the clock, so two exports of one catalog write the same card.
"""

from __future__ import annotations

import re
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

CITATION = """@article{dong2024crobim,
  title   = {Cross-Modal Bidirectional Interaction Model for Referring Remote Sensing Image Segmentation},
  author  = {Dong, Zhe and Sun, Yuzhe and Gu, Yanfeng and Liu, Tianzhu},
  journal = {arXiv preprint arXiv:2410.08613},
  year    = {2024}
}
@inproceedings{li2024vrsbench,
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


def card_yaml(ctx: Context, counts: dict[str, Any], shards: dict[str, list[str]],
              split_bytes: dict[str, int], download_size: int) -> str:
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    sources = sorted(ctx.meta.get("sources", []))
    reviewed = bool(ctx.meta.get("review", {}).get("consensus"))
    data = DatasetCardData(
        license=ctx.license, language=["en"], task_categories=TASK_CATEGORIES,
        size_categories=[size_category(counts["triplets"])], pretty_name=pretty(ctx.dataset_name), tags=TAGS,
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


def card_body(ctx: Context, counts: dict[str, Any], ledger: Ledger) -> str:
    name = pretty(ctx.dataset_name)
    meta = ctx.meta
    split_list = list(counts["splits"])
    lines = [f"# {name}", "",
             f"{name} is a referring remote-sensing image segmentation dataset: {counts['triplets']:,} "
             f"(image, referring expression, mask) triplets on {counts['images']:,} images, built with "
             "risbench-builder.", "",
             "```python", "from datasets import load_dataset", "",
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
    lines += ["## Licences", "",
              f"- Masks, ids and this card: `{ctx.license}`.",
              "- The expressions and images keep their upstream terms:"]
    sources = sorted(meta.get("sources", [])) or list(UPSTREAM)
    for s in sources:
        label, terms = UPSTREAM.get(s, (s, "see the source's own terms"))
        lines.append(f"  - {label}: {terms}.")
    lines += ["- DOTA-derived images may be used for academic purposes only; check the DIOR terms before any "
              "non-research use.", "",
              "## Other formats", "",
              "`risbench build --stage export` also writes the RRSIS-D REFER layout (`refs(unc).p`, "
              "`instances.json`) read by LAVT / RMSIN / CroBIM loaders, the RISBench native layout "
              "(`img_rgb/`, `mask/`, `output_phrase_{split}.txt`) and COCO instances with the expressions; "
              "`risbench check PATH` validates any of them.", "",
              "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def write_card(ledger: Ledger, ctx: Context, counts: dict[str, Any], shards: dict[str, list[str]],
               split_bytes: dict[str, int]) -> Path:
    download = sum(ledger.files[rel][1] for files in shards.values() for rel in files)
    body = card_body(ctx, counts, ledger)
    text = f"---\n{card_yaml(ctx, counts, shards, split_bytes, download)}\n---\n\n{body}"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return ledger.write_text("README.md", text)
