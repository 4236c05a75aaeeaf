"""The static report: every gallery present, every link resolves, the thumbnail cache reruns
nothing, and the `show` / `report` commands."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.cli import app
from risbench_builder.qa.report import ReportOptions, write_report

FIXED = ("all", "accept", "review", "final", "dropped", "low-agreement", "contradictions")


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append(a[key])


def js_payload(path: Path) -> list:
    """The JSON arguments of a data file ``RB.name(arg, ...);``."""
    body = re.fullmatch(r"RB\.\w+\((.*)\);\n", path.read_text(encoding="utf-8"), re.S).group(1)
    return json.loads(f"[{body}]")


def meta_of(index: Path) -> dict:
    text = index.read_text(encoding="utf-8")
    return json.loads(re.search(r"window\.RB_META = (.*?);</script>", text, re.S).group(1))


def test_html_structure_galleries_and_links(workspace) -> None:
    ws, ids = workspace
    (ws.reports / "figures").mkdir()
    Image.new("RGB", (40, 30), "white").save(ws.reports / "figures" / "word_lengths.png")   # as the stats stage
    result = write_report(ws, ReportOptions(progress=False, detail_chunk=7))
    out = ws.reports
    parser = Links()
    parser.feed(result.index.read_text(encoding="utf-8"))
    assert "figures/word_lengths.png" in parser.refs
    assert {"summary", "galleries", "tabs", "grid", "detail", "sort", "cat", "split"} <= parser.ids
    for ref in parser.refs:                                          # every link resolves to a file
        if not ref.startswith("#"):
            assert (out / urllib.parse.unquote(ref)).is_file(), ref
    meta = meta_of(result.index)
    galleries = {g["slug"]: g for g in meta["galleries"]}
    assert set(FIXED) <= galleries.keys()
    assert {"reject-finalize-too-few-words", "reject-finalize-geometry-contradiction",
            "reject-ingest-missing-image"} <= galleries.keys()
    with Catalog(ws.catalog_path) as cat:
        n = cat.count("triplets")
        routes = dict(cat.conn.execute("SELECT route, COUNT(*) FROM proposals GROUP BY route"))
    assert galleries["all"]["count"] == n == meta["total"]
    assert galleries["accept"]["count"] == routes.get("accept", 0)
    assert galleries["review"]["count"] == routes.get("review", 0)
    assert galleries["final"]["count"] == len(ids["final"])
    assert galleries["low-agreement"]["count"] == len(ids["reviewed"]) and galleries["low-agreement"]["sort"] == "agreement"
    assert galleries["reject-ingest-missing-image"]["text_total"] == 1
    items = js_payload(out / "data" / "items.js")[0]
    assert len(items["id"]) == n
    for slug, g in galleries.items():                                # data files exist and match the meta
        assert (out / g["file"]).is_file(), slug
        name, data = js_payload(out / g["file"])
        assert name == slug and len(data["items"]) == g["count"] and len(data["texts"]) == g["texts"]
    contradictions = {items["id"][i] for i in js_payload(out / galleries["contradictions"]["file"])[1]["items"]}
    assert contradictions == set(ids["contradictions"])
    for s in meta["signals"]:
        name, values = js_payload(out / s["file"])
        assert name == s["name"] and len(values) == n
    assert {"area", "box_iou", "jitter_agreement", "agreement"} <= {s["name"] for s in meta["signals"]}
    chunks = sorted((out / "data").glob("detail-*.js"))
    assert len(chunks) == -(-n // 7)
    for chunk in chunks:                                             # thumbnails and layers of every triplet
        for d in js_payload(chunk)[1]:
            assert (out / "thumbs" / items["key"][items["id"].index(d["id"])][:2]).is_dir()
            for layer in d["layers"]:                                # layer PNGs are inlined
                png = base64.b64decode(layer["src"].removeprefix("data:image/png;base64,"))
                assert Image.open(io.BytesIO(png)).size == (layer["w"], layer["h"])
            assert (out / urllib.parse.unquote(d["image"])).resolve() == Path(d["image_path"]).resolve()
    for key in items["key"]:
        assert (out / "thumbs" / key[:2] / f"{key}.jpg").is_file()
    reviewed = next(d for c in chunks for d in js_payload(c)[1] if d["id"] == ids["reviewed"][0])
    assert [l["name"] for l in reviewed["layers"]] == ["proposal", "reviewer alice", "reviewer bob",
                                                        "reviewer carol", "consensus"]
    assert reviewed["final"] == {"split": "val", "mask_origin": "consensus"} and reviewed["consensus"]["decision"]
    assert reviewed["proposal"]["failed"] is not None
    assert result.bytes_index < 100_000


def test_second_report_renders_nothing_and_a_changed_mask_renders_once(workspace) -> None:
    ws, _ = workspace
    first = write_report(ws, ReportOptions(progress=False, workers=2))
    n = first.thumbs.rendered
    assert n > 0 and first.thumbs.reused == 0
    again = write_report(ws, ReportOptions(progress=False))
    assert again.thumbs.rendered == 0 and again.thumbs.reused == n and again.thumbs.removed == 0
    with Catalog(ws.catalog_path) as cat:
        tid, rle = cat.conn.execute("SELECT triplet_id, rle FROM proposals ORDER BY triplet_id DESC LIMIT 1").fetchone()
        m = masks.decode(masks.loads(rle))
        with cat.transaction():
            cat.conn.execute("UPDATE proposals SET rle=? WHERE triplet_id=?",
                             (masks.dumps(masks.encode(np.roll(m, 5, axis=0))), tid))
    files_before = {p.name for p in (ws.reports / "thumbs").rglob("*.jpg")}
    changed = write_report(ws, ReportOptions(progress=False))
    assert changed.thumbs.rendered == 1 and changed.thumbs.reused == n - 1
    assert changed.thumbs.removed == 1                                   # the old thumbnail is gone
    files_after = {p.name for p in (ws.reports / "thumbs").rglob("*.jpg")}
    assert len(files_after) == len(files_before) == n and len(files_after - files_before) == 1
    (ws.reports / "thumbs" / sorted(files_after)[0][:2] / sorted(files_after)[0]).unlink()
    healed = write_report(ws, ReportOptions(progress=False))            # a deleted file is rendered again
    assert healed.thumbs.rendered == 1 and healed.thumbs.removed == 0


def test_empty_stages_leave_galleries_with_a_reason(make_workspace) -> None:
    from tests.qa.conftest import demo_pipeline
    from risbench_builder.stages.ingest import run_ingest

    ws = make_workspace(demo_pipeline(scenes=1), "fresh")
    run_ingest(ws, ws.load(), progress=False)
    result = write_report(ws, ReportOptions(progress=False))
    galleries = {g["slug"]: g for g in meta_of(result.index)["galleries"]}
    assert set(FIXED) <= galleries.keys() and galleries["all"]["count"] > 0
    assert "sam-refine stage has not run" in galleries["review"]["note"]
    assert "has not run" in galleries["contradictions"]["note"]
    assert "No statistics figures yet" in result.index.read_text()


def test_cli_show_and_report(workspace, tmp_path) -> None:
    ws, ids = workspace
    runner = CliRunner()
    out = tmp_path / "one.png"
    res = runner.invoke(app, ["show", "--workspace", str(ws.path), ids["reviewed"][0][:10], "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert Image.open(out).size[0] >= 512
    res = runner.invoke(app, ["show", "--workspace", str(ws.path), "nope"])
    assert res.exit_code == 1 and "no triplet 'nope'" in res.output
    res = runner.invoke(app, ["report", "--workspace", str(ws.path), "--no-progress", "--page-size", "10"])
    assert res.exit_code == 0, res.output
    assert "index.html" in res.output and meta_of(ws.reports / "index.html")["page_size"] == 10


def test_process_pool_renders_the_same_thumbnails(workspace, tmp_path, monkeypatch) -> None:
    from risbench_builder.qa import thumbs
    from risbench_builder.qa.records import load_records

    ws, _ = workspace
    with Catalog(ws.catalog_path) as cat:
        records = list(load_records(cat).values())
    inline, plans = thumbs.ensure_thumbs(tmp_path / "inline", records, workers=1, progress=False)
    monkeypatch.setattr(thumbs, "_INLINE_BELOW", 0)
    pooled, pooled_plans = thumbs.ensure_thumbs(tmp_path / "pool", records, workers=2, progress=False)
    assert inline.rendered == pooled.rendered == len(records)
    assert {k: (p.key, p.layers) for k, p in plans.items()} == {k: (p.key, p.layers) for k, p in pooled_plans.items()}
    for p in plans.values():
        assert (tmp_path / "inline" / p.thumb).read_bytes() == (tmp_path / "pool" / p.thumb).read_bytes()
