"""Run an aiohttp application as a daemon: /health, SIGTERM/SIGINT clean shutdown,
SIGHUP reload of what a daemon registered with `add_reload` (its tokens).

Each service builds its `web.Application` (routes, startup/cleanup hooks for its
background tasks) and hands it to `serve`; `serve` adds `/health`, binds, and waits
for a signal, then stops accepting requests and runs the cleanup hooks. With TLS files
(`http_tls` reads them from the `http.tls` settings) it serves HTTPS, and each failed
handshake is logged with the peer's address and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from . import tls
from .httplimits import gate, runner_options
from .settings import ConfigError, Settings

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
HEALTH_KEY = web.AppKey("vrstack_health", object)
# Called with the config file read again; raises ConfigError to keep the old values.
Reload = Callable[[Settings], None]
RELOAD_KEY = web.AppKey("vrstack_reload", list)


def add_health(app: web.Application, check: HealthCheck) -> None:
    """Serve GET /health: 200 when `check` reports status "ok", 503 otherwise."""

    async def health(_request: web.Request) -> web.Response:
        try:
            body = await check()
        except Exception as exc:  # a failing check is an unhealthy service, not a crash
            body = {"status": "error", "error": str(exc)}
        return web.json_response(body, status=200 if body.get("status") == "ok" else 503)

    app[HEALTH_KEY] = check
    app.router.add_get("/health", health)


def add_background(
    app: web.Application,
    name: str,
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    stop_timeout: float = 10.0,
) -> None:
    """Run `run(stop)` while the app serves; at shutdown set `stop` and wait for it."""

    async def ctx(_app: web.Application) -> Any:
        stop = asyncio.Event()
        task: asyncio.Task[None] = asyncio.create_task(run(stop), name=name)
        yield
        stop.set()
        try:
            await asyncio.wait_for(task, stop_timeout)
        except TimeoutError:
            log.warning("background task did not stop in time", extra={"task": name})
        except Exception:
            log.exception("background task failed", extra={"task": name})

    app.cleanup_ctx.append(ctx)


def add_reload(app: web.Application, path: str, apply: Reload) -> None:
    """On SIGHUP, read `path` again and hand it to `apply`. Only what `apply` takes
    changes (the secrets a rotation swaps); everything else needs a restart."""
    app.setdefault(RELOAD_KEY, []).append((path, apply))


def reload(app: web.Application, service: str, server_tls: tls.ServerTls | None = None) -> bool:
    """Run the app's reloads now (what SIGHUP does), and read the HTTPS server's CRL again;
    False when one refused its file, which leaves that part with the values it had."""
    ok = server_tls.reload() if server_tls is not None else True
    if not app.get(RELOAD_KEY) and server_tls is None:
        log.info("nothing to reload", extra={"event": "reload", "svc": service})
        return ok
    for path, apply in app.get(RELOAD_KEY, []):
        try:
            apply(Settings.load(path))
        except ConfigError as exc:
            ok = False
            log.error(
                "reload refused", extra={"event": "reload", "svc": service, "error": str(exc)}
            )
    if ok:
        log.info("reloaded", extra={"event": "reload", "svc": service})
    return ok


def http_tls(settings: Settings) -> tls.TlsFiles | None:
    """`http.tls.cert` and `.key` (checked now, naming the field): HTTPS when set."""
    return tls.server_files(settings, "http.tls")


def _refused(service: str) -> tls.Refused:
    def refused(address: str, reason: str) -> None:
        log.warning("client refused", extra={"addr": address, "reason": reason, "svc": service})

    return refused


async def serve(
    app: web.Application,
    host: str,
    port: int,
    service: str,
    tls_files: tls.TlsFiles | None = None,
    refused: tls.Refused | None = None,
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then shut down cleanly; HTTPS with
    `tls_files`, where `refused(peer, reason)` hears of failed handshakes (default: a
    "client refused" warning). Connections are counted against the app's
    `http.max_connections*` limits (`connlimits`)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server_tls = tls.ServerTls(tls_files, service) if tls_files is not None else None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Always: SIGHUP's default would end the daemon, and systemd counts that a clean stop.
    loop.add_signal_handler(signal.SIGHUP, reload, app, service, server_tls)
    runner = web.AppRunner(app, access_log=None, **runner_options(app))
    await runner.setup()
    assert runner.server is not None
    limits = gate(app, service)
    if server_tls is None:
        server = await loop.create_server(
            limits.wrap(runner.server), host, port, reuse_address=True
        )
    else:
        server = await tls.start_protocol_server(
            runner.server,
            host,
            port,
            server_tls,
            refused or _refused(service),
            gate=limits,
        )
    # The bound port is logged so a caller that asked for port 0 can find it.
    ports = [s.getsockname()[1] for s in server.sockets]
    log.info(
        "listening",
        extra={
            "event": "listening",
            "host": host,
            "ports": ports,
            "svc": service,
            "tls": tls_files is not None,
        },
    )
    try:
        await stop.wait()
        log.info("shutting down", extra={"event": "shutdown"})
    finally:
        server.close()
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("stopped", extra={"event": "stopped"})
