"""The collector under malformed, oversized and slow input.

- Property tests (hypothesis, in process): batches of records with one value swapped for
  arbitrary JSON (huge integers, NaN, lone surrogates, NUL, nesting, wrong types), sent
  as JSON or NDJSON, and queries mutated the same way. Never a 5xx; a refused batch names
  the field (400) or the limit (413, 429) and stores nothing; an accepted one stores all.
- A real collector process with `http.header_timeout` and `http.body_timeout` at 2 s
  and small batch limits: slowloris connections on the query API, a sender trickling
  its batch, batches over the size and record limits, while a good sender's reports are
  stored and a reader's queries answered.
- A real collector process with `http.max_connections_per_source` at 3: one address's
  extra connections are closed at once while another address queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from collectorkit import Client, Running, flow, running_collector, status
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Daemon
from vrstack.service.rawclient import RawClient, wait_refused

EXAMPLES = int(os.environ.get("VRSTACK_FUZZ_EXAMPLES", "150"))
EDGES = st.sampled_from(
    [
        *("", "\x00", "\ud800", "a\udfff", "\U0010ffff", "x" * 300, "-15m", "now"),
        *("-" + "9" * 400 + "s", "2026-13-01T00:00:00Z", "9999-12-31T23:59:59+00:00"),
        *("198.18.0.1/33", "::ffff:198.18.0.1", "fe80::1%eth0", "count(", "bucket(end,7)"),
        *(10**400, -(10**400), 2**63, -(2**63) - 1, 2**64, 1e308, -0.0),
        *(float("nan"), float("inf"), float("-inf"), True, None, [], {}),
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates and NUL too
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# A third of the swapped values are the edges above: the rest alone rarely hit them.
VALUES = st.one_of(EDGES, SCALARS, JSONISH)


def _encode(value: Any) -> bytes:
    # Python's json writes NaN and Infinity, as a careless sender would.
    return json.dumps(value, allow_nan=True).encode()


def _mutate(draw: st.DrawFn, rec: dict[str, Any]) -> None:
    """Swap one value (more often than not), drop one, or add an unknown one."""
    how = draw(st.sampled_from(["swap", "swap", "drop", "extra"]))
    key = draw(st.sampled_from(sorted(rec)))
    if how == "swap":
        rec[key] = draw(VALUES)
    elif how == "drop":
        del rec[key]
    else:
        rec[draw(st.text(min_size=1, max_size=6))] = draw(VALUES)


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, bytes]:
    """(content type, body): valid records with at most one mutated (so a bad value is
    not hidden behind another), as JSON or NDJSON; or junk."""
    base = draw(st.integers(0, 10**6)) * 10
    recs = [
        flow(base + i) if draw(st.booleans()) else status(f"s{base + i}")
        for i in range(draw(st.integers(1, 4)))
    ]
    if draw(st.integers(0, 3)):
        _mutate(draw, recs[draw(st.integers(0, len(recs) - 1))])
    form = draw(st.sampled_from(["object", "list", "ndjson", "junk"]))
    if form == "object":
        return "application/json", _encode({"records": recs})
    if form == "list":
        return "application/json", _encode(recs)
    if form == "ndjson":
        return "application/x-ndjson", b"\n".join(_encode(r) for r in recs)
    return "application/json", draw(st.binary(max_size=64)) + b"[" * draw(st.integers(0, 5000))


QUERY: dict[str, Any] = {
    "table": "flows",
    "select": ["src_ip", "sum(bytes)", "count()"],
    "where": [
        {"field": "vrf", "op": "prefix", "value": "demo:"},
        {"field": "src_ip", "op": "in", "value": "198.18.10.0/24"},
        {"field": "bytes", "op": ">", "value": 10},
        {"field": "action", "op": "=", "value": "forward"},
        {"field": "end", "op": ">", "value": "-2h"},
    ],
    "since": "-1h",
    "until": "now",
    "group_by": ["src_ip"],
    "sort": [{"field": "sum(bytes)", "order": "desc"}],
    "limit": 10,
}


@st.composite
def queries(draw: st.DrawFn) -> Any:
    """The query above with one part (a key, a clause, a clause's value) swapped."""
    body = json.loads(json.dumps(QUERY))
    where = draw(st.sampled_from(["top", "clause", "nothing"]))
    if where == "top":
        body[draw(st.sampled_from([*sorted(QUERY), "cursor", "bogus"]))] = draw(VALUES)
    elif where == "clause":
        clause = body["where"][draw(st.integers(0, len(QUERY["where"]) - 1))]
        clause[draw(st.sampled_from(["field", "op", "value"]))] = draw(VALUES)
    return body


async def _counts(run: Running) -> dict[str, int]:
    return dict(await run.collector.store.counts())


@pytest_asyncio.fixture
async def collector(tmp_path: Path) -> AsyncIterator[tuple[Running, Client]]:
    async with running_collector(tmp_path / "a.db") as run, Client(run.url) as c:
        yield run, c


PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # bounded: no shrinking
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.asyncio
@PROPERTY
@given(batch=batches())
async def test_bad_batches_are_refused_whole_and_never_a_5xx(
    collector: tuple[Running, Client], batch: tuple[str, bytes]
) -> None:
    run, c = collector
    content_type, body = batch
    before = await _counts(run)
    code, answer = await c.call("POST", "/ingest/compute1", data=body, content_type=content_type)
    assert code < 500, (code, answer, body[:300])
    after = await _counts(run)
    if code == 200:
        added = sum(after.values()) - sum(before.values())
        assert added == answer["accepted"], (answer, before, after)
    else:
        assert after == before, f"{code} {answer} but the store changed"
        assert isinstance(answer, dict) and answer.get("error"), answer
        assert code != 400 or answer.get("field"), answer


@pytest.mark.asyncio
@PROPERTY
@given(body=queries())
async def test_bad_queries_are_a_400_naming_the_field(
    collector: tuple[Running, Client], body: Any
) -> None:
    _, c = collector
    code, answer = await c.call("POST", "/query", data=_encode(body))
    assert code in (200, 400), (code, answer, body)
    if code == 400:
        assert answer.get("field"), answer


# ---- a real collector and slow clients -------------------------------------------------

TIMEOUT = 2.0  # both http timeouts
SLACK = 2.0  # scheduling on a loaded 2-core machine
CROWD = 50
MAX_RECORDS = 100
MAX_BYTES = 64 * 1024


@contextlib.contextmanager
def collector_daemon(tmp_path: Path, http: dict[str, Any]) -> Iterator[Daemon]:
    config = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"path": str(tmp_path / "analytics.db")},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        "http": http,
        "limits": {
            "max_batch_records": MAX_RECORDS,
            "max_batch_bytes": MAX_BYTES,
            "source_burst": 10_000,
        },
    }
    d = Daemon("vrstack.analytics.main", config, tmp_path, "collector")
    d.start()
    try:
        yield d
    finally:
        assert d.terminate() == 0


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with collector_daemon(tmp_path, {"header_timeout": TIMEOUT, "body_timeout": TIMEOUT}) as d:
        yield d


def _post(path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {ADMIN_TOKEN}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


class GoodSender:
    """Reports a status and a flow every 0.1 s and reads them back with a query."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self.queries = 0
        self.slowest = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        async with Client(self.url) as c:
            for i in range(10_000):
                if stop.is_set():
                    return
                started = time.monotonic()
                code, answer = await c.ingest("good", [flow(i), status(f"st{i}")])
                assert code == 200 and answer["accepted"] == 2, answer
                self.sent += 1
                page = await c.query(table="flows", select=["count()"], where=[])
                assert page["items"][0]["count()"] >= self.sent
                self.queries += 1
                self.slowest = max(self.slowest, time.monotonic() - started)
                await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_slow_and_oversized_senders_while_a_good_one_is_served(daemon: Daemon) -> None:
    good = GoodSender(daemon.url)
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(good.run(stop))
    report: dict[str, Any] = {}
    try:
        query = _encode({"table": "flows", "select": ["count()"]})
        whole = _post("/query", f"Content-Length: {len(query)}\r\n") + query
        crowd = [await RawClient(daemon.port).connect() for _ in range(CROWD)]
        trickles = [asyncio.ensure_future(c.trickle(whole, 0.5)) for c in crowd]

        # A batch trickled a byte at a time: 408, nothing stored from it.
        batch = _encode({"records": [flow(900_000 + i) for i in range(3)]})
        slow = await RawClient(daemon.port).connect()
        await slow.send(_post("/ingest/slow", f"Content-Length: {len(batch)}\r\n"))
        began = time.monotonic()
        slow_trickle = asyncio.ensure_future(slow.trickle(batch, 0.5))
        report["slow batch answered"] = await slow.answered_within(began, TIMEOUT + SLACK)
        assert slow.status() == 408, slow.received
        assert json.loads(slow.body().split(b"\n")[-1])["limit"] == "http.body_timeout"
        assert await slow_trickle < len(batch)

        # Over the size limit, declared and chunked; over the record limit.
        declared = await RawClient(daemon.port).connect()
        await declared.send(_post("/ingest/big", f"Content-Length: {MAX_BYTES + 1}\r\n"))
        report["declared 413"] = await declared.answered_within(time.monotonic(), SLACK)
        assert declared.status() == 413 and b"max_batch_bytes" in declared.body()
        chunked = await RawClient(daemon.port).connect()
        await chunked.send(_post("/ingest/big", "Transfer-Encoding: chunked\r\n"))
        piece = b"x" * 4096
        for _ in range(MAX_BYTES // len(piece) + 2):  # bounded: just past the limit
            if not await chunked.send(b"%x\r\n%s\r\n" % (len(piece), piece)):
                break
        await chunked.answered_within(time.monotonic(), SLACK)
        assert chunked.status() == 413 and b"max_batch_bytes" in chunked.body()
        async with Client(daemon.url) as c:
            code, answer = await c.ingest("many", [flow(i) for i in range(MAX_RECORDS + 1)])
            assert code == 413 and answer["limit"] == "max_batch_records", answer
            code, answer = await c.ingest("half", [flow(1), {**flow(2), "bytes": -1}])
            assert code == 400 and answer["field"] == "records[1].bytes", answer

        for c in crowd:
            await c.closed_within(c.opened_at, TIMEOUT + SLACK)
            assert c.received == b""
        sent_heads = [await t for t in trickles]
        assert max(sent_heads) < len(whole), sent_heads
        report["crowd closed after"] = max(c.closed_at or math.inf for c in crowd) - min(
            c.opened_at for c in crowd
        )
        for c in (*crowd, slow, declared, chunked):
            c.close()
    finally:
        stop.set()
        await asyncio.wait_for(traffic, 30)  # re-raises a failed report or query
    async with Client(daemon.url) as c:
        page = await c.query(table="flows", select=["source", "count()"], group_by=["source"])
        stored = {row["source"]: row["count()"] for row in page["items"]}
    assert stored == {"good": good.sent}, stored  # nothing from the bad senders
    assert good.sent >= 10 and good.slowest < 5.0, (good.sent, good.slowest)
    print(f"good sender: {good.sent} batches, {good.queries} queries, slowest {good.slowest:.2f}s")
    print(report)


@pytest.mark.asyncio
async def test_one_source_over_its_connection_cap_while_others_are_served(
    tmp_path: Path,
) -> None:
    """`http.max_connections_per_source` in collector.yaml: the extra connections of one
    address are closed at once, unanswered; another address queries and the good sender
    reports meanwhile (the limits themselves: tests/config/test_http_limits.py)."""
    per_source = 3
    with collector_daemon(tmp_path, {"max_connections_per_source": per_source}) as daemon:
        good = GoodSender(daemon.url)
        stop = asyncio.Event()
        traffic = asyncio.ensure_future(good.run(stop))
        flood: list[RawClient] = []
        try:
            flood = [await RawClient(daemon.port, source="127.0.0.2").connect() for _ in range(8)]
            await wait_refused(flood, 8 - per_source, SLACK)
            query = _encode({"table": "flows", "select": ["count()"]})
            other = await RawClient(daemon.port, source="127.0.0.3").connect()
            await other.send(_post("/query", f"Content-Length: {len(query)}\r\n") + query)
            await other.answered_within(time.monotonic(), SLACK + 3)
            assert other.status() == 200, other.received
            other.close()
            await asyncio.sleep(0.5)  # a late close would show here
            assert sum(c.closed_at is None for c in flood) == per_source
        finally:
            for c in flood:
                c.close()
            stop.set()
            await asyncio.wait_for(traffic, 30)  # re-raises a failed report or query
        lines = [line for line in daemon.logs() if line.get("msg") == "connection refused"]
    assert good.sent >= 3, good.sent
    assert [line["addr"] for line in lines] == ["127.0.0.2"], lines
