"""A workspace folder: the pipeline, the catalog and everything the stages write."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, PipelineConfig, load_pipeline, recipe_path


@dataclass(frozen=True)
class Workspace:
    path: Path

    @property
    def pipeline_path(self) -> Path:
        return self.path / "pipeline.yaml"

    @property
    def catalog_path(self) -> Path:
        return self.path / "catalog.sqlite"

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    @property
    def cache(self) -> Path:
        return self.path / "cache"

    @property
    def exports(self) -> Path:
        return self.path / "exports"

    @property
    def review(self) -> Path:
        """Label Studio state (project ids, no secrets) and the import file."""
        return self.path / "review"

    @property
    def runs(self) -> Path:
        """Training runs: adapters (``adapter-NAME``) and CroBIM (``crobim-NAME``)."""
        return self.path / "runs"

    @property
    def shards(self) -> Path:
        """Per-node shard catalogs of a multi-node sam-refine, before ``catalog merge``."""
        return self.path / "shards"

    @property
    def backups(self) -> Path:
        """Copies of the catalog taken before a command deletes people's work (``ingest --force``)."""
        return self.path / "backups"

    def resolve(self, relative: str | Path) -> Path:
        """Paths in a pipeline are relative to the workspace unless absolute."""
        p = Path(relative).expanduser()
        return (p if p.is_absolute() else self.path / p).resolve()

    def load(self) -> PipelineConfig:
        if not self.pipeline_path.is_file():
            raise ConfigError(f"{self.path} is not a workspace (no pipeline.yaml): "
                              f"run `risbench init {self.path} --pipeline FILE.yaml` first")
        return load_pipeline(self.pipeline_path)


def init_workspace(path: Path, pipeline: str | Path, *, overwrite: bool = False) -> Workspace:
    """Create ``path`` and copy the pipeline in; ``pipeline`` may name a shipped recipe (``demo``)."""
    source = Path(pipeline)
    if not source.is_file():
        source = recipe_path(str(pipeline))
    load_pipeline(source)  # validate before creating anything
    ws = Workspace(path.resolve())
    if ws.pipeline_path.exists() and not overwrite:
        raise ConfigError(f"{ws.pipeline_path} exists already: pass --overwrite to replace it")
    for sub in (ws.path, ws.reports, ws.cache, ws.exports):
        sub.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, ws.pipeline_path)
    return ws
