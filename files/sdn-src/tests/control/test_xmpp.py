"""The agent protocol: the stream parser, the stanza schema, and a control node's answer
to malformed input (a stream error and a close, while other agents carry on)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrstack.control import xmpp
from vrstack.control.node import ControlNode, NodeSettings
from vrstack.control.simagent import SimAgent
from vrstack.control.xmpp import Nexthop, XmppError

OPEN = xmpp.stream_open("compute1", "control")


def stanzas(events: list[xmpp.StreamEvent]) -> list[str]:
    return [e.kind if e.stanza is None else e.stanza.tag for e in events]


def test_stream_split_anywhere_gives_the_same_events() -> None:
    routes = {"198.18.10.3/32": Nexthop("198.18.2.11", 17, 5, ("MPLSoUDP", "VXLAN"))}
    data = (
        OPEN + xmpp.subscribe("1", "d:b:b") + xmpp.publish("2", "d:b:b", routes) + xmpp.STREAM_CLOSE
    )
    whole = xmpp.StreamParser().feed(data)
    assert stanzas(whole) == ["open", "iq", "iq", "close"]
    for cut in range(1, len(data), 7):
        p = xmpp.StreamParser()
        events = p.feed(data[:cut]) + p.feed(data[cut:])
        assert stanzas(events) == stanzas(whole)
    req = xmpp.parse_request(whole[2].stanza)  # type: ignore[arg-type]
    assert (req.action, req.node, req.routes) == ("publish", "d:b:b", routes)
    assert whole[0].attrs["from"] == "compute1"


def test_requests_round_trip() -> None:
    p = xmpp.StreamParser()
    p.feed(OPEN)
    for data, action in (
        (xmpp.subscribe("a", "x"), "subscribe"),
        (xmpp.subscribe("b", "x", unsubscribe=True), "unsubscribe"),
        (xmpp.retract("c", "x", ["198.18.10.3/32"]), "retract"),
        (xmpp.ping("d"), "ping"),
    ):
        (ev,) = p.feed(data)
        assert ev.stanza is not None
        assert xmpp.parse_request(ev.stanza).action == action


def test_pushes_round_trip() -> None:
    p = xmpp.StreamParser()
    p.feed(OPEN)
    hops = [Nexthop("198.18.2.11", 17, 5, ("MPLSoUDP",)), Nexthop("198.18.2.12", 9, 5, ("VXLAN",))]
    (ev,) = p.feed(xmpp.route_update("d:b:b", {"198.18.10.3/32": hops, "198.18.10.4/32": []}))
    assert ev.stanza is not None
    push = xmpp.parse_push(ev.stanza)
    assert push.routes == {"198.18.10.3/32": hops, "198.18.10.4/32": []}
    obj = {"uuid": "u1", "name": "blue", "note": "<&'\">"}
    (ev,) = p.feed(xmpp.config_update({"virtual-network/u1": obj, "routing-instance/u2": None}, 7))
    assert ev.stanza is not None
    push = xmpp.parse_push(ev.stanza)
    assert push.config == {"virtual-network/u1": obj, "routing-instance/u2": None}
    assert push.revision == 7


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (b"<stream xmlns:stream='x'>", "invalid-namespace"),
        (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream/>", "restricted-xml"),
        (OPEN + b"<?evil x?>", "restricted-xml"),
        (OPEN + b"<iq></x>", "not-well-formed"),
        (OPEN + b"hello", "not-well-formed"),
        (OPEN + b"<a>" * (xmpp.MAX_DEPTH + 2), "policy-violation"),
        (OPEN + b"<iq>" + b"x" * (xmpp.MAX_STANZA + 1), "policy-violation"),
    ],
)
def test_bad_streams(data: bytes, condition: str) -> None:
    with pytest.raises(XmppError) as err:
        xmpp.StreamParser().feed(data)
    assert err.value.condition == condition


@pytest.mark.parametrize(
    "stanza",
    [
        b"<message/>",
        b"<iq type='set'><ping xmlns='urn:xmpp:ping'/></iq>",  # no id
        b"<iq id='1' type='set'/>",
        b"<iq id='1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe/></pubsub></iq>",
        b"<iq id='1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'/></pubsub></iq>",
        b"<iq id='1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'>"
        b"<item id='198.18.10.300/32'><entry><nexthop address='198.18.2.11' encap='VXLAN'/></entry></item>"
        b"</publish></pubsub></iq>",
        b"<iq id='1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'>"
        b"<item id='198.18.10.3/32'><entry><nexthop address='198.18.2.11' label='99999999' encap='VXLAN'/>"
        b"</entry></item></publish></pubsub></iq>",
        b"<iq id='1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'>"
        b"<item id='198.18.10.3/32'><entry><nexthop address='198.18.2.11' encap='PPP'/></entry></item>"
        b"</publish></pubsub></iq>",
        b"<iq id='1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><delete node='x'/></pubsub></iq>",
    ],
)
def test_bad_stanzas(stanza: bytes) -> None:
    p = xmpp.StreamParser()
    p.feed(OPEN)
    (ev,) = p.feed(stanza)
    assert ev.stanza is not None
    with pytest.raises(XmppError):
        xmpp.parse_request(ev.stanza)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_input_only_raises_xmpp_errors(junk: bytes) -> None:
    p = xmpp.StreamParser()
    try:
        for ev in p.feed(OPEN) + p.feed(junk):
            if ev.stanza is not None:
                xmpp.parse_request(ev.stanza)
    except XmppError:
        pass


@pytest.mark.asyncio
async def test_server_closes_bad_streams_and_keeps_serving() -> None:
    node = ControlNode(
        NodeSettings(name="ctl", asn=64512, bgp_address="127.0.0.9", bgp_port=0, xmpp_port=0)
    )
    await node.start()
    try:
        good = SimAgent("compute1", "127.0.0.1", node.xmpp_port)
        await good.connect()
        await good.subscribe("d:b:b")
        for payload, condition in (
            (b"<iq id='1' type='set'><bogus/></iq>", "bad-format"),
            (b"<iq id='1'><unclosed></iq>", "not-well-formed"),
            (b"<?pi x?>", "restricted-xml"),
        ):
            bad = SimAgent("compute2", "127.0.0.1", node.xmpp_port)
            await bad.connect()
            await bad.publish("d:b:b", {"198.18.10.9/32": Nexthop("198.18.2.12", 5, 0, ("VXLAN",))})
            await good.wait_for(lambda s: s.nexthops("d:b:b", "198.18.10.9/32"))
            await bad.send_raw(payload)
            await asyncio.wait_for(bad.closed.wait(), 10)
            assert bad.error == condition
            # Its routes went with its session; the good agent is told and still served.
            await good.wait_for(lambda s: not s.nexthops("d:b:b", "198.18.10.9/32"))
        # A stream that does not name its virtual-router is refused.
        reader, writer = await asyncio.open_connection("127.0.0.1", node.xmpp_port)
        writer.write(xmpp.stream_open("", "control"))
        reply = await asyncio.wait_for(reader.read(), 10)
        assert b"invalid-from" in reply and reply.endswith(xmpp.STREAM_CLOSE)
        writer.close()
        await good.publish(
            "d:b:b", {"198.18.10.3/32": Nexthop("198.18.2.11", 17, 0, ("MPLSoUDP",))}
        )
        await good.wait_for(lambda s: s.nexthops("d:b:b", "198.18.10.3/32") == {"198.18.2.11"})
        assert node.introspect()["agent_flaps"] == {"compute2": 3}
        await good.close()
    finally:
        await node.stop()


@pytest.mark.asyncio
async def test_silent_agent_is_dropped_after_hold_time_and_pings_keep_it() -> None:
    node = ControlNode(
        NodeSettings(
            name="ctl",
            asn=64512,
            bgp_address="127.0.0.9",
            bgp_port=0,
            xmpp_port=0,
            xmpp_hold_time=1.0,
        )
    )
    await node.start()
    try:
        pinging = SimAgent("compute1", "127.0.0.1", node.xmpp_port, ping_interval=0.2)
        silent = SimAgent("compute2", "127.0.0.1", node.xmpp_port)
        await pinging.connect()
        await silent.connect()
        await asyncio.wait_for(silent.closed.wait(), 10)
        assert silent.error == "connection-timeout"
        assert not pinging.closed.is_set() and "compute1" in node.agents
        await pinging.close()
    finally:
        await node.stop()


@pytest.mark.asyncio
async def test_tls_stream(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert)),
            *("-subj", "/CN=vrstack-control", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    node = ControlNode(
        NodeSettings(
            name="ctl",
            asn=64512,
            bgp_address="127.0.0.9",
            bgp_port=0,
            xmpp_port=0,
            tls_cert=str(cert),
            tls_key=str(key),
        )
    )
    await node.start()
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        agent = SimAgent("compute1", "127.0.0.1", node.xmpp_port, tls=trusted)
        await agent.connect()
        await agent.subscribe("d:b:b")
        await agent.publish("d:b:b", {"198.18.10.3/32": Nexthop("198.18.2.11", 17, 0, ("VXLAN",))})
        await agent.wait_for(lambda s: s.nexthops("d:b:b", "198.18.10.3/32"))
        await agent.close()
        # A client that does not speak TLS gets nowhere, and the node keeps serving.
        plain = SimAgent("compute2", "127.0.0.1", node.xmpp_port)
        with pytest.raises((ConnectionError, TimeoutError, OSError)):
            await plain.connect(timeout=3)
        await plain.abort()
        again = SimAgent("compute1", "127.0.0.1", node.xmpp_port, tls=trusted)
        await again.connect()
        await again.close()
    finally:
        await node.stop()
