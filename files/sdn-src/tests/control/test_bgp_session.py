"""BGP sessions against a scripted peer on a raw socket: what the speaker answers to a
wrong AS, to malformed messages, and to silence (hold timer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from controlkit import RecordingSink

from vrstack.control import bgp_codec as bc
from vrstack.control.bgp import Advert, BgpSpeaker, PeerConfig

pytestmark = pytest.mark.asyncio
PEER = "127.0.0.21"


@pytest_asyncio.fixture
async def speaker() -> AsyncIterator[tuple[BgpSpeaker, RecordingSink]]:
    sink = RecordingSink()
    sp = BgpSpeaker(sink, "127.0.0.20", 64512, "127.0.0.20", 0, connect_retry=60)
    await sp.start()
    # The peer's port is closed: the speaker only accepts (our raw socket connects to it).
    sp.set_peers([PeerConfig("p", PEER, 9, 64512, 6, "control-node")])
    yield sp, sink
    await sp.stop()


async def read_msg(reader: asyncio.StreamReader) -> bc.Message:
    header = await asyncio.wait_for(reader.readexactly(19), 15)
    length, _ = bc.parse_header(header)
    body = await asyncio.wait_for(reader.readexactly(length - 19), 15)
    return bc.parse(header + body)


async def open_session(
    sp: BgpSpeaker, asn: int = 64512, hold: int = 6
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.20", sp.port, local_addr=(PEER, 0))
    assert isinstance(await read_msg(reader), bc.Open)
    writer.write(bc.encode(bc.Open(asn=asn, hold_time=hold, router_id=PEER)))
    return reader, writer


async def test_wrong_peer_as_gets_open_error(speaker: tuple[BgpSpeaker, RecordingSink]) -> None:
    sp, _ = speaker
    reader, writer = await open_session(sp, asn=65000)
    msg = await read_msg(reader)
    assert isinstance(msg, bc.Notification) and (msg.code, msg.subcode) == (2, 2)
    writer.close()


async def established(
    sp: BgpSpeaker, sink: RecordingSink
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await open_session(sp)
    assert isinstance(await read_msg(reader), bc.Keepalive)
    writer.write(bc.encode(bc.Keepalive()))
    eor = await read_msg(reader)  # nothing to export: just End-of-RIB
    assert isinstance(eor, bc.Update) and eor.end_of_rib
    assert sp.peers[PEER].state == "Established"
    return reader, writer


async def test_malformed_update_gets_notification_and_session_drops(
    speaker: tuple[BgpSpeaker, RecordingSink],
) -> None:
    sp, sink = speaker
    reader, writer = await established(sp, sink)
    # A route with ORIGIN 7.
    body = b"\x00\x00\x00\x0b" + bytes([0x40, 1, 1, 7, 0x40, 2, 0, 0x40, 3, 4, 1]) + b"\x02\x03\x04"
    writer.write(bc.MARKER + (19 + len(body) + 0).to_bytes(2, "big") + b"\x02" + body)
    msg = await read_msg(reader)
    assert isinstance(msg, bc.Notification) and msg.code == 3
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the NOTIFICATION
    for _ in range(100):
        if sink.downs:
            break
        await asyncio.sleep(0.05)
    assert sink.downs == 1 and sp.peers[PEER].flaps == 1
    writer.close()


async def test_bad_marker_gets_header_error(speaker: tuple[BgpSpeaker, RecordingSink]) -> None:
    sp, sink = speaker
    reader, writer = await established(sp, sink)
    writer.write(b"\x00" * 19)
    msg = await read_msg(reader)
    assert isinstance(msg, bc.Notification) and (msg.code, msg.subcode) == (1, 1)
    writer.close()


async def test_updates_reach_the_sink_and_exports_are_sent(
    speaker: tuple[BgpSpeaker, RecordingSink],
) -> None:
    sp, sink = speaker
    reader, writer = await established(sp, sink)
    route = bc.VpnPrefix("127.0.0.21:1", "198.18.10.3/32", 17)
    writer.write(
        bc.encode(
            bc.Update(
                origin=0,
                local_pref=100,
                ext_communities=[bc.encode_route_target("target:64512:1")],
                vpn_next_hop="198.18.2.11",
                vpn_reach=[route],
            )
        )
    )
    sp.set_export(
        ("127.0.0.20:1", "198.18.10.4/32"),
        Advert(
            bc.VpnPrefix("127.0.0.20:1", "198.18.10.4/32", 18),
            "198.18.2.12",
            ("target:64512:1",),
            ("VXLAN",),
        ),
    )
    msg = await read_msg(reader)
    while isinstance(msg, bc.Keepalive):
        msg = await read_msg(reader)
    assert isinstance(msg, bc.Update)
    assert msg.vpn_reach == [bc.VpnPrefix("127.0.0.20:1", "198.18.10.4/32", 18)]
    assert msg.route_targets == ["target:64512:1"] and msg.encaps == ["VXLAN"]
    assert msg.local_pref == 100 and msg.as_path == []  # iBGP
    assert msg.vpn_next_hop == "198.18.2.12"
    for _ in range(100):
        if sink.updates:
            break
        await asyncio.sleep(0.05)
    assert sink.updates[0].vpn_reach == [route]
    writer.close()


async def test_silent_peer_hits_the_hold_timer(speaker: tuple[BgpSpeaker, RecordingSink]) -> None:
    sp, _ = speaker
    reader, writer = await open_session(sp, hold=3)
    assert isinstance(await read_msg(reader), bc.Keepalive)
    writer.write(bc.encode(bc.Keepalive()))
    # We never send again; keepalives come every hold/3 s, then HOLD_EXPIRED after 3 s.
    while True:
        msg = await read_msg(reader)
        if isinstance(msg, bc.Notification):
            break
    assert msg.code == bc.HOLD_EXPIRED
    writer.close()
