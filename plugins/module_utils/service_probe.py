# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of vrstack.cloud.service_probe (what common's tasks_from: probe ran as an
inline script): connect, optionally over TLS checked against a CA, send a greeting, and
read until the reply matches a pattern - a real protocol answer, not just an open port."""

from __future__ import annotations

import re
import socket
import ssl


class ProbeError(Exception):
    """The service did not answer as expected."""


def decode_send(send: str) -> bytes:
    r"""The greeting as the callers write it: escapes like \r\n or \x00 in plain text."""
    return send.encode("latin-1").decode("unicode_escape").encode("latin-1")


def probe(host: str, port: int, send: str, expect: str, ca: str, timeout: float = 5) -> str:
    """The part of the reply that matched `expect`."""
    if not 0 < port < 65536:
        raise ProbeError(f"port {port} is not between 1 and 65535")
    try:
        pattern = re.compile(expect.encode("latin-1"))
    except re.error as exc:
        raise ProbeError(f"expect {expect!r} is not a regular expression: {exc}") from exc
    data = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            # With a CA: TLS first, the server checked against it by the address dialled.
            sock = (
                ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host)
                if ca
                else raw
            )
            if send:
                sock.sendall(decode_send(send))
            while len(data) < 65536 and not pattern.search(data):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ProbeError(f"{host}:{port}: {exc}") from exc
    found = pattern.search(data)
    if not found:
        raise ProbeError(f"{host}:{port}: reply {data[:80]!r} does not match {expect!r}")
    return found.group(0).decode("latin-1")
