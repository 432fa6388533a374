"""BGP-4 messages (RFC 4271) for IPv4 L3VPN (RFC 4364, 4760, 8277): encode and parse.

Only what a control node needs: OPEN with capabilities (multiprotocol, 4-octet AS,
route refresh), KEEPALIVE, NOTIFICATION, ROUTE-REFRESH and UPDATE with the well-known
attributes, extended communities (route targets, tunnel encapsulation) and
MP_REACH/MP_UNREACH for AFI 1 / SAFI 128. Parsing checks every length and raises
`BgpError` with the NOTIFICATION code and subcode that RFC 4271 section 6 asks for.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

MARKER = b"\xff" * 16
HEADER_LEN = 19
MAX_LEN = 4096

OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE_REFRESH = 1, 2, 3, 4, 5

# NOTIFICATION error codes (RFC 4271 4.5) and the subcodes we send.
HEADER_ERROR, OPEN_ERROR, UPDATE_ERROR, HOLD_EXPIRED, FSM_ERROR, CEASE = 1, 2, 3, 4, 5, 6
HDR_NOT_SYNC, HDR_BAD_LENGTH, HDR_BAD_TYPE = 1, 2, 3
OPEN_BAD_VERSION, OPEN_BAD_PEER_AS, OPEN_BAD_ID, OPEN_BAD_PARAM, OPEN_BAD_HOLD = 1, 2, 3, 4, 6
UPD_MALFORMED_LIST, UPD_UNKNOWN_WELLKNOWN, UPD_MISSING_WELLKNOWN = 1, 2, 3
UPD_FLAGS, UPD_LENGTH, UPD_BAD_ORIGIN, UPD_BAD_NEXTHOP = 4, 5, 6, 8
UPD_OPTIONAL, UPD_BAD_NETWORK, UPD_BAD_ASPATH = 9, 10, 11
CEASE_ADMIN_SHUTDOWN, CEASE_PEER_DECONFIGURED, CEASE_COLLISION = 2, 3, 7

# Capabilities (RFC 5492 and friends).
CAP_MP, CAP_ROUTE_REFRESH, CAP_AS4 = 1, 2, 65
AFI_IPV4, SAFI_UNICAST, SAFI_VPN = 1, 1, 128
AS_TRANS = 23456

# Path attributes: type code -> (name, flags a well-behaved sender uses).
ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF = 1, 2, 3, 4, 5
COMMUNITIES, MP_REACH, MP_UNREACH, EXT_COMMUNITIES = 8, 14, 15, 16
F_OPTIONAL, F_TRANSITIVE, F_PARTIAL, F_EXTENDED = 0x80, 0x40, 0x20, 0x10
WELL_KNOWN = {ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF, 6}  # 6 = ATOMIC_AGGREGATE
AS_SET, AS_SEQUENCE = 1, 2

# Tunnel encapsulation extended community (RFC 9012): type 0x03, subtype 0x0c.
ENCAP_TYPES = {"MPLSoGRE": 2, "VXLAN": 8, "MPLSoUDP": 13}
ENCAP_NAMES = {v: k for k, v in ENCAP_TYPES.items()}


class BgpError(Exception):
    """A received message is bad: send NOTIFICATION(code, subcode, data) and close."""

    def __init__(self, code: int, subcode: int, message: str, data: bytes = b"") -> None:
        super().__init__(f"BGP error {code}/{subcode}: {message}")
        self.code = code
        self.subcode = subcode
        self.data = data


# ---- route distinguishers, route targets, labelled VPN prefixes ----------------------


def encode_rd(rd: str) -> bytes:
    """`64512:7` (type 0), `198.18.0.1:7` (type 1) or `4200000000:7` (type 2)."""
    admin, _, num = rd.rpartition(":")
    n = int(num)
    if "." in admin:
        if n > 0xFFFF:
            raise ValueError(f"route distinguisher {rd}: number must be < 65536")
        return struct.pack("!H4sH", 1, ipaddress.IPv4Address(admin).packed, n)
    asn = int(admin)
    if asn <= 0xFFFF:
        return struct.pack("!HHI", 0, asn, n)
    if n > 0xFFFF:
        raise ValueError(f"route distinguisher {rd}: number must be < 65536 with a 4-byte AS")
    return struct.pack("!HIH", 2, asn, n)


def decode_rd(b: bytes) -> str:
    rtype = struct.unpack_from("!H", b)[0]
    if rtype == 0:
        _, asn, n = struct.unpack("!HHI", b)
        return f"{asn}:{n}"
    if rtype == 1:
        _, ip, n = struct.unpack("!H4sH", b)
        return f"{ipaddress.IPv4Address(ip)}:{n}"
    if rtype == 2:
        _, asn, n = struct.unpack("!HIH", b)
        return f"{asn}:{n}"
    return "raw:" + b.hex()


def encode_route_target(rt: str) -> bytes:
    """`target:<asn>:<n>` or `target:<ipv4>:<n>` as an 8-byte extended community."""
    kind, admin, num = rt.split(":")
    if kind != "target":
        raise ValueError(f"not a route target: {rt}")
    n = int(num)
    if "." in admin:
        return struct.pack("!BB4sH", 0x01, 0x02, ipaddress.IPv4Address(admin).packed, n)
    asn = int(admin)
    if asn <= 0xFFFF:
        return struct.pack("!BBHI", 0x00, 0x02, asn, n)
    return struct.pack("!BBIH", 0x02, 0x02, asn, n)


def decode_ext_community(b: bytes) -> str | None:
    """A route target as `target:A:N`, an encapsulation as `encap:NAME`, else None."""
    high, low = b[0] & 0x3F, b[1]
    if low == 0x02 and high == 0x00:
        _, _, asn, n = struct.unpack("!BBHI", b)
        return f"target:{asn}:{n}"
    if low == 0x02 and high == 0x01:
        _, _, ip, n = struct.unpack("!BB4sH", b)
        return f"target:{ipaddress.IPv4Address(ip)}:{n}"
    if low == 0x02 and high == 0x02:
        _, _, asn, n = struct.unpack("!BBIH", b)
        return f"target:{asn}:{n}"
    if high == 0x03 and low == 0x0C:
        tunnel = struct.unpack_from("!H", b, 6)[0]
        return f"encap:{ENCAP_NAMES.get(tunnel, str(tunnel))}"
    return None


def encode_encap(name: str) -> bytes:
    return struct.pack("!BBIH", 0x03, 0x0C, 0, ENCAP_TYPES[name])


@dataclass(frozen=True, order=True)
class VpnPrefix:
    """One labelled VPN-IPv4 NLRI."""

    rd: str
    prefix: str  # "198.18.5.3/32"
    label: int = 0

    def key(self) -> tuple[str, str]:
        return (self.rd, self.prefix)


def encode_vpn_nlri(p: VpnPrefix, withdraw: bool = False) -> bytes:
    net = ipaddress.IPv4Network(p.prefix)
    nbytes = (net.prefixlen + 7) // 8
    # RFC 8277: a withdrawal carries 0x800000 in the label field.
    label = 0x800000 if withdraw else (p.label << 4) | 1
    return (
        bytes([24 + 64 + net.prefixlen])
        + label.to_bytes(3, "big")
        + encode_rd(p.rd)
        + net.network_address.packed[:nbytes]
    )


def decode_vpn_nlri(data: bytes) -> list[VpnPrefix]:
    out: list[VpnPrefix] = []
    i = 0
    while i < len(data):
        bits = data[i]
        plen = bits - 88
        if plen < 0 or plen > 32:
            raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, f"VPN NLRI length {bits} bits")
        nbytes = 11 + (plen + 7) // 8
        if i + 1 + nbytes > len(data):
            raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, "VPN NLRI runs past the attribute")
        raw = data[i + 1 : i + 1 + nbytes]
        label = int.from_bytes(raw[0:3], "big") >> 4
        rd = decode_rd(raw[3:11])
        addr = raw[11:] + b"\x00" * (4 - (nbytes - 11))
        try:
            net = ipaddress.IPv4Network((addr, plen))
        except ValueError:
            raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, "VPN NLRI has host bits set") from None
        out.append(VpnPrefix(rd, str(net), label))
        i += 1 + nbytes
    return out


def _encode_prefixes(prefixes: list[str]) -> bytes:
    out = b""
    for p in prefixes:
        net = ipaddress.IPv4Network(p)
        out += bytes([net.prefixlen]) + net.network_address.packed[: (net.prefixlen + 7) // 8]
    return out


def _decode_prefixes(data: bytes) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(data):
        plen = data[i]
        nbytes = (plen + 7) // 8
        if plen > 32 or i + 1 + nbytes > len(data):
            raise BgpError(UPDATE_ERROR, UPD_BAD_NETWORK, f"bad IPv4 prefix length {plen}")
        addr = data[i + 1 : i + 1 + nbytes] + b"\x00" * (4 - nbytes)
        try:
            out.append(str(ipaddress.IPv4Network((addr, plen))))
        except ValueError:
            raise BgpError(UPDATE_ERROR, UPD_BAD_NETWORK, "prefix has host bits set") from None
        i += 1 + nbytes
    return out


# ---- messages --------------------------------------------------------------------------


@dataclass
class Open:
    asn: int
    hold_time: int
    router_id: str
    families: set[tuple[int, int]] = field(default_factory=lambda: {(AFI_IPV4, SAFI_VPN)})
    route_refresh: bool = True
    as4: bool = True
    version: int = 4
    unknown_caps: list[int] = field(default_factory=list)


@dataclass
class Update:
    withdrawn: list[str] = field(default_factory=list)  # IPv4 unicast
    nlri: list[str] = field(default_factory=list)  # IPv4 unicast
    origin: int | None = None
    as_path: list[int] = field(default_factory=list)  # AS_SEQUENCE, AS_SETs flattened
    next_hop: str | None = None
    med: int | None = None
    local_pref: int | None = None
    communities: list[int] = field(default_factory=list)
    ext_communities: list[bytes] = field(default_factory=list)
    vpn_next_hop: str | None = None
    vpn_reach: list[VpnPrefix] = field(default_factory=list)
    vpn_unreach: list[VpnPrefix] = field(default_factory=list)
    end_of_rib: bool = False  # an empty MP_UNREACH for VPN-IPv4 (RFC 4724)
    other_families: list[tuple[int, int]] = field(default_factory=list)  # ignored ones

    @property
    def route_targets(self) -> list[str]:
        return [
            s
            for c in self.ext_communities
            if (s := decode_ext_community(c)) and s.startswith("target:")
        ]

    @property
    def encaps(self) -> list[str]:
        return [
            s[6:]
            for c in self.ext_communities
            if (s := decode_ext_community(c)) and s.startswith("encap:")
        ]


@dataclass
class Notification:
    code: int
    subcode: int
    data: bytes = b""


@dataclass
class Keepalive:
    pass


@dataclass
class RouteRefresh:
    afi: int
    safi: int


Message = Open | Update | Notification | Keepalive | RouteRefresh


def _frame(mtype: int, body: bytes) -> bytes:
    if HEADER_LEN + len(body) > MAX_LEN:
        raise ValueError(f"BGP message of {HEADER_LEN + len(body)} bytes exceeds {MAX_LEN}")
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), mtype) + body


def _attr(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | F_EXTENDED, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def encode(msg: Message) -> bytes:
    if isinstance(msg, Keepalive):
        return _frame(KEEPALIVE, b"")
    if isinstance(msg, Notification):
        return _frame(NOTIFICATION, bytes([msg.code, msg.subcode]) + msg.data)
    if isinstance(msg, RouteRefresh):
        return _frame(ROUTE_REFRESH, struct.pack("!HBB", msg.afi, 0, msg.safi))
    if isinstance(msg, Open):
        caps = b""
        for afi, safi in sorted(msg.families):
            caps += struct.pack("!BBHBB", CAP_MP, 4, afi, 0, safi)
        if msg.route_refresh:
            caps += struct.pack("!BB", CAP_ROUTE_REFRESH, 0)
        if msg.as4:
            caps += struct.pack("!BBI", CAP_AS4, 4, msg.asn)
        params = struct.pack("!BB", 2, len(caps)) + caps if caps else b""
        my_as = msg.asn if msg.asn <= 0xFFFF else AS_TRANS
        body = struct.pack(
            "!BHH4sB",
            msg.version,
            my_as,
            msg.hold_time,
            ipaddress.IPv4Address(msg.router_id).packed,
            len(params),
        )
        return _frame(OPEN, body + params)
    return _frame(UPDATE, _encode_update(msg))


def _encode_update(u: Update) -> bytes:
    attrs = b""
    if u.origin is not None:
        attrs += _attr(F_TRANSITIVE, ORIGIN, bytes([u.origin]))
        path = struct.pack("!BB", AS_SEQUENCE, len(u.as_path)) + b"".join(
            struct.pack("!I", a) for a in u.as_path
        )
        attrs += _attr(F_TRANSITIVE, AS_PATH, path if u.as_path else b"")
    if u.next_hop is not None:
        attrs += _attr(F_TRANSITIVE, NEXT_HOP, ipaddress.IPv4Address(u.next_hop).packed)
    if u.med is not None:
        attrs += _attr(F_OPTIONAL, MED, struct.pack("!I", u.med))
    if u.local_pref is not None:
        attrs += _attr(F_TRANSITIVE, LOCAL_PREF, struct.pack("!I", u.local_pref))
    if u.communities:
        attrs += _attr(
            F_OPTIONAL | F_TRANSITIVE,
            COMMUNITIES,
            b"".join(struct.pack("!I", c) for c in u.communities),
        )
    if u.vpn_reach:
        # Next hop for VPN-IPv4 is an RD of zero followed by the IPv4 address (RFC 4364 4.3.2).
        nh = b"\x00" * 8 + ipaddress.IPv4Address(u.vpn_next_hop or "0.0.0.0").packed
        value = struct.pack("!HBB", AFI_IPV4, SAFI_VPN, len(nh)) + nh + b"\x00"
        value += b"".join(encode_vpn_nlri(p) for p in u.vpn_reach)
        attrs += _attr(F_OPTIONAL, MP_REACH, value)
    if u.vpn_unreach or u.end_of_rib:
        value = struct.pack("!HB", AFI_IPV4, SAFI_VPN)
        value += b"".join(encode_vpn_nlri(p, withdraw=True) for p in u.vpn_unreach)
        attrs += _attr(F_OPTIONAL, MP_UNREACH, value)
    if u.ext_communities:
        attrs += _attr(F_OPTIONAL | F_TRANSITIVE, EXT_COMMUNITIES, b"".join(u.ext_communities))
    withdrawn = _encode_prefixes(u.withdrawn)
    return (
        struct.pack("!H", len(withdrawn))
        + withdrawn
        + struct.pack("!H", len(attrs))
        + attrs
        + _encode_prefixes(u.nlri)
    )


def parse_header(header: bytes) -> tuple[int, int]:
    """(total length, type) of a 19-byte header, checked (RFC 4271 6.1)."""
    if header[:16] != MARKER:
        raise BgpError(HEADER_ERROR, HDR_NOT_SYNC, "marker is not all ones")
    length, mtype = struct.unpack_from("!HB", header, 16)
    bad_len = struct.pack("!H", length)
    if length < HEADER_LEN or length > MAX_LEN:
        raise BgpError(HEADER_ERROR, HDR_BAD_LENGTH, f"length {length}", bad_len)
    minimum = {OPEN: 29, UPDATE: 23, NOTIFICATION: 21, KEEPALIVE: 19, ROUTE_REFRESH: 23}
    if mtype not in minimum:
        raise BgpError(HEADER_ERROR, HDR_BAD_TYPE, f"message type {mtype}", bytes([mtype]))
    if length < minimum[mtype] or (mtype == KEEPALIVE and length != HEADER_LEN):
        raise BgpError(HEADER_ERROR, HDR_BAD_LENGTH, f"length {length} for type {mtype}", bad_len)
    return length, mtype


def parse_body(mtype: int, body: bytes, as4: bool = True) -> Message:
    """Decode one message body; `as4` says whether AS numbers in AS_PATH are 4 bytes."""
    if mtype == KEEPALIVE:
        return Keepalive()
    if mtype == NOTIFICATION:
        return Notification(body[0], body[1], body[2:])
    if mtype == ROUTE_REFRESH:
        afi, _, safi = struct.unpack("!HBB", body[:4])
        return RouteRefresh(afi, safi)
    if mtype == OPEN:
        return _parse_open(body)
    return _parse_update(body, as4)


def parse(data: bytes, as4: bool = True) -> Message:
    """Decode a whole message (header and body)."""
    if len(data) < HEADER_LEN:
        raise BgpError(HEADER_ERROR, HDR_BAD_LENGTH, "shorter than a header")
    length, mtype = parse_header(data[:HEADER_LEN])
    if length != len(data):
        raise BgpError(HEADER_ERROR, HDR_BAD_LENGTH, "length does not match the data")
    return parse_body(mtype, data[HEADER_LEN:], as4)


def _parse_open(body: bytes) -> Open:
    version, my_as, hold, rid, plen = struct.unpack_from("!BHH4sB", body)
    if version != 4:
        raise BgpError(OPEN_ERROR, OPEN_BAD_VERSION, f"version {version}", struct.pack("!H", 4))
    if hold in (1, 2):
        raise BgpError(OPEN_ERROR, OPEN_BAD_HOLD, f"hold time {hold}")
    if rid == b"\x00\x00\x00\x00":
        raise BgpError(OPEN_ERROR, OPEN_BAD_ID, "BGP identifier 0.0.0.0")
    if 10 + plen != len(body):
        raise BgpError(OPEN_ERROR, 0, "optional parameters length does not match")
    msg = Open(asn=my_as, hold_time=hold, router_id=str(ipaddress.IPv4Address(rid)))
    msg.families, msg.route_refresh, msg.as4 = set(), False, False
    params = body[10:]
    i = 0
    while i < len(params):
        if i + 2 > len(params) or i + 2 + params[i + 1] > len(params):
            raise BgpError(OPEN_ERROR, 0, "optional parameter runs past the message")
        ptype, pl = params[i], params[i + 1]
        value = params[i + 2 : i + 2 + pl]
        if ptype != 2:
            raise BgpError(OPEN_ERROR, OPEN_BAD_PARAM, f"optional parameter type {ptype}")
        j = 0
        while j < len(value):
            if j + 2 > len(value) or j + 2 + value[j + 1] > len(value):
                raise BgpError(OPEN_ERROR, 0, "capability runs past its parameter")
            code, cl = value[j], value[j + 1]
            cap = value[j + 2 : j + 2 + cl]
            if code == CAP_MP and cl == 4:
                afi, _, safi = struct.unpack("!HBB", cap)
                msg.families.add((afi, safi))
            elif code == CAP_AS4 and cl == 4:
                msg.as4 = True
                msg.asn = struct.unpack("!I", cap)[0]
            elif code == CAP_ROUTE_REFRESH:
                msg.route_refresh = True
            elif code in (CAP_MP, CAP_AS4):
                raise BgpError(OPEN_ERROR, 0, f"capability {code} has length {cl}")
            else:
                msg.unknown_caps.append(code)
            j += 2 + cl
        i += 2 + pl
    if not msg.families:  # no MP capability: IPv4 unicast only (RFC 4760 8)
        msg.families = {(AFI_IPV4, SAFI_UNICAST)}
    return msg


def _parse_as_path(value: bytes, as4: bool) -> list[int]:
    size = 4 if as4 else 2
    out: list[int] = []
    i = 0
    while i < len(value):
        if i + 2 > len(value):
            raise BgpError(UPDATE_ERROR, UPD_BAD_ASPATH, "AS_PATH segment header cut short")
        stype, count = value[i], value[i + 1]
        end = i + 2 + count * size
        if stype not in (AS_SET, AS_SEQUENCE) or count == 0 or end > len(value):
            raise BgpError(UPDATE_ERROR, UPD_BAD_ASPATH, "malformed AS_PATH segment")
        fmt = f"!{count}{'I' if as4 else 'H'}"
        out += list(struct.unpack_from(fmt, value, i + 2))
        i = end
    return out


def _parse_update(body: bytes, as4: bool) -> Update:
    u = Update()
    if len(body) < 4:
        raise BgpError(UPDATE_ERROR, UPD_MALFORMED_LIST, "too short")
    wlen = struct.unpack_from("!H", body)[0]
    if 2 + wlen + 2 > len(body):
        raise BgpError(UPDATE_ERROR, UPD_MALFORMED_LIST, "withdrawn routes length too big")
    u.withdrawn = _decode_prefixes(body[2 : 2 + wlen])
    alen = struct.unpack_from("!H", body, 2 + wlen)[0]
    astart = 4 + wlen
    if astart + alen > len(body):
        raise BgpError(UPDATE_ERROR, UPD_MALFORMED_LIST, "path attribute length too big")
    attrs = body[astart : astart + alen]
    u.nlri = _decode_prefixes(body[astart + alen :])
    seen: set[int] = set()
    i = 0
    while i < len(attrs):
        if i + 3 > len(attrs):
            raise BgpError(UPDATE_ERROR, UPD_MALFORMED_LIST, "attribute header cut short")
        flags, code = attrs[i], attrs[i + 1]
        if flags & F_EXTENDED:
            if i + 4 > len(attrs):
                raise BgpError(UPDATE_ERROR, UPD_MALFORMED_LIST, "attribute header cut short")
            length = struct.unpack_from("!H", attrs, i + 2)[0]
            start = i + 4
        else:
            length = attrs[i + 2]
            start = i + 3
        raw_attr = attrs[i : start + length]
        if start + length > len(attrs):
            raise BgpError(UPDATE_ERROR, UPD_LENGTH, f"attribute {code} runs past the list")
        if code in seen:
            raise BgpError(UPDATE_ERROR, UPD_MALFORMED_LIST, f"attribute {code} repeated")
        seen.add(code)
        value = attrs[start : start + length]
        _parse_attr(u, flags, code, value, raw_attr, as4)
        i = start + length
    has_routes = bool(u.nlri or u.vpn_reach)
    for needed in (ORIGIN, AS_PATH):
        if has_routes and needed not in seen:
            raise BgpError(
                UPDATE_ERROR, UPD_MISSING_WELLKNOWN, f"no attribute {needed}", bytes([needed])
            )
    if u.nlri and NEXT_HOP not in seen:
        raise BgpError(UPDATE_ERROR, UPD_MISSING_WELLKNOWN, "no NEXT_HOP", bytes([NEXT_HOP]))
    return u


def _parse_attr(u: Update, flags: int, code: int, value: bytes, raw: bytes, as4: bool) -> None:
    optional = bool(flags & F_OPTIONAL)
    if code in WELL_KNOWN and (optional or not flags & F_TRANSITIVE):
        raise BgpError(UPDATE_ERROR, UPD_FLAGS, f"flags {flags:#x} on well-known {code}", raw)
    if code == ORIGIN:
        if len(value) != 1:
            raise BgpError(UPDATE_ERROR, UPD_LENGTH, "ORIGIN length", raw)
        if value[0] > 2:
            raise BgpError(UPDATE_ERROR, UPD_BAD_ORIGIN, f"ORIGIN {value[0]}", raw)
        u.origin = value[0]
    elif code == AS_PATH:
        u.as_path = _parse_as_path(value, as4)
    elif code == NEXT_HOP:
        if len(value) != 4:
            raise BgpError(UPDATE_ERROR, UPD_LENGTH, "NEXT_HOP length", raw)
        u.next_hop = str(ipaddress.IPv4Address(value))
    elif code in (MED, LOCAL_PREF):
        if len(value) != 4:
            raise BgpError(UPDATE_ERROR, UPD_LENGTH, f"attribute {code} length", raw)
        if code == MED:
            u.med = struct.unpack("!I", value)[0]
        else:
            u.local_pref = struct.unpack("!I", value)[0]
    elif code == COMMUNITIES:
        if len(value) % 4:
            raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, "COMMUNITIES length", raw)
        u.communities = list(struct.unpack(f"!{len(value) // 4}I", value))
    elif code == EXT_COMMUNITIES:
        if len(value) % 8:
            raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, "EXTENDED_COMMUNITIES length", raw)
        u.ext_communities = [value[j : j + 8] for j in range(0, len(value), 8)]
    elif code == MP_REACH:
        _parse_mp_reach(u, value, raw)
    elif code == MP_UNREACH:
        if len(value) < 3:
            raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, "MP_UNREACH_NLRI too short", raw)
        afi, safi = struct.unpack_from("!HB", value)
        if (afi, safi) != (AFI_IPV4, SAFI_VPN):
            u.other_families.append((afi, safi))
            return
        u.vpn_unreach = decode_vpn_nlri(value[3:])
        u.end_of_rib = not u.vpn_unreach
    elif code in WELL_KNOWN:
        return  # ATOMIC_AGGREGATE: nothing to keep
    elif not optional:
        raise BgpError(UPDATE_ERROR, UPD_UNKNOWN_WELLKNOWN, f"unknown well-known {code}", raw)
    # Unknown optional attributes are ignored (we do not pass routes on unchanged).


def _parse_mp_reach(u: Update, value: bytes, raw: bytes) -> None:
    if len(value) < 5:
        raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, "MP_REACH_NLRI too short", raw)
    afi, safi, nhlen = struct.unpack_from("!HBB", value)
    if (afi, safi) != (AFI_IPV4, SAFI_VPN):
        u.other_families.append((afi, safi))
        return
    if 4 + nhlen + 1 > len(value):
        raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, "MP_REACH_NLRI next hop runs past", raw)
    nh = value[4 : 4 + nhlen]
    if nhlen != 12:  # RD of zero + IPv4 address
        raise BgpError(UPDATE_ERROR, UPD_OPTIONAL, f"VPN next hop length {nhlen}", raw)
    u.vpn_next_hop = str(ipaddress.IPv4Address(nh[8:12]))
    u.vpn_reach = decode_vpn_nlri(value[4 + nhlen + 1 :])
