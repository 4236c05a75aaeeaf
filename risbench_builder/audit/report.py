"""``reports/audit.json`` and ``AUDIT.md``: counts per defect kind and every flagged triplet.

The JSON is the record (a ``flagged`` entry holds the triplet id, its expression, the file the
dataset names for it and every reason); the Markdown is what a person reads first: the table of
kinds with their meaning, a few examples of each, and the commands that repair them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .findings import DEFECTS

EXAMPLES_PER_KIND = 5


@dataclass
class AuditResult:
    run_id: str
    proposal_set: tuple[str, str]
    triplets: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)
    rejected_at_ingest: dict[str, int] = field(default_factory=dict)
    rejected_examples: list[dict[str, str]] = field(default_factory=list)
    fresh: dict[str, Any] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Triplets per defect kind (a triplet with two kinds counts in both)."""
        c: Counter = Counter()
        for entry in self.flagged:
            c.update({r["kind"] for r in entry["reasons"]})
        return {kind: c.get(kind, 0) for kind in DEFECTS}

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "proposal_set": {"segmenter": self.proposal_set[0],
                                                        "model_sha256": self.proposal_set[1]},
                "seconds": round(self.seconds, 3), "triplets": self.triplets, "flagged_triplets": len(self.flagged),
                "counts": self.counts, "rejected_at_ingest": self.rejected_at_ingest,
                "rejected_examples": self.rejected_examples, "fresh": self.fresh, "routes": self.routes,
                "defect_kinds": DEFECTS, "flagged": self.flagged}


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")[:160]


def markdown(result: AuditResult, workspace: Path) -> str:
    counts = result.counts
    lines = [f"# Audit of {workspace.name}", "",
             f"{result.triplets:,} triplets audited (proposal set `{result.proposal_set[0]}`); "
             f"**{len(result.flagged):,} flagged** for review.", "",
             "| defect | triplets | what it means |", "|---|---:|---|"]
    lines += [f"| `{kind}` | {counts[kind]:,} | {_cell(meaning)} |" for kind, meaning in DEFECTS.items()]
    if result.rejected_at_ingest:
        lines += ["", "Rejected at ingest (no triplet to repair; see `reports/rejects.csv`): " + ", ".join(
            f"{n:,} `{reason}`" for reason, n in sorted(result.rejected_at_ingest.items())) + "."]
    if result.fresh:
        lines += ["", f"Fresh masks: {result.fresh.get('compared', 0):,} compared with "
                      f"`{result.fresh.get('segmenter')}` (IoU below {result.fresh.get('min_iou')} is flagged)."]
    for kind in DEFECTS:
        examples = [e for e in result.flagged if any(r["kind"] == kind for r in e["reasons"])][:EXAMPLES_PER_KIND]
        if not examples:
            continue
        lines += ["", f"## `{kind}`", "", "| triplet | file | split | expression | detail |", "|---|---|---|---|---|"]
        for e in examples:
            detail = next(r["detail"] for r in e["reasons"] if r["kind"] == kind)
            lines.append(f"| `{e['triplet_id']}` | {_cell(e['file_name'])} | {e.get('split') or '-'} | "
                         f"{_cell(e['expression'])} | {_cell(detail)} |")
    lines += ["", "## Repair", "", "Flagged triplets now wait for review; the rest keep their masks as they were:", "",
              "```", f"risbench review push -w {workspace}", f"risbench review pull -w {workspace}",
              f"risbench build -w {workspace} --stage finalize --until export", "```", "",
              "`exports/` then holds the repaired dataset in the layout it came in, and `CHANGES.csv` says "
              "what changed, why, and who decided.", ""]
    return "\n".join(lines)


def write(result: AuditResult, reports: Path, workspace: Path) -> tuple[Path, Path]:
    reports.mkdir(parents=True, exist_ok=True)
    json_path, md_path = reports / "audit.json", reports / "AUDIT.md"
    json_path.write_text(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(result, workspace), encoding="utf-8")
    return json_path, md_path
