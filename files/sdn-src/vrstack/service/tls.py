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

A mutual-TLS server can also name a CRL from its CA (`<prefix>.crl`): when the file is
there the peer's certificate is checked against it (`VERIFY_CRL_CHECK_LEAF`), and
`ServerTls` reads it again when it changes or on SIGHUP, without a restart. A revoked
peer is refused with its certificate's subject and serial in the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import weakref
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
    """Paths of PEM files; `verify_peer` on a server: require a client cert signed by `ca`,
    and not revoked by the CRL in `crl` when that file exists."""

    cert: str = ""
    key: str = ""
    ca: str = ""
    verify_peer: bool = False
    crl: str = ""


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


def _load_crl(ctx: ssl.SSLContext, files: TlsFiles) -> bool:
    """Check peers against the CRL when its file is there; False without one. Only the
    leaf: the CA's own revocation is not ours to check (there is no CRL above it)."""
    if not files.crl or not os.path.exists(files.crl):
        return False
    _check_pem("crl", files.crl, "-----BEGIN X509 CRL-----", "CRL")
    try:
        ctx.load_verify_locations(cafile=files.crl)
    except ssl.SSLError as exc:
        raise TlsFileError("crl", f"{files.crl} is not a PEM CRL ({exc.reason})") from None
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return True


def server_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, files)
    if files.verify_peer:
        _load_ca(ctx, files)
        _load_crl(ctx, files)
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
    """`<prefix>.cert`, `.key`, `.ca`, `.verify_client`, `.crl`: TLS on when `cert` is set.
    `crl` may name a file that is not there yet (no CRL until it is)."""
    files = TlsFiles(
        cert=settings.get_str(f"{prefix}.cert", ""),
        key=settings.get_str(f"{prefix}.key", ""),
        ca=settings.get_str(f"{prefix}.ca", ""),
        verify_peer=settings.get_bool(f"{prefix}.verify_client", False),
        crl=settings.get_str(f"{prefix}.crl", ""),
    )
    if files.crl and not files.verify_peer:
        raise settings.error(f"{prefix}.crl", "needs verify_client: true (it revokes clients)")
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


# ---- a server context that follows its CRL --------------------------------------------

# Names in a certificate subject, by the DER of their OID (X.520).
_NAME_OIDS = {
    b"\x55\x04\x03": "CN",
    b"\x55\x04\x0a": "O",
    b"\x55\x04\x0b": "OU",
    b"\x55\x04\x06": "C",
}


def _der(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at `at`."""
    tag, size = data[at], data[at + 1]
    at += 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + size > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + size


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        element = _der(data, start)
        out.append(element)
        start = element[2]
    return out


def certificate_id(der: bytes) -> tuple[str, str]:
    """(subject, serial in hex) of a DER certificate, e.g. ("CN=compute2,O=vrstack", "1f..."):
    what an operator matches against `openssl crl -text` and the deploy host's store."""
    tbs = _children(der, *_der(der, 0)[1:])[0]
    fields = _children(der, tbs[1], tbs[2])
    if fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    serial = f"{int.from_bytes(der[fields[0][1] : fields[0][2]], 'big'):x}"
    parts = []
    for rdn in _children(der, fields[4][1], fields[4][2]):
        for atv in _children(der, rdn[1], rdn[2]):
            oid, value = _children(der, atv[1], atv[2])[:2]
            name = _NAME_OIDS.get(der[oid[1] : oid[2]], "?")
            parts.append(f"{name}={der[value[1] : value[2]].decode(errors='replace')}")
    return ",".join(reversed(parts)), serial


def _leaf_of(version: int, message: bytes) -> bytes:
    """The first certificate of a TLS Certificate handshake message."""
    at = 4  # handshake type and length
    if version == ssl.TLSVersion.TLSv1_3:
        at += 1 + message[at]  # certificate_request_context
    at += 3  # certificate_list length
    size = int.from_bytes(message[at : at + 3], "big")
    return message[at + 3 : at + 3 + size]


def _crl_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# The client certificate each server handshake showed, by its SSLObject, while it lasts.
_LEAVES: weakref.WeakKeyDictionary[ssl.SSLObject, tuple[str, str]] = weakref.WeakKeyDictionary()


def _seen(conn: Any, direction: str, version: Any, content: Any, kind: Any, data: bytes) -> None:
    """Context message callback: note the peer's leaf from its Certificate message."""
    if direction != "read" or content != 22 or kind != 11:  # handshake, Certificate
        return
    # A certificate we cannot read: the refusal is logged without its names.
    with contextlib.suppress(ValueError, IndexError, TypeError):
        _LEAVES[conn] = certificate_id(_leaf_of(version, data))


class _Tracked(ssl.SSLObject):
    """Puts the refused certificate's (subject, serial) on the handshake's error: the
    server side has no peer certificate once verification failed."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLCertVerificationError as exc:
            exc.vrstack_peer = _LEAVES.get(self)  # type: ignore[attr-defined]
            raise


class ServerTls:
    """A server's context, built again when its CRL file appears, changes or goes (checked
    at each accept: one stat) and on `reload` (SIGHUP). Connections made keep the context
    they were made with; a CRL that cannot be read keeps the last good context."""

    def __init__(self, files: TlsFiles, service: str) -> None:
        self.files = files
        self.service = service
        self.crl_loaded = False
        self._stamp = _crl_stamp(files.crl) if files.crl else None
        self._said_no_crl = False
        self.ctx = self._build()  # raises TlsFileError at startup

    def _build(self) -> ssl.SSLContext:
        ctx = server_context(self.files)
        self.crl_loaded = bool(ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF)
        if self.crl_loaded:
            self._said_no_crl = False
            # _msg_callback is private but there since 3.8: the only way to learn which
            # certificate a failed handshake showed. Only with a CRL (a call per record).
            ctx._msg_callback = _seen  # type: ignore[attr-defined]
            ctx.sslobject_class = _Tracked
            log.info("CRL loaded", extra={"svc": self.service, "crl": self.files.crl})
        elif self.files.verify_peer and not self._said_no_crl:
            self._said_no_crl = True
            log.info(
                "no CRL configured: client certificates are not checked for revocation",
                extra={"svc": self.service, "crl": self.files.crl or "-"},
            )
        return ctx

    def context(self) -> ssl.SSLContext:
        """The context for the next handshake: rebuilt when the CRL file changed."""
        if self.files.crl and _crl_stamp(self.files.crl) != self._stamp:
            self.reload()
        return self.ctx

    def reload(self) -> bool:
        """Read the CRL again (SIGHUP); False when it cannot be used (the old one stays)."""
        self._stamp = _crl_stamp(self.files.crl) if self.files.crl else None
        try:
            self.ctx = self._build()
        except TlsFileError as exc:
            log.error(
                "CRL not loaded, the last one stays", extra={"svc": self.service, "error": str(exc)}
            )
            return False
        return True


def refusal_with_peer(exc: BaseException) -> str:
    """`refusal_reason`, with the subject and serial of a certificate that was revoked."""
    reason = refusal_reason(exc)
    seen = getattr(exc, "vrstack_peer", None)
    if getattr(exc, "verify_code", 0) != 23 or not seen:  # X509_V_ERR_CERT_REVOKED
        return reason
    return f"{reason} (subject {seen[0]}, serial {seen[1]})"


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
    ctx: ssl.SSLContext | ServerTls,
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
    ctx: ssl.SSLContext | ServerTls,
    refused: Refused,
    handshake_timeout: float = 10.0,
    gate: Gate | None = None,
) -> asyncio.Server:
    """`loop.create_server(factory, ssl=ctx)` that reports refused handshakes; any
    protocol (an aiohttp server's `runner.server` too) gets the connection after TLS.
    With `gate`, a connection over its limits is closed before the handshake; with a
    `ServerTls`, each handshake uses its current context (its current CRL)."""
    loop = asyncio.get_running_loop()

    async def upgrade(transport: asyncio.Transport, slot: Slot | None) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        address = f"{peer[0]}:{peer[1]}"
        # The slot goes with the TLS connection: given back when that is lost.
        protocol = _Held(gate.protocol(factory, slot) if gate and slot else factory())
        held = ctx if isinstance(ctx, ServerTls) else None
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                held.context() if held else ctx,
                server_side=True,
                ssl_handshake_timeout=handshake_timeout,
            )
        except (OSError, TimeoutError, ConnectionError, EOFError) as exc:
            transport.close()
            if slot is not None:
                slot.release()
            refused(address, refusal_with_peer(exc))
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
    "ServerTls",
    "TlsFileError",
    "TlsFiles",
    "certificate_id",
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
