"""A simulated vrouter agent: speaks the agent protocol to one control node.

The tests and `bench/control_scale.py` use it; the real agent implements the same
stanzas (docs/sdn-control.md). It keeps what the control node pushed — routes per
subscribed instance and config objects — and lets callers wait for a condition on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any

from . import xmpp
from .xmpp import Nexthop, XmppError


class SimAgent:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        ping_interval: float | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.tls = tls
        self.ping_interval = ping_interval
        self.routes: dict[str, dict[str, tuple[Nexthop, ...]]] = {}
        self.config: dict[str, dict[str, Any]] = {}
        self.config_revision = 0
        self.error: str | None = None  # the stream error condition, if the server sent one
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._ids = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.updates = 0  # route items received
        self.retracted: list[tuple[str, str]] = []  # (instance, prefix), in order received

    async def connect(self, timeout: float = 10.0) -> None:
        self._reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.tls), timeout
        )
        self._writer = writer
        self.closed.clear()
        self.error = None
        opened = asyncio.get_running_loop().create_future()
        self._pending["stream"] = opened
        writer.write(xmpp.stream_open(self.name, "vrstack-control"))
        self._tasks = [asyncio.ensure_future(self._read())]
        if self.ping_interval:
            self._tasks.append(asyncio.ensure_future(self._pinger()))
        await asyncio.wait_for(opened, timeout)

    async def close(self) -> None:
        """End the stream cleanly; the control node withdraws our routes."""
        if self._writer is not None and not self.closed.is_set():
            with contextlib.suppress(Exception):
                self._writer.write(xmpp.STREAM_CLOSE)
                await self._writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), 5)
        await self.abort()

    async def abort(self) -> None:
        """Drop the TCP connection without closing the stream (a crashed agent)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self.closed.set()

    async def send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def _iq(self, build: Callable[[str], bytes], timeout: float = 10.0) -> None:
        self._ids += 1
        iq_id = f"{self.name}-{self._ids}"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = fut
        await self.send_raw(build(iq_id))
        await asyncio.wait_for(fut, timeout)

    async def subscribe(self, instance: str, timeout: float = 10.0) -> None:
        self.routes.setdefault(instance, {})
        await self._iq(lambda i: xmpp.subscribe(i, instance), timeout)

    async def unsubscribe(self, instance: str) -> None:
        await self._iq(lambda i: xmpp.subscribe(i, instance, unsubscribe=True))
        self.routes.pop(instance, None)

    async def publish(
        self, instance: str, routes: dict[str, Nexthop], timeout: float = 10.0
    ) -> None:
        await self._iq(lambda i: xmpp.publish(i, instance, routes), timeout)

    async def retract(self, instance: str, prefixes: list[str]) -> None:
        await self._iq(lambda i: xmpp.retract(i, instance, prefixes))

    async def wait_for(self, predicate: Callable[[SimAgent], Any], timeout: float = 15.0) -> Any:
        """Wait until `predicate(self)` is truthy after some push (bounded in time)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not (value := predicate(self)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: condition not met within {timeout}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            return value

    def nexthops(self, instance: str, prefix: str) -> set[str]:
        return {h.address for h in self.routes.get(instance, {}).get(prefix, ())}

    async def _pinger(self) -> None:
        assert self.ping_interval
        while True:
            await asyncio.sleep(self.ping_interval)
            await self._iq(xmpp.ping)

    async def _read(self) -> None:
        assert self._reader is not None
        parser = xmpp.StreamParser()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for ev in parser.feed(data):
                    if ev.kind == "open":
                        self._resolve("stream")
                    elif ev.kind == "close":
                        return
                    else:
                        assert ev.stanza is not None
                        await self._stanza(ev.stanza)
        except (XmppError, ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"{self.name}: stream closed ({self.error})"))
            self._pending.clear()
            async with self._changed:
                self._changed.notify_all()

    def _resolve(self, key: str) -> None:
        fut = self._pending.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _stanza(self, el: Any) -> None:
        if el.tag == "stream:error":
            self.error = next((c.tag for c in el if c.tag != "text"), "unknown")
            return
        if el.tag == "iq":
            self._resolve(el.get("id", ""))
            return
        push = xmpp.parse_push(el)
        if push.node == xmpp.CONFIG_NODE:
            for key, obj in push.config.items():
                if obj is None:
                    self.config.pop(key, None)
                else:
                    self.config[key] = obj
            self.config_revision = max(self.config_revision, push.revision)
        else:
            table = self.routes.setdefault(push.node, {})
            for prefix, hops in push.routes.items():
                self.updates += 1
                if hops:
                    table[prefix] = tuple(hops)
                else:
                    table.pop(prefix, None)
                    self.retracted.append((push.node, prefix))
        async with self._changed:
            self._changed.notify_all()
