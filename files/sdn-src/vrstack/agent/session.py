"""One agent session to one control node: connect, keep alive, reconnect.

The stanzas are built and parsed by `vrstack.control.xmpp` (the control node's own
module). The session keeps what its node pushed: routes per subscribed instance and
config objects. When the stream drops, that state is kept as it was (the agent keeps
forwarding on it) and marked stale; after a reconnect the node sends every subscribed
instance again, and what it did not resend is dropped once the subscriptions are answered.

With `tls` (a client context from `vrstack.service.tls`) the stream runs over TLS and
the node's certificate must match `server_name` (default: the host as configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from ..control import xmpp
from ..control.xmpp import Nexthop, XmppError
from ..service.tls import refusal_reason

log = logging.getLogger(__name__)

Routes = dict[str, dict[str, tuple[Nexthop, ...]]]  # instance -> prefix -> nexthops


class ControlSession:
    def __init__(
        self,
        agent_name: str,
        host: str,
        port: int,
        on_change: Callable[[], None],
        ping_interval: float = 10.0,
        retry: float = 1.0,
        tls: ssl.SSLContext | None = None,
        server_name: str = "",
    ) -> None:
        self.agent_name = agent_name
        self.host = host
        self.port = port
        self.on_change = on_change
        self.ping_interval = ping_interval
        self.retry = retry
        self.tls = tls
        self.server_name = server_name or host
        # Bumped on every change of what the agent derives from this session (its
        # state, routes, config): the agent's cached state is valid while it is unchanged.
        self.version = 0
        # The same per routing instance, for its routes only (the agent keeps each
        # instance's merged routes while none of its sessions' versions moved).
        self.instance_versions: dict[str, int] = {}
        self._state = "Idle"  # Idle, Connecting, Established
        self.flaps = 0
        self.established_at = 0.0
        self.last_error = ""
        self.routes: Routes = {}
        self.stale: Routes = {}  # the previous stream's routes, until resynced
        self.config: dict[str, dict[str, Any]] = {}
        self.config_revision = 0
        self.counters = {"route_items": 0, "config_items": 0, "iq_sent": 0, "connects": 0}
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._ids = 0
        self._opened: asyncio.Future[None] | None = None

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self.version += 1

    def _touch(self, *instances: str) -> None:
        """These instances' routes changed (and so did the session)."""
        for inst in instances:
            self.instance_versions[inst] = self.instance_versions.get(inst, 0) + 1
        self.version += 1

    @property
    def up(self) -> bool:
        return self.state == "Established"

    def view(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "tls": self.tls is not None,
            "state": self.state,
            "flaps": self.flaps,
            "established_at": self.established_at,
            "last_error": self.last_error,
            "config_revision": self.config_revision,
            "config_objects": len(self.config),
            "instances": sorted(self.routes),
            "stale_instances": sorted(self.stale),
            **self.counters,
        }

    # ---- requests (each answered by an iq result, in order) --------------------------

    async def _iq(self, build: Callable[[str], bytes], timeout: float = 10.0) -> None:
        if self._writer is None or not self.up:
            raise ConnectionError(f"session to {self.host}:{self.port} is not up")
        self._ids += 1
        iq_id = f"{self.agent_name}-{self._ids}"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = fut
        self.counters["iq_sent"] += 1
        self._writer.write(build(iq_id))
        await self._writer.drain()
        await asyncio.wait_for(fut, timeout)

    async def subscribe(self, instance: str) -> None:
        self.routes.setdefault(instance, {})
        self.version += 1
        await self._iq(lambda i: xmpp.subscribe(i, instance))

    async def unsubscribe(self, instance: str) -> None:
        await self._iq(lambda i: xmpp.subscribe(i, instance, unsubscribe=True))
        self.routes.pop(instance, None)
        self.stale.pop(instance, None)
        self._touch(instance)

    async def publish(self, instance: str, routes: dict[str, Nexthop]) -> None:
        await self._iq(lambda i: xmpp.publish(i, instance, routes))

    async def retract(self, instance: str, prefixes: list[str]) -> None:
        await self._iq(lambda i: xmpp.retract(i, instance, prefixes))

    def end_resync(self) -> None:
        """The node has resent every subscribed instance: forget the old stream's routes."""
        if self.stale:
            self._touch(*self.stale)
            self.stale = {}
            self.on_change()

    # ---- the connection loop ---------------------------------------------------------

    async def run(self, stop: asyncio.Event, on_up: Callable[[], Any]) -> None:
        """Connect, serve, and reconnect after `retry` seconds until `stop` is set."""
        while not stop.is_set():
            self.state = "Connecting"
            before = self.last_error
            try:
                await self._serve(stop, on_up)
            except ssl.SSLError as exc:
                self.last_error = f"TLS with {self.server_name}: {refusal_reason(exc)}"
            except (OSError, XmppError, TimeoutError, ConnectionError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            finally:
                if self.state != "Established" and self.last_error != before:
                    # Each new reason once, not every retry: a wrong CA would flood the log.
                    log.warning(
                        "control session failed",
                        extra={"control": f"{self.host}:{self.port}", "error": self.last_error},
                    )
                if self.state == "Established":
                    self.flaps += 1
                    log.log(
                        logging.INFO if stop.is_set() else logging.WARNING,
                        "control session down",
                        extra={"control": f"{self.host}:{self.port}", "error": self.last_error},
                    )
                self.state = "Idle"
                self._drop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry)

    def _drop(self) -> None:
        # Keep forwarding on what we had: the routes become stale, not withdrawn.
        for inst, table in self.routes.items():
            self.stale.setdefault(inst, {}).update(table)
        self._touch(*self.routes)
        self.routes = {}
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("stream closed"))
        self._pending.clear()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._writer = None

    async def _serve(self, stop: asyncio.Event, on_up: Callable[[], Any]) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.server_name if self.tls else None,
            ),
            5,
        )
        self._writer = writer
        self.counters["connects"] += 1
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        writer.write(xmpp.stream_open(self.agent_name, "vrstack-control"))
        read_task = asyncio.ensure_future(self._read(reader))
        stop_task = asyncio.ensure_future(stop.wait())
        tasks: list[asyncio.Future[Any]] = [read_task, stop_task]
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), 5)
            self.state = "Established"
            self.established_at = time.time()
            self.last_error = ""
            log.info("control session up", extra={"control": f"{self.host}:{self.port}"})
            pinger = asyncio.ensure_future(self._pinger())
            tasks += [pinger, asyncio.ensure_future(on_up())]
            # A node that vanished without closing (host down, link cut) only shows as
            # unanswered pings: the pinger ending ends the session too.
            done, _ = await asyncio.wait(tasks[:3], return_when=asyncio.FIRST_COMPLETED)
            if stop_task in done:
                self.last_error = "agent stopping"
                with contextlib.suppress(Exception):
                    writer.write(xmpp.STREAM_CLOSE)
                    await writer.drain()
            elif pinger in done:
                raise pinger.exception() or ConnectionError("pinger ended")
            elif read_task.exception() is not None:
                raise read_task.exception()  # type: ignore[misc]
            else:
                self.last_error = "stream closed by the control node"
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _pinger(self) -> None:
        """Ping every `ping_interval`; no answer within three intervals ends the session."""
        hold = 3 * self.ping_interval
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await self._iq(xmpp.ping, timeout=hold)
            except TimeoutError:
                raise ConnectionError(f"no answer to a ping within {hold:g}s") from None

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = xmpp.StreamParser()
        while True:
            data = await reader.read(65536)
            if not data:
                if self._opened is not None and not self._opened.done():
                    # A TLS node that refuses our certificate just closes (TLS 1.3: after
                    # our side of the handshake); a TLS node reached without TLS does too.
                    hint = (
                        "it may refuse this agent's certificate, see its log"
                        if self.tls
                        else "does it expect TLS? see xmpp.tls"
                    )
                    self._opened.set_exception(
                        ConnectionError(
                            f"the control node closed the connection before the stream opened"
                            f" ({hint})"
                        )
                    )
                return
            for ev in parser.feed(data):
                if ev.kind == "open":
                    if self._opened is not None and not self._opened.done():
                        self._opened.set_result(None)
                elif ev.kind == "close":
                    return
                else:
                    assert ev.stanza is not None
                    self._stanza(ev.stanza)

    def _stanza(self, el: Any) -> None:
        if el.tag == "stream:error":
            self.last_error = "stream error: " + next(
                (c.tag for c in el if c.tag != "text"), "unknown"
            )
            return
        if el.tag == "iq":
            fut = self._pending.pop(el.get("id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        push = xmpp.parse_push(el)
        if push.node == xmpp.CONFIG_NODE:
            for key, obj in push.config.items():
                self.counters["config_items"] += 1
                if obj is None:
                    self.config.pop(key, None)
                else:
                    self.config[key] = obj
            self.config_revision = max(self.config_revision, push.revision)
        else:
            table = self.routes.setdefault(push.node, {})
            for prefix, hops in push.routes.items():
                self.counters["route_items"] += 1
                if hops:
                    table[prefix] = tuple(hops)
                else:
                    table.pop(prefix, None)
                # A pushed prefix is current: its stale copy (if any) is superseded.
                self.stale.get(push.node, {}).pop(prefix, None)
            self._touch(push.node)
        self.version += 1
        self.on_change()
