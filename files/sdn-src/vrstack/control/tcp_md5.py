"""TCP MD5 signatures (RFC 2385) for BGP: the one place that puts a password on a socket.

Linux keeps one key per remote address on a socket: `setsockopt(IPPROTO_TCP,
TCP_MD5SIG, struct tcp_md5sig)`. Set on the listening socket, the key covers the
connections it accepts from that address (they inherit it); set on a connecting socket
before `connect()`, it covers the SYN too. A key of length 0 removes the address's key.
Once a key is set, the kernel drops every segment from that address that is unsigned or
signed with another password: a wrong password looks like silence, never like a session.

struct tcp_md5sig (include/uapi/linux/tcp.h): a 128-byte sockaddr_storage, u8 flags,
u8 prefixlen, u16 keylen, int ifindex, then an 80-byte key. With plain TCP_MD5SIG
(not TCP_MD5SIG_EXT) flags, prefixlen and ifindex are ignored and left zero.

FreeBSD has a TCP_MD5SIG option too, but it only turns signing on: the keys live in
the IPsec security association database (setkey(8)). That is not done here; see
docs/security.md.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

TCP_MD5SIG = 14  # Linux
MAX_KEY_LEN = 80  # TCP_MD5SIG_MAXKEYLEN
_SOCKADDR_STORAGE = 128


class Md5Unsupported(OSError):
    """This OS cannot take a TCP MD5 key from us."""


def supported() -> bool:
    return sys.platform.startswith("linux")


def check_password(password: str) -> str:
    """ "" when the password can be used, else why not."""
    if not password:
        return "is empty"
    if len(password.encode()) > MAX_KEY_LEN:
        return f"is longer than {MAX_KEY_LEN} bytes (the kernel's TCP MD5 key limit)"
    return ""


def _sockaddr(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + ip.packed
    else:  # sockaddr_in6: family, port, flowinfo, address, scope id
        raw = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + ip.packed
        raw += struct.pack("=I", 0)
    return raw.ljust(_SOCKADDR_STORAGE, b"\0")


def md5sig(address: str, password: str) -> bytes:
    """A struct tcp_md5sig for `address`; an empty password makes the one that removes it."""
    key = password.encode()
    if len(key) > MAX_KEY_LEN:
        raise ValueError(f"TCP MD5 password longer than {MAX_KEY_LEN} bytes")
    return (
        _sockaddr(address) + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(MAX_KEY_LEN, b"\0")
    )


def set_key(sock: socket.socket | object, address: str, password: str) -> None:
    """Sign (and require signatures on) TCP segments to and from `address` on `sock`.

    An empty password removes the key (nothing happens when there was none).
    `sock` is a socket or asyncio's TransportSocket of a server.
    """
    if not supported():
        raise Md5Unsupported(f"TCP MD5 keys are not set by vrstack on {sys.platform}")
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(address, password))  # type: ignore[attr-defined]
    except FileNotFoundError:
        if password:
            raise
        # Removing a key that was never set.
