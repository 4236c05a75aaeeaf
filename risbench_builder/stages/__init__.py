"""The pipeline's stages in order. Each takes the workspace and the pipeline config explicitly."""

from __future__ import annotations

from typing import Any, Callable

from ..config import PipelineConfig
from ..workspace import Workspace

StageFn = Callable[..., Any]

# The whole pipeline, in order; a stage without an implementation yet is listed with None so
# `--until` and the help text already speak of the full design.
PIPELINE: tuple[str, ...] = ("ingest", "sam-refine", "review", "finalize", "stats", "export", "train")


def implementations() -> dict[str, StageFn]:
    from .finalize import run_finalize
    from .ingest import run_ingest
    from .refine import run_refine
    from .stats import run_stats

    from .export import run_export

    return {"ingest": run_ingest, "sam-refine": run_refine, "finalize": run_finalize, "stats": run_stats,
            "export": run_export}


def plan(stage: str, until: str | None) -> list[str]:
    """Stage names to run for ``--stage`` / ``--until``, in pipeline order."""
    known = set(PIPELINE) | {"all"}
    for name in (stage, until):
        if name is not None and name not in known:
            raise ValueError(f"unknown stage {name!r}: choose from {', '.join(PIPELINE)} or all")
    available = implementations()
    if stage == "all":
        names = list(PIPELINE[: PIPELINE.index(until) + 1] if until else PIPELINE)
        return [n for n in names if n in available]
    if stage not in available:
        raise ValueError(f"stage {stage!r} is not implemented in this version (available: {', '.join(available)})")
    if until is not None:
        names = PIPELINE[PIPELINE.index(stage): PIPELINE.index(until) + 1]
        return [n for n in names if n in available]
    return [stage]


def run_stage(name: str, ws: Workspace, cfg: PipelineConfig, **options: Any) -> Any:
    return implementations()[name](ws, cfg, **options)


def run_plan(ws: Workspace, stage: str, until: str | None, **options: Any) -> dict[str, Any]:
    """Run ``plan(stage, until)`` in order; each stage gets the options it accepts."""
    import inspect

    cfg = ws.load()
    results = {}
    for name in plan(stage, until):
        accepted = inspect.signature(implementations()[name]).parameters
        results[name] = run_stage(name, ws, cfg, **{k: v for k, v in options.items()
                                                    if k in accepted and v is not None})
    return results
