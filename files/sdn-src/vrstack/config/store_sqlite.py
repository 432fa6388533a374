"""SQLite backend: one file in WAL mode, fsync on commit, all access on one thread.

The `events` table is the change log behind `changes`; it keeps the last `history`
revisions, older ones are pruned and reported as compacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .store import JSON, KV, Compacted, Conflict, Event, Store, prefix_end

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, mod_rev INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (rev INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
                                   value TEXT, prev TEXT, PRIMARY KEY (rev, seq));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
"""


class SQLiteStore(Store):
    def __init__(self, path: str, watch_prefix: str = "obj/", history: int = 100_000) -> None:
        self.path = path
        self.watch_prefix = watch_prefix
        self.history = history
        self._db: sqlite3.Connection | None = None
        # One thread owns the connection: sqlite serialises writers anyway, and the
        # event loop never blocks on fsync.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._changed: asyncio.Condition | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(SCHEMA)
        self._db = db

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        await self._run(self._open)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store not started"
        return self._db

    def _meta(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return int(row[0])

    async def revision(self) -> int:
        return await self._run(self._meta, "revision")

    def _get(self, key: str) -> KV | None:
        row = self.db.execute("SELECT value, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
        return KV(key, json.loads(row[0]), row[1]) if row else None

    async def get(self, key: str) -> KV | None:
        return await self._run(self._get, key)

    def _range(self, prefix: str, start_after: str, limit: int) -> list[KV]:
        low = max(prefix, start_after + "\0") if start_after else prefix
        rows = self.db.execute(
            "SELECT key, value, mod_rev FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
            (low, prefix_end(prefix), limit),
        ).fetchall()
        return [KV(k, json.loads(v), r) for k, v, r in rows]

    async def range(self, prefix: str, start_after: str = "", limit: int = 1000) -> list[KV]:
        return await self._run(self._range, prefix, start_after, limit)

    def _txn(
        self, compares: Mapping[str, int], puts: Mapping[str, JSON], deletes: Sequence[str]
    ) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for key, want in compares.items():
                row = db.execute("SELECT mod_rev FROM kv WHERE key=?", (key,)).fetchone()
                if (row[0] if row else 0) != want:
                    raise Conflict(key)
            rev = self._meta("revision") + 1
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
            db.execute("UPDATE meta SET value=? WHERE name='revision'", (rev,))
            if rev % min(1000, self.history) == 0 and rev > self.history:
                floor = rev - self.history
                db.execute("DELETE FROM events WHERE rev <= ?", (floor,))
                db.execute("UPDATE meta SET value=? WHERE name='compacted'", (floor,))
            db.execute("COMMIT")
            return rev
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def txn(
        self, compares: Mapping[str, int], puts: Mapping[str, JSON], deletes: Sequence[str]
    ) -> int:
        rev = await self._run(self._txn, compares, puts, deletes)
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()
        return rev

    def _changes(self, since: int, limit: int) -> list[Event]:
        compacted = self._meta("compacted")
        if since < compacted:
            raise Compacted(compacted)
        # Cut at a revision boundary so a reader never sees half a transaction.
        last = self.db.execute(
            "SELECT MAX(rev) FROM (SELECT DISTINCT rev FROM events WHERE rev > ? ORDER BY rev LIMIT ?)",
            (since, limit),
        ).fetchone()[0]
        if last is None:
            return []
        rows = self.db.execute(
            "SELECT rev, key, value, prev FROM events WHERE rev > ? AND rev <= ? ORDER BY rev, seq",
            (since, last),
        ).fetchall()
        return [
            Event(r, k, json.loads(v) if v else None, json.loads(p) if p else None)
            for r, k, v, p in rows
        ]

    async def changes(self, since: int, timeout: float, limit: int = 1000) -> list[Event]:
        assert self._changed is not None
        deadline = time.monotonic() + timeout
        while True:
            async with self._changed:
                events = await self._run(self._changes, since, limit)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
