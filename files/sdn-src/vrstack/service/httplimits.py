"""Time limits every HTTP service puts on its clients, against slow (slowloris) requests.

- `header_timeout`: a connection must deliver a request's line and headers within this
  many seconds of opening, or of the previous response; otherwise it is closed without
  an answer. It is also how long an idle keep-alive connection is kept. (aiohttp's
  keep-alive timer does both: it fires while no complete request has arrived.) Keep it
  above aiohttp clients' own 15 s keep-alive, so a pooled connection is not closed
  just as a client reuses it.
- `body_timeout`: once the headers are in, the whole body must arrive within this;
  otherwise the handler's read fails, the client gets 408 and the connection is closed.

The size of a body is each application's `client_max_size` (413 past it). Settings:
`http.header_timeout` and `http.body_timeout` in the service's config file, and the
connection counts `http.max_connections` and `http.max_connections_per_source`
(`connlimits`, applied by `daemon.serve` and the agent's TLS listener).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import connlimits
from .settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 30.0
    body_timeout: float = 30.0
    connections: connlimits.ConnLimits = field(default_factory=connlimits.ConnLimits)


LIMITS_KEY = web.AppKey("vrstack_http_limits", HttpLimits)


class BodyTimeout(TimeoutError):
    """The request body did not arrive in time. A TimeoutError, so aiohttp's lingering
    read of an unfinished body after the response stops quietly too."""


def from_settings(settings: Settings) -> HttpLimits:
    d = HttpLimits()
    limits = HttpLimits(
        header_timeout=settings.get_float("http.header_timeout", d.header_timeout),
        body_timeout=settings.get_float("http.body_timeout", d.body_timeout),
        connections=connlimits.from_settings(settings, "http", d.connections),
    )
    for name, value in (
        ("http.header_timeout", limits.header_timeout),
        ("http.body_timeout", limits.body_timeout),
    ):
        if not 0.1 <= value <= 3600:
            raise settings.error(name, f"must be between 0.1 and 3600 seconds, got {value}")
    return limits


def install(app: web.Application, limits: HttpLimits) -> None:
    """Apply `limits` to `app`: the body deadline now, the header timeout when `serve`
    (or `runner_options`) builds the runner. Call before the app starts; the middleware
    goes last, inside the app's error handling."""
    app[LIMITS_KEY] = limits
    app.middlewares.append(_body_deadline(limits.body_timeout))


def runner_options(app: web.Application) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` that apply the app's header timeout."""
    return {"keepalive_timeout": app.get(LIMITS_KEY, HttpLimits()).header_timeout}


def gate(app: web.Application, listener: str) -> connlimits.Gate:
    """The connection limits of `app` for its listener (`listener` names it in logs)."""
    return connlimits.Gate(app.get(LIMITS_KEY, HttpLimits()).connections, listener)


def _body_deadline(seconds: float) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        def expire() -> None:
            if not request.content.is_eof():  # the body is still coming: fail its reader
                request.content.set_exception(
                    BodyTimeout(f"the request body did not arrive within {seconds:g} s")
                )

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            return await handler(request)
        except BodyTimeout as exc:
            response = web.json_response(
                {"error": str(exc), "limit": "http.body_timeout"}, status=408
            )
            response.force_close()
            return response
        finally:
            timer.cancel()

    return middleware


__all__ = ["BodyTimeout", "HttpLimits", "from_settings", "gate", "install", "runner_options"]
