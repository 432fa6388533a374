"""The generic netlink transport to vrouter.ko (linux/vr_genl.h): family
"vrouter", command MSG, one attribute MSG holding a request of the message
format; the kernel's reply holds all reply messages of that request."""

from __future__ import annotations

import itertools
import os
import socket
import struct

from vrstack.datapath import codec
from vrstack.datapath.client import DatapathClient

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
FAMILY = "vrouter"
VERSION = 1
CMD_MSG = 1
ATTR_MSG = 1

NLMSG = struct.Struct("=IHHII")
GENL = struct.Struct("=BBH")
NLA = struct.Struct("=HH")


class NetlinkError(OSError):
    pass


def _attr(kind: int, value: bytes) -> bytes:
    length = NLA.size + len(value)
    if length > 0xFFFF:
        raise codec.CodecError(codec.Err.EMSGSIZE, "message too long for a netlink attribute")
    return NLA.pack(length, kind) + value + b"\0" * (-length % 4)


def attrs(data: bytes) -> dict[int, bytes]:
    """Attributes of a generic netlink payload (after the genl header)."""
    out: dict[int, bytes] = {}
    off = 0
    while off + NLA.size <= len(data):
        length, kind = NLA.unpack_from(data, off)
        if length < NLA.size or off + length > len(data):
            raise NetlinkError("malformed netlink attribute")
        out[kind & 0x3FFF] = data[off + NLA.size : off + length]
        off += (length + 3) & ~3
    return out


class GenlSocket:
    def __init__(self, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self._seq = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def call(self, family: int, cmd: int, version: int, payload: bytes) -> bytes:
        """One request; the attributes of its reply (raises on a netlink error)."""
        seq = next(self._seq)
        body = GENL.pack(cmd, version, 0) + payload
        self.sock.send(NLMSG.pack(NLMSG.size + len(body), family, NLM_F_REQUEST, seq, 0) + body)
        for _ in range(16):  # skip stray messages of earlier, timed-out requests
            data = self.sock.recv(1 << 18)
            length, kind, _flags, rseq, _pid = NLMSG.unpack_from(data)
            if rseq != seq:
                continue
            if kind == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", data, NLMSG.size)
                if err:
                    raise NetlinkError(-err, f"netlink: {os.strerror(-err)}")
                continue
            return data[NLMSG.size + GENL.size : length]
        raise NetlinkError("netlink: no reply")

    def family_id(self, name: str) -> int:
        try:
            reply = self.call(
                GENL_ID_CTRL,
                CTRL_CMD_GETFAMILY,
                1,
                _attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"),
            )
        except NetlinkError as exc:
            raise NetlinkError(
                f"generic netlink family {name!r} not found (is vrouter.ko loaded?)"
            ) from exc
        (fid,) = struct.unpack("=H", attrs(reply)[CTRL_ATTR_FAMILY_ID][:2])
        return fid


class GenlDatapathClient(DatapathClient):
    """DatapathClient over generic netlink to vrouter.ko."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.path = "netlink"
        self.nl = GenlSocket(timeout)
        try:
            self.family = self.nl.family_id(FAMILY)
        except Exception:
            self.nl.close()
            raise
        self._seq = itertools.count(1)

    def close(self) -> None:
        self.nl.close()

    def exchange(self, request: bytes) -> bytes:
        reply = attrs(self.nl.call(self.family, CMD_MSG, VERSION, _attr(ATTR_MSG, request)))
        if ATTR_MSG not in reply:
            raise NetlinkError("vrouter: reply without a MSG attribute")
        return reply[ATTR_MSG]
