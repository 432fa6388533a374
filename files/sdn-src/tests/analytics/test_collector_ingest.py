"""Ingest: JSON and NDJSON batches, validation naming the field, limits, dedup, auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from collectorkit import Client, flow, running_collector, status

from vrstack.analytics.server import Limits, Options
from vrstack.analytics.store import Rows
from vrstack.analytics.store_sqlite import SQLiteStore
from vrstack.config.testing import READER_TOKEN


@pytest.mark.asyncio
async def test_json_and_ndjson_batches_are_stored_and_read_back(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "a.db") as run, Client(run.url) as c:
        assert await c.ingest("compute1", [flow(1), flow(2, src_ip="2001:db8::7")]) == (
            200,
            {"accepted": 2, "duplicates": 0},
        )
        lines = [
            {"kind": "log", "id": "l1", "ts": 1.8e9, "level": "error", "service": "s", "msg": "x"},
            {"kind": "counter", "id": "c1", "ts": 1.8e9, "name": "flows_forward", "value": 7},
            status("s1"),
        ]
        data = b"\n".join(json.dumps(r).encode() for r in lines) + b"\n"
        assert await c.call(
            "POST", "/ingest/compute2", data=data, content_type="application/x-ndjson"
        ) == (200, {"accepted": 3, "duplicates": 0})

        flows = await c.query(table="flows", sort=["id"])
        assert [f["src_ip"] for f in flows["items"]] == ["198.18.10.2", "2001:db8::7"]
        first = flows["items"][0]
        assert (first["source"], first["dst_ip"], first["bytes"], first["action"]) == (
            "compute1",
            "198.18.20.5",
            1001,
            "forward",
        )
        logs = await c.query(table="logs")
        assert logs["items"] == [
            {
                "source": "compute2",
                "id": "l1",
                "ts": 1.8e9,
                "level": "error",
                "service": "s",
                "msg": "x",
            }
        ]
        counters = await c.query(table="counters", select=["name", "object", "value"])
        assert counters["items"] == [{"name": "flows_forward", "object": "", "value": 7.0}]
        st = await c.query(table="status", select=["source", "state", "connections", "datapath"])
        assert st["items"][0]["connections"][0] == {
            "type": "control",
            "name": "198.18.1.11",
            "state": "up",
        }
        assert st["items"][0]["datapath"] == "present"


BAD = [
    ({"kind": "flo"}, "records[1].kind"),
    (flow(9, bytes=-1), "records[1].bytes"),
    (flow(9, src_ip="198.18.10.300"), "records[1].src_ip"),
    (flow(9, proto="tcp"), "records[1].proto"),
    (flow(9, action="allow"), "records[1].action"),
    (flow(9, end=1.0), "records[1].end"),
    (flow(9, start=1.9e9, end=1.8e9), "records[1].end"),
    (flow(9, colour="red"), "records[1].colour"),
    ({k: v for k, v in flow(9).items() if k != "vrf"}, "records[1].vrf"),
    (flow(9, id=""), "records[1].id"),
    (
        status("s", connections=[{"type": "control", "name": "a", "state": "gone"}]),
        "records[1].connections[0].state",
    ),
    (status("s", state="fine"), "records[1].state"),
    (status("s", interval=0), "records[1].interval"),
    ("not an object", "records[1]"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("record", "field"), BAD)
async def test_bad_record_refuses_the_batch_naming_the_field(
    tmp_path: Path, record: Any, field: str
) -> None:
    async with running_collector(tmp_path / "a.db") as run, Client(run.url) as c:
        status_code, body = await c.ingest("compute1", [flow(1), record])
        assert status_code == 400 and body["field"] == field, body
        assert (await run.collector.store.counts())["flows"] == 0  # nothing half-stored


@pytest.mark.asyncio
async def test_bad_bodies_and_sources(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "a.db") as run, Client(run.url) as c:
        assert (await c.call("POST", "/ingest/c1", data=b"{nope"))[1]["field"] == "body"
        assert (await c.call("POST", "/ingest/c1", {"records": 5}))[1]["field"] == "records"
        code, body = await c.call(
            "POST",
            "/ingest/c1",
            data=b'{"kind":"log"}\n{oops\n',
            content_type="application/x-ndjson",
        )
        assert code == 400 and body["field"] == "records[1]"
        code, body = await c.call("POST", "/ingest/bad%20name", {"records": []})
        assert code == 400 and body["field"] == "source"


@pytest.mark.asyncio
async def test_resent_records_are_not_stored_twice(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "a.db") as run, Client(run.url) as c:
        batch = [flow(i) for i in range(50)]
        assert (await c.ingest("compute1", batch))[1] == {"accepted": 50, "duplicates": 0}
        # The same batch again (the answer was lost), and half of it mixed with new ones.
        assert (await c.ingest("compute1", batch))[1] == {"accepted": 0, "duplicates": 50}
        mixed = batch[25:] + [flow(i) for i in range(50, 60)] + [flow(60), flow(60)]
        assert (await c.ingest("compute1", mixed))[1] == {"accepted": 11, "duplicates": 26}
        # Ids are per source: another node's f1 is another record.
        assert (await c.ingest("compute2", batch[:1]))[1] == {"accepted": 1, "duplicates": 0}
        assert (await run.collector.store.counts())["flows"] == 62


def small_limits(**over: Any) -> Options:
    base = {
        "max_batch_bytes": 20_000,
        "max_batch_records": 20,
        "max_record_bytes": 1_000,
        "source_rate": 10.0,
        "source_burst": 40,
    }
    return Options(limits=Limits(**{**base, **over}))


@pytest.mark.asyncio
async def test_limits_answer_413_and_429_naming_the_limit(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "a.db", small_limits()) as run, Client(run.url) as c:
        code, body = await c.ingest("c1", [flow(i) for i in range(21)])
        assert code == 413 and body["limit"] == "max_batch_records", body
        lines = b"\n".join(json.dumps(flow(i)).encode() for i in range(21))
        code, body = await c.call(
            "POST", "/ingest/c1", data=lines, content_type="application/x-ndjson"
        )
        assert code == 413 and body["limit"] == "max_batch_records", body
        code, body = await c.call("POST", "/ingest/c1", data=b"x" * 20_001)
        assert code == 413 and body["limit"] == "max_batch_bytes", body

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            for _ in range(30):
                yield b"x" * 1000

        async with c.session.post(run.url + "/ingest/c1", data=chunks()) as resp:
            assert resp.status == 413 and (await resp.json())["limit"] == "max_batch_bytes"
        # A bare JSON array is a batch too.
        assert (await c.call("POST", "/ingest/c9", [flow(70)]))[0] == 200
        big = {
            "kind": "log",
            "id": "l",
            "ts": 1.8e9,
            "level": "info",
            "service": "s",
            "msg": "m" * 1500,
        }
        code, body = await c.ingest("c1", [flow(1), big])
        assert code == 413 and body["limit"] == "max_record_bytes"
        assert body["field"] == "records[1]"
        data = json.dumps(flow(1)).encode() + b"\n" + json.dumps(big).encode()
        code, body = await c.call(
            "POST", "/ingest/c1", data=data, content_type="application/x-ndjson"
        )
        assert code == 413 and body["field"] == "records[1]"

        # Rate: a burst of 40, then 10 records/s.
        assert (await c.ingest("c1", [flow(i) for i in range(20)]))[0] == 200
        assert (await c.ingest("c1", [flow(i) for i in range(20, 40)]))[0] == 200
        code, body = await c.ingest("c1", [flow(i) for i in range(40, 60)])
        assert code == 429 and body["limit"] == "source_rate" and 1.0 < body["retry_after"] <= 2
        # Per source: another node is not held back by c1.
        assert (await c.ingest("c2", [flow(1)]))[0] == 200
        await asyncio.sleep(0.25)  # 2 records' worth of tokens back
        assert (await c.ingest("c1", [flow(40), flow(41)]))[0] == 200
        health = (await c.call("GET", "/health"))[1]
        assert health["throttled"] == 1 and health["rejected"] == 6


class SlowStore(SQLiteStore):
    """Commits wait for `gate`: lets a test hold batches in flight (a fake neighbour)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()

    async def commit(self, source: str, rows: Rows) -> tuple[int, int]:
        await self.gate.wait()
        return await super().commit(source, rows)


@pytest.mark.asyncio
async def test_in_flight_and_pending_bounds(tmp_path: Path) -> None:
    store = SlowStore(str(tmp_path / "a.db"))
    options = small_limits(source_inflight=2, max_pending=30, source_rate=1e6, source_burst=1000)
    async with running_collector(store, options) as run, Client(run.url) as c:
        held = [asyncio.ensure_future(c.ingest("c1", [flow(i)])) for i in range(2)]
        await asyncio.sleep(0.2)
        code, body = await c.ingest("c1", [flow(9)])
        assert code == 429 and body["limit"] == "source_inflight"
        held.append(asyncio.ensure_future(c.ingest("c2", [flow(i) for i in range(20)])))
        await asyncio.sleep(0.2)
        code, body = await c.ingest("c3", [flow(i) for i in range(10)])
        assert code == 429 and body["limit"] == "max_pending", body
        store.gate.set()
        assert [r[0] for r in await asyncio.gather(*held)] == [200, 200, 200]
        assert (await c.ingest("c3", [flow(i) for i in range(10)]))[0] == 200


@pytest.mark.asyncio
async def test_tokens(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "a.db") as run:
        async with Client(run.url, token=None) as anon:
            assert (await anon.ingest("c1", [flow(1)]))[0] == 401
            assert (await anon.call("POST", "/query", {"table": "flows"}))[0] == 401
            assert (await anon.call("GET", "/health"))[0] == 200
            assert (await anon.call("GET", "/openapi.json"))[0] == 200
        async with Client(run.url, token=READER_TOKEN) as reader:
            assert (await reader.ingest("c1", [flow(1)]))[0] == 403
            assert (await reader.call("POST", "/query", {"table": "flows"}))[0] == 200
            assert (await reader.call("GET", "/alarms"))[0] == 200
            assert (await reader.call("DELETE", "/status/c1/vrstack-agent"))[0] == 403
