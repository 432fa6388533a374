"""A client for the datapath's control channel: the userspace host's unix
SOCK_SEQPACKET socket, or (target "netlink") vrouter.ko's generic netlink
family.  The messages are the same either way."""

from __future__ import annotations

import itertools
import socket
from typing import Any

from vrstack.datapath import codec
from vrstack.datapath.codec import Err, Flag, Message, Obj, Op

DEFAULT_SOCKET = "/run/vrouter/control.sock"
# The target naming the kernel module instead of a socket path.
NETLINK = "netlink"
MAX_DUMP_BATCHES = 100000


class DatapathError(Exception):
    """The datapath answered with a non-zero result."""

    def __init__(self, what: str, code: int) -> None:
        try:
            name = Err(-code).name
        except ValueError:
            name = str(code)
        super().__init__(f"{what}: {name}")
        self.code = code


class DatapathClient:
    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = 5.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._seq = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> DatapathClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(self, request: bytes) -> bytes:
        """Send one encoded request, return the bytes of all its replies."""
        self.sock.send(request)
        return self.sock.recv(2 * codec.MSG_MAX)

    def request(self, msg: Message) -> list[Message]:
        """Send one request, return every reply message of its answer."""
        msg.seq = next(self._seq)
        data = self.exchange(codec.encode(msg))
        replies = [codec.decode(part) for part in codec.split(data)]
        if not replies or any(r.seq != msg.seq for r in replies):
            raise codec.CodecError(Err.EPROTO, "reply does not match the request")
        return replies

    def call(self, op: Op, obj: Obj, **attrs: Any) -> Message:
        """A request with a single reply; raise DatapathError on failure."""
        reply = self.request(Message(op, obj, attrs=attrs))[0]
        if reply.result:
            raise DatapathError(f"{op.name.lower()} {obj.name.lower()}", reply.result)
        return reply

    def dump(self, obj: Obj, **attrs: Any) -> list[Message]:
        """Every object of a kind, following MORE/MARKER across batches."""
        out: list[Message] = []
        marker = 0
        for _ in range(MAX_DUMP_BATCHES):
            replies = self.request(Message(Op.DUMP, obj, attrs={**attrs, "MARKER": marker}))
            done = replies[-1]
            if done.result:
                raise DatapathError(f"dump {obj.name.lower()}", done.result)
            out.extend(r for r in replies if not r.flags & Flag.DONE)
            if not done.flags & Flag.MORE:
                return out
            next_marker = done.attrs["MARKER"]
            assert isinstance(next_marker, int)
            marker = next_marker
        raise DatapathError(f"dump {obj.name.lower()}: too many batches", -int(Err.ERANGE))


def connect(target: str = DEFAULT_SOCKET, timeout: float = 5.0) -> DatapathClient:
    """A client for a socket path, or for the kernel module if target is NETLINK."""
    if target == NETLINK:
        from vrstack.datapath.genl import GenlDatapathClient

        return GenlDatapathClient(timeout=timeout)
    return DatapathClient(target, timeout)
