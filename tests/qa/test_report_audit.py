"""The report's audit galleries: one per defect kind `risbench audit` flagged, holding every triplet
of that kind, each one's detail in the detail view, a summary table linking them; and without a
readable audit.json, the report exactly as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.qa.report import ReportOptions, write_report
from risbench_builder.stages.audit import run_audit
from tests.qa.test_report import js_payload, meta_of

OPTS = ReportOptions(progress=False, detail_chunk=7)


def misplace_a_mask(ws) -> str:
    """Replace one proposal mask with a block in the image corner farthest from its box (the audit
    must flag it mask_outside_box); returns its triplet id."""
    with Catalog(ws.catalog_path) as cat:
        tid, rle, box, w, h = cat.conn.execute(
            "SELECT p.triplet_id, p.rle, t.box_xyxy, i.width, i.height FROM proposals p JOIN triplets t USING "
            "(triplet_id) JOIN images i USING (image_id) ORDER BY p.triplet_id LIMIT 1").fetchone()
        x0, y0, x1, y1 = json.loads(box)
        m = np.zeros_like(masks.decode(masks.loads(rle)), dtype=np.uint8)
        xs = slice(w - 12, w - 2) if (x0 + x1) / 2 < w / 2 else slice(2, 12)
        ys = slice(h - 12, h - 2) if (y0 + y1) / 2 < h / 2 else slice(2, 12)
        m[ys, xs] = 1
        with cat.transaction():
            cat.conn.execute("UPDATE proposals SET rle=? WHERE triplet_id=?", (masks.dumps(masks.encode(m)), tid))
    return tid


def data_files(reports: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((reports / "data").glob("*.js"))}


def details(reports: Path) -> dict[str, dict]:
    return {d["id"]: d for p in sorted((reports / "data").glob("detail-*.js")) for d in js_payload(p)[1]}


def audit_section(index: Path) -> str | None:
    found = re.search(r"<section class='card-table audit'>.*?</section>", index.read_text(encoding="utf-8"), re.S)
    return found.group(0) if found else None


def test_audit_galleries_hold_every_flagged_triplet_and_vanish_without_audit_json(workspace) -> None:
    ws, _ = workspace
    out = ws.reports
    moved = misplace_a_mask(ws)
    plain = write_report(ws, OPTS)                                   # before any audit
    plain_meta, plain_data = meta_of(plain.index), data_files(out)
    assert audit_section(plain.index) is None
    assert not [g for g in plain_meta["galleries"] if g["slug"].startswith("audit-")]

    run_audit(ws, ws.load(), fresh=False, progress=False)
    audit = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    by_kind: dict[str, set[str]] = {}
    for entry in audit["flagged"]:
        for reason in entry["reasons"]:
            by_kind.setdefault(reason["kind"], set()).add(entry["triplet_id"])
    assert moved in by_kind["mask_outside_box"]

    index = write_report(ws, OPTS).index
    galleries = {g["slug"]: g for g in meta_of(index)["galleries"]}
    ids = js_payload(out / "data" / "items.js")[0]["id"]
    shown = {g["title"].removeprefix("Audit: "): g for g in galleries.values() if g["slug"].startswith("audit-")}
    assert shown.keys() == by_kind.keys()                            # a gallery per kind with flagged triplets
    for kind, g in shown.items():                                    # all of them, its meaning as the note
        items = js_payload(out / g["file"])[1]["items"]
        assert {ids[i] for i in items} == by_kind[kind] and g["count"] == len(by_kind[kind])
        assert g["note"] == audit["defect_kinds"][kind]
    flagged_detail = details(out)
    assert ["mask_outside_box", next(r["detail"] for e in audit["flagged"] if e["triplet_id"] == moved
                                     for r in e["reasons"] if r["kind"] == "mask_outside_box")
            ] in flagged_detail[moved]["audit"]
    assert {t for t, d in flagged_detail.items() if "audit" in d} == {e["triplet_id"] for e in audit["flagged"]}
    table = audit_section(index)                                     # every kind, flagged ones linked
    assert table is not None and all(f">{kind}<" in table for kind in audit["defect_kinds"])
    assert set(re.findall(r"href='#g=(audit-[^']+)'", table)) == {g["slug"] for g in shown.values()}
    assert "href='audit.json'" in index.read_text(encoding="utf-8")

    audit["flagged"].append({"triplet_id": "gone", "reasons": [{"kind": "made_up", "detail": "x"}]})
    (out / "audit.json").write_text(json.dumps(audit), encoding="utf-8")
    stale = {g["slug"]: g for g in meta_of(write_report(ws, OPTS).index)["galleries"]}["audit-made-up"]
    assert stale["count"] == 0 and "no longer in the catalog" in stale["note"]

    for broken in ("{not json", None):                               # unreadable, then absent: as before
        if broken is None:
            (out / "audit.json").unlink()
        else:
            (out / "audit.json").write_text(broken, encoding="utf-8")
        again = write_report(ws, OPTS)
        assert audit_section(again.index) is None and "audit.json" not in again.index.read_text(encoding="utf-8")
        assert meta_of(again.index)["galleries"] == plain_meta["galleries"]
        assert data_files(out) == plain_data
