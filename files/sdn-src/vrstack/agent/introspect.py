"""Who may reach the agent's HTTP listener (introspect and the port API), and how.

The listener can rewire the compute (POST /ports plugs a port into a network), so it
is never open: by default it is bound to 127.0.0.1, where the collection's modules,
`vrstack-port` and Nova's os-vif plugin reach it from the compute itself. An operator
may put it on another address (the fabric's) only with TLS and a client certificate
signed by the deployment CA (`listen.tls.cert`, `.key`, `.ca`); a config that asks for
a non-loopback address without them stops the agent at start, naming the field.
Handshakes that fail (no certificate, another CA, plain HTTP) are logged with the
peer's address and the reason.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from aiohttp import web

from ..service import tls
from ..service.daemon import serve as serve_http
from ..service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    host: str = "127.0.0.1"
    port: int = 8085
    tls: tls.TlsFiles | None = None  # mutual TLS; required off loopback


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def listener(settings: Settings) -> Listener:
    """`listen.host`, `.port` and `.tls.*`, checked."""
    host = settings.get_str("listen.host", "127.0.0.1")
    port = settings.get_int("listen.port", 8085, low=0, high=65535)
    files = tls.server_files(settings, "listen.tls")
    if files is None and not is_loopback(host):
        raise settings.error(
            "listen.tls.cert",
            f"is required when listen.host is {host!r} (not loopback): the agent's API "
            "changes the compute, so off loopback it needs TLS with client certificates",
        )
    if files is not None and not files.verify_peer:
        raise settings.error(
            "listen.tls.verify_client",
            "must be true: callers prove who they are with a certificate from listen.tls.ca",
        )
    return Listener(host, port, files)


def _refused(address: str, reason: str) -> None:
    log.warning("introspect client refused", extra={"addr": address, "reason": reason})


async def serve(app: web.Application, where: Listener, service: str) -> None:
    """Serve `app` until SIGTERM or SIGINT: plain on loopback, else mutual TLS."""
    await serve_http(app, where.host, where.port, service, where.tls, _refused)
