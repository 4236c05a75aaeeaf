"""The pipeline's stages in order. Each takes the workspace and the pipeline config explicitly."""

from __future__ import annotations

from typing import Any, Callable

from ..config import PipelineConfig
from ..workspace import Workspace

StageFn = Callable[..., Any]

# What `risbench build` runs, in order. Review (`risbench review push/pull`) and training
# (`risbench train`) are commands of their own: they wait on people or on a GPU.
PIPELINE: tuple[str, ...] = ("ingest", "sam-refine", "finalize", "stats", "export")


def implementations() -> dict[str, StageFn]:
    from .export import run_export
    from .finalize import run_finalize
    from .ingest import run_ingest
    from .refine import run_refine
    from .stats import run_stats

    return {"ingest": run_ingest, "sam-refine": run_refine, "finalize": run_finalize, "stats": run_stats,
            "export": run_export}


def plan(stage: str, until: str | None) -> list[str]:
    """Stage names to run for ``--stage`` / ``--until``, in pipeline order."""
    for name in (stage, until):
        if name is not None and name not in PIPELINE and name != "all":
            hint = {"review": "risbench review push / pull", "train": "risbench train"}.get(name)
            raise ValueError(f"unknown stage {name!r}: choose from {', '.join(PIPELINE)} or all"
                             + (f" ({name} is its own command: {hint})" if hint else ""))
    first = 0 if stage == "all" else PIPELINE.index(stage)
    if until is None:
        return list(PIPELINE) if stage == "all" else [stage]
    last = PIPELINE.index(until)
    if last < first:
        raise ValueError(f"--until {until} comes before --stage {stage}")
    return list(PIPELINE[first:last + 1])


def _imports_only(cfg: PipelineConfig) -> bool:
    from ..sources.base import IMPORT_KINDS

    return bool(cfg.sources) and all(src.kind in IMPORT_KINDS for src in cfg.sources)


def run_stage(name: str, ws: Workspace, cfg: PipelineConfig, **options: Any) -> Any:
    return implementations()[name](ws, cfg, **options)


WAITING = "waiting"      # the key of run_plan's result when it stopped before a stage (a NextStep)
MOVED = "moved"          # ... and of the image paths that followed a moved workspace or source, per source


def run_plan(ws: Workspace, stage: str, until: str | None, **options: Any) -> dict[str, Any]:
    """Run ``plan(stage, until)`` in order; each stage gets the options it accepts.

    A plan that runs sam-refine and goes on stops before finalize while masks wait for people
    (or an import waits for its audit), and before stats/export when nothing is final: the
    result then holds :data:`WAITING`, a :class:`~.next_step.NextStep` with the command that comes
    next. Not an error: the build did all it could. Holds the workspace lock (:mod:`..lock`).
    """
    from ..lock import workspace_lock
    from .refine import Shard

    cfg = ws.load()
    names = plan(stage, until)
    part = Shard.parse(options.get("shard"))
    sharded = names == ["sam-refine"] and part.count > 1
    what = (f"build --stage {stage}" + (f" --until {until}" if until else "")
            + (f" --shard {part.index}/{part.count}" if sharded else ""))
    with workspace_lock(ws.path, what, shared=sharded):     # ranks of one sharded refine run side by side
        moved = _locate_images(ws, cfg, names, options)
        results = _run_names(ws, cfg, names, options)
    return {MOVED: moved, **results} if moved else results


def _locate_images(ws: Workspace, cfg: PipelineConfig, names: list[str], options: dict[str, Any]) -> dict[str, int]:
    """Image paths follow a moved workspace or source root before any stage reads them (see
    :mod:`..sources.locations`). Not from a shard's own catalog run: that node must not write the
    workspace catalog over a network filesystem."""
    from ..catalog import Catalog
    from ..sources.locations import locate_images

    if not ws.catalog_path.exists() or options.get("shard_catalog"):
        return {}
    with Catalog(ws.catalog_path, create=False) as catalog:
        return locate_images(catalog, ws, cfg, check=bool({"sam-refine", "export"} & set(names)))


def _run_names(ws: Workspace, cfg: PipelineConfig, names: list[str], options: dict[str, Any]) -> dict[str, Any]:
    import inspect

    from ..catalog import Catalog
    from .next_step import next_step

    results: dict[str, Any] = {}
    for name in names:
        if len(names) > 1 and "sam-refine" in names and name == "finalize":
            step = next_step(ws.path)
            if step.blocks_finalize:
                results[WAITING] = step
                return results
        if len(names) > 1 and name in ("stats", "export") and ws.catalog_path.exists():
            with Catalog(ws.catalog_path, create=False) as catalog:
                empty = not catalog.count("final")
            if empty:
                results[WAITING] = next_step(ws.path)
                return results
        if name == "sam-refine" and len(names) > 1 and _imports_only(cfg):
            # a finished dataset brings its masks; `risbench audit` compares fresh ones, and an
            # explicit `--stage sam-refine` still re-segments everything
            results[name] = {"skipped": "every source is a finished dataset with its own masks"}
            continue
        accepted = inspect.signature(implementations()[name]).parameters
        results[name] = run_stage(name, ws, cfg, **{k: v for k, v in options.items()
                                                    if k in accepted and v is not None})
    return results
