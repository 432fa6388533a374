"""The control node: ties the config feed, the route table, agents (XMPP) and BGP together.

Config comes from the config API's watch (`Mirror`): routing instances (import/export
targets from the schema transformer), bgp-routers (our peers), and what each agent
needs (its virtual-router, ports, their networks, routing instances and ACLs).
Routes come from agents and BGP peers into one `RouteTable`; every change of what an
instance resolves to is pushed to the agents subscribed to it, and every change of a
locally published route is exported to the BGP peers as a VPN route.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..config.client import ApiError
from ..service import connlimits, tls
from . import bgp_codec as bc
from .agents import AgentSession
from .bgp import BGP_LIMITS, Advert, BgpSpeaker, Peer, PeerConfig
from .routes import Change, Path, RouteTable
from .xmpp import Nexthop

log = logging.getLogger(__name__)
JSON = dict[str, Any]
CONFIG_TYPES = (
    "global-config",
    "bgp-router",
    "virtual-router",
    "virtual-network",
    "routing-instance",
    "access-control-list",
    "virtual-machine-interface",
    "instance-ip",
    "floating-ip",
    "service-health",
)
HEALTH = "service-health"
DEFAULT_ENCAPS = ("MPLSoUDP", "MPLSoGRE")
XMPP_LIMITS = connlimits.ConnLimits(max_connections_per_source=8)


@dataclass
class NodeSettings:
    name: str = socket.gethostname()
    router_id: str = ""  # default: the BGP address
    asn: int = 0  # default: our bgp-router object's, else global-config's
    bgp_address: str = "127.0.0.1"
    bgp_port: int = 179
    connect_retry: float = 5.0
    # TCP MD5 passwords (docs/security.md): `bgp_password` for the other control nodes,
    # `bgp_peer_passwords` by peer address (gateways; overrides bgp_password).
    bgp_password: str = field(default="", repr=False)
    bgp_peer_passwords: dict[str, str] = field(default_factory=dict, repr=False)
    # Gateway routers (bgp-router role `gateway`) to peer with, by address: the fabric
    # model's `gateway.peers` (docs/architecture.md). None: every gateway.
    bgp_gateways: frozenset[str] | None = None
    # Incoming BGP connections: only from peers, 2 each, 64 in all (`bgp.max_connections*`).
    bgp_limits: connlimits.ConnLimits = BGP_LIMITS
    xmpp_host: str = "127.0.0.1"
    xmpp_port: int = 5269
    xmpp_hold_time: float = 90.0
    # Open XMPP connections: an agent holds one per control node; the spare per source
    # covers reconnects (`xmpp.max_connections*`, docs/security.md).
    xmpp_limits: connlimits.ConnLimits = XMPP_LIMITS
    tls_cert: str = ""  # XMPP over TLS when set (docs/sdn-control.md)
    tls_key: str = ""
    tls_ca: str = ""  # the CA of the agents' certificates, for tls_verify_client
    tls_verify_client: bool = False
    tls_crl: str = ""  # the CA's CRL, read when the file is there (docs/security.md)
    report_interval: float = 5.0  # seconds between checks of our service-health object


class ControlNode:
    def __init__(self, settings: NodeSettings, mirror: Any | None = None) -> None:
        self.s = settings
        self.name = settings.name
        self.router_id = settings.router_id or settings.bgp_address
        ipaddress.IPv4Address(self.router_id)  # BGP identifiers are IPv4 addresses
        self.xmpp_hold_time = settings.xmpp_hold_time
        self.mirror = mirror  # vrstack.config.client.Mirror, or None (routes only)
        self.table = RouteTable()
        self.agents: dict[str, AgentSession] = {}
        self.agent_flaps: dict[str, int] = {}
        self.agents_refused = 0  # TLS handshakes that failed
        self.subscribers: dict[str, set[AgentSession]] = {}
        self.speaker: BgpSpeaker | None = None
        self.xmpp_server: asyncio.Server | None = None
        self.xmpp_tls: tls.ServerTls | None = None
        self.xmpp_gate = connlimits.Gate(settings.xmpp_limits, "xmpp")  # counts connections
        self.xmpp_port = 0
        self.config_revision = 0
        self._peers: list[PeerConfig] = []
        self._sessions: set[asyncio.Task[Any]] = set()  # one per connected agent
        self._index: dict[str, dict[str, list[JSON]]] = {}

    # ---- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        host, port = self.s.xmpp_host, self.s.xmpp_port
        if self.s.tls_cert:
            files = tls.TlsFiles(
                self.s.tls_cert,
                self.s.tls_key,
                self.s.tls_ca,
                self.s.tls_verify_client,
                self.s.tls_crl,
            )
            self.xmpp_tls = tls.ServerTls(files, "xmpp")
            self.xmpp_server = await tls.start_server(
                self._accept_agent, host, port, self.xmpp_tls, self.refused, gate=self.xmpp_gate
            )
        else:
            self.xmpp_server = await connlimits.start_server(
                self._accept_agent, host, port, self.xmpp_gate
            )
        self.xmpp_port = self.xmpp_server.sockets[0].getsockname()[1]
        log.info("xmpp listening", extra={"host": self.s.xmpp_host, "port": self.xmpp_port})
        if self.s.asn:
            await self._start_bgp(self.s.asn)

    async def _start_bgp(self, asn: int) -> None:
        self.speaker = BgpSpeaker(
            self,
            self.router_id,
            asn,
            self.s.bgp_address,
            self.s.bgp_port,
            connect_retry=self.s.connect_retry,
            limits=self.s.bgp_limits,
        )
        await self.speaker.start()
        for inst, prefix in [
            (i.name, p)
            for i in self.table.instances.values()
            for p in self.table.local_prefixes(i.name)
        ]:
            self._export(inst, prefix)
        self.speaker.set_peers(self._peers)

    async def stop(self) -> None:
        if self.xmpp_server is not None:
            self.xmpp_server.close()
        for agent in list(self.agents.values()):
            with contextlib.suppress(Exception):
                agent.writer.write(b"</stream:stream>")
                agent.writer.close()
        if self._sessions:
            _, late = await asyncio.wait(set(self._sessions), timeout=5)
            for task in late:
                task.cancel()
        if self.speaker is not None:
            await self.speaker.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the config API until `stop` is set."""
        if self.mirror is None:
            await stop.wait()
            return
        reporter = asyncio.ensure_future(self._report_loop(stop))
        try:
            async for batch in self.mirror.follow(stop):
                self.config_revision = self.mirror.revision
                try:
                    await self.apply_config(resynced=batch.resynced)
                except (ValueError, KeyError, aiohttp.ClientError) as exc:
                    log.error("config not applied", extra={"error": repr(exc)})
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter

    async def _report_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.report()
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("service health not written", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.s.report_interval)

    async def report(self) -> None:
        """Keep our `service-health` object (`control-<name>`) current; write on change only."""
        assert self.mirror is not None
        if not self.mirror.connected:
            return
        peers = self.speaker.introspect() if self.speaker else []
        down = [p["name"] for p in peers if p["state"] != "Established"]
        if self.speaker is None:
            status, detail = "degraded", "BGP waits for an AS number"
        elif down:
            status, detail = "degraded", "BGP peers not established: " + ", ".join(down)
        else:
            status, detail = "up", ""
        name = f"control-{self.name}"[:128]
        want = {"service": "control", "host": self.name, "status": status, "detail": detail}
        table = self.mirror.objects[HEALTH]
        have = next((o for o in table.values() if o["name"] == name), None)
        if have is not None and {k: have.get(k) for k in want} == want:
            return
        body = {**want, "reported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        client = self.mirror.client
        if have is None:
            obj = await client.create(HEALTH, {"name": name, **body})
        else:
            obj = await client.update(HEALTH, have["uuid"], body, have["version"])
        table[obj["uuid"]] = obj

    # ---- config ---------------------------------------------------------------

    async def apply_config(self, resynced: bool = True) -> None:
        objs: dict[str, dict[str, JSON]] = self.mirror.objects  # type: ignore[union-attr]
        changes: list[Change] = []
        seen: set[str] = set()
        for ri in objs["routing-instance"].values():
            name = ":".join(ri["fq_name"])
            seen.add(name)
            before = self.table.instance(name).export_targets
            changes += self.table.configure(
                name, ri["import_targets"], ri["export_targets"], ri["route_target"], ri["vni"]
            )
            if self.table.instances[name].export_targets != before:
                for prefix in self.table.local_prefixes(name):
                    self._export(name, prefix)
        for inst in list(self.table.instances.values()):
            if inst.configured and inst.name not in seen:
                changes += self.table.unconfigure(inst.name)
                for prefix in self.table.local_prefixes(inst.name):
                    self._export(inst.name, prefix)
        self._fanout(changes)
        await self._apply_bgp_routers(objs)
        self._index_config()
        for agent in list(self.agents.values()):
            self._push_config(agent)

    async def _apply_bgp_routers(self, objs: dict[str, dict[str, JSON]]) -> None:
        me = None
        peers: list[PeerConfig] = []
        for r in sorted(objs["bgp-router"].values(), key=lambda o: o["name"]):
            if r["name"] == self.name or r["address"] == self.router_id:
                me = r
                continue
            if "inet-vpn" not in r.get("families", ["inet-vpn"]):
                continue
            gateways = self.s.bgp_gateways
            if r["role"] == "gateway" and gateways is not None and r["address"] not in gateways:
                continue  # another control node's gateway
            peers.append(
                PeerConfig(
                    r["name"],
                    r["address"],
                    r["port"],
                    r["asn"],
                    r["hold_time"],
                    r["role"],
                    password=self._bgp_password(r),
                )
            )
        self._peers = peers
        gc = next((o for o in objs["global-config"].values() if o["name"] == "default"), None)
        asn = self.s.asn or (me or {}).get("asn") or (gc or {}).get("asn")
        if self.speaker is None and asn:
            await self._start_bgp(int(asn))
        elif self.speaker is not None:
            if asn and asn != self.speaker.asn:
                log.warning("AS number changed: restart the control node to use it")
            self.speaker.set_peers(peers)

    def _bgp_password(self, router: JSON) -> str:
        """A peer's own password, else the cluster's for control nodes (never for gateways:
        an outside router gets a secret of its own)."""
        own = self.s.bgp_peer_passwords.get(router["address"])
        if own is not None:
            return own
        if router["role"] == "control-node":
            return self.s.bgp_password
        return ""

    def _index_config(self) -> None:
        """Group the mirrored objects by what links them to an agent (once per change)."""
        objs: dict[str, dict[str, JSON]] = self.mirror.objects  # type: ignore[union-attr]
        idx: dict[str, dict[str, list[JSON]]] = {
            "vr-by-name": {},
            "vmi-by-vr": {},
            "by-network": {},
            "by-vmi": {},
        }
        for o in objs["virtual-router"].values():
            idx["vr-by-name"].setdefault(o["name"], []).append(o)
        for o in objs["virtual-machine-interface"].values():
            if o.get("virtual_router"):
                idx["vmi-by-vr"].setdefault(o["virtual_router"], []).append(o)
        for t in ("routing-instance", "access-control-list"):
            for o in objs[t].values():
                idx["by-network"].setdefault(o["parent_uuid"], []).append(o)
        for t in ("instance-ip", "floating-ip"):
            for o in objs[t].values():
                if o.get("virtual_machine_interface"):
                    idx["by-vmi"].setdefault(o["virtual_machine_interface"], []).append(o)
        self._index = idx

    def _relevant_config(self, agent_name: str) -> dict[str, JSON]:
        """The config objects an agent needs, keyed `<type>/<uuid>`."""
        objs: dict[str, dict[str, JSON]] = self.mirror.objects  # type: ignore[union-attr]
        idx = self._index
        out: dict[str, JSON] = {f"global-config/{u}": o for u, o in objs["global-config"].items()}
        picked: list[JSON] = []
        for vr in idx["vr-by-name"].get(agent_name, [])[:1]:
            picked.append(vr)
            vmis = idx["vmi-by-vr"].get(vr["uuid"], [])
            picked += vmis
            for net in sorted({o["virtual_network"] for o in vmis}):
                if net in objs["virtual-network"]:
                    picked.append(objs["virtual-network"][net])
                picked += idx["by-network"].get(net, [])
            for vmi in vmis:
                picked += idx["by-vmi"].get(vmi["uuid"], [])
            # A floating IP's network: its routing instance is where the agent publishes it.
            floating = {o["floating_network"] for o in picked if o["type"] == "floating-ip"}
            for net in sorted(floating):
                if net in objs["virtual-network"]:
                    picked.append(objs["virtual-network"][net])
                picked += idx["by-network"].get(net, [])
        out.update({f"{o['type']}/{o['uuid']}": o for o in picked})
        return out

    def _push_config(self, agent: AgentSession) -> None:
        if self.mirror is None or not self.mirror.connected:
            return
        if not self._index:
            self._index_config()
        want = self._relevant_config(agent.name)
        for key, obj in want.items():
            if agent.config_sent.get(key) != obj["version"]:
                agent.config_sent[key] = obj["version"]
                agent.queue_config(key, obj)
        for key in [k for k in agent.config_sent if k not in want]:
            del agent.config_sent[key]
            agent.queue_config(key, None)

    # ---- agents ---------------------------------------------------------------

    async def _accept_agent(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await AgentSession(self, reader, writer).run()

    def refused(self, address: str, reason: str) -> None:
        """A TLS handshake failed, or a certificate does not name the agent using it."""
        self.agents_refused += 1
        log.warning("agent refused", extra={"addr": address, "reason": reason})

    def agent_opened(self, agent: AgentSession) -> None:
        old = self.agents.get(agent.name)
        if old is not None:  # the agent reconnected: the new session replaces the old one
            log.info("agent replaced its session", extra={"agent": agent.name})
            self._drop_agent(old)
            with contextlib.suppress(Exception):
                old.writer.close()
        self.agents[agent.name] = agent
        # With mutual TLS, the certificate's name (AgentSession checked it is the agent's).
        cert = tls.peer_subject(agent.writer)
        log.info(
            "agent connected", extra={"agent": agent.name, "addr": agent.address, "cert": cert}
        )
        self._push_config(agent)

    def agent_closed(self, agent: AgentSession) -> None:
        if self.agents.get(agent.name) is agent:
            del self.agents[agent.name]
            self.agent_flaps[agent.name] = self.agent_flaps.get(agent.name, 0) + 1
            log.info("agent disconnected", extra={"agent": agent.name})
            self._drop_agent(agent)

    def _drop_agent(self, agent: AgentSession) -> None:
        for subs in self.subscribers.values():
            subs.discard(agent)
        published = [(i, p) for i, t in agent.published.items() for p in t]
        agent.published = {}
        self._fanout(self.table.remove_source(agent.source))
        for inst, prefix in published:
            self._export(inst, prefix)

    def agent_subscribed(self, agent: AgentSession, instance: str) -> None:
        self.subscribers.setdefault(instance, set()).add(agent)
        for prefix, hops in self.table.instance(instance).view.items():
            agent.queue_route(instance, prefix, hops)

    def agent_published(
        self, agent: AgentSession, instance: str, routes: dict[str, Nexthop]
    ) -> None:
        changes: list[Change] = []
        for prefix, nh in routes.items():
            changes += self.table.add(prefix, Path(agent.source, nh, instance=instance))
        self._fanout(changes)
        for prefix in routes:
            self._export(instance, prefix)

    def agent_retracted(self, agent: AgentSession, instance: str, prefixes: list[str]) -> None:
        changes: list[Change] = []
        for prefix in prefixes:
            changes += self.table.remove(prefix, agent.source, instance)
        self._fanout(changes)
        for prefix in prefixes:
            self._export(instance, prefix)

    def _fanout(self, changes: list[Change]) -> None:
        for inst, prefix, hops in changes:
            for agent in self.subscribers.get(inst, ()):
                agent.queue_route(inst, prefix, hops)

    # ---- BGP ------------------------------------------------------------------

    def _export(self, instance: str, prefix: str) -> None:
        """Advertise the instance's locally published route for `prefix`, or withdraw it."""
        if self.speaker is None:
            return
        inst = self.table.instance(instance)
        rd = f"{self.router_id}:{inst.index}"
        local = sorted(self.table.local_paths(instance, prefix), key=lambda p: p.nexthop)
        advert = None
        if local and inst.export_targets and ":" not in prefix:  # IPv4 only
            nh = local[0].nexthop  # one path per RD: the lowest nexthop (no ADD-PATH)
            advert = Advert(
                bc.VpnPrefix(rd, prefix, nh.label),
                nh.address,
                tuple(sorted(inst.export_targets)),
                tuple(e for e in nh.encap if e in bc.ENCAP_TYPES),
            )
        self.speaker.set_export((rd, prefix), advert)

    def bgp_update(self, peer: Peer, update: bc.Update) -> None:
        assert self.speaker is not None
        changes: list[Change] = []
        for p in update.vpn_unreach:
            changes += self.table.remove(p.prefix, peer.source, p.rd)
        ebgp = peer.config.asn != self.speaker.asn
        targets = frozenset(update.route_targets)
        looped = ebgp and self.speaker.asn in update.as_path
        encaps = tuple(update.encaps) or DEFAULT_ENCAPS
        vni = 0
        for t in targets:
            if (inst := self.table.instance_by_target(t)) is not None:
                vni = inst.vni
                break
        for p in update.vpn_reach:
            if looped or update.vpn_next_hop is None:
                changes += self.table.remove(p.prefix, peer.source, p.rd)
                continue
            path = Path(
                peer.source,
                Nexthop(update.vpn_next_hop, p.label, vni, encaps),
                targets=targets,
                rd=p.rd,
                local_pref=100 if ebgp or update.local_pref is None else update.local_pref,
                as_path_len=len(update.as_path),
                origin=update.origin or 0,
            )
            changes += self.table.add(p.prefix, path)
        peer.received = self.table.count(peer.source)
        self._fanout(changes)

    def bgp_down(self, peer: Peer) -> None:
        self._fanout(self.table.remove_source(peer.source))

    # ---- introspect -----------------------------------------------------------

    def health(self) -> JSON:
        config_ok = self.mirror is None or self.mirror.connected
        ok = self.xmpp_server is not None and config_ok and self.speaker is not None
        peers = self.speaker.introspect() if self.speaker else []
        return {
            "status": "ok" if ok else "degraded",
            "config_connected": config_ok,
            "config_revision": self.config_revision,
            "bgp": "running" if self.speaker else "waiting for an AS number",
            "agents": len(self.agents),
            "bgp_peers": len(peers),
            "bgp_established": sum(1 for p in peers if p["state"] == "Established"),
        }

    def _tls_mode(self) -> str:
        if not self.s.tls_cert:
            return "off"
        return "mutual" if self.s.tls_verify_client else "on"

    def introspect(self) -> JSON:
        return {
            "name": self.name,
            "router_id": self.router_id,
            "asn": self.speaker.asn if self.speaker else None,
            "xmpp_port": self.xmpp_port,
            "xmpp_tls": self._tls_mode(),
            # whether agents' certificates are checked against a CRL now
            "xmpp_crl": bool(self.xmpp_tls and self.xmpp_tls.crl_loaded),
            "agents_refused": self.agents_refused,
            # open XMPP connections, and those closed at once over xmpp.max_connections*
            "xmpp_connections": self.xmpp_gate.open,
            "xmpp_connections_refused": self.xmpp_gate.refused,
            # the same for BGP: refused when not from a peer or over bgp.max_connections*
            "bgp_connections": self.speaker.gate.open if self.speaker else 0,
            "bgp_connections_refused": self.speaker.gate.refused if self.speaker else 0,
            "bgp_port": self.speaker.port if self.speaker else None,
            "config_revision": self.config_revision,
            "agents": [
                {**a.introspect(), "flaps": self.agent_flaps.get(a.name, 0)}
                for a in sorted(self.agents.values(), key=lambda a: a.name)
            ],
            "agent_flaps": dict(sorted(self.agent_flaps.items())),
            "bgp_peers": self.speaker.introspect() if self.speaker else [],
            "instances": {
                i.name: {
                    "index": i.index,
                    "configured": i.configured,
                    "route_target": i.route_target,
                    "import_targets": sorted(i.import_targets),
                    "export_targets": sorted(i.export_targets),
                    "vni": i.vni,
                    "routes": len(i.view),
                    "subscribers": sorted(a.name for a in self.subscribers.get(i.name, ())),
                }
                for i in sorted(self.table.instances.values(), key=lambda i: i.name)
            },
        }

    def routes(self, instance: str | None = None) -> JSON:
        out: JSON = {}
        for inst in sorted(self.table.instances.values(), key=lambda i: i.name):
            if instance is not None and inst.name != instance:
                continue
            out[inst.name] = {
                prefix: {
                    "nexthops": [
                        {
                            "address": h.address,
                            "label": h.label,
                            "vni": h.vni,
                            "encap": list(h.encap),
                        }
                        for h in hops
                    ],
                    "paths": [
                        {
                            "source": p.source,
                            "nexthop": p.nexthop.address,
                            "label": p.nexthop.label,
                            "rd": p.rd,
                            "local_pref": p.local_pref,
                            "as_path_len": p.as_path_len,
                        }
                        for p in self.table.paths.get(prefix, {}).values()
                        if self.table.sees(inst, p)
                    ],
                }
                for prefix, hops in sorted(inst.view.items())
            }
        return out
