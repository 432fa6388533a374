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

FreeBSD's TCP_MD5SIG (16 in netinet/tcp.h) takes an int and only switches signing
on for the socket; the keys live in the IPsec security association database, one SA
per direction and peer, written by setkey(8) from the file roles/sdn_control renders
(docs/freebsd.md). So on FreeBSD `set_key` turns the option on and never touches a
key: the address and password only matter to the SADB.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys

TCP_MD5SIG = 14  # Linux
TCP_MD5SIG_FREEBSD = 16  # FreeBSD netinet/tcp.h: an int, on or off
MAX_KEY_LEN = 80  # TCP_MD5SIG_MAXKEYLEN (Linux), TCP_KEYLEN_MAX (FreeBSD)
_SOCKADDR_STORAGE = 128


class Md5Unsupported(OSError):
    """This OS cannot take a TCP MD5 key from us."""


def _platform(platform: str | None) -> str:
    return sys.platform if platform is None else platform


def supported(platform: str | None = None) -> bool:
    """Linux (keys on the socket) and FreeBSD (keys in the SADB, signing on the socket)."""
    return _platform(platform).startswith(("linux", "freebsd"))


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


def set_key(
    sock: socket.socket | object, address: str, password: str, platform: str | None = None
) -> None:
    """Sign (and require signatures on) TCP segments to and from `address` on `sock`.

    An empty password removes the key (nothing happens when there was none).
    `sock` is a socket or asyncio's TransportSocket of a server.

    On FreeBSD a password switches signing on for the whole socket (the key itself is
    the SA setkey(8) loaded for the address pair). An empty one leaves the socket as
    it is: the switch is not per address, and another peer on the same listening
    socket may still need it; the SA goes away with the setkey file's entry.
    """
    platform = _platform(platform)
    if not supported(platform):
        raise Md5Unsupported(f"TCP MD5 keys are not set by vrstack on {platform}")
    if platform.startswith("freebsd"):
        if not password:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG_FREEBSD, 1)  # type: ignore[attr-defined]
        except OSError as exc:
            if exc.errno != errno.ENOPROTOOPT:
                raise
            raise Md5Unsupported(
                exc.errno, "the kernel has no TCP-MD5: kldload ipsec tcpmd5 (docs/freebsd.md)"
            ) from exc
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(address, password))  # type: ignore[attr-defined]
    except FileNotFoundError:
        if password:
            raise
        # Removing a key that was never set.
