"""The record kinds the collector accepts, defined once.

Each kind is a list of typed columns. The same definition validates ingested records
(raising `FieldError` with the path of the bad value, e.g. `records[3].bytes`), creates
the SQL tables, whitelists the fields a query may name, and generates the OpenAPI schemas.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
from dataclasses import dataclass
from typing import Any

from ..config.fields import FieldError, valid_text

# Times are seconds since the epoch (UTC); anything outside 2000..2100 is a sender bug.
TIME_LOW = 946_684_800.0
TIME_HIGH = 4_102_444_800.0
INT64 = 2**63 - 1
NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")

# IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d), so every address is 16 bytes
# and a CIDR is one contiguous range of byte strings: an index range scan.
_V4_PREFIX = b"\0" * 10 + b"\xff\xff"


def addr_blob(text: str) -> bytes:
    """The stored form of an address; ValueError if it is not one. (inet_pton, not
    ipaddress: this runs for every flow record and is ten times faster.)"""
    try:
        return _V4_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        raise ValueError(f"not an IP address: {text!r}") from None


def blob_addr(blob: bytes) -> str:
    if blob[:12] == _V4_PREFIX:
        return str(ipaddress.IPv4Address(blob[12:]))
    return str(ipaddress.IPv6Address(blob))


def cidr_range(text: str) -> tuple[bytes, bytes]:
    """The first and last address of a CIDR, as stored blobs."""
    net = ipaddress.ip_network(text, strict=False)
    if net.version == 4:
        return _V4_PREFIX + net.network_address.packed, _V4_PREFIX + net.broadcast_address.packed
    return net.network_address.packed, net.broadcast_address.packed


class Invalid(Exception):
    """A bad value; `suffix` continues the field's path (e.g. "[0].state")."""

    def __init__(self, message: str, suffix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.suffix = suffix


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # id, time, str, enum, int, num, addr, conns
    doc: str
    required: bool = True
    default: Any = None
    max_len: int = 255
    choices: tuple[str, ...] = ()
    low: int = 0
    high: int = INT64

    @property
    def sql_type(self) -> str:
        return {"time": "REAL", "num": "REAL", "int": "INTEGER", "addr": "BLOB"}.get(
            self.type, "TEXT"
        )

    @property
    def numeric(self) -> bool:
        return self.type in ("time", "num", "int")

    def check(self, value: Any, path: str) -> Any:
        """The value as stored, or FieldError naming `path`."""
        try:
            return self.convert(value)
        except Invalid as exc:
            raise FieldError(path + exc.suffix, exc.message) from None

    def convert(self, value: Any) -> Any:
        """The value as stored, or Invalid (the path is only built for an error: this
        runs for every field of every record)."""
        t = self.type
        if t == "int":
            if type(value) is not int:
                raise Invalid("must be an integer")
            if not self.low <= value <= self.high:
                raise Invalid(f"must be between {self.low} and {self.high}")
            return value
        if t in ("id", "str", "enum"):
            if type(value) is not str or not valid_text(value):
                raise Invalid("must be a string (of valid Unicode)")
            if t == "id" and not value:
                raise Invalid("must not be empty")
            if len(value) > self.max_len:
                raise Invalid(f"must be at most {self.max_len} characters")
            if t == "enum" and value not in self.choices:
                raise Invalid(f"must be one of {', '.join(self.choices)}")
            return value
        if t in ("time", "num"):
            if type(value) is not float and type(value) is not int:
                raise Invalid("must be a number")
            try:
                finite = math.isfinite(value)
            except OverflowError:  # an integer beyond any float
                finite = False
            if not finite:
                raise Invalid("must be finite")
            if t == "time" and not TIME_LOW <= value <= TIME_HIGH:
                raise Invalid("must be seconds since the epoch (years 2000-2100)")
            return float(value)
        if t == "addr":
            try:
                return addr_blob(value)
            except (ValueError, TypeError):
                raise Invalid("must be an IPv4 or IPv6 address") from None
        if t == "conns":
            return json.dumps(_check_connections(value), separators=(",", ":"))
        raise AssertionError(f"unknown column type {t}")

    def schema(self) -> dict[str, Any]:
        t = self.type
        s: dict[str, Any]
        if t in ("id", "str"):
            s = {"type": "string", "maxLength": self.max_len}
        elif t == "enum":
            s = {"type": "string", "enum": list(self.choices)}
        elif t == "int":
            s = {"type": "integer", "minimum": self.low, "maximum": self.high}
        elif t == "time":
            s = {"type": "number", "minimum": TIME_LOW, "maximum": TIME_HIGH}
        elif t == "num":
            s = {"type": "number"}
        elif t == "addr":
            s = {"type": "string", "format": "ip-address"}
        else:
            s = {"type": "array", "maxItems": MAX_CONNECTIONS, "items": CONNECTION_SCHEMA}
        s["description"] = self.doc
        return s


MAX_CONNECTIONS = 64
CONNECTION_STATES = ("up", "down", "connecting")
CONNECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "maxLength": 32, "description": "control, config, collector…"},
        "name": {"type": "string", "maxLength": 255, "description": "the peer, e.g. its address"},
        "state": {"type": "string", "enum": list(CONNECTION_STATES)},
    },
    "required": ["type", "name", "state"],
    "additionalProperties": False,
}


def _check_connections(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise Invalid("must be a list of connections")
    if len(value) > MAX_CONNECTIONS:
        raise Invalid(f"must have at most {MAX_CONNECTIONS} connections")
    out = []
    for i, conn in enumerate(value):
        if not isinstance(conn, dict):
            raise Invalid("must be an object with type, name and state", f"[{i}]")
        for key in conn:
            if key not in ("type", "name", "state"):
                raise Invalid("is not a connection field", f"[{i}].{key}")
        for key, limit in (("type", 32), ("name", 255)):
            v = conn.get(key)
            if not isinstance(v, str) or not v or len(v) > limit:
                raise Invalid(f"must be a string of 1 to {limit} characters", f"[{i}].{key}")
        if conn.get("state") not in CONNECTION_STATES:
            raise Invalid(f"must be one of {', '.join(CONNECTION_STATES)}", f"[{i}].state")
        out.append({"type": conn["type"], "name": conn["name"], "state": conn["state"]})
    return out


@dataclass(frozen=True)
class Kind:
    name: str  # as sent in a record's "kind"
    table: str  # as named in queries and in SQL
    doc: str
    columns: tuple[Column, ...]
    time: str  # the column a query's since/until and retention's max_age apply to

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


ID = Column(
    "id", "id", "Unique per source; a resent record with the same id is ignored", max_len=64
)
TS = Column("ts", "time", "When it happened (seconds since the epoch)")
SERVICE = Column("service", "str", "The reporting service, e.g. vrstack-agent", max_len=64)

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "flow",
            "flows",
            "A flow record: one direction of a flow over [start, end]",
            (
                ID,
                Column("start", "time", "First packet (seconds since the epoch)"),
                Column("end", "time", "Last packet, or when the record was cut"),
                Column("vrf", "str", "Routing instance, e.g. demo:blue:blue"),
                Column("src_ip", "addr", "Source address"),
                Column("dst_ip", "addr", "Destination address"),
                Column("proto", "int", "IP protocol number", high=255),
                Column(
                    "src_port",
                    "int",
                    "Source port (0 when none)",
                    required=False,
                    default=0,
                    high=65535,
                ),
                Column(
                    "dst_port",
                    "int",
                    "Destination port (0 when none)",
                    required=False,
                    default=0,
                    high=65535,
                ),
                Column("bytes", "int", "Bytes over [start, end]"),
                Column("packets", "int", "Packets over [start, end]"),
                Column(
                    "action",
                    "enum",
                    "What the datapath did",
                    choices=("forward", "drop", "hold", "nat"),
                ),
            ),
            time="end",
        ),
        Kind(
            "log",
            "logs",
            "A log line",
            (
                ID,
                TS,
                Column(
                    "level",
                    "enum",
                    "Severity",
                    choices=("debug", "info", "warning", "error", "critical"),
                ),
                SERVICE,
                Column("msg", "str", "The message", max_len=8192),
            ),
            time="ts",
        ),
        Kind(
            "status",
            "status",
            "A service's state, sent every `interval` seconds and on every change",
            (
                ID,
                TS,
                SERVICE,
                Column(
                    "state",
                    "enum",
                    "Process state",
                    choices=("up", "initializing", "degraded", "down"),
                ),
                Column(
                    "interval",
                    "num",
                    "Seconds until the next report; missing several raises service-down",
                    required=False,
                    default=30.0,
                ),
                Column(
                    "connections",
                    "conns",
                    "Connections to peers and their state",
                    required=False,
                    default=[],
                ),
                Column(
                    "datapath",
                    "enum",
                    "Agents: whether the datapath is there",
                    required=False,
                    default="",
                    choices=("", "present", "absent"),
                ),
                Column(
                    "detail", "str", "Why, for people", required=False, default="", max_len=1024
                ),
            ),
            time="ts",
        ),
        Kind(
            "port",
            "ports",
            "A VM interface on a compute, sent by its agent on every change and with every status",
            (
                ID,
                TS,
                Column("interface", "str", "The tap interface, e.g. tap3f9c1a20-b4", max_len=64),
                Column("vm", "str", "The VM (instance name or id)"),
                Column("network", "str", "The virtual network, e.g. demo:blue"),
                Column("vrf", "str", "Its routing instance, e.g. demo:blue:blue"),
                Column("ip", "addr", "The VM's address on it"),
                Column("mac", "str", "The VM's MAC address", max_len=17),
                Column("state", "enum", "Whether the agent has it up", choices=("up", "down")),
            ),
            time="ts",
        ),
        Kind(
            "counter",
            "counters",
            "A periodic counter sample",
            (
                ID,
                TS,
                Column("name", "str", "Counter name, e.g. flows_forward", max_len=128),
                Column(
                    "object", "str", "What it counts for, e.g. vif2", required=False, default=""
                ),
                Column("value", "num", "The sample"),
            ),
            time="ts",
        ),
    )
}
TABLES: dict[str, Kind] = {k.table: k for k in KINDS.values()}
_KEYS = {k.name: frozenset(["kind", *(c.name for c in k.columns)]) for k in KINDS.values()}


def check_record(value: Any, path: str) -> tuple[Kind, tuple[Any, ...]]:
    """Validate one record; returns its kind and its row (column order, without source)."""
    if not isinstance(value, dict):
        raise FieldError(path, "must be an object")
    name = value.get("kind")
    kind = KINDS.get(name) if isinstance(name, str) else None  # a list is no dict key
    if kind is None:
        raise FieldError(f"{path}.kind", f"must be one of {', '.join(KINDS)}")
    row = []
    col = kind.columns[0]
    try:
        for col in kind.columns:
            v = value.get(col.name)
            if v is None:
                if col.required:
                    raise Invalid("is required")
                v = col.default
            row.append(col.convert(v))
    except Invalid as exc:
        raise FieldError(f"{path}.{col.name}{exc.suffix}", exc.message) from None
    if not value.keys() <= _KEYS[kind.name]:
        for key in value:
            if key not in _KEYS[kind.name]:
                raise FieldError(f"{path}.{key}", f"is not a field of a {kind.name} record")
    if kind.name == "flow" and row[2] < row[1]:
        raise FieldError(f"{path}.end", "must not be before start")
    if kind.name == "status" and not 0 < row[4] <= 86_400:
        raise FieldError(f"{path}.interval", "must be more than 0 and at most 86400 seconds")
    return kind, tuple(row)
