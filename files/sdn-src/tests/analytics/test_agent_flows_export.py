"""The agent's flow records (vrstack.agent.export) through a real Sender into a real
collector: a flow's slices sum to its counters in a group-by query, whichever way it
ends; flows there before the agent count from when it looked; the per-interval cap
defers a live flow's delta and loses only an ended flow's. The flow table's reads are
given as FlowEntry values (the datapath is the neighbour here; the end-to-end test
has a real one)."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from pathlib import Path
from typing import Any

import pytest
from collectorkit import Client, running_collector

from vrstack.agent.export import FlowExport, port_record
from vrstack.agent.ports import Port
from vrstack.analytics.sender import Sender
from vrstack.config.testing import ADMIN_TOKEN
from vrstack.datapath.flowtable import FlowEntry

pytestmark = pytest.mark.asyncio
T0 = 1_796_030_000.0
KEY = ["vrf", "src_ip", "dst_ip", "proto", "src_port", "dst_port", "action"]


class Clock:
    """Wall and monotonic time moved by the test (the datapath's times are monotonic)."""

    def __init__(self) -> None:
        self.t = 0.0

    def wall(self) -> float:
        return T0 + self.t

    def mono_ns(self) -> int:
        return int((1000 + self.t) * 1e9)


def entry(clock: Clock, index: int, nbytes: int, packets: int, **over: Any) -> FlowEntry:
    fields: dict[str, Any] = {
        "index": index,
        "gen": 1,
        "vrf": 1,
        "sip": ipaddress.ip_address("198.18.10.3"),
        "dip": ipaddress.ip_address("198.18.10.4"),
        "proto": 6,
        "sport": 40000 + index,
        "dport": 80,
        "action": "forward",
        "rindex": None,
        "packets": packets,
        "bytes": nbytes,
        "last_ns": clock.mono_ns(),
        "src_vif": 3,
    }
    fields.update(over)
    return FlowEntry(**fields)


async def totals(c: Client) -> dict[int, dict[str, Any]]:
    """Per source port: sum(bytes), sum(packets), count() and the action, grouped by the
    flow's key as an operator's query does."""
    rows = await c.query_all(
        table="flows",
        select=[*KEY, "sum(bytes)", "sum(packets)", "count()", "min(start)", "max(end)"],
        group_by=KEY,
        since=T0 - 3600,
        until=T0 + 3600,
        limit=1000,
    )
    return {r["src_port"]: r for r in rows}


async def deliver(sender: Sender) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(sender.run(stop))
    assert await sender.flushed(10), sender.last_error
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_slices_sum_to_the_flow_counters(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "a.db") as col, Client(col.url) as c:
        sender = Sender(col.url, "compute1", ADMIN_TOKEN, flush_interval=0.05)
        clock = Clock()
        exp = FlowExport(sender.emit, {1: "demo:red:red"}.get, 100, clock.wall, clock.mono_ns)
        exp.set_up(1, 2)  # a flow and its reverse, decided by the agent
        clock.t = 1
        # Three intervals of a long-lived flow (1), its reverse (2), a drop flow (3)
        # set up as well, one more (4) there before the agent looked.
        old = entry(clock, 4, 5000, 5)
        exp.observe([entry(clock, 1, 1500, 3), entry(clock, 2, 200, 2), old])
        exp.report()
        exp.set_up(3)
        clock.t = 31
        drop = entry(clock, 3, 120, 2, action="drop", dport=9999)
        exp.observe([entry(clock, 1, 91500, 63), entry(clock, 2, 5200, 40), drop, old])
        exp.report()
        clock.t = 61
        exp.observe([entry(clock, 1, 204_900, 140), entry(clock, 2, 9000, 70), drop])
        exp.report()  # 4 vanished (evicted): its last slice had nothing new
        # 1 ages out: its last slice carries what came since the last read.
        clock.t = 70
        exp.ended(entry(clock, 1, 210_000, 144))
        exp.report()
        await deliver(sender)

        got = await totals(c)
        assert got[40001]["sum(bytes)"] == 210_000 and got[40001]["sum(packets)"] == 144
        assert got[40001]["count()"] == 4  # one slice per interval with traffic
        assert got[40001]["min(start)"] <= T0 + 1 and got[40001]["max(end)"] == T0 + 70
        assert got[40002]["sum(bytes)"] == 9000 and got[40002]["count()"] == 3
        assert got[40003]["action"] == "drop" and got[40003]["dst_port"] == 9999
        assert got[40003]["sum(bytes)"] == 120 and got[40003]["vrf"] == "demo:red:red"
        assert 40004 not in got  # there before us and no traffic since: nothing to send
        assert exp.counters == {"flow_records": 8, "flow_records_overflow": 0}

        # Slices do not overlap: each starts where the previous one ended.
        rows = await c.query_all(
            table="flows",
            select=["start", "end"],
            where=[{"field": "src_port", "value": 40001}],
            since=T0 - 3600,
            sort=["end"],
        )
        assert all(a["end"] == b["start"] for a, b in itertools.pairwise(rows))


async def test_cap_per_interval_and_slot_reuse(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "a.db") as col, Client(col.url) as c:
        sender = Sender(col.url, "compute1", ADMIN_TOKEN, flush_interval=0.05)
        clock = Clock()
        exp = FlowExport(sender.emit, lambda i: f"vrf{i}", 2, clock.wall, clock.mono_ns)
        exp.set_up(*range(5))
        clock.t = 1
        exp.observe([entry(clock, i, 1000 * (i + 1), i + 1) for i in range(5)])
        exp.report()  # 5 flows, room for 2: the two biggest go, three wait
        assert exp.counters == {"flow_records": 2, "flow_records_overflow": 3}
        clock.t = 31
        exp.observe([entry(clock, i, 1000 * (i + 1), i + 1) for i in range(5)])
        exp.report()  # the next two
        clock.t = 61
        # Slot 0 now holds a new flow (the datapath's generation moved on): the old
        # one ended while its delta still waited, and the budget is spent on others.
        exp.observe([entry(clock, i, 1000 * (i + 1), i + 1) for i in range(1, 5)])
        exp.report()
        exp.set_up(0)
        exp.observe([entry(clock, 0, 700, 1, gen=2, sport=41000)])
        clock.t = 91
        exp.report()
        exp.observe([])
        await deliver(sender)
        got = await totals(c)
        for i in range(1, 5):
            assert got[40000 + i]["sum(bytes)"] == 1000 * (i + 1), i
        assert 40000 not in got  # slot 0's first flow: its slice was the one lost
        assert got[41000]["sum(bytes)"] == 700
        assert exp.counters["flow_records"] == 5


async def test_port_record() -> None:
    port = Port("p1", "demo:blue:blue", "blue", "02:00:00:00:00:01", ("fd00::3", "198.18.10.3"))
    assert port_record(port, "up") == {
        "interface": "p1",
        "vm": "p1",
        "network": "demo:blue",
        "vrf": "demo:blue:blue",
        "ip": "198.18.10.3",
        "mac": "02:00:00:00:00:01",
        "state": "up",
    }
    assert port_record(Port("p2", "", "blue", "02:00:00:00:00:02", ("198.18.10.4",)), "up") is None
