"""The report in a real browser: headless Chromium (Debian's `chromium`) opens index.html from a
demo workspace and sorts, filters and opens a detail view. Skipped, saying why, without Chromium."""

from __future__ import annotations

import json
import shutil

import pytest

from risbench_builder.qa.browser import Browser, find_chromium
from risbench_builder.qa.report import ReportOptions, write_report

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed: run `apt-get install -y chromium` (make test does)")


def cards(b: Browser) -> list[dict]:
    return b.eval("[...document.querySelectorAll('#grid .thumb')].map(f => ({id: f.dataset.id, "
                  "cat: f.dataset.cat, value: f.dataset.value === undefined ? null : f.dataset.value}))")


VISIBLE = "[...document.querySelectorAll('#grid img')].filter(i => i.getBoundingClientRect().top < innerHeight)"


def settle(b: Browser, before: int) -> None:
    b.wait_for(f"RB.ready > {before}")
    b.wait_for(f"{VISIBLE}.every(i => i.complete)")


def choose(b: Browser, select: str, value: str) -> None:
    before = b.eval("RB.ready")
    b.eval(f"(() => {{ const s = document.getElementById({json.dumps(select)}); s.value = {json.dumps(value)}; "
           "s.dispatchEvent(new Event('change')); })()")
    settle(b, before)


def test_sort_filter_and_detail_in_headless_chromium(workspace, tmp_path) -> None:
    ws, ids = workspace
    write_report(ws, ReportOptions(progress=False, page_size=200))
    with Browser(CHROMIUM) as b:
        b.open((ws.reports / "index.html").as_uri() + "#g=all")
        b.wait_for("RB.ready > 0")
        assert b.eval("RB.errors") == []
        start = cards(b)
        assert len(start) == b.eval("RB.view.length") > 10
        b.eval("document.getElementById('galleries').scrollIntoView()")
        b.wait_for(f"{VISIBLE}.length > 0 && {VISIBLE}.every(i => i.complete)")
        assert b.eval(f"{VISIBLE}.every(i => i.naturalWidth === 128)")           # thumbnails load from disk

        choose(b, "sort", "area")                                    # sorting by a signal reorders
        by_area = cards(b)
        values = [float(c["value"]) for c in by_area]
        assert values == sorted(values) and [c["id"] for c in by_area] != [c["id"] for c in start]
        choose(b, "order", "desc")
        values = [float(c["value"]) for c in cards(b)]
        assert values == sorted(values, reverse=True)
        assert "sort=area" in b.eval("location.hash") and "order=desc" in b.eval("location.hash")

        category = by_area[0]["cat"]                                 # a category filter hides the others
        choose(b, "cat", category)
        kept = cards(b)
        assert kept and {c["cat"] for c in kept} == {category} and len(kept) < len(start)
        assert sum(c["cat"] == category for c in start) == len(kept)

        before = b.eval("RB.ready")                                  # the split filter, through the hash
        b.eval("location.hash = location.hash + '&split=zzz'")
        b.wait_for(f"RB.ready > {before}")
        assert cards(b) == []
        choose(b, "split", "")

        first = cards(b)[0]["id"]                                    # a detail view opens on click
        b.eval("document.querySelector('#grid .thumb').click()")
        b.wait_for("!document.getElementById('detail').hidden && RB.detailOpen")
        b.wait_for("[...document.querySelectorAll('#stage img')].every(i => i.complete)")
        assert b.eval("RB.detailOpen") == first and first in b.eval("document.getElementById('dtitle').textContent")
        assert b.eval("document.querySelector('#stage img.base').naturalWidth") > 0     # the full-size image
        assert b.eval("document.querySelectorAll('#stage img.layer').length") >= 1      # its mask overlay
        assert b.eval("document.querySelectorAll('#stage svg rect').length") == 1       # the prompt box
        fields = b.eval("document.getElementById('fields').innerText")
        assert "route" in fields and "area" in fields and "category" in fields
        shot = b.screenshot(tmp_path / "report-detail.png")
        b.eval("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
        assert b.eval("document.getElementById('detail').hidden")

        before = b.eval("RB.ready")                                  # a reviewed triplet: every layer
        b.eval(f"location.hash = 'g=low-agreement&detail={ids['reviewed'][0]}'")
        b.wait_for(f"RB.ready > {before} && RB.detailOpen === {json.dumps(ids['reviewed'][0])}")
        b.wait_for("[...document.querySelectorAll('#stage img')].every(i => i.complete)")
        layers = b.eval("[...document.querySelectorAll('#stage img.layer')].map(i => i.dataset.layer)")
        assert layers == ["proposal", "reviewer alice", "reviewer bob", "reviewer carol", "consensus"]
        b.screenshot(tmp_path / "report-reviewed.png")
        b.eval("document.getElementById('dclose').click()")
        b.eval("window.scrollTo(0, document.getElementById('galleries').offsetTop)")
        b.screenshot(tmp_path / "report-gallery.png")
        assert b.eval("RB.errors") == []
    assert shot.stat().st_size > 10_000
    keep = ws.path.parent.parent / "screenshots"                     # kept beside the test's tmp dirs
    keep.mkdir(exist_ok=True)
    for name in ("report-detail.png", "report-reviewed.png", "report-gallery.png"):
        shutil.copy(tmp_path / name, keep / name)
