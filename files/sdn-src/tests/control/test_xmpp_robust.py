"""The control node's XMPP port under malformed, oversized, never-ending and slow input.

Two well-behaved agents keep exchanging routes through a control node while bad
clients attack the same port: malformed XML, a stanza over MAX_STANZA, a stanza that
never ends, a slowloris (one byte every two seconds, of the stream header or of a
stanza) and a crowd of connections that never say anything. Each bad connection must be
closed within its documented bound (a header or stanza must arrive whole within a
third of the hold time, docs/sdn-control.md), and every route the good agents publish
meanwhile must reach the other one.

Then the connection limits: one source opening more than its cap has the extra
connections closed at once, another source is still served, the total cap holds, and
closed connections give their places back, while the good agents keep their sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from vrstack.control import xmpp
from vrstack.control.node import ControlNode, NodeSettings
from vrstack.control.simagent import SimAgent
from vrstack.control.xmpp import Nexthop
from vrstack.service import connlimits
from vrstack.service.connlimits import ConnLimits
from vrstack.service.rawclient import RawClient, wait_refused

HOLD = 9.0
LIMIT = HOLD * xmpp.STANZA_SHARE  # 3 s for a header or a stanza
SLACK = 2.0  # scheduling on a loaded 2-core machine
IDLE_CONNECTIONS = 100
INSTANCE = "d:b:b"
OPEN = xmpp.stream_open("compute9", "control")
PUBSUB = b"<iq id='1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"


@contextlib.asynccontextmanager
async def running_node(hold: float, limits: ConnLimits) -> AsyncIterator[ControlNode]:
    n = ControlNode(
        NodeSettings(
            name="ctl",
            asn=64512,
            bgp_address="127.0.0.9",
            bgp_port=0,
            xmpp_port=0,
            xmpp_hold_time=hold,
            xmpp_limits=limits,
        )
    )
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


@pytest_asyncio.fixture
async def node() -> AsyncIterator[ControlNode]:
    # The crowd below comes from one address: room for it (the connection limits are
    # tried by the last test).
    async with running_node(HOLD, ConnLimits(1000, 1000)) as n:
        yield n


class Exchange:
    """Two agents publishing routes to each other in turn, each seen by the other."""

    def __init__(self, a: SimAgent, b: SimAgent) -> None:
        self.a, self.b = a, b
        self.rounds = 0
        self.slowest = 0.0
        self.stop = asyncio.Event()
        self.task: asyncio.Future[None] | None = None

    @classmethod
    async def start(cls, port: int, ping_interval: float) -> Exchange:
        """compute1 and compute2 (from 127.0.0.1) connected, subscribed and exchanging."""
        a = SimAgent("compute1", "127.0.0.1", port, ping_interval=ping_interval)
        b = SimAgent("compute2", "127.0.0.1", port, ping_interval=ping_interval)
        for agent in (a, b):
            await agent.connect()
            await agent.subscribe(INSTANCE)
        exchange = cls(a, b)
        exchange.task = asyncio.ensure_future(exchange.run(exchange.stop))
        return exchange

    async def finish(self) -> None:
        """Stop exchanging; re-raises a failed exchange."""
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)

    async def run(self, stop: asyncio.Event) -> None:
        for i in range(1, 10_000):
            if stop.is_set():
                return
            src, dst = (self.a, self.b) if i % 2 else (self.b, self.a)
            prefix = f"198.18.{10 + i // 250}.{i % 250 + 1}/32"
            hop = "198.18.2.11" if src is self.a else "198.18.2.12"
            started = time.monotonic()
            await src.publish(INSTANCE, {prefix: Nexthop(hop, 16 + i, 0, ("MPLSoUDP",))})
            await dst.wait_for(lambda s, p=prefix, h=hop: s.nexthops(INSTANCE, p) == {h}, 10)
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.rounds += 1
            await asyncio.sleep(0.05)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(getattr(r, "error", ""))
        for r in caplog.records
        if r.name == "vrstack.control.agents" and r.getMessage() == "agent stream error"
    ]


@pytest.mark.asyncio
async def test_bad_clients_are_closed_in_time_and_agents_keep_exchanging_routes(
    node: ControlNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vrstack.control.agents")
    port = node.xmpp_port
    exchange = await Exchange.start(port, HOLD / 6)
    a, b = exchange.a, exchange.b
    report: dict[str, float] = {}
    try:
        # A crowd of connections that never open their stream.
        idle = [await RawClient(port).connect() for _ in range(IDLE_CONNECTIONS)]
        crowd_opened = min(c.opened_at for c in idle)

        # Malformed XML: refused at once, with the stream error.
        malformed = await RawClient(port).connect()
        await malformed.send(OPEN + b"<iq id='1'><unclosed></iq>")
        sent = time.monotonic()
        report["malformed"] = await malformed.closed_within(sent, SLACK)
        assert b"not-well-formed" in malformed.received

        # Over MAX_STANZA in one go; parsing 75,000 elements takes the node a while.
        big = await RawClient(port).connect()
        began = time.monotonic()
        await big.send(OPEN + PUBSUB + b"<item id='x'/>" * (xmpp.MAX_STANZA // 14 + 1))
        report["oversized"] = await big.closed_within(began, LIMIT + SLACK)
        assert b"larger than" in big.received

        # A stanza that never ends, at up to 200 KB/s: its deadline comes before its size
        # (at 400 KB/s an idle host reached MAX_STANZA just before the deadline).
        endless = await RawClient(port).connect()
        await endless.send(OPEN + PUBSUB)
        began = time.monotonic()
        chunk = b"<item id='198.18.10.1/32'/>" * 150
        for _ in range(2000):  # bounded: far more than LIMIT at this pace
            if not await endless.send(chunk):
                break
            await asyncio.sleep(0.02)
        took = report["endless"] = await endless.closed_within(began, LIMIT + SLACK)
        assert took >= LIMIT * 0.9, f"closed after {took:.1f}s: before its deadline?"
        assert b"not complete within" in endless.received, endless.received[-200:]

        # Slowloris: one byte every 2 s, of a stanza, and of the stream header.
        slow = await RawClient(port).connect()
        await slow.send(OPEN)
        slow_header = await RawClient(port).connect()
        began = time.monotonic()
        sent_stanza, sent_header = await asyncio.gather(
            slow.trickle(PUBSUB, 2.0), slow_header.trickle(OPEN, 2.0)
        )
        took = report["slow stanza"] = await slow.closed_within(began, LIMIT + SLACK)
        assert took >= LIMIT * 0.9 and sent_stanza < len(PUBSUB)
        report["slow header"] = await slow_header.closed_within(
            slow_header.opened_at, LIMIT + SLACK
        )
        assert sent_header < len(OPEN)

        # The crowd went within the same bound of connecting.
        for c in idle:
            report["idle"] = await c.closed_within(crowd_opened, LIMIT + SLACK)
        for c in (*idle, malformed, big, endless, slow, slow_header):
            c.close()

        # The node names each violation in its log (the last lines may trail the closes
        # on a loaded host: wait a bounded moment for them).
        for _attempt in range(50):
            errors = _errors(caplog)
            if sum("not complete within" in e for e in errors) >= 3 + IDLE_CONNECTIONS:
                break
            await asyncio.sleep(0.1)
        assert any("not-well-formed" in e for e in errors)
        assert any(f"larger than {xmpp.MAX_STANZA}" in e for e in errors), errors
        assert sum("not complete within" in e for e in errors) >= 3 + IDLE_CONNECTIONS, errors
    finally:
        await exchange.finish()
    # The good agents never lost their sessions and routes flowed all along.
    assert not a.closed.is_set() and not b.closed.is_set()
    assert set(node.agents) == {"compute1", "compute2"}
    assert exchange.rounds >= 20, exchange.rounds
    assert exchange.slowest < 5.0, exchange.slowest
    print(
        f"{exchange.rounds} routes exchanged, slowest {exchange.slowest:.2f}s; closed after {report}"
    )
    for agent in (a, b):
        await agent.close()


def test_parser_times_unfinished_stanzas_only() -> None:
    """`partial_since` starts with the first byte of an unfinished header or stanza,
    survives more bytes of it, and clears once it is complete; whitespace between
    stanzas does not start it."""
    p = xmpp.StreamParser()
    p.feed(OPEN[:10], now=1.0)
    assert p.partial_since == 1.0
    p.feed(OPEN[10:], now=2.0)
    assert p.partial_since is None
    p.feed(b"\n ", now=3.0)
    assert p.partial_since is None
    p.feed(b"<iq id='p' ty", now=4.0)
    assert p.partial_since == 4.0
    p.feed(b"pe='get'><ping xmlns='urn:xmpp:ping'/>", now=5.0)
    assert p.partial_since == 4.0
    (ev,) = p.feed(b"</iq><iq id='q'", now=6.0)
    assert ev.kind == "stanza" and p.partial_since == 6.0
    (ev,) = p.feed(b" type='get'><ping xmlns='urn:xmpp:ping'/></iq>", now=7.0)
    assert p.partial_since is None


async def _opens_stream(source: str, port: int, name: str) -> RawClient:
    """A client from `source` that opens its stream and gets the node's header back."""
    c = await RawClient(port, source=source).connect()
    await c.send(xmpp.stream_open(name, "control"))
    for _attempt in range(100):
        if b"<stream:stream" in c.received or c.closed_at is not None:
            break
        await asyncio.sleep(0.05)
    assert b"<stream:stream" in c.received, f"{source} not served: {c.received!r}"
    return c


@pytest.mark.asyncio
async def test_connection_limits_per_source_and_in_total(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vrstack.service.connlimits")
    per_source, total = 4, 10
    # A long hold time: the connections the limits admit stay until the test ends.
    async with running_node(60.0, ConnLimits(total, per_source)) as node:
        port = node.xmpp_port
        exchange = await Exchange.start(port, 5.0)
        a, b = exchange.a, exchange.b
        began = time.monotonic()
        opened: list[RawClient] = []
        try:
            # One source opens three times its cap: the rest are closed at once.
            flood = [await RawClient(port, source="127.0.0.2").connect() for _ in range(12)]
            opened += flood
            await wait_refused(flood, 12 - per_source, SLACK)
            await asyncio.sleep(0.5)  # a late close would show here
            kept = [c for c in flood if c.closed_at is None]
            assert len(kept) == per_source, len(kept)

            # Another source is served meanwhile.
            other = await _opens_stream("127.0.0.3", port, "compute3")
            opened.append(other)
            assert node.xmpp_gate.open == 2 + per_source + 1

            # The total: 7 open, so a third source gets 3 of its 4.
            third = [await RawClient(port, source="127.0.0.4").connect() for _ in range(4)]
            opened += third
            await wait_refused(third, 1, SLACK)
            assert node.introspect()["xmpp_connections"] == total
            assert sum(c.closed_at is None for c in third) == total - 7

            # Closed connections free their places: the flooding source is served again.
            for c in kept:
                c.close()
            for _attempt in range(100):
                if node.xmpp_gate.open <= total - per_source:
                    break
                await asyncio.sleep(0.05)
            assert node.xmpp_gate.open == total - per_source, node.xmpp_gate.by_source
            opened.append(await _opens_stream("127.0.0.2", port, "compute4"))
            refused = node.introspect()["xmpp_connections_refused"]
            assert refused == 12 - per_source + 1, refused
        finally:
            for c in opened:
                c.close()
            await exchange.finish()
        took = time.monotonic() - began

        # The good agents kept their sessions and exchanged routes all along.
        assert not a.closed.is_set() and not b.closed.is_set()
        assert {"compute1", "compute2"} <= set(node.agents)
        assert exchange.rounds >= 5, exchange.rounds
        for agent in (a, b):
            await agent.close()

    # Each refusal source is named; the flood's 8 refusals make at most a line per 10 s.
    lines = [r for r in caplog.records if r.getMessage() == "connection refused"]
    flood_lines = [r for r in lines if getattr(r, "addr", "") == "127.0.0.2"]
    assert flood_lines and flood_lines[0].reason == "max_connections_per_source"
    assert len(flood_lines) <= 1 + int(took // connlimits.LOG_INTERVAL), len(flood_lines)
    assert any(
        getattr(r, "addr", "") == "127.0.0.4" and r.reason == "max_connections" for r in lines
    ), [r.__dict__ for r in lines]
    print(
        f"{exchange.rounds} routes exchanged meanwhile (slowest {exchange.slowest:.2f}s), "
        f"{len(lines)} refusal lines for {12 - per_source + 1} refusals in {took:.1f}s"
    )
