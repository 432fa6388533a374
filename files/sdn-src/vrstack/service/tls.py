"""TLS for every service: the one place that turns config fields into ssl contexts.

A server has a certificate and key, and a CA when its clients must present a
certificate signed by it (mutual TLS). A client has the CA that signed its server's
certificate (the server's name or address is checked against it) and, for mutual TLS,
its own certificate and key. Each file is checked when the config is read, so a bad
path or a key that does not match its certificate stops the daemon with the config
file and field named, not at the first connection.

`start_server` accepts TCP and upgrades each connection itself, so a peer refused in
the handshake (no certificate, another CA, not TLS at all) is reported with its
address and the reason; asyncio's own TLS server drops those silently.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .connlimits import Gate, Slot, streams
from .settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Refused = Callable[[str, str], None]  # (peer address, reason)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of PEM files; `verify_peer` on a server: require a client cert signed by `ca`."""

    cert: str = ""
    key: str = ""
    ca: str = ""
    verify_peer: bool = False


class TlsFileError(ValueError):
    """A file cannot be used; `which` is "cert", "key" or "ca"."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


def _check_pem(which: str, path: str, marker: str, what: str) -> None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise TlsFileError(which, f"cannot read {path}: {exc.strerror}") from None
    if marker not in text:
        raise TlsFileError(which, f"{path} holds no PEM {what}")


def _load_chain(ctx: ssl.SSLContext, files: TlsFiles) -> None:
    _check_pem("cert", files.cert, "-----BEGIN CERTIFICATE-----", "certificate")
    key = files.key or files.cert
    _check_pem("key", key, "PRIVATE KEY-----", "private key")
    try:
        ctx.load_cert_chain(files.cert, files.key or None)
    except ssl.SSLError as exc:
        raise TlsFileError(
            "key", f"{key} is not the private key of {files.cert} ({exc.reason})"
        ) from None


def _load_ca(ctx: ssl.SSLContext, files: TlsFiles) -> None:
    _check_pem("ca", files.ca, "-----BEGIN CERTIFICATE-----", "CA certificate")
    try:
        ctx.load_verify_locations(cafile=files.ca)
    except ssl.SSLError as exc:
        raise TlsFileError("ca", f"{files.ca} is not a PEM CA certificate ({exc.reason})") from None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, files)
    if files.verify_peer:
        _load_ca(ctx, files)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """Verify the server against `ca` (the system CAs when empty), by name or address."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.ca:
        _load_ca(ctx, files)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if files.cert:
        _load_chain(ctx, files)
    return ctx


# ---- from config files ----------------------------------------------------------------


def _checked(settings: Settings, prefix: str, files: TlsFiles, server: bool) -> TlsFiles:
    try:
        (server_context if server else client_context)(files)
    except TlsFileError as exc:
        raise settings.error(f"{prefix}.{exc.which}", str(exc)) from None
    return files


def server_files(settings: Settings, prefix: str) -> TlsFiles | None:
    """`<prefix>.cert`, `.key`, `.ca`, `.verify_client`: TLS on when `cert` is set."""
    files = TlsFiles(
        cert=settings.get_str(f"{prefix}.cert", ""),
        key=settings.get_str(f"{prefix}.key", ""),
        ca=settings.get_str(f"{prefix}.ca", ""),
        verify_peer=settings.get_bool(f"{prefix}.verify_client", False),
    )
    if not files.cert:
        for name in ("key", "ca"):
            if getattr(files, name):
                raise settings.error(f"{prefix}.cert", f"is required when {prefix}.{name} is set")
        if files.verify_peer:
            raise settings.error(f"{prefix}.cert", "is required when verify_client is true")
        return None
    if files.verify_peer and not files.ca:
        raise settings.error(
            f"{prefix}.ca", "is required when verify_client is true (the CA of the clients)"
        )
    return _checked(settings, prefix, files, server=True)


def client_files(settings: Settings, prefix: str) -> TlsFiles | None:
    """`<prefix>.ca`, `.cert`, `.key`: TLS on when `enabled` is true or `ca` is set."""
    files = TlsFiles(
        cert=settings.get_str(f"{prefix}.cert", ""),
        key=settings.get_str(f"{prefix}.key", ""),
        ca=settings.get_str(f"{prefix}.ca", ""),
    )
    enabled = settings.get_bool(f"{prefix}.enabled", bool(files.ca or files.cert))
    if not enabled:
        return None
    if files.key and not files.cert:
        raise settings.error(f"{prefix}.cert", f"is required when {prefix}.key is set")
    return _checked(settings, prefix, files, server=False)


def https_client(settings: Settings, url_field: str, prefix: str) -> ssl.SSLContext | None:
    """The client context for the http(s) URL in `url_field`: None for http://, else one
    that checks the server against `<prefix>.ca` (the system CAs when empty) by the name
    or address in the URL. A CA with an http:// URL is a mistake, not a silent no-op."""
    url = settings.get_str(url_field, "")
    files = client_files(settings, prefix)
    if not url.startswith("https://"):
        if files is not None:
            raise settings.error(
                f"{prefix}.ca", f"is set but {url_field} is not an https:// URL ({url!r})"
            )
        return None
    return client_context(files or TlsFiles())


# ---- a server that reports refused peers ----------------------------------------------


def refusal_reason(exc: BaseException) -> str:
    """A short reason for a failed handshake, in the words an operator can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"):
            return f"not a TLS client ({reason})"
        if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"):
            return "no client certificate"
        if reason.startswith("TLSV") or reason.startswith("SSLV3_ALERT"):
            return f"the peer aborted the handshake ({reason})"
        return reason
    if isinstance(exc, TimeoutError):
        return "no TLS handshake in time"
    return str(exc) or type(exc).__name__


class _Paused(asyncio.Protocol):
    """Holds an accepted connection unread until the TLS handshake takes it over."""

    def __init__(
        self,
        upgrade: Callable[[asyncio.Transport, Slot | None], Coroutine[Any, Any, None]],
        gate: Gate | None,
    ) -> None:
        self._upgrade = upgrade
        self._gate = gate
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Not one byte may reach a plain reader: the handshake must see the ClientHello.
        transport.pause_reading()
        slot = None
        if self._gate is not None:  # counted from the accept: handshakes hold a place too
            slot = self._gate.admit(transport)
            if slot is None:
                return
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._upgrade(transport, slot)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Held(asyncio.Protocol):
    """Keeps what TLS decrypts before `connection_made` and hands it on after: the TLS
    layer reads on as soon as the handshake ends, and a client's first request often
    comes with its last handshake message, before `start_tls` has returned."""

    def __init__(self, inner: asyncio.BaseProtocol) -> None:
        self._inner: Any = inner
        self._early: list[bytes] = []
        self._eof = False
        self._made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)
        self._made = True
        for data in self._early:
            self._inner.data_received(data)
        self._early.clear()
        if self._eof:
            self._inner.eof_received()

    def data_received(self, data: bytes) -> None:
        if self._made:
            self._inner.data_received(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        if self._made:
            result: bool | None = self._inner.eof_received()
            return result
        self._eof = True
        return True  # keep the transport open until the protocol has seen it

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


async def start_server(
    handler: Handler,
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    refused: Refused,
    handshake_timeout: float = 10.0,
    gate: Gate | None = None,
) -> asyncio.Server:
    """Like `asyncio.start_server(ssl=ctx)`, with `refused(peer, reason)` for failed
    handshakes and `gate`'s connection limits."""
    return await start_protocol_server(
        streams(handler), host, port, ctx, refused, handshake_timeout, gate
    )


async def start_protocol_server(
    factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    refused: Refused,
    handshake_timeout: float = 10.0,
    gate: Gate | None = None,
) -> asyncio.Server:
    """`loop.create_server(factory, ssl=ctx)` that reports refused handshakes; any
    protocol (an aiohttp server's `runner.server` too) gets the connection after TLS.
    With `gate`, a connection over its limits is closed before the handshake."""
    loop = asyncio.get_running_loop()

    async def upgrade(transport: asyncio.Transport, slot: Slot | None) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        address = f"{peer[0]}:{peer[1]}"
        # The slot goes with the TLS connection: given back when that is lost.
        protocol = _Held(gate.protocol(factory, slot) if gate and slot else factory())
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                ctx,
                server_side=True,
                ssl_handshake_timeout=handshake_timeout,
            )
        except (OSError, TimeoutError, ConnectionError, EOFError) as exc:
            transport.close()
            if slot is not None:
                slot.release()
            refused(address, refusal_reason(exc))
            return
        if tls is None:  # the peer went away during the handshake
            if slot is not None:
                slot.release()
            refused(address, "connection closed during the handshake")
            return
        protocol.connection_made(tls)  # e.g. creates the writer and runs `handler`

    return await loop.create_server(
        lambda: _Paused(upgrade, gate), host, port, reuse_address=True, start_serving=True
    )


def peer_subject(writer: asyncio.StreamWriter) -> str:
    """The common name of a verified client certificate, or "" without one."""
    cert = writer.get_extra_info("peercert") or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


__all__ = [
    "TlsFileError",
    "TlsFiles",
    "client_context",
    "client_files",
    "https_client",
    "peer_subject",
    "refusal_reason",
    "server_context",
    "server_files",
    "start_protocol_server",
    "start_server",
]
