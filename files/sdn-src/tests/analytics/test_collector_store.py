"""Storage: retention by age and row count, bounded per pass; restart keeps everything.
On each store (SQLite and MariaDB, the `make_store` fixture)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from collectorkit import NOW, Client, flow, running_collector
from conftest import StoreFactory

from vrstack.analytics.query import parse
from vrstack.analytics.records import check_record
from vrstack.analytics.server import Options
from vrstack.analytics.store import Retention, StoreError
from vrstack.analytics.store_sqlite import SQLiteStore
from vrstack.config.testing import wait_until


def log(i: int) -> tuple[str, float, str, str, str]:
    return (f"l{i}", NOW - 100 + i, "info", "svc", f"line {i}")


@pytest.mark.asyncio
async def test_retention_by_age_is_bounded_per_pass(make_store: StoreFactory) -> None:
    store = make_store()
    await store.start()
    try:
        # Rows as ingest makes them (column order, addresses as blobs).
        rows = [check_record(flow(i), "r")[1] for i in range(100)]
        assert await store.commit("c1", {"flows": rows}) == (100, 0)
        policy = {"flows": Retention(max_age=550)}  # flow i ended at NOW-590+i: i < 40 expire
        passes = [await store.prune(policy, NOW, 15) for _ in range(5)]
        assert [p["flows"] for p in passes] == [15, 15, 10, 0, 0]
        assert (await store.counts())["flows"] == 60
        left = await store.select(parse({"table": "flows", "select": ["min(id)"]}, NOW))
        assert left["items"] == [{"min(id)": "f40"}]
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_retention_by_rows_keeps_the_newest(make_store: StoreFactory) -> None:
    store = make_store()
    await store.start()
    try:
        await store.commit("c1", {"logs": [log(i) for i in range(50)]})
        both = {"logs": Retention(max_age=90, max_rows=20)}  # age: l0..l9, rows: 20 more
        assert await store.prune(both, NOW, 1000) == {"logs": 30}
        page = await store.select(parse({"table": "logs", "select": ["id"], "limit": 100}, NOW))
        assert [i["id"] for i in page["items"]] == [f"l{i}" for i in range(30, 50)]
        assert await store.prune(both, NOW, 1000) == {"logs": 0}
        # The kept row counts agree with the table (count() counts the rows themselves).
        rows = await store.select(parse({"table": "logs", "select": ["count()"]}, NOW))
        assert rows["items"] == [{"count()": 20}]
        assert (await store.counts())["logs"] == 20
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_retention_runs_in_the_collector(make_store: StoreFactory) -> None:
    options = Options(
        retention={"counters": Retention(max_rows=5), "flows": Retention(max_age=3600)},
        retention_interval=0.05,
        retention_batch=4,
    )
    async with running_collector(make_store(), options) as run, Client(run.url) as c:
        samples = [
            {"kind": "counter", "id": f"c{i}", "ts": time.time(), "name": "x", "value": i}
            for i in range(21)
        ]
        assert (await c.ingest("c1", samples))[0] == 200
        assert (await c.ingest("c1", [flow(1)]))[0] == 200

        async def pruned() -> bool:
            return (await run.collector.store.counts())["counters"] == 5

        await wait_until(pruned, timeout=10)
        page = await c.query(table="counters", select=["value"], sort=["value"])
        assert [i["value"] for i in page["items"]] == [16, 17, 18, 19, 20]
        assert (await run.collector.store.counts())["flows"] == 1  # young enough


@pytest.mark.asyncio
async def test_restart_keeps_records_ids_and_alarms(make_store: StoreFactory) -> None:
    async with running_collector(make_store()) as run, Client(run.url) as c:
        assert (await c.ingest("c1", [flow(i) for i in range(10)]))[0] == 200
        down = {
            "kind": "status",
            "id": "s1",
            "ts": time.time(),
            "service": "vrstack-api",
            "state": "down",
            "detail": "config store unreachable",
        }
        assert (await c.ingest("ctl1", [down]))[0] == 200
        before = (await c.call("GET", "/alarms"))[1]["items"]
        assert [a["type"] for a in before] == ["service-down"]
    await asyncio.sleep(0.1)
    async with running_collector(make_store()) as run, Client(run.url) as c:
        assert (await c.query(table="flows", select=["count()"]))["items"] == [{"count()": 10}]
        assert (await c.ingest("c1", [flow(i) for i in range(10)]))[1]["duplicates"] == 10
        assert (await c.call("GET", "/alarms"))[1]["items"] == before  # same since and reason
        listing = (await c.call("GET", "/status"))[1]["items"]
        assert [(s["source"], s["service"], s["state"], s["ts"]) for s in listing] == [
            ("ctl1", "vrstack-api", "down", down["ts"])
        ]


@pytest.mark.asyncio
async def test_second_collector_on_the_same_file_is_refused(tmp_path: Path) -> None:
    a = SQLiteStore(str(tmp_path / "x.db"))
    await a.start()
    try:
        with pytest.raises(StoreError, match="in use"):
            await SQLiteStore(str(tmp_path / "x.db")).start()
    finally:
        await a.close()
    with pytest.raises(StoreError, match="cannot open"):
        await SQLiteStore(str(tmp_path / "no" / "such" / "dir.db")).start()
