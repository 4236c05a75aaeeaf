"""The SQLite catalog every stage reads from and writes to.

One file per workspace, WAL mode so several ranks of one node can write it, a busy timeout so
they wait rather than fail, and writes in batched transactions so a killed stage leaves either
a whole batch or none of it. Rows are keyed by stable ids and written with ``INSERT OR
IGNORE``, which is what makes rerunning a stage idempotent and resuming a killed one exact.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import __version__

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT PRIMARY KEY, path TEXT NOT NULL, source TEXT NOT NULL, scene_id TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, gsd REAL, sha256 TEXT);
CREATE INDEX IF NOT EXISTS images_scene ON images(scene_id);
CREATE TABLE IF NOT EXISTS triplets (
    triplet_id TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(image_id),
    source TEXT NOT NULL, source_ref TEXT NOT NULL, category TEXT NOT NULL, expression TEXT,
    box_xyxy TEXT NOT NULL, polygon TEXT, attributes_json TEXT NOT NULL DEFAULT '{}',
    origin_split TEXT);
CREATE INDEX IF NOT EXISTS triplets_image ON triplets(image_id);
CREATE INDEX IF NOT EXISTS triplets_source_ref ON triplets(source_ref);
CREATE TABLE IF NOT EXISTS proposals (
    triplet_id TEXT NOT NULL REFERENCES triplets(triplet_id), segmenter TEXT NOT NULL,
    model_sha256 TEXT NOT NULL DEFAULT '', rle TEXT NOT NULL, scores_json TEXT NOT NULL DEFAULT '{}',
    route TEXT NOT NULL, run_id TEXT, round INTEGER, PRIMARY KEY (triplet_id, segmenter, model_sha256));
CREATE TABLE IF NOT EXISTS reviews (
    triplet_id TEXT NOT NULL REFERENCES triplets(triplet_id), task_id TEXT NOT NULL,
    annotator TEXT NOT NULL, rle TEXT, verdict TEXT NOT NULL, corrected_expression TEXT,
    run_id TEXT, PRIMARY KEY (task_id, annotator));
CREATE TABLE IF NOT EXISTS consensus (
    triplet_id TEXT PRIMARY KEY REFERENCES triplets(triplet_id), rle TEXT, agreement REAL,
    decision TEXT NOT NULL, run_id TEXT);
CREATE TABLE IF NOT EXISTS final (
    triplet_id TEXT PRIMARY KEY REFERENCES triplets(triplet_id), split TEXT NOT NULL,
    mask_origin TEXT NOT NULL CHECK (mask_origin IN ('auto', 'consensus', 'adjudicated')));
CREATE TABLE IF NOT EXISTS rejects (
    stage TEXT NOT NULL, ref TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
    run_id TEXT, PRIMARY KEY (stage, ref, reason));
CREATE TABLE IF NOT EXISTS samples (
    triplet_id TEXT PRIMARY KEY REFERENCES triplets(triplet_id), round INTEGER NOT NULL, stratum TEXT NOT NULL,
    run_id TEXT);
CREATE TABLE IF NOT EXISTS scene_splits (
    scene_id TEXT PRIMARY KEY, split TEXT NOT NULL, config_sha256 TEXT NOT NULL, run_id TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, stage TEXT NOT NULL, config_sha256 TEXT, code_version TEXT,
    started TEXT NOT NULL, finished TEXT, counts_json TEXT);
"""

# version -> function that upgrades a catalog from (version - 1) to version.
def _v2(conn: sqlite3.Connection) -> None:
    """v2: ``samples`` (audit samples of auto-accepted masks; made by CREATE IF NOT EXISTS) and
    ``proposals.round`` (the data-engine round that decided a proposal's route; NULL is round 1)."""
    if "round" not in {row[1] for row in conn.execute("PRAGMA table_info(proposals)")}:
        conn.execute("ALTER TABLE proposals ADD COLUMN round INTEGER")


def _v3(conn: sqlite3.Connection) -> None:
    """v3: ``scene_splits`` (the split each scene keeps from one finalize to the next; made by
    CREATE IF NOT EXISTS; the first finalize fills it from ``final``)."""


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _v2, 3: _v3}

# Tables whose content defines the dataset; run bookkeeping (run_id, runs) is excluded from
# fingerprints so a resumed build compares equal to a clean one.
DATA_TABLES: dict[str, tuple[str, ...]] = {
    "images": ("image_id", "path", "source", "scene_id", "width", "height", "gsd", "sha256"),
    "triplets": ("triplet_id", "image_id", "source", "source_ref", "category", "expression",
                 "box_xyxy", "polygon", "attributes_json", "origin_split"),
    "proposals": ("triplet_id", "segmenter", "model_sha256", "rle", "scores_json", "route"),
    "reviews": ("triplet_id", "task_id", "annotator", "rle", "verdict", "corrected_expression"),
    "consensus": ("triplet_id", "rle", "agreement", "decision"),
    "final": ("triplet_id", "split", "mask_origin"),
    "rejects": ("stage", "ref", "reason", "detail"),
    "samples": ("triplet_id", "round", "stratum"),
    "scene_splits": ("scene_id", "split", "config_sha256"),
}


_RUN_COLUMNS = ("run_id", "stage", "config_sha256", "code_version", "started", "finished", "counts_json")
_TABLES_WITH_RUN_ID = {"proposals", "reviews", "consensus", "rejects", "samples", "scene_splits"}


def columns(table: str) -> tuple[str, ...]:
    """Every column of ``table`` in schema order: the row layout :meth:`Catalog.add` takes."""
    if table == "runs":
        return _RUN_COLUMNS
    return DATA_TABLES[table] + (("run_id",) if table in _TABLES_WITH_RUN_ID else ())


def stable_id(*parts: object) -> str:
    """A 16-hex id that depends only on ``parts`` (same files, same ids)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


class CatalogError(RuntimeError):
    pass


def _not_a_catalog(path: Path | str, exc: Exception) -> CatalogError:
    return CatalogError(f"{path} is not a risbench catalog ({exc}): give the shard catalogs under W/shards/")


class Catalog:
    """A workspace's ``catalog.sqlite``; use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path | str, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            workspace = self.path.parent
            raise CatalogError(f"no catalog at {self.path}: run `risbench build -w {workspace} --stage ingest` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=60000")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    @classmethod
    def for_reading(cls, path: Path | str) -> "Catalog":
        """Open to read only, also where this user cannot write (a workspace on a read-only mount or
        owned by someone else: a WAL catalog cannot even be opened there the usual way). There it
        is read as immutable, a snapshot: fine for ``status``, wrong for anything that writes."""
        try:
            return cls(path, create=False)
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
        catalog = cls.__new__(cls)
        catalog.path = Path(path)
        catalog.conn = sqlite3.connect(f"{catalog.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        if catalog.schema_version != SCHEMA_VERSION:
            version = catalog.schema_version
            catalog.close()
            raise CatalogError(f"{catalog.path} has schema v{version}, this risbench reads v{SCHEMA_VERSION}: "
                               "a build by its owner upgrades it")
        return catalog

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        with self.transaction():
            for statement in _SCHEMA.split(";"):  # CREATE ... IF NOT EXISTS: idempotent
                if statement.strip():
                    self.conn.execute(statement)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise CatalogError(f"{self.path} has schema v{version}, newer than this risbench "
                                   f"(v{SCHEMA_VERSION}): upgrade risbench-builder")
            for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target](self.conn)
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                              (str(SCHEMA_VERSION),))

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; all of it lands or none of it does."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------ runs
    def start_run(self, stage: str, config_sha256: str | None = None) -> str:
        run_id = f"{stage}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        with self.transaction():
            self.conn.execute("INSERT INTO runs(run_id, stage, config_sha256, code_version, started) "
                              "VALUES (?, ?, ?, ?, ?)", (run_id, stage, config_sha256, code_version(), _now()))
        return run_id

    def finish_run(self, run_id: str, counts: dict[str, Any]) -> None:
        with self.transaction():
            self.conn.execute("UPDATE runs SET finished=?, counts_json=? WHERE run_id=?",
                              (_now(), json.dumps(counts, sort_keys=True), run_id))

    def last_runs(self, n: int = 5) -> list[dict[str, Any]]:
        rows = self.conn.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY started DESC, rowid DESC "
                                 "LIMIT ?", (n,))
        keys = _RUN_COLUMNS[:-1] + ("counts",)
        return [dict(zip(keys, r[:-1] + (json.loads(r[-1]) if r[-1] else None,))) for r in rows]

    # ------------------------------------------------------------ writes
    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """``INSERT OR IGNORE`` many rows; returns how many were new. Call inside a transaction."""
        sql = (f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' for _ in columns)})")
        before = self.conn.total_changes
        self.conn.executemany(sql, rows)
        return self.conn.total_changes - before

    def add(self, table: str, rows: Iterable[Sequence[Any]]) -> int:
        """``INSERT OR IGNORE`` rows laid out as :func:`columns` of ``table``; returns how many were new."""
        return self.insert(table, columns(table), rows)

    def add_rejects(self, stage: str, rows: Iterable[tuple[str, str, str]], run_id: str | None) -> int:
        """Rows of (ref, reason, detail); the first run that saw a reject keeps it."""
        return self.add("rejects", ((stage, ref, reason, detail, run_id) for ref, reason, detail in rows))

    def clear_stage(self, stage: str, tables: Sequence[str]) -> None:
        """What ``--force`` does before recomputing a stage."""
        with self.transaction():
            for table in tables:
                self.conn.execute(f"DELETE FROM {table}")
            self.conn.execute("DELETE FROM rejects WHERE stage=?", (stage,))

    # ------------------------------------------------------------ reads
    def count(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table} {where}", params).fetchone()[0])

    def select_in(self, sql: str, ids: Iterable[str]) -> Iterator[tuple]:
        """Rows of ``sql`` with its ``{ids}`` placeholder filled by ``ids``, 500 at a time (far
        below SQLite's limit on bound parameters)."""
        ids = sorted(set(ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            yield from self.conn.execute(sql.format(ids=", ".join("?" * len(chunk))), chunk)

    def reject_counts(self, stage: str | None = None) -> dict[str, dict[str, int]]:
        sql = "SELECT stage, reason, COUNT(*) FROM rejects"
        params: tuple[Any, ...] = ()
        if stage:
            sql += " WHERE stage=?"
            params = (stage,)
        out: dict[str, dict[str, int]] = {}
        for st, reason, n in self.conn.execute(sql + " GROUP BY stage, reason ORDER BY stage, reason", params):
            out.setdefault(st, {})[reason] = n
        return out

    def summary(self) -> dict[str, Any]:
        """What ``risbench status`` shows: counts per stage, route and split, rejects, runs."""
        tables = ("images", "triplets", "proposals", "reviews", "consensus", "final", "rejects")
        group = lambda sql: {str(k): v for k, v in self.conn.execute(sql)}  # noqa: E731
        return {
            "catalog": str(self.path),
            "schema_version": self.schema_version,
            "counts": {t: self.count(t) for t in tables},
            "triplets_by_source": group("SELECT source, COUNT(*) FROM triplets GROUP BY source ORDER BY source"),
            "triplets_by_origin_split": group(
                "SELECT COALESCE(origin_split, '-'), COUNT(*) FROM triplets GROUP BY 1 ORDER BY 1"),
            "proposals_by_route": group("SELECT route, COUNT(*) FROM proposals GROUP BY route ORDER BY route"),
            "final_by_split": group("SELECT split, COUNT(*) FROM final GROUP BY split ORDER BY split"),
            "rejects": self.reject_counts(),
            "runs": self.last_runs(5),
        }

    def copy_to(self, path: Path | str) -> None:
        """A consistent copy of this catalog (SQLite online backup), e.g. one per node."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        dest = sqlite3.connect(path)
        try:
            self.conn.backup(dest)
        finally:
            dest.close()

    def merge_from(self, other: Path | str) -> dict[str, int]:
        """Join a shard catalog's sam-refine results (multi-node): its runs, proposals and
        sam-refine rejects. Returns the new rows per table, and ``skipped``: proposals of
        triplets this catalog does not hold.

        A shard starts as a copy of this catalog, so only what a sam-refine writes is taken: rows
        of the other tables that this catalog has changed or deleted since (a finalize, a reject
        dropped after a move) do not come back. Rows are keyed by stable ids, so one both hold is
        kept once. A proposal keeps its data-engine round (``round``), and one that the shard
        re-decided in a later round (``sam-refine --round N``) takes that round's route.
        """
        where = "EXISTS (SELECT 1 FROM main.triplets t WHERE t.triplet_id = o.{col})"
        try:
            self.conn.execute("ATTACH DATABASE ? AS other", (str(other),))
        except sqlite3.DatabaseError as exc:
            raise _not_a_catalog(other, exc) from None
        try:
            self._check_shard(other)
            added: dict[str, int] = {}
            with self.transaction():
                for table, sql in (
                    ("runs", "INSERT OR IGNORE INTO main.runs ({names}) SELECT {names} FROM other.runs o "
                             "WHERE o.stage = 'sam-refine'"),
                    ("proposals",
                     "INSERT INTO main.proposals ({names}) SELECT {names} FROM other.proposals o WHERE "
                     + where.format(col="triplet_id") + " ON CONFLICT (triplet_id, segmenter, model_sha256) DO "
                     "UPDATE SET route = excluded.route, round = excluded.round "
                     "WHERE COALESCE(excluded.round, 1) > COALESCE(proposals.round, 1)"),
                    ("rejects", "INSERT OR IGNORE INTO main.rejects ({names}) SELECT {names} FROM other.rejects o "
                                "WHERE o.stage = 'sam-refine' AND " + where.format(col="ref"))):
                    cols = columns(table) + (("round",) if table == "proposals" else ())
                    before = self.count(table)
                    self.conn.execute(sql.format(names=", ".join(cols)))
                    added[table] = self.count(table) - before
            added["skipped"] = int(self.conn.execute(
                "SELECT COUNT(*) FROM other.proposals o WHERE NOT " + where.format(col="triplet_id")).fetchone()[0])
        finally:
            self.conn.execute("DETACH DATABASE other")
        return added

    def _check_shard(self, other: Path | str) -> None:
        """``other`` (attached) is a catalog of this version that holds this workspace's triplets."""
        try:
            row = self.conn.execute("SELECT value FROM other.meta WHERE key='schema_version'").fetchone()
            theirs, shared = self.conn.execute(
                "SELECT COUNT(*), COUNT(t.triplet_id) FROM other.triplets o "
                "LEFT JOIN main.triplets t ON t.triplet_id = o.triplet_id").fetchone()
        except sqlite3.DatabaseError as exc:
            raise _not_a_catalog(other, exc) from None
        version = int(row[0]) if row else 0
        if version != self.schema_version:
            raise CatalogError(f"{other} has catalog schema v{version}, this one v{self.schema_version}: run one "
                               "risbench version on every node, then that shard again")
        if theirs and not shared:
            raise CatalogError(f"{other} holds none of this workspace's triplets: it is not a shard of "
                               f"{self.path} (`build --stage sam-refine --shard i/n --shard-catalog` makes them)")

    def fingerprint(self, tables: Sequence[str] | None = None) -> str:
        """sha256 of the dataset content, independent of row order and of run bookkeeping."""
        h = hashlib.sha256()
        for table in tables or DATA_TABLES:
            cols = DATA_TABLES[table]
            h.update(table.encode())
            for row in self.conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(cols)}"):
                h.update(json.dumps(row, default=str).encode())
        return h.hexdigest()
