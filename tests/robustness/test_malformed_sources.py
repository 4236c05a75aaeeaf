"""A corpus of malformed inputs across every source format, through the real ingest CLI.

Each case writes one new annotation file (with its own copy of a good image) into a tree that
the torchgeo-style generators made, and says what must happen to each of its objects: a named
reject, or kept. The three inputs that once crashed the stage for good are here (a 401-digit
coordinate, a corner of -1e308, brackets nested 100,000 deep). One ``risbench build --stage
ingest`` over all five sources must exit 0, account for every case object exactly, and keep
every record of the untouched tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from risbench_builder.catalog import Catalog
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.workspace import init_workspace
from tests.data.dior.data import generate as generate_dior
from tests.data.dior_rsvg.data import generate as generate_dior_rsvg
from tests.data.dota.data import generate as generate_dota
from tests.data.vrsbench.data import generate as generate_vrsbench

HBB = "Annotations/Horizontal Bounding Boxes"
OBB = "Annotations/Oriented Bounding Boxes"
HUGE = 65 * 2**20                 # over ingest.max_annotation_bytes (64 MiB): written sparse
KEEP = "kept"

# ------------------------------------------------------------------ good objects, per format
VRS_GOOD = {"obj_id": 0, "obj_cls": "ship", "referring_sentence": "the ship in the upper left corner",
            "obj_corner": [0.1, 0.1, 0.3, 0.1, 0.3, 0.3, 0.1, 0.3], "is_unique": True, "obj_position": "top-left"}
DOTA_GOOD = "10 10 60 10 60 60 10 60 ship 0"
HBB_GOOD = "<xmin>10</xmin><ymin>10</ymin><xmax>80</xmax><ymax>80</ymax>"
OBB_TAGS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
            "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")
OBB_GOOD = (10, 10, 80, 10, 80, 80, 10, 80)


def vrs_object(obj_id: int, **change) -> dict:
    return {**VRS_GOOD, "obj_id": obj_id, "referring_sentence": f"{VRS_GOOD['referring_sentence']} {obj_id}", **change}


def hbb_object(box: str = HBB_GOOD, name: str = "ship", description: str | None = None, flat: str | None = None) -> str:
    inner = f"<bndbox>{flat}</bndbox>" if flat is not None else (f"<bndbox>{box}</bndbox>" if box else "")
    desc = f"<description>{description}</description>" if description is not None else ""
    return f"<object><name>{name}</name>{inner}{desc}</object>"


def obb_object(corners=OBB_GOOD, name: str = "ship") -> str:
    inner = "".join(f"<{t}>{v}</{t}>" for t, v in zip(OBB_TAGS, corners))
    return f"<object><name>{name}</name><robndbox>{inner}</robndbox><angle>0</angle></object>"


def xml(filename: str, *objects: str) -> str:
    return (f"<annotation><filename>{filename}</filename><size><width>320</width><height>320</height></size>"
            f"{''.join(objects)}</annotation>")


# ------------------------------------------------------------------ the corpus
@dataclass
class Case:
    kind: str                       # source kind (and label)
    name: str
    write: Callable[["Tree", str], dict[str, str]]   # writes files for stem; returns {object ref: reason | KEEP}


@dataclass
class Tree:
    root: Path
    outside: Path
    expected: dict[str, str] = field(default_factory=dict)

    def src(self, kind: str) -> Path:
        return self.root / {"dior_r": "dior"}.get(kind, kind)

    def put(self, kind: str, rel: str, data: str | bytes) -> Path:
        path = self.src(kind) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return path

    def image(self, kind: str, rel: str) -> None:
        """A copy of a good image of the generated tree under the case's name."""
        folder = self.src(kind) / Path(rel).parent
        template = next(p for p in sorted(folder.iterdir()) if p.suffix == Path(rel).suffix)
        shutil.copy(template, self.src(kind) / rel)

    def link_out(self, kind: str, rel: str, data: str | bytes) -> None:
        target = self.outside / f"{kind}-{Path(rel).name}"
        target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        (self.src(kind) / rel).symlink_to(target)

    def sparse(self, kind: str, rel: str) -> None:
        with open(self.src(kind) / rel, "wb") as fh:
            fh.truncate(HUGE)


# VRSBench: one file per case, Annotations_train/<stem>.json over Images_train/<stem>.png
def vrs(change: dict | None = None, *, whole: Callable[[str], bytes | str] | None = None,
        reason: str = "", setup: Callable[[Tree, str], None] | None = None) -> Callable[[Tree, str], dict[str, str]]:
    def write(tree: Tree, stem: str) -> dict[str, str]:
        tree.image("vrsbench", f"Images_train/{stem}.png")
        unit = f"Annotations_train/{stem}.json"
        if setup is not None:
            setup(tree, unit)
            return {f"vrsbench:{unit}": reason}
        if whole is not None:
            tree.put("vrsbench", unit, whole(stem))
            return {f"vrsbench:{unit}": reason}
        bad = {**vrs_object(1), **change}
        text = json.dumps({"image": f"{stem}.png", "objects": [vrs_object(0), bad]})
        tree.put("vrsbench", unit, text)
        return {f"vrsbench:{unit}#obj0": KEEP, f"vrsbench:{unit}#obj{bad.get('obj_id', 1)}": reason}
    return write


def vrs_raw(obj_json: str, reason: str, ref: str = "obj1") -> Callable[[Tree, str], dict[str, str]]:
    """An object written as raw JSON text (numbers no float holds, NaN, ...)."""
    def write(tree: Tree, stem: str) -> dict[str, str]:
        tree.image("vrsbench", f"Images_train/{stem}.png")
        unit = f"Annotations_train/{stem}.json"
        good = json.dumps(vrs_object(0))
        tree.put("vrsbench", unit, f'{{"image": "{stem}.png", "objects": [{good}, {obj_json}]}}')
        return {f"vrsbench:{unit}#obj0": KEEP, f"vrsbench:{unit}#{ref}": reason}
    return write


def vrs_corner(values: str) -> str:
    return ('{"obj_id": 1, "obj_cls": "ship", "referring_sentence": "a ship at the bottom", '
            f'"obj_corner": [{values}]}}')


def dota(line: str | None, reason: str, *, whole: bytes | None = None,
         setup: Callable[[Tree, str], None] | None = None) -> Callable[[Tree, str], dict[str, str]]:
    def write(tree: Tree, stem: str) -> dict[str, str]:
        tree.image("dota", f"images/{stem}.png")
        unit = f"labelTxt/{stem}.txt"
        if setup is not None or whole is not None:
            setup(tree, unit) if setup is not None else tree.put("dota", unit, whole)
            return {f"dota:{unit}": reason}
        tree.put("dota", unit, f"{DOTA_GOOD}\r\n{line}\r\n")
        return {f"dota:{unit}#obj0": KEEP, f"dota:{unit}#obj1": reason}
    return write


def xml_case(kind: str, bad_object: str | None, reason: str, *, whole: str | bytes | None = None,
             setup: Callable[[Tree, str], None] | None = None) -> Callable[[Tree, str], dict[str, str]]:
    folder = {"dior": HBB, "dior_r": OBB, "dior_rsvg": "Annotations"}[kind]
    images = "JPEGImages" if kind == "dior_rsvg" else "JPEGImages-trainval"
    good = {"dior": hbb_object(), "dior_r": obb_object(),
            "dior_rsvg": hbb_object(description="the ship near the top left")}[kind]

    def write(tree: Tree, stem: str) -> dict[str, str]:
        tree.image(kind, f"{images}/{stem}.jpg")
        unit = f"{folder}/{stem}.xml"
        if setup is not None or whole is not None:
            setup(tree, unit) if setup is not None else tree.put(kind, unit, whole)  # type: ignore[arg-type]
            return {f"{kind}:{unit}": reason}
        tree.put(kind, unit, xml(f"{stem}.jpg", good, bad_object or ""))
        return {f"{kind}:{unit}#obj0": KEEP, f"{kind}:{unit}#obj1": reason}
    return write


NESTED = "[" * 100_000 + "]" * 100_000
BIG_JSON5 = "// not strict JSON\n" + " " * (2**20) + '{"objects": []}'

CASES: list[Case] = [
    # --- VRSBench: the three inputs that crashed the stage
    Case("vrsbench", "401-digit integer coordinate", vrs_raw(vrs_corner(", ".join(["1" * 401] + ["0.1"] * 7)),
                                                             "non_finite_coordinate")),
    Case("vrsbench", "corner of -1e308 (x 512 = -inf)", vrs_raw(vrs_corner(", ".join(["-1e308"] + ["0.2"] * 7)),
                                                                "non_finite_coordinate")),
    Case("vrsbench", "brackets nested 100,000 deep", vrs(whole=lambda s: NESTED, reason="malformed_file")),
    # --- VRSBench: accepted before, refused now
    Case("vrsbench", "10 MB expression", vrs({"referring_sentence": "a ship " * 1_500_000}, reason="expression_too_long")),
    Case("vrsbench", "annotation symlinked outside the root",
         vrs(setup=lambda t, u: t.link_out("vrsbench", u, json.dumps({"objects": [VRS_GOOD]})), reason="path_escape")),
    Case("vrsbench", "obj_coord with x2 < x1", vrs({"obj_corner": None, "obj_coord": [0.6, 0.1, 0.2, 0.5]},
                                                   reason="inverted_box")),
    Case("vrsbench", "file over the size limit (sparse)", vrs(setup=lambda t, u: t.sparse("vrsbench", u),
                                                              reason="file_too_large")),
    Case("vrsbench", "json5 file over the json5 limit", vrs(whole=lambda s: BIG_JSON5, reason="malformed_file")),
    Case("vrsbench", "a FIFO named .json", vrs(setup=lambda t, u: os.mkfifo(t.src("vrsbench") / u),
                                               reason="malformed_file")),
    # --- VRSBench: other damage
    Case("vrsbench", "NaN corner", vrs_raw(vrs_corner(", ".join(["NaN"] + ["0.3"] * 7)), "non_finite_coordinate")),
    Case("vrsbench", "Infinity corner", vrs_raw(vrs_corner(", ".join(["0.3"] * 7 + ["Infinity"])),
                                                "non_finite_coordinate")),
    Case("vrsbench", "corner scaled past a million pixels", vrs({"obj_corner": [1e4, 0.1, 0.3, 0.1, 0.3, 0.3, 0.1, 0.3]},
                                                                reason="non_finite_coordinate")),
    Case("vrsbench", "not UTF-8", vrs(whole=lambda s: b"\xff\xfe{\x00}", reason="malformed_file")),
    Case("vrsbench", "top level is a list", vrs(whole=lambda s: "[1, 2, 3]", reason="malformed_file")),
    Case("vrsbench", "objects is not a list", vrs(whole=lambda s: '{"objects": {"a": 1}}', reason="malformed_file")),
    Case("vrsbench", "object is a string", vrs_raw('"not an object"', "malformed_record", ref="idx1")),
    Case("vrsbench", "corners are bools", vrs({"obj_corner": [True] * 8}, reason="malformed_record")),
    Case("vrsbench", "class is a mapping", vrs({"obj_cls": {"ship": 1}}, reason="malformed_record")),
    Case("vrsbench", "attribute is a deep list", vrs({"obj_position": [[["top"]]] * 100}, reason="malformed_record")),
    Case("vrsbench", "expression is a list", vrs({"referring_sentence": ["a", "ship"]}, reason="empty_expression")),
    Case("vrsbench", "image named by an absolute path",
         vrs(whole=lambda s: json.dumps({"image": f"/etc/{s}.png", "objects": [VRS_GOOD]}), reason="path_escape")),
    # --- DOTA
    Case("dota", "401-digit integer coordinate", dota(" ".join(["1" * 401] + ["20"] * 7) + " ship 0",
                                                      "non_finite_coordinate")),
    Case("dota", "coordinate 1e400", dota("1e400 10 60 10 60 60 10 60 ship 0", "non_finite_coordinate")),
    Case("dota", "coordinate -1e308", dota("-1e308 10 60 10 60 60 10 60 ship 0", "non_finite_coordinate")),
    Case("dota", "coordinate nan", dota("nan 10 60 10 60 60 10 60 ship 0", "non_finite_coordinate")),
    Case("dota", "coordinate is a word", dota("ten 10 60 10 60 60 10 60 ship 0", "malformed_record")),
    Case("dota", "eleven tokens", dota("10 10 60 10 60 60 10 60 ship 0 extra", "malformed_record")),
    Case("dota", "difficult flag 1e999", dota("10 10 60 10 60 60 10 60 ship 1e999", "malformed_record")),
    Case("dota", "class of 10,000 characters", dota("10 10 60 10 60 60 10 60 " + "s" * 10_000 + " 0",
                                                    "malformed_record")),
    Case("dota", "all corners one point", dota("20 20 20 20 20 20 20 20 ship 0", "invalid_polygon")),
    Case("dota", "binary label file", dota(None, "malformed_file", whole=b"\x89PNG\r\n\x1a\n\xff\xff")),
    Case("dota", "label file symlinked outside", dota(None, "path_escape",
                                                      setup=lambda t, u: t.link_out("dota", u, DOTA_GOOD))),
    Case("dota", "label file over the size limit", dota(None, "file_too_large", setup=lambda t, u: t.sparse("dota", u))),
    # --- DIOR (horizontal boxes)
    Case("dior", "xmax < xmin", xml_case("dior", hbb_object("<xmin>90</xmin><ymin>10</ymin><xmax>20</xmax><ymax>80</ymax>"),
                                         "inverted_box")),
    Case("dior", "coordinate 1e400", xml_case("dior", hbb_object("<xmin>1e400</xmin><ymin>10</ymin><xmax>20</xmax>"
                                                                 "<ymax>80</ymax>"), "non_finite_coordinate")),
    Case("dior", "401-digit coordinate", xml_case("dior", hbb_object(f"<xmin>1</xmin><ymin>10</ymin><xmax>{'9' * 401}"
                                                                     "</xmax><ymax>80</ymax>"), "non_finite_coordinate")),
    Case("dior", "no bndbox", xml_case("dior", hbb_object(""), "malformed_record")),
    Case("dior", "class name of 1,000 characters", xml_case("dior", hbb_object(name="x" * 1000), "malformed_record")),
    Case("dior", "entity declaration", xml_case("dior", None, "malformed_file",
                                                whole='<!DOCTYPE a [<!ENTITY x "boom">]>' + xml("&x;.jpg"))),
    Case("dior", "not well-formed", xml_case("dior", None, "malformed_file", whole="<annotation><object>")),
    Case("dior", "annotation symlinked outside", xml_case("dior", None, "path_escape",
                                                          setup=lambda t, u: t.link_out("dior", u, xml("a.jpg")))),
    # --- DIOR-R (oriented boxes)
    Case("dior_r", "corner inf", xml_case("dior_r", obb_object((10, 10, "inf", 10, 80, 80, 10, 80)),
                                          "non_finite_coordinate")),
    Case("dior_r", "corners missing", xml_case("dior_r", "<object><name>ship</name><robndbox><x_left_top>1"
                                                         "</x_left_top></robndbox></object>", "malformed_record")),
    Case("dior_r", "all corners one point", xml_case("dior_r", obb_object((5,) * 8), "invalid_polygon")),
    Case("dior_r", "file over the size limit", xml_case("dior_r", None, "file_too_large",
                                                        setup=lambda t, u: t.sparse("dior_r", u))),
    # --- DIOR-RSVG
    Case("dior_rsvg", "flat bndbox inverted", xml_case("dior_rsvg", hbb_object(flat="200 10 20 80", description="a ship"),
                                                       "inverted_box")),
    Case("dior_rsvg", "flat bndbox of 3 numbers", xml_case("dior_rsvg", hbb_object(flat="10 20 80", description="a ship"),
                                                           "malformed_record")),
    Case("dior_rsvg", "no description", xml_case("dior_rsvg", hbb_object(), "malformed_record")),
    Case("dior_rsvg", "description of 5,000 characters", xml_case("dior_rsvg", hbb_object(description="ship " * 1000),
                                                                   "expression_too_long")),
    Case("dior_rsvg", "coordinate -1e308", xml_case("dior_rsvg", hbb_object(flat="-1e308 10 80 80", description="a ship"),
                                                    "non_finite_coordinate")),
]


def _sources(root: Path) -> list[dict]:
    return [{"kind": "vrsbench", "root": str(root / "vrsbench")}, {"kind": "dota", "root": str(root / "dota")},
            {"kind": "dior", "root": str(root / "dior")}, {"kind": "dior_r", "root": str(root / "dior")},
            {"kind": "dior_rsvg", "root": str(root / "dior_rsvg")}]


def _catalog(path: Path) -> tuple[dict[str, str], set[str]]:
    with Catalog(path) as cat:
        rejects = dict(cat.conn.execute("SELECT ref, reason FROM rejects"))
        kept = {ref for (ref,) in cat.conn.execute("SELECT source_ref FROM triplets")}
    return rejects, kept


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, dict[str, str], set[str]]:
    """The generated trees, a clean ingest of them (the baseline), then the cases added."""
    base = tmp_path_factory.mktemp("robustness")
    tree = Tree(base / "sources", base / "outside")
    tree.outside.mkdir()
    for kind, generate in (("vrsbench", generate_vrsbench), ("dota", generate_dota), ("dior", generate_dior),
                           ("dior_rsvg", generate_dior_rsvg)):
        generate(tree.src(kind))
    spec = base / "clean.yaml"
    spec.write_text(yaml.safe_dump({"sources": _sources(tree.root)}))
    ws = init_workspace(base / "clean", spec)
    run_ingest(ws, ws.load(), progress=False)
    baseline_rejects, baseline_kept = _catalog(ws.catalog_path)
    for n, case in enumerate(CASES):
        stem = {"vrsbench": f"Z{n:03d}_0000", "dota": f"Z{n:03d}"}.get(case.kind, f"9{n:04d}")
        tree.expected.update(case.write(tree, stem))
    return tree, baseline_rejects, baseline_kept


def test_corpus_is_wide(corpus) -> None:
    tree, _, _ = corpus
    bad = {ref: reason for ref, reason in tree.expected.items() if reason != KEEP}
    assert len(CASES) >= 40 and len(bad) >= 40
    assert {c.kind for c in CASES} == {"vrsbench", "dota", "dior", "dior_r", "dior_rsvg"}
    assert set(bad.values()) >= {"malformed_file", "malformed_record", "non_finite_coordinate", "inverted_box",
                                 "expression_too_long", "file_too_large", "path_escape", "invalid_polygon"}


def test_every_malformed_input_is_a_named_reject_and_the_stage_exits_0(corpus, tmp_path: Path) -> None:
    tree, baseline_rejects, baseline_kept = corpus
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump({"sources": _sources(tree.root), "ingest": {"batch_size": 4}}))
    ws = init_workspace(tmp_path / "ws", spec)
    cmd = [sys.executable, "-m", "risbench_builder", "build", "--workspace", str(ws.path), "--stage", "ingest"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    rejects, kept = _catalog(ws.catalog_path)

    file_cases = {ref: reason for ref, reason in tree.expected.items() if "#" not in ref}
    for ref, reason in tree.expected.items():
        if reason == KEEP:
            assert ref in kept, f"good record {ref} was not kept ({rejects.get(ref)})"
        elif ref in rejects:
            assert rejects[ref] == reason, f"{ref}: {rejects[ref]} instead of {reason}"
        else:           # a file whose every object carries the reason (an image named by an absolute path)
            objects = {r: why for r, why in rejects.items() if r.startswith(ref + "#")}
            assert objects and set(objects.values()) == {reason}, f"{ref}: expected {reason}, got {objects}"
    # nothing else of the case files was rejected, and the untouched tree is whole
    case_units = {ref.split("#")[0] for ref in tree.expected}
    stray = {r: why for r, why in rejects.items() if r.split("#")[0] in case_units
             and r not in tree.expected and r.split("#")[0] not in file_cases}
    assert not stray
    assert baseline_kept <= kept and len(baseline_kept) > 40
    assert {r: rejects.get(r) for r in baseline_rejects} == baseline_rejects
    # details are one line and bounded, whatever the input held
    with Catalog(ws.catalog_path) as cat:
        details = [d for (d,) in cat.conn.execute("SELECT detail FROM rejects")]
    assert all("\n" not in d and len(d) <= 500 for d in details)

    # --max-reject-rate: the same rejects, exit status 3
    limited = subprocess.run([*cmd, "--max-reject-rate", "0.01"], capture_output=True, text=True, timeout=300)
    assert limited.returncode == 3, limited.stderr[-2000:]
    assert "of records rejected" in limited.stderr
