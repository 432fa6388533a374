"""SQLite storage: one file in WAL mode; one writer thread, one reader thread.

Each ingested batch is one transaction committed with `synchronous=FULL` (by default)
before the collector answers, so an acknowledged record survives a crash or power loss.
Row ids only grow (AUTOINCREMENT), which the query snapshots rely on. Queries run on
their own thread and connection (WAL lets them read beside the writer) and are cut off
after `query_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, TypeVar

from .query import Query, q
from .records import KINDS, Kind
from .store import Alarm, AnalyticsStore, QueryTimeout, Retention, Rows, Status, StoreError

T = TypeVar("T")


def _table_sql(kind: Kind) -> str:
    cols = ", ".join(f"{q(c.name)} {c.sql_type} NOT NULL" for c in kind.columns)
    t = kind.table
    return (
        f"CREATE TABLE IF NOT EXISTS {q(t)} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        f'"source" TEXT NOT NULL, {cols});\n'
        f'CREATE UNIQUE INDEX IF NOT EXISTS {q(t + "_id")} ON {q(t)}("source", "id");\n'
        f"CREATE INDEX IF NOT EXISTS {q(t + '_time')} ON {q(t)}({q(kind.time)});\n"
    )


SCHEMA = (
    "".join(_table_sql(k) for k in KINDS.values())
    + """
CREATE TABLE IF NOT EXISTS status_current (
    source TEXT NOT NULL, service TEXT NOT NULL, ts REAL NOT NULL, state TEXT NOT NULL,
    interval REAL NOT NULL, connections TEXT NOT NULL, datapath TEXT NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (source, service));
CREATE TABLE IF NOT EXISTS alarms (
    key TEXT PRIMARY KEY, type TEXT NOT NULL, source TEXT NOT NULL, service TEXT NOT NULL,
    since REAL NOT NULL, reason TEXT NOT NULL);
-- Rows per table, kept with every insert and delete: COUNT(*) of millions of rows on
-- every retention pass would hold up the writer.
CREATE TABLE IF NOT EXISTS row_counts (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""
)

# status rows are (id, ts, service, state, interval, connections, datapath, detail)
UPSERT_STATUS = """
INSERT INTO status_current (source, ts, service, state, interval, connections, datapath, detail)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, service) DO UPDATE SET ts=excluded.ts, state=excluded.state,
    interval=excluded.interval, connections=excluded.connections,
    datapath=excluded.datapath, detail=excluded.detail
WHERE excluded.ts >= status_current.ts
"""


def insert_sql(kind: Kind) -> str:
    names = ", ".join(q(c.name) for c in kind.columns)
    marks = ", ".join("?" for _ in kind.columns)
    return f'INSERT OR IGNORE INTO {q(kind.table)} ("source", {names}) VALUES (?, {marks})'


class SQLiteStore(AnalyticsStore):
    def __init__(self, path: str, synchronous: str = "FULL", query_timeout: float = 10.0) -> None:
        self.path = path
        self.synchronous = synchronous
        self.query_timeout = query_timeout
        self._w: sqlite3.Connection | None = None  # writer thread only
        self._r: sqlite3.Connection | None = None  # reader thread only
        self._wpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-w")
        self._rpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-r")
        self._insert = {k.table: insert_sql(k) for k in KINDS.values()}
        self._lock: IO[str] | None = None

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._wpool, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._rpool, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _open(self) -> None:
        w = self._connect()
        w.execute("PRAGMA journal_mode=WAL")
        w.execute(f"PRAGMA synchronous={self.synchronous}")
        w.executescript(SCHEMA)
        for kind in KINDS.values():
            w.execute(
                f"INSERT OR IGNORE INTO row_counts SELECT ?, COUNT(*) FROM {q(kind.table)}",
                (kind.table,),
            )
        self._w = w
        r = self._connect()
        r.execute("PRAGMA query_only=ON")
        self._r = r

    async def start(self) -> None:
        # One collector per file: a second one would race on retention and alarms.
        try:
            self._lock = open(self.path + ".lock", "a")  # noqa: SIM115 - held until close()
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise StoreError(f"{self.path} is in use by another vrstack-collector") from None
        await self._write(self._open)

    async def close(self) -> None:
        if self._r is not None:
            await self._read(self._r.close)
            self._r = None
        if self._w is not None:
            await self._write(self._w.close)
            self._w = None
        self._wpool.shutdown(wait=True)
        self._rpool.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def w(self) -> sqlite3.Connection:
        assert self._w is not None, "store not started"
        return self._w

    @property
    def r(self) -> sqlite3.Connection:
        assert self._r is not None, "store not started"
        return self._r

    # ---- writes (writer thread) -----------------------------------------------------

    async def commit(self, source: str, rows: Rows) -> tuple[int, int]:
        return await self._write(self._commit, source, rows)

    def _commit(self, source: str, rows: Rows) -> tuple[int, int]:
        db = self.w
        total = inserted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, trows in rows.items():
                before = db.total_changes
                db.executemany(self._insert[table], [(source, *r) for r in trows])
                added = db.total_changes - before
                db.execute("UPDATE row_counts SET n = n + ? WHERE tbl = ?", (added, table))
                inserted += added
                total += len(trows)
                if table == "status":
                    db.executemany(UPSERT_STATUS, [(source, *r[1:]) for r in trows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return inserted, total - inserted

    async def prune(self, policy: dict[str, Retention], now: float, batch: int) -> dict[str, int]:
        return await self._write(self._prune, policy, now, batch)

    def _prune(self, policy: dict[str, Retention], now: float, batch: int) -> dict[str, int]:
        db = self.w
        out: dict[str, int] = {}
        for table, keep in policy.items():
            kind = next(k for k in KINDS.values() if k.table == table)
            left = batch
            db.execute("BEGIN IMMEDIATE")
            try:
                if keep.max_age > 0:
                    cur = db.execute(
                        f"DELETE FROM {q(table)} WHERE seq IN (SELECT seq FROM {q(table)} "
                        f"WHERE {q(kind.time)} < ? LIMIT ?)",
                        (now - keep.max_age, left),
                    )
                    left -= cur.rowcount
                if keep.max_rows > 0 and left > 0:
                    count = db.execute(
                        "SELECT n FROM row_counts WHERE tbl = ?", (table,)
                    ).fetchone()[0] - (batch - left)
                    excess = min(count - keep.max_rows, left)
                    if excess > 0:
                        cur = db.execute(
                            f"DELETE FROM {q(table)} WHERE seq IN (SELECT seq FROM {q(table)} "
                            "ORDER BY seq LIMIT ?)",
                            (excess,),
                        )
                        left -= cur.rowcount
                db.execute("UPDATE row_counts SET n = n - ? WHERE tbl = ?", (batch - left, table))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            out[table] = batch - left
        return out

    async def forget(self, source: str, service: str) -> bool:
        return await self._write(self._forget, source, service)

    def _forget(self, source: str, service: str) -> bool:
        db = self.w
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute(
                "DELETE FROM status_current WHERE source=? AND service=?", (source, service)
            ).rowcount
            db.execute("DELETE FROM alarms WHERE source=? AND service=?", (source, service))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n > 0

    async def save_alarms(self, raised: list[Alarm], cleared: list[Alarm]) -> None:
        await self._write(self._save_alarms, raised, cleared)

    def _save_alarms(self, raised: list[Alarm], cleared: list[Alarm]) -> None:
        db = self.w
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM alarms WHERE key=?", [(a.key,) for a in cleared])
            db.executemany(
                "INSERT OR REPLACE INTO alarms VALUES (?, ?, ?, ?, ?, ?)",
                [(a.key, a.type, a.source, a.service, a.since, a.reason) for a in raised],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---- reads (reader thread) ------------------------------------------------------

    async def select(self, query: Query) -> dict[str, Any]:
        return await self._read(self._select, query)

    def _select(self, query: Query) -> dict[str, Any]:
        db = self.r
        deadline = time.monotonic() + self.query_timeout
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        db.execute("BEGIN")  # one snapshot for the row-id bound and the page
        try:
            snapshot = query.snapshot
            if snapshot is None:
                snapshot = db.execute(
                    f"SELECT COALESCE(MAX(seq), 0) FROM {q(query.kind.table)}"
                ).fetchone()[0]
            by_time = False
            if query.since is not None:
                total = db.execute(
                    "SELECT n FROM row_counts WHERE tbl = ?", (query.kind.table,)
                ).fetchone()[0]
                newer = db.execute(*query.since_count_sql()).fetchone()[0]
                by_time = newer * 8 < total  # under an eighth: the index beats a scan
            sql, params = query.sql(snapshot, by_time)
            rows = db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise QueryTimeout(
                    f"the query ran longer than {self.query_timeout:g} s; "
                    "narrow the time range or add where clauses"
                ) from None
            raise
        finally:
            if db.in_transaction:
                db.execute("COMMIT")
            db.set_progress_handler(None, 0)
        return query.page(rows, snapshot)

    async def statuses(self) -> list[Status]:
        return await self._read(self._statuses)

    def _statuses(self) -> list[Status]:
        rows = self.r.execute(
            "SELECT source, service, ts, state, interval, connections, datapath, detail "
            "FROM status_current ORDER BY source, service"
        ).fetchall()
        return [Status(s, v, t, st, i, json.loads(c), d, x) for s, v, t, st, i, c, d, x in rows]

    async def alarms(self) -> list[Alarm]:
        return await self._read(self._alarms)

    def _alarms(self) -> list[Alarm]:
        rows = self.r.execute(
            "SELECT type, source, service, since, reason FROM alarms ORDER BY since"
        ).fetchall()
        return [Alarm(*row) for row in rows]

    async def counts(self) -> dict[str, int]:
        return await self._read(self._counts)

    def _counts(self) -> dict[str, int]:
        return dict(self.r.execute("SELECT tbl, n FROM row_counts").fetchall())
