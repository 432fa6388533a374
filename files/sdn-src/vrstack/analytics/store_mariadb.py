"""MariaDB storage: one database shared by several collectors (several analytics nodes).

The same tables as `store_sqlite` (InnoDB, binary no-pad collation so text compares and
sorts as in SQLite) and the same SQL: `query.Query` builds it, `dialect()` adapts it.
PyMySQL is an optional extra (`vrstack[mariadb]`); this module is only imported when the
config selects it. One writer thread and one reader thread, each with its own
connection, as in SQLite.

Several collectors write at once, so two things SQLite got from its single writer are
made explicit: each batch first locks the `row_counts` rows of its tables, so batches
into one table commit in the order of their row ids (query snapshots rely on it), and
retention runs only in the collector holding a named server lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import pymysql

from .query import Query, q
from .records import KINDS, Column, Kind
from .store import Alarm, AnalyticsStore, QueryTimeout, Retention, Rows, Status, StoreError

T = TypeVar("T")

COLLATE = "CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
# ANSI_QUOTES: identifiers in double quotes, as query.py writes them.
SQL_MODE = "ANSI_QUOTES,STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO"
TIMED_OUT = 1969  # ER_STATEMENT_TIMEOUT (max_statement_time)


def _sql_type(col: Column) -> str:
    if col.type == "addr":
        return "VARBINARY(16)"
    if col.type in ("time", "num"):
        return "DOUBLE"
    if col.type == "int":
        return "BIGINT"
    if col.type == "conns":
        return f"MEDIUMTEXT {COLLATE}"
    return f"VARCHAR({col.max_len}) {COLLATE}"


def _table_sql(kind: Kind) -> list[str]:
    cols = ", ".join(f"{q(c.name)} {_sql_type(c)} NOT NULL" for c in kind.columns)
    t = kind.table
    return [
        f"CREATE TABLE IF NOT EXISTS {q(t)} (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        f'"source" VARCHAR(128) {COLLATE} NOT NULL, {cols}, '
        f'UNIQUE KEY {q(t + "_id")} ("source", "id"), KEY {q(t + "_time")} ({q(kind.time)})'
        ") ENGINE=InnoDB",
    ]


SCHEMA = [
    *(s for k in KINDS.values() for s in _table_sql(k)),
    f"""CREATE TABLE IF NOT EXISTS status_current (
    source VARCHAR(128) {COLLATE} NOT NULL, service VARCHAR(64) {COLLATE} NOT NULL,
    ts DOUBLE NOT NULL, state VARCHAR(32) {COLLATE} NOT NULL, "interval" DOUBLE NOT NULL,
    connections MEDIUMTEXT {COLLATE} NOT NULL, datapath VARCHAR(32) {COLLATE} NOT NULL,
    detail VARCHAR(1024) {COLLATE} NOT NULL, seen DOUBLE NOT NULL DEFAULT 0,
    PRIMARY KEY (source, service)) ENGINE=InnoDB""",
    # Tables made before status_current kept when each status arrived.
    "ALTER TABLE status_current ADD COLUMN IF NOT EXISTS seen DOUBLE NOT NULL DEFAULT 0",
    f"""CREATE TABLE IF NOT EXISTS alarms (
    "key" VARCHAR(255) {COLLATE} NOT NULL PRIMARY KEY, type VARCHAR(32) {COLLATE} NOT NULL,
    source VARCHAR(128) {COLLATE} NOT NULL, service VARCHAR(64) {COLLATE} NOT NULL,
    since DOUBLE NOT NULL, reason TEXT {COLLATE} NOT NULL) ENGINE=InnoDB""",
    # Rows per table, as in SQLite; also the lock that orders concurrent batches.
    f"""CREATE TABLE IF NOT EXISTS row_counts (tbl VARCHAR(32) {COLLATE} NOT NULL PRIMARY KEY,
    n BIGINT NOT NULL) ENGINE=InnoDB""",
]

# The newest status per (source, service) and when it arrived; ts is assigned last
# because MariaDB evaluates the assignments in order and later ones would see the new ts.
_KEEP = "VALUES(ts) >= ts"
UPSERT_STATUS = (
    'INSERT INTO status_current (source, ts, service, state, "interval", connections, '
    "datapath, detail, seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE "
    + ", ".join(
        f"{c} = IF({_KEEP}, VALUES({c}), {c})"
        for c in ("state", '"interval"', "connections", "datapath", "detail", "seen", "ts")
    )
)


def insert_sql(kind: Kind) -> str:
    names = ", ".join(q(c.name) for c in kind.columns)
    marks = ", ".join("%s" for _ in kind.columns)
    return f'INSERT IGNORE INTO {q(kind.table)} ("source", {names}) VALUES (%s, {marks})'


_HINT = re.compile(r"(?<![\w)])\+(?=\"|rowid\b)")  # SQLite's "+col": no index for this term
_BUCKET = re.compile(r"CAST\(([^()]+) AS INTEGER\)")
_AVG = re.compile(r"AVG\((\"[a-z_]+\")\)")


def dialect(sql: str) -> str:
    """query.py's SQLite SQL as MariaDB runs it, with the same results:
    placeholders `?` → `%s` (and a literal % doubled), `rowid` → `seq`, no index hints;
    a time bucket floors (MariaDB's CAST rounds); AVG over doubles (not DECIMAL(.., 4))."""
    sql = sql.replace("%", "%%").replace("?", "%s")
    sql = _HINT.sub("", sql)
    sql = re.sub(r"\browid\b", "seq", sql)
    sql = _BUCKET.sub(r"CAST(FLOOR(\1) AS SIGNED)", sql)
    return _AVG.sub(r"AVG(CAST(\1 AS DOUBLE))", sql)


def _value(v: Any) -> Any:
    # SUM of integers comes back as DECIMAL; SQLite gives an integer.
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


@dataclass(frozen=True)
class Server:
    """Where the database is and how to log in (from `store.*` in the config)."""

    database: str
    user: str
    password: str
    host: str = ""
    port: int = 3306
    socket: str = ""  # a Unix socket instead of host and port
    tls: ssl.SSLContext | None = None
    connect_timeout: float = 10.0


class MariaDBStore(AnalyticsStore):
    shared = True

    def __init__(self, server: Server, query_timeout: float = 10.0) -> None:
        self.server = server
        self.query_timeout = query_timeout
        self.where = (
            f"{server.socket or f'{server.host}:{server.port}'}/{server.database} as {server.user}"
        )
        self._w: pymysql.Connection | None = None  # writer thread only
        self._r: pymysql.Connection | None = None  # reader thread only
        self._wpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-w")
        self._rpool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-r")
        self._insert = {k.table: insert_sql(k) for k in KINDS.values()}
        self._retention_lock = f"vrstack-retention:{server.database}"[:64]

    def _connect(self, read: bool) -> pymysql.Connection:
        s = self.server
        db = pymysql.connect(
            host=s.host or None,
            port=s.port,
            unix_socket=s.socket or None,
            user=s.user,
            password=s.password,
            database=s.database,
            ssl=s.tls,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=s.connect_timeout,
            # A lost server must not hang a batch or a query forever.
            read_timeout=self.query_timeout + 30 if read else 60,
            write_timeout=60,
            init_command=f"SET SESSION sql_mode='{SQL_MODE}', time_zone='+00:00'",
        )
        with db.cursor() as cur:
            if read:
                cur.execute("SET SESSION max_statement_time = %s", (self.query_timeout,))
            else:  # fewer gap locks between collectors inserting at once
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return db

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except pymysql.Error as exc:
            raise StoreError(f"mariadb {self.where}: {exc}") from exc

    def _writer(self) -> pymysql.Connection:
        if self._w is None:
            self._w = self._connect(read=False)
        return self._w

    def _reader(self) -> pymysql.Connection:
        if self._r is None:
            self._r = self._connect(read=True)
        return self._r

    def _in_tx(self, read: bool, fn: Callable[[Any], T]) -> T:
        """`fn(cursor)` in one transaction; a failed one drops its connection (the next
        call connects again: the server may have restarted)."""
        db = self._reader() if read else self._writer()
        try:
            with db.cursor() as cur:
                # A read is one snapshot: the row-id bound and the page agree.
                cur.execute(
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY" if read else "BEGIN"
                )
                out = fn(cur)
            db.commit()
            return out
        except BaseException:
            with contextlib.suppress(pymysql.Error):
                db.close()
            if read:
                self._r = None
            else:
                self._w = None
            raise

    def _open(self) -> None:
        def schema(cur: Any) -> None:
            for stmt in SCHEMA:
                cur.execute(stmt)
            for kind in KINDS.values():
                cur.execute(
                    f"INSERT IGNORE INTO row_counts SELECT %s, COUNT(*) FROM {q(kind.table)}",
                    (kind.table,),
                )

        self._in_tx(False, schema)

    async def start(self) -> None:
        await self._run(self._wpool, self._open)
        await self._run(self._rpool, self._reader)

    async def close(self) -> None:
        for pool, attr in ((self._rpool, "_r"), (self._wpool, "_w")):
            conn = getattr(self, attr)
            if conn is not None:
                with contextlib.suppress(pymysql.Error):
                    await asyncio.get_running_loop().run_in_executor(pool, conn.close)
                setattr(self, attr, None)
        self._wpool.shutdown(wait=True)
        self._rpool.shutdown(wait=True)

    # ---- writes (writer thread) -----------------------------------------------------

    async def commit(self, source: str, rows: Rows) -> tuple[int, int]:
        return await self._run(
            self._wpool, self._in_tx, False, lambda c: self._commit(c, source, rows)
        )

    def _commit(self, cur: Any, source: str, rows: Rows) -> tuple[int, int]:
        tables = sorted(rows)  # the same lock order in every collector: no deadlocks
        if not tables:  # an empty batch
            return 0, 0
        marks = ", ".join("%s" for _ in tables)
        cur.execute(f"SELECT tbl FROM row_counts WHERE tbl IN ({marks}) FOR UPDATE", tables)
        total = inserted = 0
        for table in tables:
            trows = rows[table]
            cur.executemany(self._insert[table], [(source, *r) for r in trows])
            added = cur.rowcount
            cur.execute("UPDATE row_counts SET n = n + %s WHERE tbl = %s", (added, table))
            inserted += added
            total += len(trows)
            if table == "status":
                seen = time.time()  # this collector's clock, as alarms.conditions times it
                cur.executemany(UPSERT_STATUS, [(source, *r[1:], seen) for r in trows])
        return inserted, total - inserted

    async def prune(self, policy: dict[str, Retention], now: float, batch: int) -> dict[str, int]:
        return await self._run(self._wpool, self._prune, policy, now, batch)

    def _prune(self, policy: dict[str, Retention], now: float, batch: int) -> dict[str, int]:
        db = self._writer()
        with db.cursor() as cur:
            # One collector prunes; the lock is held by its connection until it goes away.
            cur.execute(
                "SELECT IS_USED_LOCK(%s) <=> CONNECTION_ID() OR GET_LOCK(%s, 0)",
                (self._retention_lock, self._retention_lock),
            )
            if cur.fetchone()[0] != 1:
                return {table: 0 for table in policy}
        out = {}
        for table, keep in policy.items():
            out[table] = self._in_tx(
                False, lambda c, t=table, k=keep: self._prune_table(c, t, k, now, batch)
            )
        return out

    def _prune_table(self, cur: Any, table: str, keep: Retention, now: float, batch: int) -> int:
        kind = next(k for k in KINDS.values() if k.table == table)
        cur.execute("SELECT n FROM row_counts WHERE tbl = %s FOR UPDATE", (table,))
        count = cur.fetchone()[0]
        left = batch
        if keep.max_age > 0:
            left -= cur.execute(
                f"DELETE FROM {q(table)} WHERE {q(kind.time)} < %s ORDER BY seq LIMIT %s",
                (now - keep.max_age, left),
            )
        excess = min(count - (batch - left) - keep.max_rows, left)
        if keep.max_rows > 0 and excess > 0:
            left -= cur.execute(f"DELETE FROM {q(table)} ORDER BY seq LIMIT %s", (excess,))
        cur.execute("UPDATE row_counts SET n = n - %s WHERE tbl = %s", (batch - left, table))
        return batch - left

    async def forget(self, source: str, service: str) -> bool:
        def forget(cur: Any) -> bool:
            n = cur.execute(
                "DELETE FROM status_current WHERE source=%s AND service=%s", (source, service)
            )
            cur.execute("DELETE FROM alarms WHERE source=%s AND service=%s", (source, service))
            return bool(n > 0)

        return await self._run(self._wpool, self._in_tx, False, forget)

    async def save_alarms(self, raised: list[Alarm], cleared: list[Alarm]) -> None:
        def save(cur: Any) -> None:
            if cleared:
                cur.executemany('DELETE FROM alarms WHERE "key"=%s', [(a.key,) for a in cleared])
            if raised:
                # Another collector may have raised it first: its `since` and reason stay.
                cur.executemany(
                    "INSERT IGNORE INTO alarms VALUES (%s, %s, %s, %s, %s, %s)",
                    [(a.key, a.type, a.source, a.service, a.since, a.reason) for a in raised],
                )

        await self._run(self._wpool, self._in_tx, False, save)

    # ---- reads (reader thread) ------------------------------------------------------

    async def select(self, query: Query) -> dict[str, Any]:
        return await self._run(self._rpool, self._select, query)

    def _select(self, query: Query) -> dict[str, Any]:
        def select(cur: Any) -> tuple[list[tuple[Any, ...]], int]:
            snapshot = query.snapshot
            if snapshot is None:
                cur.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {q(query.kind.table)}")
                snapshot = int(cur.fetchone()[0])
            # InnoDB has range statistics: let its planner pick the time index or a scan.
            sql, params = query.sql(snapshot, by_time=True)
            cur.execute(dialect(sql), params)
            return [tuple(_value(v) for v in row) for row in cur.fetchall()], snapshot

        try:
            rows, snapshot = self._in_tx(True, select)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == TIMED_OUT:
                raise QueryTimeout(
                    f"the query ran longer than {self.query_timeout:g} s; "
                    "narrow the time range or add where clauses"
                ) from None
            raise
        return query.page(rows, snapshot)

    async def statuses(self) -> list[Status]:
        def read(cur: Any) -> list[Status]:
            cur.execute(
                'SELECT source, service, ts, state, "interval", connections, datapath, detail, '
                "seen FROM status_current ORDER BY source, service"
            )
            return [
                Status(s, v, t, st, i, json.loads(c), d, x, seen)
                for s, v, t, st, i, c, d, x, seen in cur.fetchall()
            ]

        return await self._run(self._rpool, self._in_tx, True, read)

    async def alarms(self) -> list[Alarm]:
        def read(cur: Any) -> list[Alarm]:
            cur.execute("SELECT type, source, service, since, reason FROM alarms ORDER BY since")
            return [Alarm(*row) for row in cur.fetchall()]

        return await self._run(self._rpool, self._in_tx, True, read)

    async def counts(self) -> dict[str, int]:
        def read(cur: Any) -> dict[str, int]:
            cur.execute("SELECT tbl, n FROM row_counts")
            return {t: int(n) for t, n in cur.fetchall()}

        return await self._run(self._rpool, self._in_tx, True, read)
