"""Codec for the vrouter message format (files/vrouter-src/include/vr_msg.h).

A message is a 16-byte header (magic, version, op, object, flags, reserved,
sequence, length) followed by type-length-value attributes, all big endian.
The attribute table below must match VR_ATTR_LIST in vr_msg.h; the tests
check that it does.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field

MAGIC = 0x5652
VERSION = 2  # 2: FL_DVRF
HDR_LEN = 16
ATTR_HDR_LEN = 4
MSG_MAX = 65536

_HDR = struct.Struct(">HBBBBHII")


class Op(enum.IntEnum):
    ADD = 1
    DEL = 2
    GET = 3
    DUMP = 4


class Obj(enum.IntEnum):
    NONE = 0
    VIF = 1
    NH = 2
    ROUTE = 3
    LABEL = 4
    VNI = 5
    FLOW = 6
    DROPSTATS = 7


class Flag(enum.IntFlag):
    REPLY = 0x01
    MORE = 0x02
    DONE = 0x04


class Err(enum.IntEnum):
    OK = 0
    ENOENT = 2
    ENOMEM = 12
    EBUSY = 16
    EEXIST = 17
    EINVAL = 22
    ENOSPC = 28
    ERANGE = 34
    EPROTO = 71
    EMSGSIZE = 90
    EOPNOTSUPP = 95


class Kind(enum.IntEnum):
    U8 = 1
    U16 = 2
    U32 = 3
    S32 = 4
    U64 = 5
    MAC = 6
    IP = 7
    STR = 8
    U32A = 9
    U64A = 10


# id: (NAME, kind, max) - max is a string length or array element count.
ATTRS: dict[int, tuple[str, Kind, int]] = {
    1: ("RESULT", Kind.S32, 0),
    2: ("MARKER", Kind.U32, 0),
    3: ("COUNT", Kind.U32, 0),
    10: ("VIF_IDX", Kind.U32, 0),
    11: ("VIF_TYPE", Kind.U8, 0),
    12: ("VIF_VRF", Kind.U32, 0),
    13: ("VIF_MAC", Kind.MAC, 0),
    14: ("VIF_MTU", Kind.U16, 0),
    15: ("VIF_FLAGS", Kind.U32, 0),
    16: ("VIF_NAME", Kind.STR, 15),
    17: ("VIF_OS_IDX", Kind.U32, 0),
    18: ("VIF_IP", Kind.IP, 0),
    19: ("VIF_RX_PKTS", Kind.U64, 0),
    20: ("VIF_RX_BYTES", Kind.U64, 0),
    21: ("VIF_TX_PKTS", Kind.U64, 0),
    22: ("VIF_TX_BYTES", Kind.U64, 0),
    23: ("VIF_DROPS", Kind.U64, 0),
    30: ("NH_ID", Kind.U32, 0),
    31: ("NH_TYPE", Kind.U8, 0),
    32: ("NH_FLAGS", Kind.U32, 0),
    33: ("NH_VRF", Kind.U32, 0),
    34: ("NH_OIF", Kind.U32, 0),
    35: ("NH_SMAC", Kind.MAC, 0),
    36: ("NH_DMAC", Kind.MAC, 0),
    37: ("NH_TUN_SIP", Kind.IP, 0),
    38: ("NH_TUN_DIP", Kind.IP, 0),
    39: ("NH_COMPONENTS", Kind.U32A, 64),
    50: ("RT_VRF", Kind.U32, 0),
    51: ("RT_FAMILY", Kind.U8, 0),
    52: ("RT_PREFIX", Kind.IP, 0),
    53: ("RT_PLEN", Kind.U8, 0),
    54: ("RT_MAC", Kind.MAC, 0),
    55: ("RT_NH", Kind.U32, 0),
    56: ("RT_LABEL", Kind.U32, 0),
    57: ("RT_FLAGS", Kind.U32, 0),
    70: ("LBL_LABEL", Kind.U32, 0),
    71: ("LBL_NH", Kind.U32, 0),
    75: ("VNI_VNI", Kind.U32, 0),
    76: ("VNI_VRF", Kind.U32, 0),
    80: ("FL_INDEX", Kind.U32, 0),
    81: ("FL_VRF", Kind.U32, 0),
    82: ("FL_SIP", Kind.IP, 0),
    83: ("FL_DIP", Kind.IP, 0),
    84: ("FL_PROTO", Kind.U8, 0),
    85: ("FL_SPORT", Kind.U16, 0),
    86: ("FL_DPORT", Kind.U16, 0),
    87: ("FL_ACTION", Kind.U8, 0),
    88: ("FL_FLAGS", Kind.U32, 0),
    89: ("FL_RINDEX", Kind.U32, 0),
    90: ("FL_PKTS", Kind.U64, 0),
    91: ("FL_BYTES", Kind.U64, 0),
    92: ("FL_NAT_SIP", Kind.IP, 0),
    93: ("FL_NAT_DIP", Kind.IP, 0),
    94: ("FL_NAT_SPORT", Kind.U16, 0),
    95: ("FL_NAT_DPORT", Kind.U16, 0),
    96: ("FL_DVRF", Kind.U32, 0),
    100: ("DS_COUNTERS", Kind.U64A, 64),
}
ATTR_IDS: dict[str, int] = {name: i for i, (name, _, _) in ATTRS.items()}

_INT_FMT = {Kind.U8: ">B", Kind.U16: ">H", Kind.U32: ">I", Kind.S32: ">i", Kind.U64: ">Q"}

# Values carried in attributes (include/vr_defs.h).
VIF_TYPES = {1: "fabric", 2: "host", 3: "virtual", 4: "agent"}
VIF_F_POLICY = 0x1
NH_TYPES = {1: "discard", 2: "receive", 3: "encap", 4: "tunnel", 5: "composite"}
NH_FLAGS = {
    0x01: "l2",
    0x02: "mpls-gre",
    0x04: "mpls-udp",
    0x08: "vxlan",
    0x10: "ecmp",
    0x20: "mcast",
}
FAMILIES = {1: "inet", 2: "inet6", 3: "bridge"}
RT_F_LABEL = 0x1
FLOW_ACTIONS = {0: "hold", 1: "forward", 2: "drop", 3: "trap", 4: "nat"}
FLOW_F_VALID = 0x1
FLOW_F_IPV6 = 0x2
FLOW_F_RFLOW = 0x4
FLOW_F_VRFT = 0x8  # the entry's dvrf is valid: routed there after its action
DROP_REASONS = [
    "invalid_packet",
    "no_vif",
    "no_route",
    "no_nexthop",
    "discard",
    "label_miss",
    "vni_miss",
    "bridge_miss",
    "bad_tunnel",
    "flow_action_drop",
    "flow_table_full",
    "flow_hold_full",
    "no_agent",
    "no_headroom",
    "no_memory",
    "tx_failed",
    "ttl_exceeded",
    "composite_empty",
    "flow_evicted",
    "bad_agent_packet",
]

Value = int | str | list[int] | ipaddress.IPv4Address | ipaddress.IPv6Address


class CodecError(Exception):
    """A message that breaks the format; code is the VR_E* value."""

    def __init__(self, code: Err, what: str) -> None:
        super().__init__(f"{code.name}: {what}")
        self.code = code


@dataclass
class Message:
    op: int
    obj: int
    flags: int = 0
    seq: int = 0
    attrs: dict[str, Value] = field(default_factory=dict)

    @property
    def result(self) -> int:
        value = self.attrs.get("RESULT", 0)
        assert isinstance(value, int)
        return value


def _header_ok(op: int, obj: int, flags: int) -> None:
    reply = flags & Flag.REPLY
    if flags & ~0x07:
        raise CodecError(Err.EPROTO, f"unknown flags {flags:#x}")
    if op > Op.DUMP or (op == 0 and not reply):
        raise CodecError(Err.EPROTO, f"bad op {op}")
    if obj > Obj.DROPSTATS or (obj == Obj.NONE and not reply):
        raise CodecError(Err.EPROTO, f"bad object {obj}")


def _decode_value(name: str, kind: Kind, limit: int, raw: bytes) -> Value:
    n = len(raw)
    if kind in _INT_FMT:
        fmt = _INT_FMT[kind]
        if n != struct.calcsize(fmt):
            raise CodecError(Err.EINVAL, f"{name}: length {n}")
        return int(struct.unpack(fmt, raw)[0])
    if kind == Kind.MAC:
        if n != 6:
            raise CodecError(Err.EINVAL, f"{name}: length {n}")
        return ":".join(f"{b:02x}" for b in raw)
    if kind == Kind.IP:
        if n == 4:
            return ipaddress.IPv4Address(raw)
        if n == 16:
            return ipaddress.IPv6Address(raw)
        raise CodecError(Err.EINVAL, f"{name}: address length {n}")
    if kind == Kind.STR:
        if not 1 <= n <= limit or 0 in raw:
            raise CodecError(Err.EINVAL, f"{name}: bad string")
        return raw.decode("latin-1")
    size = 4 if kind == Kind.U32A else 8
    if n < size or n % size or n // size > limit:
        raise CodecError(Err.EINVAL, f"{name}: bad array length {n}")
    return list(struct.unpack(f">{n // size}{'I' if size == 4 else 'Q'}", raw))


def decode(data: bytes) -> Message:
    """Parse one whole message; raise CodecError exactly where the C parser fails."""
    if len(data) < HDR_LEN:
        raise CodecError(Err.EMSGSIZE, f"{len(data)} bytes is shorter than a header")
    magic, version, op, obj, flags, reserved, seq, length = _HDR.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CodecError(Err.EPROTO, f"magic {magic:#x} version {version}")
    if length != len(data) or length > MSG_MAX:
        raise CodecError(Err.EMSGSIZE, f"length field {length}, have {len(data)}")
    if reserved:
        raise CodecError(Err.EPROTO, "reserved bits set")
    _header_ok(op, obj, flags)
    msg = Message(op=op, obj=obj, flags=flags, seq=seq)
    off = HDR_LEN
    while off < len(data):
        if len(data) - off < ATTR_HDR_LEN:
            raise CodecError(Err.EMSGSIZE, "attribute header cut short")
        aid, alen = struct.unpack_from(">HH", data, off)
        off += ATTR_HDR_LEN
        if len(data) - off < alen:
            raise CodecError(Err.EMSGSIZE, f"attribute {aid} runs past the end")
        raw = data[off : off + alen]
        off += alen
        if aid not in ATTRS:
            raise CodecError(Err.EPROTO, f"unknown attribute {aid}")
        name, kind, limit = ATTRS[aid]
        if name in msg.attrs:
            raise CodecError(Err.EINVAL, f"{name} twice")
        msg.attrs[name] = _decode_value(name, kind, limit, raw)
    return msg


def _encode_value(name: str, kind: Kind, limit: int, value: Value) -> bytes:
    if kind in _INT_FMT:
        if not isinstance(value, int):
            raise CodecError(Err.EINVAL, f"{name}: not an integer")
        try:
            return struct.pack(_INT_FMT[kind], value)
        except struct.error as exc:
            raise CodecError(Err.ERANGE, f"{name}: {value} out of range") from exc
    if kind == Kind.MAC:
        try:
            raw = bytes(int(p, 16) for p in str(value).split(":"))
        except ValueError as exc:
            raise CodecError(Err.EINVAL, f"{name}: not a MAC address") from exc
        if len(raw) != 6:
            raise CodecError(Err.EINVAL, f"{name}: not a MAC address")
        return raw
    if kind == Kind.IP:
        if isinstance(value, list):
            raise CodecError(Err.EINVAL, f"{name}: not an address")
        try:
            return ipaddress.ip_address(value).packed
        except ValueError as exc:
            raise CodecError(Err.EINVAL, f"{name}: {exc}") from exc
    if kind == Kind.STR:
        raw = str(value).encode("latin-1")
        if not 1 <= len(raw) <= limit or 0 in raw:
            raise CodecError(Err.EINVAL, f"{name}: bad string")
        return raw
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        raise CodecError(Err.EINVAL, f"{name}: bad array")
    return struct.pack(f">{len(value)}{'I' if kind == Kind.U32A else 'Q'}", *value)


def encode(msg: Message) -> bytes:
    """Encode with attributes in ascending id order (as the C encoder does)."""
    _header_ok(msg.op, msg.obj, msg.flags)
    body = bytearray()
    for name in msg.attrs:
        if name not in ATTR_IDS:
            raise CodecError(Err.EINVAL, f"unknown attribute {name}")
    for aid in sorted(ATTR_IDS[n] for n in msg.attrs):
        name, kind, limit = ATTRS[aid]
        raw = _encode_value(name, kind, limit, msg.attrs[name])
        body += struct.pack(">HH", aid, len(raw)) + raw
    length = HDR_LEN + len(body)
    if length > MSG_MAX:
        raise CodecError(Err.EMSGSIZE, f"{length} bytes")
    hdr = _HDR.pack(MAGIC, VERSION, msg.op, msg.obj, msg.flags, 0, msg.seq, length)
    return hdr + bytes(body)


def split(stream: bytes) -> list[bytes]:
    """Cut a byte stream of back-to-back messages into messages."""
    out = []
    off = 0
    while off < len(stream):
        if len(stream) - off < HDR_LEN:
            raise CodecError(Err.EMSGSIZE, "stream ends inside a header")
        (length,) = struct.unpack_from(">I", stream, off + 12)
        if length < HDR_LEN or off + length > len(stream):
            raise CodecError(Err.EMSGSIZE, "stream ends inside a message")
        out.append(stream[off : off + length])
        off += length
    return out
