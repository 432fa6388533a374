"""Services report to the analytics collector: node status, connections and counters.

A daemon whose config file has an `analytics` section sends, every `interval` seconds,
one `status` record (its state and its connections) and one `counter` record per
counter, through `vrstack.analytics.sender.Sender`; a clean stop sends a last `down`
status. Without the section nothing is sent.

```yaml
analytics:
  url: https://198.18.1.16:8081  # the collector; empty or absent: no reports
  tls: {ca: /etc/vrstack/pki/ca.crt}  # checks an https collector (default: system CAs)
  token: "..."                    # an admin token of the collector (optional)
  source: lab-ctl1                # the node's name (default: the host name)
  interval: 30                    # seconds between reports
```

Each daemon gives a `snapshot` coroutine returning a `Snapshot`; `add_reporting` runs
the reports (and the sender) as a background task of its aiohttp application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..analytics.sender import Sender
from ..service import tls
from ..service.daemon import add_background, add_reload
from ..service.settings import Settings

log = logging.getLogger(__name__)

_SOURCE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
MAX_CONNECTIONS = 64  # what a status record may carry


@dataclass
class Snapshot:
    """What a service reports: `state` is up, initializing, degraded or down."""

    state: str
    connections: list[dict[str, str]] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    detail: str = ""
    datapath: str = ""  # agents: present or absent


Snap = Callable[[], Awaitable[Snapshot]]


@dataclass
class Options:
    url: str
    token: str
    source: str
    interval: float
    ssl_context: ssl.SSLContext | None = None
    path: str = ""  # the config file, read again on SIGHUP for a new token


def options(settings: Settings) -> Options | None:
    """The `analytics` section of a daemon's config file, checked; None when absent."""
    url = settings.get_str("analytics.url", "")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise settings.error("analytics.url", f"must be an http(s) URL, got {url!r}")
    source = settings.get_str("analytics.source", socket.gethostname())
    if not _SOURCE.match(source):
        raise settings.error(
            "analytics.source", f"1-128 of letters, digits and _.:@- only, got {source!r}"
        )
    interval = settings.get_float("analytics.interval", 30.0)
    if not 1 <= interval <= 3600:
        raise settings.error("analytics.interval", f"must be 1 to 3600 seconds, got {interval}")
    ctx = tls.https_client(settings, "analytics.url", "analytics.tls")
    token = settings.get_str("analytics.token", "")
    return Options(url, token, source, interval, ctx, settings.path)


class Reporter:
    def __init__(self, sender: Sender, service: str, interval: float, snapshot: Snap) -> None:
        self.sender = sender
        self.service = service
        self.interval = interval
        self.snapshot = snapshot
        self.reports = 0

    async def report(self) -> None:
        try:
            snap = await self.snapshot()
        except Exception as exc:  # a failing snapshot is a degraded service, not a crash
            log.exception("status snapshot failed")
            snap = Snapshot("degraded", detail=f"status snapshot failed: {exc}")
        self._emit_status(snap.state, snap)
        for name, value in sorted(snap.counters.items()):
            self.sender.emit("counter", name=f"{self.service}.{name}", value=value)
        self.reports += 1

    def _emit_status(self, state: str, snap: Snapshot) -> None:
        fields: dict[str, Any] = {
            "service": self.service,
            "state": state,
            "interval": self.interval,
            "connections": snap.connections[:MAX_CONNECTIONS],
            "detail": snap.detail[:1024],
        }
        if snap.datapath:
            fields["datapath"] = snap.datapath
        self.sender.emit("status", **fields)

    async def run(self, stop: asyncio.Event) -> None:
        """Report every interval until `stop`; then a last `down` and a final send."""
        send_stop = asyncio.Event()
        sending = asyncio.ensure_future(self.sender.run(send_stop))
        try:
            while not stop.is_set():
                await self.report()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
            self._emit_status("down", Snapshot("down", detail="stopped"))
        finally:
            send_stop.set()  # the sender makes one last attempt at what is queued
            await sending


def add_reporting(
    app: web.Application, opts: Options | None, service: str, snapshot: Snap
) -> Reporter | None:
    """Report `service` from this daemon when its config has `analytics.url` (`opts`)."""
    if opts is None:
        return None
    sender = Sender(opts.url, opts.source, opts.token or None, ssl_context=opts.ssl_context)
    reporter = Reporter(sender, service, opts.interval, snapshot)
    add_background(app, "analytics-report", reporter.run, stop_timeout=sender.timeout + 5)
    if opts.path:

        def new_token(settings: Settings) -> None:
            sender.token = settings.get_str("analytics.token", "") or None

        add_reload(app, opts.path, new_token)
    return reporter


def connection(kind: str, name: str, up: bool, connecting: bool = False) -> dict[str, str]:
    state = "up" if up else ("connecting" if connecting else "down")
    return {"type": kind, "name": name, "state": state}
