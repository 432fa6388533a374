"""vrstack.cloud.service_probe against plain TCP servers on loopback (the TLS case is in
tests/unit/roles/test_infra_tls_render.py, beside its certificates)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils.service_probe import (
    ProbeError,
    decode_send,
    probe,
)


@pytest.fixture
def memcached_like() -> Iterator[int]:
    """Answers "VERSION 1.6.18" to "version\\r\\n", anything else with ERROR."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _addr = srv.accept()
            except OSError:
                return
            with conn:
                said = conn.recv(64)
                conn.sendall(b"VERSION 1.6.18\r\n" if said == b"version\r\n" else b"ERROR\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_answer_matches(memcached_like: int) -> None:
    got = probe("127.0.0.1", memcached_like, "version\\r\\n", "VERSION [0-9.]+", "")
    assert got == "VERSION 1.6.18"


def test_answer_does_not_match(memcached_like: int) -> None:
    with pytest.raises(ProbeError) as exc:
        probe("127.0.0.1", memcached_like, "stats\\r\\n", "VERSION [0-9.]+", "")
    assert str(exc.value) == (
        f"127.0.0.1:{memcached_like}: reply b'ERROR\\r\\n' does not match 'VERSION [0-9.]+'"
    )


def test_nothing_listens() -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ProbeError, match=f"^127.0.0.1:{port}: .*refused"):
        probe("127.0.0.1", port, "", "x", "")


@pytest.mark.parametrize(
    ("port", "expect", "message"),
    [
        (0, "x", "^port 0 is not between 1 and 65535$"),
        (70000, "x", "^port 70000 is not between 1 and 65535$"),
        (11211, "(", r"^expect '\(' is not a regular expression: "),
    ],
)
def test_bad_options(port: int, expect: str, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        probe("127.0.0.1", port, "", expect, "")


def test_greeting_escapes() -> None:
    assert decode_send("AMQP\\x00\\x00\\x09\\x01") == b"AMQP\x00\x00\x09\x01"
    assert decode_send("version\\r\\n") == b"version\r\n"
