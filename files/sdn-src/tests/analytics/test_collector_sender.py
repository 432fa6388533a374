"""The sender against a real collector in this process: batching, retry with backoff,
drop-oldest while the collector is away, rate limits, refused records, lost answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from collectorkit import NOW, Client, running_collector

from vrstack.analytics.sender import Sender
from vrstack.analytics.server import Limits, Options
from vrstack.analytics.store import Rows
from vrstack.analytics.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, free_port


def flow_fields(i: int, **over: Any) -> dict[str, Any]:
    fields = {
        "start": NOW - 10,
        "end": NOW,
        "vrf": "demo:blue:blue",
        "src_ip": "198.18.10.3",
        "dst_ip": "198.18.20.4",
        "proto": 17,
        "src_port": i,
        "dst_port": 53,
        "bytes": 100,
        "packets": 1,
        "action": "forward",
    }
    return {**fields, **over}


@contextlib.asynccontextmanager
async def sending(sender: Sender) -> AsyncIterator[Sender]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(sender.run(stop))
    try:
        yield sender
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def fast(url: str, **kw: Any) -> Sender:
    opts = {"flush_interval": 0.05, "backoff_min": 0.05, "backoff_max": 0.2, **kw}
    return Sender(url, "compute1", ADMIN_TOKEN, **opts)


async def ports(c: Client) -> list[int]:
    rows = await c.query_all(table="flows", select=["src_port"], limit=10_000)
    return sorted(r["src_port"] for r in rows)


@pytest.mark.asyncio
async def test_batches_are_delivered(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "s.db") as run, Client(run.url) as c:
        async with sending(fast(run.url, batch_size=64)) as s:
            for i in range(1000):
                s.emit("flow", **flow_fields(i))
            s.emit("log", level="info", service="vrstack-agent", msg="hello")
            assert await s.flushed(10)
        assert s.stats == {"sent": 1001, "duplicates": 0, "dropped": 0, "rejected": 0, "retries": 0}
        assert await ports(c) == list(range(1000))
        logs = await c.query(table="logs", select=["source", "msg"])
        assert logs["items"] == [{"source": "compute1", "msg": "hello"}]


@pytest.mark.asyncio
async def test_collector_away_drops_oldest_then_delivers_the_rest(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with sending(fast(url, max_queue=100, batch_size=30)) as s:
        for i in range(150):
            s.emit("flow", **flow_fields(i))
            if i % 10 == 0:
                await asyncio.sleep(0.01)  # let it try (and fail) while records arrive
        await asyncio.sleep(0.3)
        assert s.stats["retries"] >= 2 and s.stats["sent"] == 0
        assert s.stats["dropped"] == 50 and s.backlog == 100
        assert "ClientConnectorError" in s.last_error or "Connect" in s.last_error
        async with running_collector(tmp_path / "s.db", port=port) as run, Client(run.url) as c:
            assert await s.flushed(10)
            assert await ports(c) == list(range(50, 150))  # the newest 100, nothing twice
    assert s.stats["sent"] == 100


@pytest.mark.asyncio
async def test_rate_limit_is_waited_out(tmp_path: Path) -> None:
    limits = Limits(max_batch_records=100, source_rate=400.0, source_burst=100)
    async with (
        running_collector(tmp_path / "s.db", Options(limits=limits)) as run,
        Client(run.url) as c,
        sending(fast(run.url, batch_size=100)) as s,
    ):
        for i in range(500):
            s.emit("flow", **flow_fields(i))
        assert await s.flushed(15)
        assert s.stats["retries"] >= 1 and s.stats["dropped"] == 0
        assert "429" in s.last_error
        assert await ports(c) == list(range(500))


@pytest.mark.asyncio
async def test_a_bad_or_oversized_record_is_dropped_alone(tmp_path: Path) -> None:
    limits = Limits(max_record_bytes=600, max_batch_records=50, source_burst=50)
    async with (
        running_collector(tmp_path / "s.db", Options(limits=limits)) as run,
        Client(run.url) as c,
        sending(fast(run.url, batch_size=20)) as s,
    ):
        for i in range(30):
            s.emit("flow", **flow_fields(i))
            if i == 7:
                s.emit("flow", **flow_fields(1000, bytes=-5))
            if i == 12:
                s.emit("log", level="info", service="x", msg="m" * 1000)
        assert await s.flushed(10)
        assert s.stats["rejected"] == 2 and s.stats["sent"] == 30
        assert await ports(c) == list(range(30))


class LostAnswerStore(SQLiteStore):
    """Commits the first batch, then stalls so the sender's request times out: the sender
    never hears that it was stored (a fake neighbour for the sender under test)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.stall = True

    async def commit(self, source: str, rows: Rows) -> tuple[int, int]:
        result = await super().commit(source, rows)
        if self.stall:
            self.stall = False
            await asyncio.sleep(1.0)
        return result


@pytest.mark.asyncio
async def test_resend_after_a_lost_answer_is_not_stored_twice(tmp_path: Path) -> None:
    store = LostAnswerStore(str(tmp_path / "s.db"))
    async with running_collector(store) as run, Client(run.url) as c:
        async with sending(fast(run.url, batch_size=40, timeout=0.4)) as s:
            for i in range(100):
                s.emit("flow", **flow_fields(i))
            assert await s.flushed(10)
        assert s.stats["retries"] >= 1 and "Timeout" in s.last_error
        assert s.stats["duplicates"] == 40 and s.stats["sent"] == 60
        assert await ports(c) == list(range(100))


@pytest.mark.asyncio
async def test_stop_sends_what_is_left(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "s.db") as run, Client(run.url) as c:
        s = fast(run.url, flush_interval=30.0, batch_size=1000)
        async with sending(s):
            for i in range(10):
                s.emit("flow", **flow_fields(i))
        assert s.backlog == 0 and await ports(c) == list(range(10))
