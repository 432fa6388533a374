"""tcp_md5.set_key on FreeBSD and on Linux, and the config check that allows passwords.

The only fake is the socket: it records the setsockopt calls our code makes (and can
fail like a kernel without the tcpmd5 module), so each OS path is checked here on
any OS. The real kernel behaviour on Linux is test_bgp_md5.py's; FreeBSD's kernel is
not available to this project (docs/freebsd.md).
"""

from __future__ import annotations

import errno
import glob
import ipaddress
import re
import socket
import struct
import sys
from pathlib import Path

import pytest

from vrstack.control import main as control_main
from vrstack.control import tcp_md5
from vrstack.service.settings import ConfigError, Settings

PEER = "198.18.7.2"
PASSWORD = "unit-md5-password"


class RecordingSocket:
    """Only the setsockopt a socket offers: calls are kept, an error can be raised."""

    def __init__(self, error: OSError | None = None) -> None:
        self.calls: list[tuple[int, int, int | bytes]] = []
        self.error = error

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.calls.append((level, option, value))
        if self.error is not None:
            raise self.error


def test_freebsd_turns_signing_on_and_leaves_the_key_to_the_sadb() -> None:
    sock = RecordingSocket()
    tcp_md5.set_key(sock, PEER, PASSWORD, platform="freebsd14")
    # One int option, on: neither the address nor the password reach the socket.
    assert sock.calls == [(socket.IPPROTO_TCP, 16, 1)]


def test_freebsd_empty_password_leaves_the_socket_alone() -> None:
    sock = RecordingSocket()
    tcp_md5.set_key(sock, PEER, "", platform="freebsd14")
    assert sock.calls == []


def test_freebsd_kernel_without_tcpmd5_says_which_modules() -> None:
    sock = RecordingSocket(OSError(errno.ENOPROTOOPT, "Protocol not available"))
    with pytest.raises(tcp_md5.Md5Unsupported, match="kldload ipsec tcpmd5"):
        tcp_md5.set_key(sock, PEER, PASSWORD, platform="freebsd14")


def test_freebsd_other_socket_errors_pass_through() -> None:
    sock = RecordingSocket(OSError(errno.EINVAL, "Invalid argument"))
    with pytest.raises(OSError) as caught:
        tcp_md5.set_key(sock, PEER, PASSWORD, platform="freebsd14")
    assert caught.value.errno == errno.EINVAL
    assert not isinstance(caught.value, tcp_md5.Md5Unsupported)


def test_freebsd_option_number_is_the_headers() -> None:
    """TCP_MD5SIG as FreeBSD's netinet/tcp.h defines it (the ziglang wheel's headers)."""
    headers = glob.glob(
        "/var/cache/vrstack/ziglang/*/lib/libc/include/generic-freebsd/netinet/tcp.h"
    )
    if not headers:
        pytest.skip("FreeBSD headers not cached (scripts/freebsd-check.sh fetches them)")
    found = re.search(r"#define\s+TCP_MD5SIG\s+(\d+)", Path(headers[0]).read_text())
    assert found is not None
    assert int(found.group(1)) == tcp_md5.TCP_MD5SIG_FREEBSD


def test_linux_puts_the_peer_key_on_the_socket() -> None:
    sock = RecordingSocket()
    tcp_md5.set_key(sock, PEER, PASSWORD, platform="linux")
    [(level, option, value)] = sock.calls
    assert (level, option) == (socket.IPPROTO_TCP, 14)
    assert isinstance(value, bytes) and len(value) == 128 + 8 + 80
    family = struct.unpack_from("=H", value, 0)[0]
    assert family == socket.AF_INET
    assert value[4:8] == ipaddress.IPv4Address(PEER).packed
    keylen = struct.unpack_from("=H", value, 130)[0]
    assert value[136 : 136 + keylen] == PASSWORD.encode()


def test_linux_removing_a_key_never_set_is_quiet() -> None:
    sock = RecordingSocket(FileNotFoundError(errno.ENOENT, "No such file or directory"))
    tcp_md5.set_key(sock, PEER, "", platform="linux")
    [(_, _, value)] = sock.calls
    assert isinstance(value, bytes) and struct.unpack_from("=H", value, 130)[0] == 0
    with pytest.raises(FileNotFoundError):
        tcp_md5.set_key(sock, PEER, PASSWORD, platform="linux")


def test_other_systems_refused() -> None:
    assert tcp_md5.supported("linux") and tcp_md5.supported("freebsd14")
    assert not tcp_md5.supported("darwin")
    sock = RecordingSocket()
    with pytest.raises(tcp_md5.Md5Unsupported):
        tcp_md5.set_key(sock, PEER, PASSWORD, platform="darwin")
    assert sock.calls == []


def passwords(tmp_path: Path) -> Settings:
    data = {"bgp": {"password": PASSWORD, "peer_passwords": {PEER: "gateway-password"}}}
    return Settings(str(tmp_path / "control.yaml"), data)


@pytest.mark.parametrize("platform", ["freebsd14", "linux"])
def test_config_takes_passwords_on_freebsd_and_linux(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    got = control_main.bgp_passwords(passwords(tmp_path))
    assert got == (PASSWORD, {PEER: "gateway-password"})


def test_config_refuses_passwords_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ConfigError) as caught:
        control_main.bgp_passwords(passwords(tmp_path))
    text = str(caught.value)
    assert "bgp.password" in text and "control.yaml" in text and "darwin" in text
    assert PASSWORD not in text
