"""Pipeline configuration: one pydantic schema, validated on load, defaults visible here.

A YAML that holds only ``sources:`` is a valid pipeline. Relative paths in it are relative to
the workspace folder (where ``risbench init`` copies the pipeline).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SourceKind = Literal["vrsbench", "dota", "dior", "dior_r", "dior_rsvg", "refer", "native", "hf"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def sha256(self) -> str:
        """What this (part of a) config says, as one hash: runs record the pipeline's, finalize a split config's."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class SourceConfig(_Strict):
    kind: SourceKind
    root: str
    name: Optional[str] = Field(None, description="label used in provenance; defaults to kind")
    split: Optional[str] = Field(None, description="override the origin split of every record")
    eval_json: Optional[str] = Field(
        None, description="VRSBench: cross-check file (default: VRSBench_EVAL_referring.json in root when present)")
    patch_size: int = Field(512, gt=0, le=100_000, description="VRSBench: size the normalised corners refer to")
    images: Optional[str] = Field(None, description="image folder below root (per-kind default)")
    labels: Optional[str] = Field(None, description="label folder below root (per-kind default)")

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def reads(self) -> tuple[str, str | None, str | None]:
        """Which files below its root it reads (kind and sub-folders): two names for the same
        root and ``reads`` are one source counted twice."""
        return self.kind, self.images, self.labels


class BoxNoiseConfig(_Strict):
    """Loose-box model for synthetic sources, after VRSBench's loose boxes."""

    shift: float = Field(0.08, ge=0.0, le=1.0, description="std of the centre shift, as a fraction of box size")
    scale: float = Field(0.10, ge=0.0, le=1.0, description="std of the log scale error")
    aspect: float = Field(0.08, ge=0.0, le=1.0, description="std of the log aspect error")


class SyntheticConfig(_Strict):
    out: str = "sources"
    seed: int = Field(0, ge=0)
    scenes: int = Field(12, ge=1, le=100_000)
    patches_per_scene: int = Field(2, ge=1, le=64)
    val_fraction: float = Field(0.35, ge=0.0, le=1.0)
    box_noise: BoxNoiseConfig = BoxNoiseConfig()


class IngestConfig(_Strict):
    batch_size: int = Field(500, ge=1, description="annotation files per committed transaction")
    max_reject_rate: Optional[float] = Field(
        None, ge=0.0, le=1.0, description="fail the stage when rejects / (rejects + triplets) exceed it")
    hash_images: bool = Field(True, description="sha256 of each image file (keys the embedding cache)")
    max_expression_chars: int = Field(
        1000, ge=1, description="longer referring expressions are rejected (expression_too_long); VRSBench's "
                                "longest is a few hundred characters")
    max_annotation_bytes: int = Field(
        64 * 2**20, ge=1, description="annotation files larger than this are rejected unread (file_too_large)")
    max_json_depth: int = Field(64, ge=2, le=10_000, description="JSON nesting refused before parsing (VRSBench: 3)")
    json5_max_bytes: int = Field(
        2**20, ge=0, description="files that are not strict JSON are retried with the slow json5 parser "
                                 "only up to this size")


class RouteConfig(_Strict):
    """Auto-accept a mask only when every configured signal passes; None switches a test off.

    Starting values are our own, set a little below SAM's own filters (segment-anything
    ``SamAutomaticMaskGenerator`` defaults 0.88 / 0.95); `risbench calibrate` proposes values for a
    target auto-accept precision from trusted masks.
    """

    min_iou_pred: Optional[float] = Field(0.85, ge=0.0, le=1.0)
    min_stability: Optional[float] = Field(0.90, ge=0.0, le=1.0)
    min_box_iou: Optional[float] = Field(0.70, ge=0.0, le=1.0)
    min_jitter_agreement: Optional[float] = Field(0.80, ge=0.0, le=1.0)
    max_multimask_disagreement: Optional[float] = Field(0.35, ge=0.0, le=1.0)
    max_components: Optional[float] = Field(1, ge=0)
    min_area_ratio: Optional[float] = Field(0.15, ge=0.0)
    max_area_ratio: Optional[float] = Field(1.05, ge=0.0)
    min_polygon_iou: Optional[float] = Field(None, ge=0.0, le=1.0)


class RefineConfig(_Strict):
    segmenter: Literal["sam", "grabcut", "box"] = "grabcut"
    model: str = Field("vit_b", description="sam: registry name (vit_b, vit_l, vit_h, tiny)")
    checkpoint: Optional[str] = Field(None, description="sam: checkpoint path (.pth or .safetensors)")
    adapter: Optional[str] = Field(None, description="sam: prompt-adapter weights (see `risbench adapter`)")
    device: Optional[str] = Field(None, description="cpu, cuda, cuda:1 ... (default: cuda when available)")
    chunk_size: int = Field(64, ge=1, description="sam: box prompts per decoder call")
    jitter_k: int = Field(4, ge=0, description="jittered copies of each box prompt (agreement signal)")
    jitter_scale: float = Field(0.1, ge=0.0, le=1.0, description="HQ-SAM style box noise: fraction of box size")
    tiny_box: int = Field(24, ge=0, description="boxes whose longer side is below this (px) are prompted on a crop")
    context_min: int = Field(256, ge=16, description="side of the zoomed context crop for tiny boxes (px)")
    batch_images: int = Field(8, ge=1, description="images per committed transaction")
    workers: Optional[int] = Field(
        None, ge=0, le=64, description="host processes that read and decode images and run CPU backends "
                                       "(default: the machine's cores, at most 8; 0: all in this process)")
    encoder_batch: int = Field(8, ge=1, le=64, description="sam: views per image-encoder call (1: one at a time)")
    cache_embeddings: bool = Field(
        False, description="sam: keep each image embedding under W/cache/embeddings (~4 MiB per image for "
                           "vit_b/vit_h in float32); sam-refine never reads them back, `adapter train` and "
                           "a rerun with another adapter do")
    cache_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="embedding cache storage: float16 halves the disk use")
    grabcut_iterations: int = Field(4, ge=1, le=100)
    seed: int = Field(0, ge=0)
    route: RouteConfig = RouteConfig()


class SplitConfig(_Strict):
    """How kept triplets are split; always grouped by scene, so no source scene spans two splits."""

    seed: int = Field(0, ge=0)
    protocol: Literal["grouped", "risbench", "origin"] = Field(
        "grouped", description="grouped: ratios over all scenes, stratified by category; risbench: test = "
                               "the VRSBench eval refers (origin split val), train/val from VRSBench train; "
                               "origin: keep each triplet's upstream split (repairing an imported dataset)")
    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.7, "val": 0.1, "test": 0.2})
    train_val: tuple[int, int] = Field((26300, 10013), description="risbench protocol: the paper's train : val")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, ratios: dict[str, float]) -> dict[str, float]:
        if not ratios or any(not 0.0 <= v <= 1.0 for v in ratios.values()) or sum(ratios.values()) <= 0:
            raise ValueError("ratios must be fractions in 0..1 with a positive sum, e.g. {train: 0.7, val: 0.1, test: 0.2}")
        return ratios

    @field_validator("train_val")
    @classmethod
    def _train_val(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 0 or sum(value) <= 0:
            raise ValueError("train_val must be two counts >= 0 with a positive sum")
        return value


class FinalizeConfig(_Strict):
    min_mask_pixels: int = Field(20, ge=0, description="drop masks smaller than this")
    min_mask_box_iou: float = Field(0.3, ge=0.0, le=1.0, description="drop masks whose box strays from the prompt")
    min_words: int = Field(3, ge=0, description="drop expressions with fewer words")
    require_distinguisher: bool = Field(
        True, description="drop non-unique objects whose expression has no position, size or relation word")
    dedupe: bool = True
    geometry_check: Literal["off", "flag", "review", "drop"] = Field(
        "review", description="expressions whose position words contradict the mask: flag only, send to "
                              "review, or drop")
    split: SplitConfig = SplitConfig()


class ExportConfig(_Strict):
    targets: list[Literal["hf", "refer", "native", "coco"]] = Field(
        default_factory=lambda: ["hf", "refer", "native", "coco"])
    dataset_name: str = Field("risbench", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                              description="name inside the exports (REFER dataset folder, card title)")
    rows_per_shard: int = Field(5000, ge=1, description="hf: rows per parquet file")
    license: str = "cc-by-4.0"


class ReviewConfig(_Strict):
    """Human review in Label Studio (review/GUIDELINES.md). The token is read only from the
    environment variable named by ``token_env``; it is never written to a file or printed."""

    url: str = Field("http://127.0.0.1:8080", description="Label Studio base URL")
    token_env: str = Field("LABEL_STUDIO_API_KEY", description="environment variable holding the API token")
    allow_insecure_http: bool = Field(False, description="allow plain http to a host that is not loopback")
    project_title: Optional[str] = Field(None, max_length=50, description="default: '<pipeline name> review'")
    annotators_per_task: int = Field(3, ge=1, description="reviews a task needs before its consensus is computed")
    min_agreement: float = Field(0.75, ge=0.0, le=1.0,
                                 description="mean pairwise IoU from which the consensus mask is final")
    consensus: Literal["majority", "staple"] = Field("majority", description="pixel majority vote or STAPLE (EM)")
    adjudication: Literal["project", "flag"] = Field(
        "project", description="low agreement: tasks go to a second project, or are flagged in the same project "
                               "for the experts named in `adjudicators`")
    adjudicators: list[str] = Field(default_factory=list, description="flag mode: e-mails of the experts")
    image_root: Optional[str] = Field(None, description="folder Label Studio may serve images from "
                                                        "(default: the deepest folder holding every catalog image)")
    document_root: Optional[str] = Field(None, description="the server's LOCAL_FILES_DOCUMENT_ROOT "
                                                           "(default: the parent of image_root)")
    keep_corrected_expressions: bool = Field(True, description="a reviewer's corrected expression becomes "
                                                               "a new candidate triplet")
    batch_size: int = Field(250, ge=1, description="tasks per import request")
    audit_fraction: float = Field(0.05, ge=0.0, le=1.0, description="share of auto-accepted masks sent to "
                                                                     "reviewers as ordinary tasks, to measure "
                                                                     "the router's precision (0: none)")
    audit_min: int = Field(20, ge=0, description="at least this many auto-accepted masks in the sample "
                                                 "(all of them when there are fewer)")
    audit_seed: int = Field(0, ge=0, description="seed of the sample (with the round, it fixes the sample)")
    page_size: int = Field(100, ge=1, description="tasks per page when pulling")
    timeout_s: float = Field(120.0, gt=0, description="per HTTP request")


class AuditConfig(_Strict):
    """What ``risbench audit`` counts as a defect of a finished dataset's masks (README: "Audit an
    existing dataset"); every threshold is a flag for a reviewer, never a deletion."""

    min_box_iou: float = Field(0.5, ge=0.0, le=1.0, description="mask_box_disagreement below this IoU of the "
                                                                "mask's tight box with the dataset's box")
    max_outside_fraction: float = Field(0.2, ge=0.0, le=1.0, description="mask_outside_box: share of mask pixels "
                                                                         "outside the dataset's box above this")
    max_components: int = Field(2, ge=1, description="many_components: more components (each >= 5% of the mask)")
    min_fresh_iou: float = Field(0.5, ge=0.0, le=1.0, description="fresh_mask_disagreement: IoU of the imported "
                                                                  "mask with a fresh one below this")
    fresh_masks: Optional[bool] = Field(None, description="compare with a fresh mask from refine.segmenter "
                                                          "(default: when the pipeline names refine.segmenter)")


class PipelineConfig(_Strict):
    name: str = "pipeline"
    synthetic: Optional[SyntheticConfig] = None
    sources: list[SourceConfig]
    ingest: IngestConfig = IngestConfig()
    refine: RefineConfig = RefineConfig()
    review: ReviewConfig = ReviewConfig()
    finalize: FinalizeConfig = FinalizeConfig()
    export: ExportConfig = ExportConfig()
    audit: AuditConfig = AuditConfig()

    @field_validator("sources")
    @classmethod
    def _each_source_once(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        """Ids hash the source's name: one set of files under two names is every triplet twice."""
        seen: dict[tuple, int] = {}
        for j, src in enumerate(sources):
            i = seen.setdefault((src.root.rstrip("/"), *src.reads), j)
            if i != j and sources[i].label != src.label:
                raise ValueError(f"sources[{j}] ({src.label!r}) reads the same files as sources[{i}] "
                                 f"({sources[i].label!r}): every triplet would be there twice; keep one")
        return sources


class ConfigError(ValueError):
    """A pipeline file that cannot be used; the message names the file and the bad key."""


def _format_errors(path: Path, err: ValidationError) -> str:
    """One line per bad key: ``file: key: what is wrong (got value)``."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        shown = "" if e["type"] in ("missing", "extra_forbidden") or isinstance(got, (dict, list)) else f" (got {got!r:.40})"
        lines.append(f"{path}: {key}: {e['msg'].removeprefix('Value error, ')}{shown}")   # our validators' words
    return "\n".join(lines)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: object, origin: Path | str, hint: str = "") -> M:
    """``data`` (parsed YAML) validated as ``model``; :class:`ConfigError` with one line per bad
    key. The one way every YAML of the project (pipelines, adapter recipes, CroBIM configs) is checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping{hint}, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(Path(origin), err)) from None


def read_yaml(path: Path, missing: str = "no such file") -> object:
    """A YAML file's data (safe loader); :class:`ConfigError` when absent or not YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def set_in_yaml(path: Path, keys: tuple[str, ...], value: Any) -> Optional[Path]:
    """Set the value at ``keys`` (mapping keys from the top) in the YAML file ``path``, editing
    only that value's text, so that the user's comments and layout elsewhere stay (a pipeline
    is documentation too). Where the file's shape does not allow that (a flow-style parent, a
    top level that is not a mapping), the whole file is rewritten and the old one kept beside
    it: that copy's path is returned. The file is replaced atomically."""
    text = path.read_text(encoding="utf-8")
    expected = yaml.safe_load(text)
    if not isinstance(expected, dict):
        expected = {}
    inner = expected
    for key in keys[:-1]:
        if not isinstance(inner.get(key), dict):
            inner[key] = {}
        inner = inner[key]
    inner[keys[-1]] = value
    edited = _edited(text, keys, value)
    backup = None
    if edited is None or yaml.safe_load(edited) != expected:
        backup = path.with_name(path.name + ".bak")
        backup.write_text(text, encoding="utf-8")
        edited = yaml.safe_dump(expected, sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(edited, encoding="utf-8")
    tmp.replace(path)
    return backup


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False).strip().removesuffix(
        "\n...").strip()


def _text_end(node: yaml.Node) -> int:
    """Where ``node``'s own text ends: a block collection's end mark lies past its trailing
    comments and blank lines, so it ends with its last child instead."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _text_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _text_end(node.value[-1])
    return node.end_mark.index


def _edited(text: str, keys: tuple[str, ...], value: Any) -> Optional[str]:
    """``text`` with the value at ``keys`` replaced (or its key added) in place; None where the
    shape calls for a rewrite."""
    try:
        parent = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    for depth, key in enumerate(keys):
        if not isinstance(parent, yaml.MappingNode) or parent.flow_style or not parent.value:
            return None
        found = [(k, v) for k, v in parent.value if isinstance(k, yaml.ScalarNode) and k.value == key]
        if not found:                           # add "key: value" as the mapping's last entry
            nested: Any = value
            for outer in reversed(keys[depth + 1:]):
                nested = {outer: nested}
            at = text.find("\n", _text_end(parent.value[-1][1]))
            at = len(text) if at < 0 else at + 1
            line = " " * parent.value[0][0].start_mark.column + f"{key}: {_flow(nested)}\n"
            return text[:at] + ("" if text[:at].endswith("\n") or not at else "\n") + line + text[at:]
        k_node, v_node = found[-1]
        if depth < len(keys) - 1:
            parent = v_node
            continue
        if isinstance(v_node, (yaml.MappingNode, yaml.SequenceNode)) and not v_node.flow_style:
            return text[:k_node.end_mark.index] + ": " + _flow(value) + text[_text_end(v_node):]
        return text[:v_node.start_mark.index] + _flow(value) + text[v_node.end_mark.index:]
    return None


def parse_pipeline(data: object, origin: Path | str = "<pipeline>") -> PipelineConfig:
    return parse_model(PipelineConfig, data, origin, " with a 'sources:' key")


def load_pipeline(path: Path | str) -> PipelineConfig:
    path = Path(path)
    return parse_pipeline(read_yaml(path, "no such pipeline file (create one with `risbench init`)"), path)


def _shipped_folders(folder: str) -> list[Any]:
    """Where shipped files live: inside the wheel (``_recipes/``), then in a clone."""
    from importlib import resources

    return [resources.files("risbench_builder") / "_recipes" / folder, Path(__file__).resolve().parent.parent / folder]


def shipped_file(folder: str, name: str) -> Path | None:
    """A file shipped in ``folder`` (pipelines, adapters, review), named ``NAME``, ``NAME.yaml`` or
    ``FOLDER/NAME.yaml`` (as in a clone). None when there is none, and for any other path: a
    mistyped ``~/mine/demo.yaml`` is not quietly swapped for the shipped ``demo.yaml``."""
    if Path(name).parent not in (Path("."), Path(folder)):
        return None
    filename = Path(name).name
    filename = filename if Path(filename).suffix else f"{filename}.yaml"
    for base in _shipped_folders(folder):
        if (base / filename).is_file():
            return Path(str(base / filename))
    return None


def shipped_names(folder: str) -> list[str]:
    """The YAML recipes shipped in ``folder``, by name (for the error that lists them)."""
    return sorted({Path(str(entry)).stem for base in _shipped_folders(folder) if base.is_dir()
                   for entry in base.iterdir() if str(entry).endswith(".yaml")})


def recipe_path(name: str) -> Path:
    """A pipeline recipe shipped with the package (``demo``, ``risbench``), clone or wheel."""
    path = shipped_file("pipelines", name)
    if path is None:
        what = f"{name}: no such pipeline file" if Path(name).suffix or Path(name).name != name else \
            f"no shipped pipeline named {name!r}"
        raise ConfigError(f"{what} (shipped: {', '.join(shipped_names('pipelines'))})")
    return path
