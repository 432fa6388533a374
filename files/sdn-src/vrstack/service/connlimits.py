"""How many connections a listener keeps open: per source address and in total.

Timeouts (`httplimits`, the XMPP deadlines) close slow clients in time, but one source
could still open connections faster than they expire and use up the process's file
descriptors. Every listener (the HTTP services through `daemon.serve` and the agent's
TLS listener, the control node's XMPP and BGP ports) wraps its protocol factory with a
`Gate`: a connection from a source its `allow` hook refuses (BGP: not a configured
peer), over `max_connections_per_source` for its source address, or over
`max_connections` in all, is closed at once, before a byte is read, and the refusal is
logged with the source (at most one line per source per `LOG_INTERVAL`, and at most
`LOG_BURST` lines per interval in all, each line counting the refusals it stands for;
refusals not yet said are counted for the source's next line, so the counts add up).

Settings, in the section of the listener (`http.`, `xmpp.` or `bgp.`):
`max_connections` and `max_connections_per_source`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .settings import Settings

log = logging.getLogger(__name__)
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

LOG_INTERVAL = 10.0  # seconds between refusal lines for one source
LOG_BURST = 20  # refusal lines per LOG_INTERVAL for all sources together
# Sources whose refusals are counted one by one; beyond, a flood of addresses shares
# one count (OTHERS), so the memory stays bounded.
MAX_TRACKED = 1024
OTHERS = "other sources"
NOT_ALLOWED = "not_allowed"  # the reason when the gate's `allow` hook says no
# The soft file descriptor limit of a systemd service is 1024: stay under it.
DEFAULT_TOTAL = 768


@dataclass(frozen=True)
class ConnLimits:
    max_connections: int = DEFAULT_TOTAL
    max_connections_per_source: int = 128


def from_settings(settings: Settings, section: str, default: ConnLimits) -> ConnLimits:
    """`<section>.max_connections` and `.max_connections_per_source`, checked."""
    total = settings.get_int(
        f"{section}.max_connections", default.max_connections, low=1, high=1_000_000
    )
    field = f"{section}.max_connections_per_source"
    per_source = settings.get_int(field, default.max_connections_per_source, low=1, high=1_000_000)
    if per_source > total:
        raise settings.error(field, f"must be at most {section}.max_connections ({total})")
    return ConnLimits(total, per_source)


class Slot:
    """One admitted connection; `release` gives its place back (once)."""

    def __init__(self, gate: Gate, source: str) -> None:
        self._gate = gate
        self.source = source
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._gate._release(self.source)


@dataclass
class _Tally:
    """What one source's refusal lines have said, and what is left to say."""

    reason: str
    said_at: float | None = None  # when its last line went out; None: never
    unsaid: int = 0  # refusals since that line


class Gate:
    """Counts a listener's open connections and refuses those over its limits, or from
    a source `allow` (when given) says no to."""

    def __init__(
        self, limits: ConnLimits, listener: str, allow: Callable[[str], bool] | None = None
    ) -> None:
        self.limits = limits
        self.listener = listener
        self.allow = allow
        self.open = 0
        self.by_source: dict[str, int] = {}
        self.refused = 0
        self._recent: dict[str, _Tally] = {}
        self._others = _Tally(NOT_ALLOWED)  # refusals of sources beyond MAX_TRACKED
        self._window = float("-inf")
        self._lines = 0

    def admit(self, transport: asyncio.BaseTransport) -> Slot | None:
        """A slot for this connection, or None after closing it (over a limit)."""
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        have = self.by_source.get(source, 0)
        if self.allow is not None and not self.allow(source):
            reason = NOT_ALLOWED
        elif have >= self.limits.max_connections_per_source:
            reason = "max_connections_per_source"
        elif self.open >= self.limits.max_connections:
            reason = "max_connections"
        else:
            self.open += 1
            self.by_source[source] = have + 1
            return Slot(self, source)
        self.refused += 1
        transport.abort()  # at once: nothing read, nothing answered
        self._log_refusal(source, reason)
        return None

    def _release(self, source: str) -> None:
        self.open -= 1
        left = self.by_source.get(source, 1) - 1
        if left > 0:
            self.by_source[source] = left
        else:
            self.by_source.pop(source, None)

    def _log_refusal(self, source: str, reason: str) -> None:
        """Count the refusal for its source and say it when the rate limits allow.

        Every refusal lands in exactly one tally and every line says (and empties) one,
        so the `refused` fields of the lines add up to the refusals, just later when
        the burst is spent."""
        now = time.monotonic()
        if now - self._window >= LOG_INTERVAL:
            self._window, self._lines = now, 0
            self._catch_up(now, source)
        tally = self._recent.get(source)
        if tally is None:
            if len(self._recent) < MAX_TRACKED:
                tally = self._recent[source] = _Tally(reason)
            else:
                source, tally = OTHERS, self._others
        tally.unsaid += 1
        tally.reason = reason
        self._say(source, tally, now)

    def _catch_up(self, now: float, current: str) -> None:
        """At a new interval: say what other sources were refused since their last line
        (`current`'s is said with its refusal), and forget those quiet for an interval
        (so a scan of many addresses cannot grow the map)."""
        for source, tally in list(self._recent.items()):
            if source == current:
                continue
            if tally.unsaid:
                self._say(source, tally, now)
            elif tally.said_at is not None and now - tally.said_at >= LOG_INTERVAL:
                del self._recent[source]
        if self._others.unsaid:
            self._say(OTHERS, self._others, now)

    def _say(self, source: str, tally: _Tally, now: float) -> None:
        """One line for the tally's refusals, unless its source had one within the
        interval or the burst is spent (then they wait for a later line)."""
        if tally.said_at is not None and now - tally.said_at < LOG_INTERVAL:
            return
        if self._lines >= LOG_BURST:
            return
        self._lines += 1
        extra: dict[str, Any] = {
            "listener": self.listener,
            "addr": source,
            "reason": tally.reason,
            "refused": tally.unsaid,  # since this source's previous line
        }
        if tally.reason != NOT_ALLOWED:
            extra["limit"] = getattr(self.limits, tally.reason)
        log.warning("connection refused", extra=extra)
        tally.said_at, tally.unsaid = now, 0

    def protocol(
        self, factory: Callable[[], asyncio.BaseProtocol], slot: Slot | None = None
    ) -> asyncio.Protocol:
        """A protocol that admits its connection (unless `slot` already holds one) and
        hands it to `factory()`'s protocol, giving the slot back when it is lost."""
        return _Guarded(self, factory, slot)

    def wrap(
        self, factory: Callable[[], asyncio.BaseProtocol]
    ) -> Callable[[], asyncio.BaseProtocol]:
        """A protocol factory for `loop.create_server` that applies this gate."""
        return lambda: self.protocol(factory)


class _Guarded(asyncio.Protocol):
    """Passes every event to the inner protocol; holds the connection's slot."""

    def __init__(
        self, gate: Gate, factory: Callable[[], asyncio.BaseProtocol], slot: Slot | None
    ) -> None:
        self._gate = gate
        self._factory = factory
        self._slot = slot
        self._inner: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._slot is None:
            self._slot = self._gate.admit(transport)
            if self._slot is None:
                return
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._slot is not None:
            self._slot.release()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def streams(handler: StreamHandler) -> Callable[[], asyncio.BaseProtocol]:
    """The protocol factory `asyncio.start_server(handler, ...)` uses, for `Gate.wrap`."""
    return lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(), handler)


async def start_server(handler: StreamHandler, host: str, port: int, gate: Gate) -> asyncio.Server:
    """`asyncio.start_server(handler, host, port)` with `gate` on its connections."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(gate.wrap(streams(handler)), host, port, reuse_address=True)


__all__ = ["ConnLimits", "Gate", "Slot", "from_settings", "start_server", "streams"]
