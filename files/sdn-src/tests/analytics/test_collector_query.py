"""Queries: filters, CIDR and prefix matches, time ranges, group-by sums, sorting, paging,
and 400s that name the bad part of the query."""

from __future__ import annotations

import base64
import ipaddress
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from collectorkit import NOW, Client, flow, running_collector
from conftest import StoreFactory

from vrstack.analytics.query import parse

N = 300


def dataset() -> list[dict[str, Any]]:
    out = []
    for i in range(N):
        over: dict[str, Any] = {
            "vrf": ["demo:blue:blue", "demo:red:red", "ops:green:green"][i % 3],
            "action": "drop" if i % 10 == 0 else "forward",
            "proto": 17 if i % 4 == 0 else 6,
        }
        if i % 5 == 0:
            over["src_ip"] = f"2001:db8:0:{i % 2}::{i + 1:x}"
        out.append(flow(i, **over))
    return out


@pytest_asyncio.fixture
async def client(make_store: StoreFactory) -> AsyncIterator[Client]:
    """A collector with the data set, on each store (SQLite, MariaDB): same answers."""
    async with running_collector(make_store()) as run, Client(run.url) as c:
        data = dataset()
        for start in range(0, N, 100):
            assert (await c.ingest("compute1", data[start : start + 100]))[0] == 200
        yield c


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items}


def expect(pred: Any) -> set[str]:
    return {r["id"] for r in dataset() if pred(r)}


def in_net(addr: str, net: str) -> bool:
    a, n = ipaddress.ip_address(addr), ipaddress.ip_network(net)
    return a.version == n.version and a in n


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("where", "pred"),
    [
        ([{"field": "vrf", "value": "demo:red:red"}], lambda r: r["vrf"] == "demo:red:red"),
        ([{"field": "action", "op": "!=", "value": "forward"}], lambda r: r["action"] == "drop"),
        ([{"field": "bytes", "op": ">", "value": 1250}], lambda r: r["bytes"] > 1250),
        ([{"field": "bytes", "op": "<=", "value": 1010}], lambda r: r["bytes"] <= 1010),
        ([{"field": "vrf", "op": "prefix", "value": "demo:"}], lambda r: r["vrf"][:5] == "demo:"),
        (
            [{"field": "src_ip", "op": "in", "value": "198.18.10.0/28"}],
            lambda r: in_net(r["src_ip"], "198.18.10.0/28"),
        ),
        (
            [{"field": "src_ip", "op": "in", "value": "2001:db8:0:1::/64"}],
            lambda r: in_net(r["src_ip"], "2001:db8:0:1::/64"),
        ),
        ([{"field": "src_ip", "value": "198.18.10.7"}], lambda r: r["src_ip"] == "198.18.10.7"),
        (
            [
                {"field": "proto", "value": 17},
                {"field": "vrf", "op": "!=", "value": "ops:green:green"},
            ],
            lambda r: r["proto"] == 17 and r["vrf"] != "ops:green:green",
        ),
        ([{"field": "vrf", "value": "x' OR '1'='1"}], lambda r: False),
        ([{"field": "vrf", "op": "contains", "value": "re"}], lambda r: "re" in r["vrf"]),
        ([{"field": "vrf", "op": "contains", "value": "%"}], lambda r: False),
        ([{"field": "vrf", "op": "prefix", "value": "_"}], lambda r: False),
    ],
)
async def test_where(client: Client, where: list[dict[str, Any]], pred: Any) -> None:
    got = await client.query_all(table="flows", where=where, select=["id"], limit=1000)
    assert ids(got) == expect(pred)
    assert len(got) == len(ids(got))


@pytest.mark.asyncio
async def test_time_range_selects_overlapping_flows(client: Client) -> None:
    # flow i covers [NOW-600+i, NOW-590+i]: it overlaps [NOW-400, NOW-350] for i in 190..250.
    got = await client.query_all(
        table="flows", select=["id"], since=NOW - 400, until=NOW - 350, limit=1000
    )
    assert ids(got) == {f"f{i}" for i in range(190, 251)}
    # A narrow range (a thirtieth of the table) is read through the time index; a wide
    # one by a scan: both answer the same.
    narrow = await client.query_all(table="flows", select=["id"], since=NOW - 300.5, limit=7)
    assert ids(narrow) == {f"f{i}" for i in range(290, 300)} and len(narrow) == 10
    # Relative times: everything ended within the last hour; nothing in the future.
    assert len(await client.query_all(table="flows", since="-1h", limit=1000)) == N
    assert await client.query_all(table="flows", since="now") == []
    iso = await client.query_all(table="flows", since="2000-01-01T00:00:00Z", until="now")
    assert len(iso) == N


@pytest.mark.asyncio
async def test_group_by_sums_and_counts_sorted(client: Client) -> None:
    page = await client.query(
        table="flows",
        select=["vrf", "action", "sum(bytes)", "count()", "max(src_port)"],
        group_by=["vrf", "action"],
        sort=[{"field": "sum(bytes)", "order": "desc"}],
    )
    want: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in dataset():
        w = want[(r["vrf"], r["action"])]
        w[0] += r["bytes"]
        w[1] += 1
        w[2] = max(w[2], r["src_port"])
    got = {
        (i["vrf"], i["action"]): [i["sum(bytes)"], i["count()"], i["max(src_port)"]]
        for i in page["items"]
    }
    assert got == dict(want)
    sums = [i["sum(bytes)"] for i in page["items"]]
    assert sums == sorted(sums, reverse=True)
    # Aggregates without group_by: one row over everything that matches.
    total = await client.query(
        table="flows",
        select=["count()", "sum(packets)", "min(src_ip)"],
        where=[{"field": "src_ip", "op": "in", "value": "198.18.0.0/15"}],
    )
    v4 = [r for r in dataset() if ":" not in r["src_ip"]]
    assert total["items"] == [
        {"count()": len(v4), "sum(packets)": 10 * len(v4), "min(src_ip)": "198.18.10.2"}
    ]
    # Top talkers by address: group keys come back as addresses.
    top = await client.query(
        table="flows",
        select=["src_ip", "sum(bytes)"],
        group_by=["src_ip"],
        sort=[{"field": "sum(bytes)", "order": "desc"}],
        limit=3,
    )
    by_src: dict[str, int] = defaultdict(int)
    for r in dataset():
        by_src[str(ipaddress.ip_address(r["src_ip"]))] += r["bytes"]
    best = sorted(by_src.items(), key=lambda kv: -kv[1])[:3]
    assert [(i["src_ip"], i["sum(bytes)"]) for i in top["items"]] == best


@pytest.mark.asyncio
async def test_time_buckets_make_series(client: Client) -> None:
    series = await client.query_all(
        table="flows",
        select=["bucket(end, 60)", "sum(bytes)", "count()"],
        group_by=["bucket(end,60)"],
        sort=["bucket(end,60)"],
        limit=1000,
    )
    want: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in dataset():
        w = want[int(r["end"] / 60) * 60]
        w[0] += r["bytes"]
        w[1] += 1
    assert {i["bucket(end,60)"]: [i["sum(bytes)"], i["count()"]] for i in series} == dict(want)
    assert [i["bucket(end,60)"] for i in series] == sorted(want)


@pytest.mark.asyncio
async def test_paging_is_stable_while_records_arrive(client: Client) -> None:
    body: dict[str, Any] = {
        "table": "flows",
        "select": ["id", "bytes"],
        "limit": 70,
        "sort": [{"field": "bytes", "order": "desc"}],
    }
    seen: list[dict[str, Any]] = []
    for n in range(10):
        page = await client.query(**body)
        seen += page["items"]
        # New records between pages are not part of this listing.
        assert (await client.ingest("compute9", [flow(10_000 + n, bytes=10**9)]))[0] == 200
        if page["next"] is None:
            break
        body["cursor"] = page["next"]
    assert len(seen) == N and ids(seen) == expect(lambda r: True)
    assert [s["bytes"] for s in seen] == sorted((s["bytes"] for s in seen), reverse=True)
    # Grouped queries page too (the records added above are in this new listing).
    groups = await client.query_all(
        table="flows", select=["src_port", "count()"], group_by=["src_port"], limit=45
    )
    assert len(groups) == N + n + 1
    assert [g["src_port"] for g in groups] == sorted(g["src_port"] for g in groups)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"table": "flowz"}, "table"),
        ({"table": "flows", "select": ["colour"]}, "select[0]"),
        ({"table": "flows", "select": ["bytes; DROP TABLE flows"]}, "select[0]"),
        ({"table": "flows", "select": ["sum(vrf)"]}, "select[0]"),
        ({"table": "flows", "select": ["sum(nope)"]}, "select[0]"),
        ({"table": "flows", "select": []}, "select"),
        ({"table": "flows", "where": [{"field": "colour", "value": 1}]}, "where[0].field"),
        ({"table": "flows", "where": [{"field": "vrf", "op": "~", "value": "x"}]}, "where[0].op"),
        ({"table": "flows", "where": [{"field": "vrf", "op": "in", "value": "x"}]}, "where[0].op"),
        (
            {"table": "flows", "where": [{"field": "src_ip", "op": "in", "value": "10.0.0/33"}]},
            "where[0].value",
        ),
        ({"table": "flows", "where": [{"field": "src_ip", "value": "nope"}]}, "where[0].value"),
        ({"table": "flows", "where": [{"field": "bytes", "value": "1k"}]}, "where[0].value"),
        ({"table": "flows", "where": [{"field": "bytes"}]}, "where[0].value"),
        (
            {"table": "flows", "where": [{"field": "src_ip", "op": "<", "value": "1.1.1.1"}]},
            "where[0].op",
        ),
        ({"table": "flows", "where": {"vrf": "x"}}, "where"),
        ({"table": "flows", "since": "yesterday"}, "since"),
        ({"table": "flows", "until": "2026-11-30T10:00:00"}, "until"),
        ({"table": "flows", "since": True}, "since"),
        ({"table": "flows", "group_by": ["vrf"], "select": ["vrf", "bytes"]}, "select[1]"),
        ({"table": "flows", "group_by": ["connections"]}, "group_by[0]"),
        ({"table": "flows", "group_by": ["bucket(vrf,60)"]}, "group_by[0]"),
        ({"table": "flows", "group_by": ["bucket(end,7)"]}, "group_by[0]"),
        ({"table": "flows", "select": ["bucket(end,60)", "count()"]}, "select[0]"),
        ({"table": "flows", "sort": [{"field": "bytes", "order": "up"}]}, "sort[0].order"),
        ({"table": "flows", "sort": ["colour"]}, "sort[0].field"),
        ({"table": "flows", "group_by": ["vrf"], "sort": ["bytes"]}, "sort[0].field"),
        ({"table": "flows", "limit": 0}, "limit"),
        ({"table": "flows", "limit": 10_001}, "limit"),
        ({"table": "flows", "cursor": "garbage"}, "cursor"),
        ({"table": "flows", "colour": 1}, "colour"),
        ({"table": "status", "where": [{"field": "connections", "value": "x"}]}, "where[0].field"),
    ],
)
async def test_bad_query_is_a_400_naming_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    status, answer = await client.call("POST", "/query", body)
    assert status == 400 and answer["field"] == field, answer
    assert (await client.query(table="flows", select=["count()"]))["items"] == [{"count()": N}]


@pytest.mark.asyncio
async def test_cursor_belongs_to_its_query(client: Client) -> None:
    page = await client.query(table="flows", limit=10)
    status, answer = await client.call(
        "POST", "/query", {"table": "logs", "limit": 10, "cursor": page["next"]}
    )
    assert status == 400 and answer["field"] == "cursor" and "another query" in answer["error"]
    # A forged cursor (negative offset) is refused.
    state = json.loads(base64.urlsafe_b64decode(page["next"]))
    forged = base64.urlsafe_b64encode(json.dumps({**state, "o": -5}).encode()).decode()
    status, answer = await client.call(
        "POST", "/query", {"table": "flows", "limit": 10, "cursor": forged}
    )
    assert status == 400 and answer["field"] == "cursor"
    # A different page size with the same cursor is fine: it continues where it was.
    nxt = await client.query(table="flows", limit=20, cursor=page["next"])
    assert nxt["items"][0]["id"] == "f10"


def test_sql_is_parameterised_and_the_time_term_is_placed() -> None:
    body = {
        "table": "flows",
        "select": ["vrf", "sum(bytes)"],
        "where": [{"field": "vrf", "value": "a'; DROP TABLE flows; --"}],
        "since": 1.8e9,
        "group_by": ["vrf"],
    }
    q = parse(body, NOW)
    scan, params = q.sql(7, by_time=False)
    indexed, _ = q.sql(7, by_time=True)
    assert "DROP" not in scan and params[:3] == ["a'; DROP TABLE flows; --", 1.8e9, 7]
    assert '+"end" >= ?' in scan and "AND rowid <= ?" in scan
    assert '"end" >= ?' in indexed and "+rowid <= ?" in indexed and '+"end"' not in indexed
