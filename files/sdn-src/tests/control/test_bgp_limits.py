"""The BGP listener's connection gate on real sockets (127.0.0.x sources): an address
that is not a peer is closed unanswered while a real session carries on, a peer gets
two connections and not a third, and the total caps all sources; the control node
reads `bgp.max_connections*` and counts the refusals in its introspect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from controlkit import RecordingSink, control_settings

from vrstack.control import bgp_codec as bc
from vrstack.control import main as control_main
from vrstack.control.bgp import BGP_LIMITS, Advert, BgpSpeaker, PeerConfig
from vrstack.control.node import ControlNode
from vrstack.service.connlimits import LOG_INTERVAL, ConnLimits
from vrstack.service.settings import ConfigError

pytestmark = pytest.mark.asyncio
ASN = 64512
A, B = "127.0.0.61", "127.0.0.62"  # two speakers with a real session
STRANGER = "127.0.0.63"
LONE = "127.0.0.64"  # a speaker whose peers are raw sockets
PEER, PEER2, PEER3 = "127.0.0.65", "127.0.0.66", "127.0.0.67"
ROUTE = ("127.0.0.61:1", "198.18.10.3/32")


async def until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not {what} within {timeout}s")
        await asyncio.sleep(0.05)


async def dial(sp: BgpSpeaker, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(sp.address, sp.port, local_addr=(source, 0)), 10
    )


async def first_bytes(reader: asyncio.StreamReader) -> bytes:
    """The first message header the speaker sends: its OPEN's when it took the
    connection (at once), b"" when it closed it unanswered."""
    try:
        return await asyncio.wait_for(reader.readexactly(bc.HEADER_LEN), 10)
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except ConnectionResetError:
        return b""


def is_open(header: bytes) -> bool:
    return len(header) == bc.HEADER_LEN and bc.parse_header(header)[1] == bc.OPEN


@pytest_asyncio.fixture
async def lone() -> AsyncIterator[Callable[[ConnLimits], Awaitable[BgpSpeaker]]]:
    """A speaker on LONE with three peers whose ports are closed: it only accepts."""
    made: list[BgpSpeaker] = []

    async def start(limits: ConnLimits) -> BgpSpeaker:
        sp = BgpSpeaker(RecordingSink(), LONE, ASN, LONE, 0, connect_retry=60, limits=limits)
        await sp.start()
        sp.set_peers([PeerConfig(a, a, 9, ASN, 30, "control-node") for a in (PEER, PEER2, PEER3)])
        made.append(sp)
        return sp

    yield start
    for sp in made:
        await sp.stop()


@pytest.fixture
def refusal_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[dict[str, object]]]:
    caplog.set_level(logging.WARNING, logger="vrstack.service.connlimits")
    return lambda: [r.__dict__ for r in caplog.records if r.getMessage() == "connection refused"]


async def test_a_stranger_is_closed_unanswered_and_the_real_session_carries_on(
    refusal_lines: Callable[[], list[dict[str, object]]],
) -> None:
    sinks = {A: RecordingSink(), B: RecordingSink()}
    speakers = {a: BgpSpeaker(sinks[a], a, ASN, a, 0, connect_retry=0.5) for a in (A, B)}
    for sp in speakers.values():
        await sp.start()
    a, b = speakers[A], speakers[B]
    try:
        a.set_peers([PeerConfig("b", B, b.port, ASN, 9, "control-node")])
        b.set_peers([PeerConfig("a", A, a.port, ASN, 9, "control-node")])
        await until(
            lambda: all(sp.introspect()[0]["state"] == "Established" for sp in (a, b)),
            "Established both ways",
        )
        flaps = [sp.introspect()[0]["flaps"] for sp in (a, b)]
        refused_before = a.gate.refused

        began = time.monotonic()
        conns = [await dial(a, STRANGER) for _ in range(5)]
        answers = [await first_bytes(reader) for reader, _ in conns]
        for _, writer in conns:
            writer.close()
        took = time.monotonic() - began
        assert answers == [b""] * 5, "a stranger must get nothing, not even an OPEN"
        assert a.gate.refused - refused_before == 5
        assert STRANGER not in a.gate.by_source

        # The session with the real peer saw none of it: still up, and it carries routes.
        a.set_export(
            ROUTE,
            Advert(bc.VpnPrefix(*ROUTE, 17), "198.18.2.11", ("target:64512:1",), ("MPLSoUDP",)),
        )
        await until(
            lambda: any(u.vpn_reach for u in sinks[B].updates), "the route at B after the flood"
        )
        assert [sp.introspect()[0]["flaps"] for sp in (a, b)] == flaps
        assert [sp.introspect()[0]["state"] for sp in (a, b)] == ["Established"] * 2
        assert sinks[A].downs == sinks[B].downs == 0
    finally:
        for sp in (a, b):
            await sp.stop()
    said = [r for r in refusal_lines() if r["addr"] == STRANGER]
    assert said and said[0]["listener"] == "bgp" and said[0]["reason"] == "not_allowed"
    # Rate limited: one line for the five, or one per 10 s on a very slow machine.
    assert len(said) <= 1 + int(took // LOG_INTERVAL), said


async def test_a_peer_gets_two_connections_not_a_third(
    lone: Callable[[ConnLimits], Awaitable[BgpSpeaker]],
    refusal_lines: Callable[[], list[dict[str, object]]],
) -> None:
    sp = await lone(ConnLimits(max_connections=64, max_connections_per_source=2))
    first, second, third = [await dial(sp, PEER) for _ in range(3)]
    assert is_open(await first_bytes(first[0])) and is_open(await first_bytes(second[0]))
    assert await first_bytes(third[0]) == b"", "the third from one peer is closed unanswered"
    third[1].close()
    assert (sp.gate.open, sp.gate.refused, sp.gate.by_source) == (2, 1, {PEER: 2})
    # Its place comes back when one of the two closes.
    first[1].close()
    await until(lambda: sp.gate.open == 1, "the closed connection's place given back")
    again = await dial(sp, PEER)
    assert is_open(await first_bytes(again[0]))
    for _, writer in (second, again):
        writer.close()
    said = [r for r in refusal_lines() if r["addr"] == PEER]
    assert [(r["reason"], r["limit"]) for r in said] == [("max_connections_per_source", 2)]


async def test_the_total_caps_all_peers(
    lone: Callable[[ConnLimits], Awaitable[BgpSpeaker]],
    refusal_lines: Callable[[], list[dict[str, object]]],
) -> None:
    sp = await lone(ConnLimits(max_connections=2, max_connections_per_source=2))
    conns = [await dial(sp, source) for source in (PEER, PEER2, PEER3)]
    got = [await first_bytes(reader) for reader, _ in conns]
    assert [is_open(data) for data in got] == [True, True, False]
    assert got[2] == b""
    assert (sp.gate.open, sp.gate.refused) == (2, 1)
    for _, writer in conns:
        with contextlib.suppress(Exception):
            writer.close()
    said = [r for r in refusal_lines() if r["addr"] == PEER3]
    assert [(r["reason"], r["limit"]) for r in said] == [("max_connections", 2)]


async def test_the_control_node_counts_and_reads_its_bgp_limits(tmp_path: Path) -> None:
    assert control_main.load(control_settings(tmp_path, {}))[0].bgp_limits == BGP_LIMITS
    bgp = {"address": LONE, "asn": ASN, "max_connections": 8, "max_connections_per_source": 1}
    ns = control_main.load(control_settings(tmp_path, bgp))[0]
    assert ns.bgp_limits == ConnLimits(8, 1)
    node = ControlNode(replace(ns, bgp_port=0, xmpp_host="127.0.0.1", xmpp_port=0))
    await node.start()  # no config API: BGP with no peers, so every connection is a stranger
    try:
        assert node.speaker is not None
        reader, writer = await dial(node.speaker, STRANGER)
        assert await first_bytes(reader) == b""
        writer.close()
        intro = node.introspect()
        assert (intro["bgp_connections"], intro["bgp_connections_refused"]) == (0, 1)
    finally:
        await node.stop()
    with pytest.raises(ConfigError) as err:
        bgp = {"max_connections": 1, "max_connections_per_source": 2}
        control_main.load(control_settings(tmp_path, bgp))
    assert str(err.value).startswith(
        f"{tmp_path / 'control.yaml'}: bgp.max_connections_per_source: must be at most"
    ), str(err.value)
