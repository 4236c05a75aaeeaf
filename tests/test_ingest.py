"""The ingest stage: a corruption corpus, idempotence, and resume after SIGKILL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from benchmarks.placeholders import write_vrsbench_placeholders
from risbench_builder.catalog import Catalog
from risbench_builder.config import PipelineConfig, SyntheticConfig
from risbench_builder.sources import make_reader
from risbench_builder.sources.base import SourceLayoutError
from risbench_builder.stages.ingest import RejectRateExceeded, run_ingest
from risbench_builder.synthetic import write_vrsbench
from risbench_builder.workspace import Workspace
from tests.conftest import kill_midway
from tests.sources.test_vrsbench import write_p0003_tree


class Corpus:
    """A clean synthetic VRSBench tree, then one kind of damage per annotation file."""

    def __init__(self, root: Path, outside: Path):
        self.root, self.outside = root, outside
        self.files = sorted(root.glob("Annotations_*/*.json"))
        self.expected: dict[str, str] = {}          # source_ref -> reject reason
        self.touched: set[int] = set()
        self.kinds: set[str] = set()

    def ann(self, i: int) -> dict:
        return json.loads(self.files[i].read_text())

    def save(self, i: int, data: dict) -> None:
        self.files[i].write_text(json.dumps(data))

    def unit(self, i: int) -> str:
        return self.files[i].relative_to(self.root).as_posix()

    def ref(self, i: int, obj: dict) -> str:
        return f"vrsbench:{self.unit(i)}#obj{obj['obj_id']}"

    def image(self, i: int) -> Path:
        name = self.ann(i)["image"]
        return next(p for p in self.root.rglob(name) if "Images" in str(p))

    def pick(self, min_objects: int = 1) -> int:
        i = next(i for i in range(len(self.files))
                 if i not in self.touched and len(self.ann(i)["objects"]) >= min_objects)
        self.touched.add(i)
        return i

    def whole_file(self, kind: str, reason: str, damage) -> None:
        i = self.pick()
        data = self.ann(i)
        damage(i, data)
        self.expected.update({self.ref(i, o): reason for o in data["objects"]})
        self.kinds.add(kind)

    def first_object(self, kind: str, reason: str, change) -> None:
        i = self.pick()
        data = self.ann(i)
        change(data["objects"][0])
        self.save(i, data)
        self.expected[self.ref(i, data["objects"][0])] = reason
        self.kinds.add(kind)

    def build(self) -> None:
        png = lambda size: Image.fromarray(np.zeros((size, size, 3), np.uint8))  # noqa: E731
        self.whole_file("missing image", "missing_image", lambda i, d: self.image(i).unlink())
        self.whole_file("garbage image bytes", "unreadable_image",
                        lambda i, d: self.image(i).write_bytes(b"this is not a png"))
        self.whole_file("truncated png", "unreadable_image",
                        lambda i, d: self.image(i).write_bytes(self.image(i).read_bytes()[:400]))
        self.whole_file("image of the wrong size", "image_size_mismatch", lambda i, d: png(256).save(self.image(i)))

        def escape_link(i: int, d: dict) -> None:
            target = self.outside / "secret.png"
            png(512).save(target)
            img = self.image(i)
            img.unlink()
            img.symlink_to(target)
        self.whole_file("image symlinked outside the root", "path_escape", escape_link)
        self.whole_file("image path with ..", "path_escape",
                        lambda i, d: self.save(i, dict(d, image="../../" + d["image"])))
        self.whole_file("annotation names another image", "image_name_mismatch",
                        lambda i, d: self.save(i, dict(d, image="P9999_0000.png")))
        self.first_object("zero-area box", "zero_area_box",
                          lambda o: o.update(obj_corner=[0.5, 0.1, 0.5, 0.2, 0.5, 0.3, 0.5, 0.4]))
        self.first_object("box outside the image", "box_outside_image",
                          lambda o: o.update(obj_corner=[v + 1.5 for v in o["obj_corner"]]))
        self.first_object("empty expression", "empty_expression", lambda o: o.update(referring_sentence="   "))
        self.first_object("non-text expression", "empty_expression", lambda o: o.update(referring_sentence=42))
        self.first_object("unknown class", "unknown_class", lambda o: o.update(obj_cls="sheep"))
        self.first_object("corners not 8 numbers", "malformed_record",
                          lambda o: (o.update(obj_corner=[0.1] * 7), o.pop("obj_coord")))
        # duplicate (image, expression): the second object repeats the first one's sentence
        i = self.pick(min_objects=2)
        data = self.ann(i)
        data["objects"][1]["referring_sentence"] = "  " + data["objects"][0]["referring_sentence"].upper() + " "
        self.save(i, data)
        self.expected[self.ref(i, data["objects"][1])] = "duplicate"
        self.kinds.add("duplicate expression")
        # malformed JSON: the whole file is one reject
        i = self.pick()
        self.files[i].write_text('{"image": "x.png", "objects": [{"obj_id": 0,')
        self.expected[f"vrsbench:{self.unit(i)}"] = "malformed_file"
        self.kinds.add("malformed json")
        # not-strict JSON is fine: VRSBench's own code reads json5
        i = self.pick()
        text = json.dumps(self.ann(i), indent=1)
        self.files[i].write_text("// written by hand\n" + text[:-1].rstrip() + ",\n}")
        # macOS zip debris is ignored
        (self.root / "Annotations_train" / "._junk.json").write_text("\x00\x01")


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    root = tmp_path / "vrsbench"
    write_vrsbench(root, SyntheticConfig(seed=3, scenes=12, patches_per_scene=2))
    outside = tmp_path / "outside"
    outside.mkdir()
    c = Corpus(root, outside)
    c.build()
    return c


def _pipeline(root: Path, **ingest) -> dict:
    return {"sources": [{"kind": "vrsbench", "root": str(root)}], "ingest": {"batch_size": 3, **ingest}}


def _all_refs(root: Path) -> set[str]:
    """Every object ref of every readable annotation file (what the catalog must account for)."""
    refs = set()
    for f in sorted(root.glob("Annotations_*/*.json")):
        if f.name.startswith("._"):
            continue
        try:
            import json5

            data = json5.loads(f.read_text())
        except ValueError:
            continue
        refs |= {f"vrsbench:{f.relative_to(root).as_posix()}#obj{o['obj_id']}" for o in data["objects"]}
    return refs


def test_corruption_corpus(corpus: Corpus, make_workspace) -> None:
    assert len(corpus.kinds) >= 10, corpus.kinds
    ws = make_workspace(_pipeline(corpus.root))
    report = run_ingest(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        rejects = {ref: reason for ref, reason in cat.conn.execute("SELECT ref, reason FROM rejects")}
        kept = {r[0] for r in cat.conn.execute("SELECT source_ref FROM triplets")}
        details = dict(cat.conn.execute("SELECT reason, detail FROM rejects"))
    assert rejects == corpus.expected
    good = _all_refs(corpus.root) - set(corpus.expected)
    assert kept == good and len(good) > 20
    assert report.accepted == len(good) and sum(report.rejected.values()) == len(corpus.expected)
    # the report files say the same
    lines = (ws.reports / "rejects.csv").read_text().splitlines()
    assert len(lines) == len(corpus.expected) + 1
    assert json.loads((ws.reports / "ingest.json").read_text())["triplets_seen"] == len(good)
    assert "256x256" in details["image_size_mismatch"] and "sheep" in details["unknown_class"]


def test_reject_rate_limit(corpus: Corpus, make_workspace) -> None:
    ws = make_workspace(_pipeline(corpus.root, max_reject_rate=0.01))
    with pytest.raises(RejectRateExceeded, match=r"of records rejected \(limit 1.0%\)"):
        run_ingest(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:  # what was good is kept all the same
        assert cat.count("triplets") > 0


def test_rerun_is_idempotent(corpus: Corpus, make_workspace) -> None:
    ws = make_workspace(_pipeline(corpus.root))
    first = run_ingest(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        before = cat.fingerprint()
    second = run_ingest(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        assert cat.fingerprint() == before
        assert cat.count("runs") == 2
    assert first.new_triplets > 0 and second.new_triplets == 0 and second.accepted == first.accepted
    forced = run_ingest(ws, ws.load(), progress=False, force=True)
    assert forced.new_triplets == first.new_triplets
    with Catalog(ws.catalog_path) as cat:
        assert cat.fingerprint() == before


def _write_pipeline(ws: Path, root: Path, batch_size: int) -> None:
    ws.mkdir(parents=True)
    (ws / "pipeline.yaml").write_text(yaml.safe_dump(_pipeline(root, batch_size=batch_size)))


def test_resume_after_sigkill_gives_the_clean_catalog(tmp_path: Path) -> None:
    root = tmp_path / "big"
    write_vrsbench_placeholders(root, n_files=4000, objects_total=7000, seed=1)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for ws in (clean, killed):
        _write_pipeline(ws, root, batch_size=40)
    cmd = [sys.executable, "-m", "risbench_builder", "build", "--workspace", str(killed), "--stage", "ingest"]
    kill_midway(cmd, killed / "catalog.sqlite", "triplets", at_least=200)
    with Catalog(killed / "catalog.sqlite") as cat:
        partial = cat.count("triplets")
        assert 0 < partial < 7000
        assert cat.last_runs(1)[0]["finished"] is None  # the killed run never finished
    for ws in (killed, clean):
        done = subprocess.run([*cmd[:5], str(ws), "--stage", "ingest"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    with Catalog(killed / "catalog.sqlite") as a, Catalog(clean / "catalog.sqlite") as b:
        assert a.count("triplets") == b.count("triplets") > partial
        assert a.count("triplets") + a.count("rejects") == 7000  # every object accounted for
        assert a.fingerprint() == b.fingerprint()


@pytest.mark.real_fixtures
def test_real_dota_files_ingest(real_fixtures: Path, make_workspace, tmp_path: Path) -> None:
    """The real DOTA label files through the whole stage (copied to a temp tree at test time)."""
    import shutil

    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    shutil.copytree(real_fixtures / "dota_devkit" / "labelTxt", root / "labelTxt")
    for f in (real_fixtures / "mmrotate_tests" / "labelTxt").iterdir():
        shutil.copy(f, root / "labelTxt" / f.name)
    shutil.copy(real_fixtures / "dota_devkit" / "images" / "P1888.png", root / "images")
    # placeholder images for the label files whose images are not in the fixtures
    for name, size in (("P1234", (4400, 4400)), ("P0004__1__0___0", (1024, 1024))):
        Image.new("RGB", size).save(root / "images" / f"{name}.png")
    ws = make_workspace({"sources": [{"kind": "dota", "root": str(root)}]})
    report = run_ingest(ws, ws.load(), progress=False)
    with Catalog(ws.catalog_path) as cat:
        per_image = dict(cat.conn.execute("SELECT image_id, COUNT(*) FROM triplets GROUP BY image_id"))
        cats = dict(cat.conn.execute("SELECT category, COUNT(*) FROM triplets WHERE image_id='dota:P1888' "
                                     "GROUP BY category"))
        gsd = dict(cat.conn.execute("SELECT image_id, gsd FROM images"))
        size = cat.conn.execute("SELECT width, height FROM images WHERE image_id='dota:P1888'").fetchone()
        bowtie = [json.loads(a) for (a,) in cat.conn.execute(
            "SELECT attributes_json FROM triplets WHERE image_id='dota:P0004__1__0___0' ORDER BY source_ref")]
        rejects = cat.conn.execute("SELECT ref, reason FROM rejects").fetchall()
    assert cats == {"vehicle": 64} and size == (712, 557)
    assert gsd["dota:P1234"] == 1.0 and per_image["dota:P1234"] == 144
    assert "dota:P0004__1__0___1024" not in per_image  # the empty label file: nothing, no error
    assert sum("polygon_repaired" in a for a in bowtie) == 1 and len(bowtie) == 4
    # P0770, P1088, P2598 have no image in the fixtures: rejected with the reason, nothing else
    assert {reason for _, reason in rejects} == {"missing_image"}
    assert {ref.split("#")[0] for ref, _ in rejects} == {
        "dota:labelTxt/P0770.txt", "dota:labelTxt/P1088.txt", "dota:labelTxt/P2598.txt"}
    assert report.accepted == 64 + 144 + 4


def test_every_reject_reason_is_documented() -> None:
    """The README's reason table is the user's reference: each reason the readers and the ingest
    stage can give is in it, and in :data:`REJECT_REASONS`."""
    import re

    from risbench_builder.sources import base

    constants = {v for k, v in vars(base).items() if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z_]+", v)
                 and k not in ("MAX_COORDINATE_PX", "OTHER_CATEGORY")}
    assert constants == set(base.REJECT_REASONS)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("The ingest reasons:"):readme.index("`--max-reject-rate 0.02`")]
    assert {r for r in base.REJECT_REASONS if f"`{r}`" not in table} == set()


@pytest.mark.parametrize("kind", ["vrsbench", "dota", "dior", "dior_r", "dior_rsvg", "refer", "native", "hf"])
def test_a_root_without_the_files_its_kind_reads_stops_ingest_before_a_run(tmp_path: Path, kind: str) -> None:
    """Read on, an empty or wrong root ingests nothing and "succeeds"; it is a wrong path in the
    pipeline, so ingest stops with the key to fix and what the kind looks for, and writes nothing."""
    ws = Workspace(tmp_path / "ws")
    ws.path.mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "ok").mkdir()
    write_p0003_tree(tmp_path / "ok" / "vrsbench")
    cfg = PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(tmp_path / "ok" / "vrsbench")},
                                                     {"kind": kind, "root": str(tmp_path / "empty")}]})
    with pytest.raises(SourceLayoutError, match=re.escape("sources[1]")) as raised:
        run_ingest(ws, cfg, progress=False)
    reader_expects = "Annotations_*/" if kind == "vrsbench" else make_reader(
        cfg.sources[1], tmp_path / "empty", None, tmp_path / "work").expects
    assert reader_expects in str(raised.value) and str(tmp_path / "empty") in str(raised.value)
    assert not ws.catalog_path.exists()


def test_control_characters_never_reach_the_catalog(tmp_path: Path) -> None:
    """A NUL, a terminal escape or a zero-width character in an expression is dropped (whitespace
    runs are one space); an expression made only of them is an empty_expression reject."""
    root = write_p0003_tree(tmp_path / "vrsbench")
    ann_path = root / "Annotations_val" / "P0003_0002.json"
    ann = json.loads(ann_path.read_text())
    first = dict(ann["objects"][0])
    ann["objects"] = [dict(first, obj_id=0, referring_sentence="The\x00 bus\x1b[2J on\u200b the\nleft."),
                      dict(first, obj_id=1, referring_sentence="\x00\x1b\u200b\x07")]
    ann_path.write_text(json.dumps(ann))
    ws = Workspace(tmp_path / "ws")
    ws.path.mkdir()
    cfg = PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(root)}]})
    run_ingest(ws, cfg, progress=False)
    with Catalog(ws.catalog_path) as cat:
        assert [r[0] for r in cat.conn.execute("SELECT expression FROM triplets")] == ["The bus[2J on the left."]
        assert cat.conn.execute("SELECT reason, detail FROM rejects").fetchall() == [
            ("empty_expression", "referring expression holds only control or format characters")]


def test_a_source_read_before_whose_files_are_gone_is_skipped_not_a_stop(tmp_path: Path) -> None:
    """`build --stage all` reruns ingest: an hf download deleted after its import (the images were
    extracted into the workspace) keeps its rows and is reported skipped; the build goes on."""
    root = write_p0003_tree(tmp_path / "vrsbench")
    ws = Workspace(tmp_path / "ws")
    ws.path.mkdir()
    cfg = PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(root)}]})
    first = run_ingest(ws, cfg, progress=False)
    assert first.new_triplets == 1 and not first.skipped_sources
    moved = root.rename(tmp_path / "elsewhere")
    again = run_ingest(ws, cfg, progress=False)
    assert again.new_triplets == 0 and list(again.skipped_sources) == ["vrsbench"]
    assert "is not a folder" in again.skipped_sources["vrsbench"] and "kept" in again.skipped_sources["vrsbench"]
    assert json.loads((ws.reports / "ingest.json").read_text())["skipped_sources"] == again.skipped_sources
    with Catalog(ws.catalog_path) as cat:
        assert cat.count("triplets") == 1
    with pytest.raises(SourceLayoutError, match="is not a folder"):    # --force would clear the rows it keeps
        run_ingest(ws, cfg, force=True, progress=False)
    with Catalog(ws.catalog_path) as cat:
        assert cat.count("triplets") == 1
    other = PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(moved)},
                                                       {"kind": "native", "root": str(tmp_path / "gone"),
                                                        "name": "rrsisd"}]})
    with pytest.raises(SourceLayoutError, match=re.escape("sources[1].root")):   # never read: still a stop
        run_ingest(ws, other, progress=False)


def test_one_set_of_files_under_a_second_name_is_refused(tmp_path: Path) -> None:
    """Ids hash the source's name: a renamed source (or its entry copied under another name) read
    every triplet again, 116 triplets for 58 on the demo, each mask sent to review twice."""
    from pydantic import ValidationError

    root = write_p0003_tree(tmp_path / "vrsbench")
    ws = Workspace(tmp_path / "ws")
    ws.path.mkdir()
    (ws.path / "pipeline.yaml").write_text("sources: []\n")
    run_ingest(ws, PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(root)}]}),
               progress=False)
    renamed = PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(root), "name": "vrs"}]})
    with pytest.raises(SourceLayoutError, match=re.escape("sources[0] ('vrs') reads the files the catalog holds as "
                                                          "source 'vrsbench'")) as stop:
        run_ingest(ws, renamed, progress=False)
    assert "set sources[0].name to 'vrsbench'" in str(stop.value)
    other_files = {"kind": "vrsbench", "root": str(write_p0003_tree(tmp_path / "more")), "name": "more"}
    grown = PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(root)}, other_files]})
    assert run_ingest(ws, grown, progress=False).new_triplets == 1        # new files under a new name: read
    with Catalog(ws.catalog_path) as cat:
        assert dict(cat.conn.execute("SELECT source, COUNT(*) FROM triplets GROUP BY source")) == {
            "vrsbench": 1, "more": 1}
    with pytest.raises(ValidationError, match=re.escape("sources[1] ('copy') reads the same files as sources[0]")):
        PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(root)},
                                                   {"kind": "vrsbench", "root": f"{root}/", "name": "copy"}]})


def test_a_triplet_the_files_now_describe_otherwise_is_reported_not_silently_kept(tmp_path: Path) -> None:
    """A rerun reads only what is new: a class or box fixed upstream after ingest keeps the
    triplet as first read (its mask and reviews are of that object), and the report says so."""
    root = write_p0003_tree(tmp_path / "vrsbench")
    ws = Workspace(tmp_path / "ws")
    ws.path.mkdir()
    cfg = PipelineConfig.model_validate({"sources": [{"kind": "vrsbench", "root": str(root)}]})
    assert not run_ingest(ws, cfg, progress=False).changed
    assert not run_ingest(ws, cfg, progress=False).changed                   # nothing changed: nothing said
    ann_file = root / "Annotations_val" / "P0003_0002.json"
    ann = json.loads(ann_file.read_text())
    ann["objects"][0]["obj_cls"] = "ship"
    ann_file.write_text(json.dumps(ann))
    with Catalog(ws.catalog_path) as cat:
        before = cat.fingerprint()
        (tid,) = cat.conn.execute("SELECT triplet_id FROM triplets").fetchone()
    again = run_ingest(ws, cfg, progress=False)
    assert again.changed == 1 and again.new_triplets == 0
    ref = "vrsbench:Annotations_val/P0003_0002.json#obj0"
    assert again.changed_examples == [f"{tid} ({ref}): category vehicle -> ship"]
    said = json.loads((ws.reports / "ingest.json").read_text())
    assert said["changed_since_ingest"] == 1 and said["changed_since_ingest_examples"] == again.changed_examples
    with Catalog(ws.catalog_path) as cat:
        assert cat.fingerprint() == before                                   # kept as first ingested
    ann["objects"][0]["obj_corner"] = [v + 2 for v in ann["objects"][0]["obj_corner"]]   # now off the image
    ann_file.write_text(json.dumps(ann))
    off = run_ingest(ws, cfg, progress=False)
    assert off.changed == 1 and off.changed_examples[0].startswith(f"{ref}: now box_outside_image (box [")
    assert not off.rejected                                                  # the catalog holds it: no reject
    with Catalog(ws.catalog_path) as cat:
        assert cat.fingerprint() == before and cat.count("rejects") == 0
    # the other way round: a record rejected at first and fixed upstream loses its old reject
    ann["objects"][0].update(obj_cls="sheep", referring_sentence="the sheep on the left")
    ann_file.write_text(json.dumps(ann))
    fresh = Workspace(tmp_path / "fresh")
    fresh.path.mkdir()
    assert run_ingest(fresh, cfg, progress=False).rejected == {"unknown_class": 1}
    ann["objects"][0].update(obj_cls="vehicle", obj_corner=[v - 2 for v in ann["objects"][0]["obj_corner"]])
    ann_file.write_text(json.dumps(ann))
    fixed = run_ingest(fresh, cfg, progress=False)
    assert fixed.new_triplets == 1 and not fixed.rejected and not fixed.changed
    with Catalog(fresh.catalog_path) as cat:
        assert cat.count("rejects") == 0 and cat.count("triplets") == 1
    # a whole file: broken now, its triplet kept and no reject; rejected at first, fixed, no reject left
    good = ann_file.read_text()
    ann_file.write_text('{"objects": [')
    broken = run_ingest(fresh, cfg, progress=False)
    assert broken.changed == 1 and broken.changed_examples[0].startswith(f"{ref.split('#')[0]}: now malformed_file")
    assert not broken.rejected
    newer = Workspace(tmp_path / "newer")
    newer.path.mkdir()
    assert run_ingest(newer, cfg, progress=False).rejected == {"malformed_file": 1}
    ann_file.write_text(good)
    assert run_ingest(newer, cfg, progress=False).new_triplets == 1
    for w in (fresh, newer):
        with Catalog(w.catalog_path) as cat:
            assert cat.count("rejects") == 0 and cat.count("triplets") == 1
    # the image re-encoded upstream: other pixels under the same name (ingest.hash_images, the default)
    image = next(root.glob("Images_val/**/P0003_0002.png"))
    Image.fromarray(np.full((512, 512, 3), 91, np.uint8)).save(image)
    redone = run_ingest(newer, cfg, progress=False)
    assert redone.changed == 1 and "another image now (512x512, sha256 " in redone.changed_examples[0]
