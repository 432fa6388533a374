"""The agent protocol: XML stanzas over one TCP (or TLS) stream, XMPP style.

`StreamParser` turns bytes into stream events (open, stanza, close) and refuses what
XMPP forbids (DTDs, entities, processing instructions) or what is too big; the
functions below build and read the stanzas documented in docs/sdn-control.md.
Any violation raises `XmppError` with an RFC 6120 stream error condition: the server
sends it as a stream error and closes the stream.
"""

from __future__ import annotations

import ipaddress
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_PING = "urn:xmpp:ping"
CONFIG_NODE = "config"  # the pubsub node that carries the agent's config
ENCAPS = ("MPLSoUDP", "MPLSoGRE", "VXLAN")
MAX_STANZA = 1 << 20  # bytes of one stanza, or of the stream header, as they arrive
MAX_DEPTH = 16
# A stanza, and the stream header, must arrive whole within this share of the hold time
# from its first byte: a peer trickling bytes (slowloris) restarts the hold timer with
# each one but is dropped all the same. Agents ping every third of the hold time, so a
# well-behaved stanza is never near it.
STANZA_SHARE = 1 / 3


class XmppError(Exception):
    """A protocol violation; `condition` is the RFC 6120 stream error to send."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


@dataclass
class StreamEvent:
    kind: str  # "open", "stanza", "close"
    attrs: dict[str, str] = field(default_factory=dict)
    stanza: ET.Element | None = None


class StreamParser:
    """Incremental parser of one XML stream; `feed` returns the complete events so far."""

    def __init__(self) -> None:
        self._p = expat.ParserCreate()
        self._p.StartElementHandler = self._start
        self._p.EndElementHandler = self._end
        self._p.CharacterDataHandler = self._text
        self._p.StartDoctypeDeclHandler = self._forbidden("DTD")
        self._p.EntityDeclHandler = self._forbidden("entity declaration")
        self._p.ProcessingInstructionHandler = self._forbidden("processing instruction")
        self._p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._stack: list[ET.Element] = []
        self._events: list[StreamEvent] = []
        self._opened = False
        self._closed = False
        self._fed = 0  # bytes fed so far
        self._boundary = 0  # where the last complete stanza (or the header) ended, roughly
        # When the first byte of the unfinished stanza (or header) came; None between them.
        self.partial_since: float | None = None
        self._completed = False  # a stanza or the header ended in this feed

    @staticmethod
    def _forbidden(what: str) -> Any:
        def handler(*_args: Any) -> None:
            raise XmppError("restricted-xml", f"{what} not allowed")

        return handler

    @property
    def opened(self) -> bool:
        return self._opened

    def feed(self, data: bytes, now: float | None = None) -> list[StreamEvent]:
        if self._closed:
            if data.strip():
                raise XmppError("not-well-formed", "data after the end of the stream")
            return []
        self._fed += len(data)
        self._completed = False
        try:
            self._p.Parse(data, False)
        except expat.ExpatError as exc:
            raise XmppError("not-well-formed", str(exc)) from None
        # Parsed first: a read may end one stanza and begin the next. At most one read
        # (64 KiB) beyond the limit is ever held.
        if self._fed - self._boundary > MAX_STANZA:
            raise XmppError("policy-violation", f"stanza larger than {MAX_STANZA} bytes")
        self._track(data, time.monotonic() if now is None else now)
        events, self._events = self._events, []
        return events

    def _track(self, data: bytes, now: float) -> None:
        # Unfinished: before the header's end, inside a stanza, or a tag begun after the
        # last '>' (whitespace between stanzas is not a stanza).
        unfinished = (
            not self._opened or len(self._stack) > 1 or bool(data[data.rfind(b">") + 1 :].strip())
        )
        if not unfinished or self._closed:
            self.partial_since = None
        elif self.partial_since is None or self._completed:
            self.partial_since = now

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        depth = len(self._stack)
        if depth == 0 and not self._opened:
            if tag != "stream:stream" or attrs.get("xmlns:stream") != NS_STREAM:
                raise XmppError("invalid-namespace", "expected <stream:stream>")
            self._opened = True
            self._boundary = self._p.CurrentByteIndex
            self._completed = True
            self._stack.append(ET.Element(tag, attrs))
            self._events.append(StreamEvent("open", dict(attrs)))
            return
        if depth >= MAX_DEPTH:
            raise XmppError("policy-violation", f"elements nested deeper than {MAX_DEPTH}")
        el = ET.Element(tag, attrs)
        if depth > 1:
            self._stack[-1].append(el)
        self._stack.append(el)

    def _end(self, tag: str) -> None:
        el = self._stack.pop()
        if not self._stack:
            self._closed = True
            self._events.append(StreamEvent("close"))
        elif len(self._stack) == 1:
            self._boundary = self._p.CurrentByteIndex
            self._completed = True
            self._events.append(StreamEvent("stanza", stanza=el))

    def _text(self, data: str) -> None:
        if len(self._stack) <= 1:
            if data.strip():
                raise XmppError("not-well-formed", "text between stanzas")
            return
        el = self._stack[-1]
        if len(el):
            el[-1].tail = (el[-1].tail or "") + data
        else:
            el.text = (el.text or "") + data


# ---- stream framing -------------------------------------------------------------------


def _q(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")
    )


def stream_open(sender: str, to: str, stream_id: str = "") -> bytes:
    sid = f" id='{_q(stream_id)}'" if stream_id else ""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'"
        f" from='{_q(sender)}' to='{_q(to)}'{sid} version='1.0'>"
    ).encode()


STREAM_CLOSE = b"</stream:stream>"


def stream_error(condition: str, text: str) -> bytes:
    return (
        f"<stream:error><{condition} xmlns='{NS_ERRORS}'/>"
        f"<text xmlns='{NS_ERRORS}'>{_q(text)}</text></stream:error>"
    ).encode() + STREAM_CLOSE


def to_bytes(el: ET.Element) -> bytes:
    return ET.tostring(el, encoding="unicode").encode()


# ---- routes ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Nexthop:
    """Where a VM address lives: a compute's tunnel endpoint and its local label/VNI."""

    address: str
    label: int = 0
    vni: int = 0
    encap: tuple[str, ...] = ()

    def to_xml(self) -> ET.Element:
        attrs = {"address": self.address, "label": str(self.label), "vni": str(self.vni)}
        attrs["encap"] = " ".join(self.encap)
        return ET.Element("nexthop", attrs)

    @classmethod
    def from_xml(cls, el: ET.Element) -> Nexthop:
        try:
            address = str(ipaddress.ip_address(el.attrib["address"]))
            label = int(el.get("label", "0"))
            vni = int(el.get("vni", "0"))
        except (KeyError, ValueError) as exc:
            raise XmppError("bad-format", f"bad nexthop {el.attrib}: {exc}") from None
        encap = tuple(el.get("encap", "").split())
        if not 0 <= label < 1 << 20 or not 0 <= vni < 1 << 24:
            raise XmppError("bad-format", f"nexthop label or vni out of range: {el.attrib}")
        if not encap or any(e not in ENCAPS for e in encap):
            raise XmppError("bad-format", f"nexthop encap must be from {ENCAPS}: {encap}")
        return cls(address, label, vni, encap)


def check_prefix(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value))
    except ValueError:
        raise XmppError("bad-format", f"bad prefix {value!r}") from None


# ---- agent -> control node stanzas ----------------------------------------------------


@dataclass
class Request:
    """One parsed agent iq: what to do, on which instance, with which routes."""

    iq_id: str
    action: str  # "subscribe", "unsubscribe", "publish", "retract", "ping"
    node: str = ""
    routes: dict[str, Nexthop] = field(default_factory=dict)  # publish
    prefixes: list[str] = field(default_factory=list)  # retract


def parse_request(el: ET.Element) -> Request:
    """Read an agent's stanza; anything else than the documented forms is an XmppError."""
    if el.tag != "iq":
        raise XmppError("unsupported-stanza-type", f"<{el.tag}> from an agent")
    iq_id = el.get("id", "")
    if not iq_id or el.get("type") not in ("set", "get"):
        raise XmppError("bad-format", "iq needs an id and type set or get")
    if len(el) != 1:
        raise XmppError("bad-format", "iq must have exactly one child")
    child = el[0]
    if child.tag == "ping" and child.get("xmlns") == NS_PING:
        return Request(iq_id, "ping")
    if child.tag != "pubsub" or child.get("xmlns") != NS_PUBSUB or len(child) != 1:
        raise XmppError("bad-format", "iq child must be one pubsub operation or a ping")
    op = child[0]
    node = op.get("node", "")
    if not node or len(node) > 1024:
        raise XmppError("bad-format", f"<{op.tag}> needs a node (routing instance)")
    if op.tag in ("subscribe", "unsubscribe"):
        return Request(iq_id, op.tag, node)
    if op.tag == "publish":
        routes: dict[str, Nexthop] = {}
        for item in op:
            if item.tag != "item" or len(item) != 1 or item[0].tag != "entry":
                raise XmppError("bad-format", "publish items must hold one <entry>")
            prefix = check_prefix(item.get("id", ""))
            hops = [Nexthop.from_xml(h) for h in item[0] if h.tag == "nexthop"]
            if len(hops) != 1:
                raise XmppError("bad-format", f"entry for {prefix} needs exactly one nexthop")
            routes[prefix] = hops[0]
        if not routes:
            raise XmppError("bad-format", "publish without items")
        return Request(iq_id, "publish", node, routes=routes)
    if op.tag == "retract":
        prefixes = [check_prefix(i.get("id", "")) for i in op if i.tag == "item"]
        if not prefixes:
            raise XmppError("bad-format", "retract without items")
        return Request(iq_id, "retract", node, prefixes=prefixes)
    raise XmppError("bad-format", f"unknown pubsub operation <{op.tag}>")


def iq_result(iq_id: str) -> bytes:
    return to_bytes(ET.Element("iq", {"type": "result", "id": iq_id}))


def _pubsub_iq(iq_id: str, op: ET.Element) -> ET.Element:
    iq = ET.Element("iq", {"type": "set", "id": iq_id})
    ET.SubElement(iq, "pubsub", {"xmlns": NS_PUBSUB}).append(op)
    return iq


def subscribe(iq_id: str, node: str, unsubscribe: bool = False) -> bytes:
    op = ET.Element("unsubscribe" if unsubscribe else "subscribe", {"node": node})
    return to_bytes(_pubsub_iq(iq_id, op))


def publish(iq_id: str, node: str, routes: dict[str, Nexthop]) -> bytes:
    op = ET.Element("publish", {"node": node})
    for prefix, nh in routes.items():
        ET.SubElement(ET.SubElement(op, "item", {"id": prefix}), "entry").append(nh.to_xml())
    return to_bytes(_pubsub_iq(iq_id, op))


def retract(iq_id: str, node: str, prefixes: list[str]) -> bytes:
    op = ET.Element("retract", {"node": node})
    for p in prefixes:
        ET.SubElement(op, "item", {"id": p})
    return to_bytes(_pubsub_iq(iq_id, op))


def ping(iq_id: str) -> bytes:
    iq = ET.Element("iq", {"type": "get", "id": iq_id})
    ET.SubElement(iq, "ping", {"xmlns": NS_PING})
    return to_bytes(iq)


# ---- control node -> agent: route and config updates ----------------------------------


def route_update(node: str, routes: dict[str, list[Nexthop]]) -> bytes:
    """Current nexthops per prefix of an instance; an empty list retracts the prefix."""
    msg = ET.Element("message", {"type": "headline"})
    items = ET.SubElement(ET.SubElement(msg, "event", {"xmlns": NS_EVENT}), "items", {"node": node})
    for prefix, hops in routes.items():
        if hops:
            entry = ET.SubElement(ET.SubElement(items, "item", {"id": prefix}), "entry")
            for nh in hops:
                entry.append(nh.to_xml())
        else:
            ET.SubElement(items, "retract", {"id": prefix})
    return to_bytes(msg)


def config_update(objects: dict[str, dict[str, Any] | None], revision: int) -> bytes:
    """Config objects keyed `<type>/<uuid>`: the JSON object, or None when it went away."""
    msg = ET.Element("message", {"type": "headline"})
    event = ET.SubElement(msg, "event", {"xmlns": NS_EVENT})
    items = ET.SubElement(event, "items", {"node": CONFIG_NODE, "revision": str(revision)})
    for key, obj in objects.items():
        if obj is None:
            ET.SubElement(items, "retract", {"id": key})
        else:
            ET.SubElement(ET.SubElement(items, "item", {"id": key}), "config").text = json.dumps(
                obj, sort_keys=True
            )
    return to_bytes(msg)


@dataclass
class Push:
    """A parsed control node message (what an agent reads)."""

    node: str
    routes: dict[str, list[Nexthop]] = field(default_factory=dict)  # [] = retracted
    config: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    revision: int = 0


def parse_push(el: ET.Element) -> Push:
    if el.tag != "message" or len(el) != 1 or el[0].get("xmlns") != NS_EVENT:
        raise XmppError("bad-format", f"expected a pubsub event message, got <{el.tag}>")
    items = el[0].find("items")
    if items is None or not items.get("node"):
        raise XmppError("bad-format", "event without items node")
    push = Push(items.get("node", ""), revision=int(items.get("revision", "0")))
    for item in items:
        key = item.get("id", "")
        if push.node == CONFIG_NODE:
            text = item.findtext("config")
            push.config[key] = json.loads(text) if item.tag == "item" and text else None
        elif item.tag == "retract":
            push.routes[check_prefix(key)] = []
        else:
            entry = item.find("entry")
            hops = [Nexthop.from_xml(h) for h in entry] if entry is not None else []
            push.routes[check_prefix(key)] = hops
    return push
