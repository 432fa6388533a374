"""The XMPP side of the control node: one session per connected vrouter agent.

A session reads stanzas in order and applies them to the node; what the node sends
back (route and config updates) is queued per agent and written by one writer task,
which coalesces bursts: the latest nexthops per prefix, several prefixes a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from ..service import tls
from . import xmpp
from .xmpp import Nexthop, XmppError

if TYPE_CHECKING:
    from .node import ControlNode

log = logging.getLogger(__name__)
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_ITEMS_PER_MESSAGE = 500


class AgentSession:
    def __init__(
        self, node: ControlNode, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.node = node
        self.reader = reader
        self.writer = writer
        self.name = ""
        self.address = str(writer.get_extra_info("peername", ("?", 0))[0])
        self.connected_at = time.time()
        self.accepted_at = time.monotonic()
        self.subscriptions: set[str] = set()
        self.published: dict[str, dict[str, Nexthop]] = {}  # instance -> prefix -> nexthop
        self.config_sent: dict[str, int] = {}  # "<type>/<uuid>" -> version sent
        self.pending_routes: dict[str, dict[str, tuple[Nexthop, ...]]] = {}
        self.pending_config: dict[str, dict[str, Any] | None] = {}
        self.wake = asyncio.Event()
        self.closing = False
        self.stanzas = 0

    @property
    def source(self) -> str:
        return f"agent:{self.name}"

    def introspect(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "state": "closing" if self.closing else "established",
            "connected_at": self.connected_at,
            "subscriptions": sorted(self.subscriptions),
            "published_routes": sum(len(r) for r in self.published.values()),
            "config_objects": len(self.config_sent),
            "stanzas": self.stanzas,
        }

    # ---- output --------------------------------------------------------------

    def queue_route(self, instance: str, prefix: str, hops: tuple[Nexthop, ...]) -> None:
        self.pending_routes.setdefault(instance, {})[prefix] = hops
        self.wake.set()

    def queue_config(self, key: str, obj: dict[str, Any] | None) -> None:
        self.pending_config[key] = obj
        self.wake.set()

    async def _writer(self) -> None:
        while not self.closing:
            await self.wake.wait()
            self.wake.clear()
            if self.pending_config:
                cfg, self.pending_config = self.pending_config, {}
                keys = list(cfg)
                for i in range(0, len(keys), MAX_ITEMS_PER_MESSAGE):
                    part = {k: cfg[k] for k in keys[i : i + MAX_ITEMS_PER_MESSAGE]}
                    self.writer.write(xmpp.config_update(part, self.node.config_revision))
            routes, self.pending_routes = self.pending_routes, {}
            for instance, table in routes.items():
                prefixes = list(table)
                for i in range(0, len(prefixes), MAX_ITEMS_PER_MESSAGE):
                    chunk = {p: list(table[p]) for p in prefixes[i : i + MAX_ITEMS_PER_MESSAGE]}
                    self.writer.write(xmpp.route_update(instance, chunk))
            await self.writer.drain()

    # ---- input ---------------------------------------------------------------

    def _read_timeout(self, parser: xmpp.StreamParser) -> tuple[float, bool]:
        """Seconds to wait for more bytes, and whether that is a stanza's deadline (a
        header or stanza must arrive whole in a share of the hold time) or the hold time."""
        hold = self.node.xmpp_hold_time
        began = parser.partial_since if parser.opened else self.accepted_at
        if began is None:
            return hold, False
        left = began + hold * xmpp.STANZA_SHARE - time.monotonic()
        return (max(0.0, left), True) if left < hold else (hold, False)

    async def run(self) -> None:
        parser = xmpp.StreamParser()
        writer_task: asyncio.Task[None] | None = None
        try:
            while True:
                timeout, stanza_deadline = self._read_timeout(parser)
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), timeout)
                except TimeoutError:
                    if not stanza_deadline:
                        raise
                    limit = self.node.xmpp_hold_time * xmpp.STANZA_SHARE
                    raise XmppError(
                        "policy-violation", f"stanza not complete within {limit:g} s"
                    ) from None
                if not data:
                    break  # connection closed without </stream:stream>
                for ev in parser.feed(data):
                    if ev.kind == "open":
                        self._open(ev.attrs)
                        writer_task = asyncio.ensure_future(self._writer())
                    elif ev.kind == "stanza":
                        assert ev.stanza is not None
                        self.stanzas += 1
                        self._stanza(ev.stanza)
                    else:
                        self.writer.write(xmpp.STREAM_CLOSE)
                        return
        except XmppError as exc:
            log.warning(
                "agent stream error",
                extra={"agent": self.name, "addr": self.address, "error": str(exc)},
            )
            with contextlib.suppress(Exception):
                if not self.name:
                    self.writer.write(xmpp.stream_open(self.node.name, "", "error"))
                self.writer.write(xmpp.stream_error(exc.condition, exc.text))
        except TimeoutError:
            log.warning("agent hold time expired", extra={"agent": self.name})
            with contextlib.suppress(Exception):
                self.writer.write(xmpp.stream_error("connection-timeout", "hold time expired"))
        except (ConnectionError, OSError) as exc:
            log.info("agent connection lost", extra={"agent": self.name, "error": repr(exc)})
        finally:
            self.closing = True
            self.wake.set()
            if writer_task is not None:
                writer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer_task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.drain(), 2)
                self.writer.close()
            if self.name:
                self.node.agent_closed(self)

    def _open(self, attrs: dict[str, str]) -> None:
        name = attrs.get("from", "")
        if not AGENT_NAME.match(name):
            raise XmppError(
                "invalid-from", f"stream 'from' must be the virtual-router name: {name!r}"
            )
        # With client certificates, an agent speaks only for the compute it was issued for:
        # a stolen compute cannot take over another's ports and routes.
        cert = tls.peer_subject(self.writer)
        if self.node.s.tls_verify_client and cert != name:
            reason = f"certificate is for {cert!r}, the stream is from {name!r}"
            peer = self.writer.get_extra_info("peername") or ("?", 0)
            self.node.refused(f"{peer[0]}:{peer[1]}", reason)
            raise XmppError("not-authorized", reason)
        self.name = name
        self.writer.write(
            xmpp.stream_open(self.node.name, name, f"{name}-{int(self.connected_at)}")
        )
        self.node.agent_opened(self)

    def _stanza(self, el: Any) -> None:
        req = xmpp.parse_request(el)
        if self.node.agents.get(self.name) is not self:
            return  # a newer session of this agent replaced us: ignore what is left
        if req.action == "ping":
            pass
        elif req.action == "subscribe":
            self.subscriptions.add(req.node)
            self.node.agent_subscribed(self, req.node)
        elif req.action == "unsubscribe":
            self.subscriptions.discard(req.node)
            self.pending_routes.pop(req.node, None)
        elif req.action == "publish":
            self.published.setdefault(req.node, {}).update(req.routes)
            self.node.agent_published(self, req.node, req.routes)
        else:
            table = self.published.get(req.node, {})
            for p in req.prefixes:
                table.pop(p, None)
            self.node.agent_retracted(self, req.node, req.prefixes)
        self.writer.write(xmpp.iq_result(req.iq_id))
