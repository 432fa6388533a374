"""Alarms: raised from status reports (or their absence) with since and reason, cleared
when the condition goes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from collectorkit import Client, running_collector, status

from vrstack.analytics.alarms import AlarmBook, conditions
from vrstack.analytics.server import Options
from vrstack.analytics.store import Status
from vrstack.config.testing import wait_until

T = 1.8e9


def st(**over: Any) -> Status:
    base: dict[str, Any] = {
        "source": "compute1",
        "service": "vrstack-agent",
        "ts": T,
        "state": "up",
        "interval": 10.0,
        "connections": [{"type": "control", "name": "a", "state": "up"}],
        "datapath": "present",
        "detail": "",
    }
    return Status(**{**base, **over})


@pytest.mark.parametrize(
    ("status", "now", "want"),
    [
        (st(), T + 29, []),
        (st(), T + 31, ["service-down"]),  # 3 missed intervals of 10 s
        (st(state="down"), T, ["service-down"]),
        (st(state="degraded"), T, []),
        (
            st(
                connections=[
                    {"type": "control", "name": "a", "state": "down"},
                    {"type": "control", "name": "b", "state": "connecting"},
                    {"type": "config", "name": "api", "state": "up"},
                ]
            ),
            T,
            ["control-lost"],
        ),
        (
            st(
                connections=[
                    {"type": "control", "name": "a", "state": "down"},
                    {"type": "control", "name": "b", "state": "up"},
                ]
            ),
            T,
            [],
        ),
        (st(connections=[{"type": "config", "name": "api", "state": "down"}]), T, []),
        (st(datapath="absent"), T, ["datapath-missing"]),
        (st(datapath=""), T, []),
    ],
)
def test_conditions(status: Status, now: float, want: list[str]) -> None:
    got = conditions([(status, status.ts)], now, 3)
    assert sorted(a.type for a in got.values()) == want


def test_book_keeps_since_until_cleared() -> None:
    book = AlarmBook(missed=3)
    book.report(st(state="down", detail="crashed"), T)
    raised, cleared = book.evaluate(T)
    assert [(a.type, a.since, a.reason) for a in raised] == [
        ("service-down", T, "vrstack-agent on compute1 reported down: crashed")
    ]
    book.report(st(ts=T + 5, state="down", detail="still"), T + 5)
    assert book.evaluate(T + 5) == ([], [])  # still the first since and reason
    assert next(iter(book.active.values())).since == T
    book.report(st(ts=T - 100, state="up"), T + 6)  # an older report changes nothing
    assert book.evaluate(T + 6) == ([], [])
    book.report(st(ts=T + 7), T + 7)
    raised, cleared = book.evaluate(T + 7)
    assert raised == [] and [a.type for a in cleared] == ["service-down"]


@pytest.mark.asyncio
async def test_alarms_raise_and_clear_through_the_api(tmp_path: Path) -> None:
    options = Options(missed_intervals=2, alarm_interval=0.05)
    async with running_collector(tmp_path / "a.db", options) as run, Client(run.url) as c:

        async def alarms() -> list[dict[str, Any]]:
            code, body = await c.call("GET", "/alarms")
            assert code == 200
            return body["items"]  # type: ignore[no-any-return]

        # compute1's agent loses both control nodes and its datapath.
        lost = status(
            "a1",
            connections=[
                {"type": "control", "name": "198.18.1.11", "state": "down"},
                {"type": "control", "name": "198.18.1.12", "state": "connecting"},
            ],
            datapath="absent",
        )
        # An earlier good report in the same batch: the newest report counts.
        earlier = status("a0", ts=lost["ts"] - 1)
        assert (await c.ingest("compute1", [lost, earlier]))[0] == 200
        got = {a["type"]: a for a in await alarms()}
        assert set(got) == {"control-lost", "datapath-missing"}
        assert got["control-lost"]["since"] == lost["ts"]
        assert "198.18.1.11 down" in got["control-lost"]["reason"]
        assert got["control-lost"]["source"] == "compute1"
        # One control node back: control-lost clears, the datapath alarm stays.
        back = status(
            "a2",
            connections=[{"type": "control", "name": "198.18.1.11", "state": "up"}],
            datapath="absent",
        )
        assert (await c.ingest("compute1", [back]))[0] == 200
        assert [a["type"] for a in await alarms()] == ["datapath-missing"]
        assert (await c.ingest("compute1", [status("a3")]))[0] == 200
        assert await alarms() == []

        # A service that reports every 0.2 s and then stops: down after 2 missed intervals.
        assert (
            await c.ingest(
                "ctl1", [status("b1", service="vrstack-control", interval=0.2, connections=[])]
            )
        )[0] == 200
        sent = time.time()

        async def stale() -> list[dict[str, Any]]:
            return [a for a in await alarms() if a["type"] == "service-down"]

        down = (await wait_until(stale, timeout=10))[0]
        assert time.time() - sent >= 0.3  # 2 intervals after it arrived (just before `sent`)
        assert down["source"] == "ctl1" and "no status from vrstack-control" in down["reason"]
        listing = (await c.call("GET", "/status"))[1]["items"]
        assert [s["late"] for s in listing if s["source"] == "ctl1"] == [True]
        # It reports again: cleared.
        assert (
            await c.ingest(
                "ctl1", [status("b2", service="vrstack-control", interval=60, connections=[])]
            )
        )[0] == 200
        assert await alarms() == []

        # Reported down; then the operator forgets the decommissioned service.
        assert (
            await c.ingest(
                "ctl2", [status("c1", service="vrstack-api", state="down", connections=[])]
            )
        )[0] == 200
        assert [a["id"] for a in await alarms()] == ["service-down:ctl2:vrstack-api"]
        assert (await c.call("DELETE", "/status/ctl2/vrstack-api"))[0] == 204
        assert await alarms() == []
        assert (await c.call("DELETE", "/status/ctl2/vrstack-api"))[0] == 404
        assert "ctl2" not in {s["source"] for s in (await c.call("GET", "/status"))[1]["items"]}


def test_evaluating_some_services_leaves_the_others() -> None:
    book = AlarmBook(missed=3)
    book.report(st(source="c1", state="down"), T)
    book.report(st(source="c2", datapath="absent"), T)
    raised, _ = book.evaluate(T)
    assert len(raised) == 2
    book.report(st(source="c1", ts=T + 1), T + 1)
    raised, cleared = book.evaluate(T + 1, {("c1", "vrstack-agent")})
    assert raised == [] and [a.source for a in cleared] == ["c1"]
    assert [a.source for a in book.active.values()] == ["c2"]
    # A partial pass looks only at its services: c2 goes stale there; c1 in the full pass
    # (the collector runs one every check_interval).
    raised, _ = book.evaluate(T + 100, {("c2", "vrstack-agent")})
    assert [(a.type, a.source) for a in raised] == [("service-down", "c2")]
    raised, _ = book.evaluate(T + 100)
    assert [(a.type, a.source) for a in raised] == [("service-down", "c1")]
