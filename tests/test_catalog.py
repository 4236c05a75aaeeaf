"""The SQLite catalog: schema, WAL, migrations, batched transactions, stable ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from risbench_builder import catalog as catalog_module
from risbench_builder.catalog import SCHEMA_VERSION, Catalog, CatalogError, stable_id

TABLES = {"images", "triplets", "proposals", "reviews", "consensus", "final", "rejects", "runs"}


def test_schema_tables_and_wal(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        names = {r[0] for r in cat.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert TABLES <= names
        assert cat.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cat.schema_version == SCHEMA_VERSION


def test_stable_id_is_deterministic_and_discriminating() -> None:
    a = stable_id("vrsbench", "P0003_0002.png", "obj0", "The ship.")
    assert a == stable_id("vrsbench", "P0003_0002.png", "obj0", "The ship.")
    assert a != stable_id("vrsbench", "P0003_0002.png", "obj1", "The ship.")
    assert stable_id("ab", "c") != stable_id("a", "bc")  # separator matters
    assert len(a) == 16


def _image(i: int) -> tuple:
    return (f"img{i}", f"/data/{i}.png", "s", "scene", 512, 512, None, None)


def test_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    cols = ("image_id", "path", "source", "scene_id", "width", "height", "gsd", "sha256")
    with Catalog(tmp_path / "c.sqlite") as cat:
        with pytest.raises(RuntimeError):
            with cat.transaction():
                cat.insert("images", cols, [_image(1), _image(2)])
                raise RuntimeError("killed mid-batch")
        assert cat.count("images") == 0
        with cat.transaction():
            assert cat.insert("images", cols, [_image(1), _image(2)]) == 2
            assert cat.insert("images", cols, [_image(1)]) == 0  # INSERT OR IGNORE: idempotent
        assert cat.count("images") == 2


def test_fingerprint_ignores_run_bookkeeping(tmp_path: Path) -> None:
    prints = []
    for name in ("a", "b"):
        with Catalog(tmp_path / f"{name}.sqlite") as cat:
            run = cat.start_run("ingest", "cfg")
            with cat.transaction():
                cat.add_rejects("ingest", [("ref1", "missing_image", "x")], run)
            cat.finish_run(run, {"n": 1})
            prints.append(cat.fingerprint())
    assert prints[0] == prints[1]
    with Catalog(tmp_path / "a.sqlite") as cat:
        with cat.transaction():
            cat.add_rejects("ingest", [("ref2", "duplicate", "y")], None)
        assert cat.fingerprint() != prints[0]
        assert cat.reject_counts() == {"ingest": {"duplicate": 1, "missing_image": 1}}
        runs = cat.last_runs()
        assert runs[0]["stage"] == "ingest" and runs[0]["counts"] == {"n": 1} and runs[0]["finished"]


def test_migration_hook_runs_and_newer_schema_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.sqlite"
    Catalog(path).close()
    seen = []
    monkeypatch.setattr(catalog_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(catalog_module.MIGRATIONS, SCHEMA_VERSION + 1,
                        lambda conn: (seen.append(1), conn.execute("ALTER TABLE images ADD COLUMN note TEXT")))
    with Catalog(path) as cat:
        assert cat.schema_version == SCHEMA_VERSION + 1 and seen == [1]
        assert "note" in {r[1] for r in cat.conn.execute("PRAGMA table_info(images)")}
    monkeypatch.undo()
    with pytest.raises(CatalogError, match="newer than this risbench"):
        Catalog(path)


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=f"risbench build -w {tmp_path} --stage ingest"):
        Catalog(tmp_path / "nope.sqlite", create=False)


def test_two_connections_share_the_wal(tmp_path: Path) -> None:
    """What WAL gives the ranks of one node: a writer commits while a reader holds a snapshot
    (in rollback-journal mode that commit would wait for the reader), and the reader sees the
    new rows once it starts a new read."""
    path = tmp_path / "c.sqlite"
    cols = ("image_id", "path", "source", "scene_id", "width", "height", "gsd", "sha256")
    with Catalog(path) as writer, Catalog(path) as reader:
        with writer.transaction():
            writer.insert("images", cols, [_image(1)])
        reader.conn.execute("PRAGMA busy_timeout=200")            # fail fast instead of waiting 60 s
        reader.conn.execute("BEGIN")
        assert reader.count("images") == 1                        # the reader's snapshot is open
        writer.conn.execute("PRAGMA busy_timeout=200")
        with writer.transaction():
            writer.insert("images", cols, [_image(2)])            # commits despite the open read
        assert reader.count("images") == 1                        # the snapshot does not move
        reader.conn.execute("COMMIT")
        assert reader.count("images") == 2
        assert Path(f"{path}-wal").exists()

def test_merge_carries_proposal_rounds_and_later_decisions(tmp_path: Path) -> None:
    """A shard's proposals keep their round; a proposal the shard re-decided in a later round
    (sam-refine --round N) takes that route; an earlier round never overwrites a later one."""
    def proposal(tid: str, route: str) -> tuple:
        return (tid, "sam:tiny", "ab" * 32, '{"size":[1,1],"counts":"1"}', "{}", route, None)

    with Catalog(tmp_path / "main.sqlite") as main, Catalog(tmp_path / "shard.sqlite") as shard:
        for cat in (main, shard):
            with cat.transaction():
                cat.add("images", [_image(0)])
                cat.add("triplets", [(t, "img0", "s", t, "ship", "a ship", "[0, 0, 1, 1]", None, "{}", None)
                                     for t in "abcd"])
        with main.transaction():
            main.add("proposals", [proposal("a", "review"), proposal("b", "review"), proposal("c", "accept")])
            main.conn.execute("UPDATE proposals SET round=3 WHERE triplet_id='b'")
        with shard.transaction():
            shard.add("proposals", [proposal("a", "accept"), proposal("b", "accept"), proposal("c", "review"),
                                    proposal("d", "review")])
            shard.conn.execute("UPDATE proposals SET round=2 WHERE triplet_id IN ('a', 'b', 'd')")
    with Catalog(tmp_path / "main.sqlite") as main:
        added = main.merge_from(tmp_path / "shard.sqlite")
        got = {r[0]: r[1:] for r in main.conn.execute("SELECT triplet_id, route, round FROM proposals")}
    assert added["proposals"] == 1
    assert got == {"a": ("accept", 2),          # re-decided in round 2 by the shard
                   "b": ("review", 3),          # main's round 3 is later than the shard's 2
                   "c": ("accept", None),       # same round (1): main's row is kept
                   "d": ("review", 2)}          # new, with its round


def test_merge_takes_what_a_shard_run_wrote_and_refuses_what_is_not_a_shard(tmp_path: Path) -> None:
    """A shard starts as a copy of the workspace catalog: what the workspace changed since (here a
    re-finalize that dropped a final row and a finalize reject) must not come back with it, and
    only sam-refine's rows are taken. Files that are not shards of this workspace are refused."""
    def proposal(tid: str) -> tuple:
        return (tid, "box", "", '{"size":[1,1],"counts":"1"}', "{}", "review", None)

    def triplet(tid: str) -> tuple:
        return (tid, "img0", "s", tid, "ship", "a ship", "[0, 0, 1, 1]", None, "{}", None)

    with Catalog(tmp_path / "main.sqlite") as main:
        with main.transaction():
            main.add("images", [_image(0)])
            main.add("triplets", [triplet("a"), triplet("b")])
            main.conn.execute("INSERT INTO final VALUES ('a', 'train', 'auto')")
            main.add_rejects("finalize", [("b", "too_few_words", "")], None)
        main.copy_to(tmp_path / "shard.sqlite")
        with main.transaction():                                         # re-finalized since the copy
            main.conn.execute("DELETE FROM final")
            main.conn.execute("DELETE FROM rejects")
    with Catalog(tmp_path / "shard.sqlite") as shard:
        run = shard.start_run("sam-refine")
        with shard.transaction():
            shard.add("triplets", [triplet("z")])                        # not in the workspace (any more)
            shard.add("proposals", [proposal("a"), proposal("z")])
            shard.add_rejects("sam-refine", [("b", "unreadable_image", "")], run)
        shard.finish_run(run, {})
    with Catalog(tmp_path / "main.sqlite") as main:
        added = main.merge_from(tmp_path / "shard.sqlite")
        assert added == {"runs": 1, "proposals": 1, "rejects": 1, "skipped": 1}
        assert not main.count("final") and main.reject_counts() == {"sam-refine": {"unreadable_image": 1}}

        (tmp_path / "junk.sqlite").write_text("not a database")
        with pytest.raises(CatalogError, match="junk.sqlite is not a risbench catalog"):
            main.merge_from(tmp_path / "junk.sqlite")
        with Catalog(tmp_path / "other.sqlite") as other, other.transaction():   # another workspace's
            other.add("images", [_image(1)])
            other.add("triplets", [(t, "img1", "s", t, "ship", "a ship", "[0, 0, 1, 1]", None, "{}", None)
                                   for t in "xy"])
        with pytest.raises(CatalogError, match="holds none of this workspace's triplets"):
            main.merge_from(tmp_path / "other.sqlite")
        with Catalog(tmp_path / "shard.sqlite") as shard, shard.transaction():
            shard.conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
        with pytest.raises(CatalogError, match=f"schema v1, this one v{SCHEMA_VERSION}: run one risbench version"):
            main.merge_from(tmp_path / "shard.sqlite")
        assert main.count("proposals") == 1                              # nothing of the refused files


def test_a_catalog_on_a_read_only_mount_can_still_be_read(tmp_path: Path) -> None:
    """A WAL catalog where this user cannot write cannot be opened the usual way ("unable to open
    database file"): ``for_reading`` reads it as an immutable snapshot, so `risbench status` works
    for someone with read access only. A read-only bind mount needs root; skipped elsewhere."""
    import os
    import sqlite3
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    ws = tmp_path / "ws"
    with Catalog(ws / "catalog.sqlite") as cat, cat.transaction():
        cat.add_rejects("ingest", [("a", "malformed_record", "")], None)
    view = tmp_path / "view"
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(ws), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
        with pytest.raises(sqlite3.OperationalError, match="unable to open"):
            Catalog(view / "catalog.sqlite", create=False)
        with Catalog.for_reading(view / "catalog.sqlite") as cat:
            assert cat.count("rejects") == 1 and cat.schema_version == SCHEMA_VERSION
        with Catalog.for_reading(ws / "catalog.sqlite") as cat:      # writable: the usual connection
            assert cat.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)
