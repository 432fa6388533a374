"""SQLite backend: one file in WAL mode, fsync on commit, group commit on one thread.

Writes go to one writer thread: the transactions that queue up while it is busy are
applied together in one SQLite transaction (each in a savepoint, each with its own
revision) and made durable by one fsync, so concurrent requests share the cost of the
disk flush. Reads use a second connection on the event loop's thread: single-key reads
are microseconds, and WAL lets them run beside the writer.

The `events` table is the change log behind `changes`; it keeps the last `history`
revisions, older ones are pruned and reported as compacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, TypeVar

from .store import JSON, KV, Compacted, Conflict, Event, Store, StoreUnavailable, prefix_end

T = TypeVar("T")
Txn = tuple[Mapping[str, int], Mapping[str, JSON], Sequence[str]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, mod_rev INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (rev INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
                                   value TEXT, prev TEXT, PRIMARY KEY (rev, seq));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
"""


def _meta(db: sqlite3.Connection, name: str) -> int:
    return int(db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()[0])


class SQLiteStore(Store):
    def __init__(self, path: str, watch_prefix: str = "obj/", history: int = 100_000) -> None:
        self.path = path
        self.watch_prefix = watch_prefix
        self.history = history
        self._wdb: sqlite3.Connection | None = None  # writer thread only
        self._rdb: sqlite3.Connection | None = None  # event loop thread only
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._changed: asyncio.Condition | None = None
        self._queue: list[tuple[Txn, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._lock: IO[str] | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _open_writer(self) -> None:
        db = self._connect()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
        db.executescript(SCHEMA)
        self._wdb = db

    async def start(self) -> None:
        # One server per file: change notifications and address hints live in the process.
        self._lock = open(self.path + ".lock", "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreUnavailable(
                f"{self.path} is in use by another vrstack-api; use etcd for several servers"
            ) from None
        self._changed = asyncio.Condition()
        await self._run(self._open_writer)
        self._rdb = self._connect()
        self._rdb.execute("PRAGMA query_only=ON")

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher
        if self._rdb is not None:
            self._rdb.close()
            self._rdb = None
        if self._wdb is not None:
            await self._run(self._wdb.close)
            self._wdb = None
        self._pool.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    @property
    def rdb(self) -> sqlite3.Connection:
        assert self._rdb is not None, "store not started"
        return self._rdb

    # ---- reads (event loop thread) --------------------------------------------------

    async def revision(self) -> int:
        return _meta(self.rdb, "revision")

    async def get(self, key: str) -> KV | None:
        row = self.rdb.execute("SELECT value, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
        return KV(key, json.loads(row[0]), row[1]) if row else None

    async def range(self, prefix: str, start_after: str = "", limit: int = 1000) -> list[KV]:
        low = max(prefix, start_after + "\0") if start_after else prefix
        rows = self.rdb.execute(
            "SELECT key, value, mod_rev FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
            (low, prefix_end(prefix), limit),
        ).fetchall()
        return [KV(k, json.loads(v), r) for k, v, r in rows]

    def _changes(self, since: int, limit: int) -> list[Event]:
        db = self.rdb
        db.execute("BEGIN")  # one snapshot for the three reads
        try:
            compacted = _meta(db, "compacted")
            if since < compacted:
                raise Compacted(compacted)
            # Cut at a revision boundary so a reader never sees half a transaction.
            last = db.execute(
                "SELECT MAX(rev) FROM (SELECT DISTINCT rev FROM events WHERE rev > ? "
                "ORDER BY rev LIMIT ?)",
                (since, limit),
            ).fetchone()[0]
            if last is None:
                return []
            rows = db.execute(
                "SELECT rev, key, value, prev FROM events WHERE rev > ? AND rev <= ? "
                "ORDER BY rev, seq",
                (since, last),
            ).fetchall()
        finally:
            db.execute("COMMIT")
        return [
            Event(r, k, json.loads(v) if v else None, json.loads(p) if p else None)
            for r, k, v, p in rows
        ]

    async def changes(self, since: int, timeout: float, limit: int = 1000) -> list[Event]:
        assert self._changed is not None
        deadline = time.monotonic() + timeout
        while True:
            async with self._changed:
                events = self._changes(since, limit)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    # ---- writes (writer thread, grouped) --------------------------------------------

    async def txn(
        self, compares: Mapping[str, int], puts: Mapping[str, JSON], deletes: Sequence[str]
    ) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(((dict(compares), dict(puts), list(deletes)), fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self._run(self._commit_batch, [t for t, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
            assert self._changed is not None
            async with self._changed:
                self._changed.notify_all()

    def _commit_batch(self, batch: list[Txn]) -> list[int | Exception]:
        db = self._wdb
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            first = rev = _meta(db, "revision")
            results: list[int | Exception] = []
            for compares, puts, deletes in batch:
                db.execute("SAVEPOINT txn")
                try:
                    self._apply(db, rev + 1, compares, puts, deletes)
                except Conflict as exc:
                    db.execute("ROLLBACK TO txn")
                    db.execute("RELEASE txn")
                    results.append(exc)
                    continue
                db.execute("RELEASE txn")
                rev += 1
                results.append(rev)
            db.execute("UPDATE meta SET value=? WHERE name='revision'", (rev,))
            step = min(1000, self.history)
            if rev // step > first // step and rev > self.history:
                floor = rev - self.history
                db.execute("DELETE FROM events WHERE rev <= ?", (floor,))
                db.execute("UPDATE meta SET value=? WHERE name='compacted'", (floor,))
            db.execute("COMMIT")
            return results
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _apply(
        self,
        db: sqlite3.Connection,
        rev: int,
        compares: Mapping[str, int],
        puts: Mapping[str, JSON],
        deletes: Sequence[str],
    ) -> None:
        for key, want in compares.items():
            row = db.execute("SELECT mod_rev FROM kv WHERE key=?", (key,)).fetchone()
            if (row[0] if row else 0) != want:
                raise Conflict(key)
        seq = 0
        for key in deletes:
            old = db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
            if old is None:
                continue
            db.execute("DELETE FROM kv WHERE key=?", (key,))
            if key.startswith(self.watch_prefix):
                db.execute("INSERT INTO events VALUES (?,?,?,NULL,?)", (rev, seq, key, old[0]))
                seq += 1
        for key, value in puts.items():
            text = json.dumps(value, separators=(",", ":"), sort_keys=True)
            db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?)", (key, text, rev))
            if key.startswith(self.watch_prefix):
                db.execute("INSERT INTO events VALUES (?,?,?,?,NULL)", (rev, seq, key, text))
                seq += 1
