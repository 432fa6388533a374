"""The agent core: local ports + what the control nodes push -> publishes and datapath.

Every change (a port added or deleted, a push from a control node, a session going up
or down) marks the agent dirty; one task then recomputes the routes to publish, the
subscriptions, and the datapath objects, and applies the differences. The routes it
programs are the union over its sessions, stale ones included: with every control node
gone it keeps forwarding on its last state (headless), and a returning node's resync
replaces that state.

A port names its network; its routing instance comes from the config the control nodes
push (the `routing-instance` whose parent is that network), so a port waits, unrouted,
until that arrives. Its vif is attached to its tap only while the tap exists (libvirt
creates it when the guest starts); the port's state (up/down) goes to the config API.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..config.client import ConfigClient
from ..control.xmpp import ENCAPS, Nexthop
from ..datapath.client import NETLINK, DatapathClient, DatapathError, connect
from ..datapath.codec import Obj, Op
from ..datapath.flowtable import FlowTable, FlowTableError
from ..service import tls
from . import fips, secgroups, taps
from .export import Emit, FlowExport, port_record
from .flows import FORWARD, decide, network_acl
from .packets import Lease, Trapped
from .pkt0 import Pkt0, lease_for
from .ports import Port, PortStore, read_dir
from .program import FIRST_PORT_VIF, Allocator, Fabric, Programmer, State, desired, vif_key
from .session import ControlSession
from .status import PortState, StatusReporter

log = logging.getLogger(__name__)


@dataclass
class AgentSettings:
    name: str
    fabric: Fabric
    controls: list[tuple[str, int]]
    datapath_socket: str
    port_file: str = ""
    label_range: tuple[int, int] = (16, 1048575)
    max_vifs: int = 256  # the datapath's vif table size (vrouterd: 256)
    ping_interval: float = 10.0
    retry: float = 1.0
    encap_priority: tuple[str, ...] = field(default_factory=lambda: ENCAPS)
    pkt0_dir: str = ""  # the datapath's pkt0 directory; empty: no pkt0 handling
    flow_file: str = ""  # the datapath's shared flow table; empty: no ageing
    flow_idle: float = 60.0  # seconds without a packet before a flow is removed
    xmpp_tls: tls.TlsFiles | None = None  # XMPP over TLS to the control nodes
    xmpp_server_name: str = ""  # the name their certificates carry; default: the host
    vif_ports_dir: str = ""  # the os-vif plugin's port records, read at start
    config_api_url: str = ""  # where port states are reported; empty: not reported
    config_api_token: str = ""  # a token that may write port-state objects
    config_api_ssl: ssl.SSLContext | None = None  # checks an https:// config API
    tap_poll: float = 2.0  # seconds between looks for taps (besides link notifications)


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.s = settings
        self.ports = PortStore(settings.port_file)
        xmpp_tls = tls.client_context(settings.xmpp_tls) if settings.xmpp_tls else None
        self.sessions = [
            ControlSession(
                settings.name,
                host,
                port,
                self.mark_dirty,
                ping_interval=settings.ping_interval,
                retry=settings.retry,
                tls=xmpp_tls,
                server_name=settings.xmpp_server_name,
            )
            for host, port in settings.controls
        ]
        self.labels = Allocator(*settings.label_range)
        self.vifs = Allocator(FIRST_PORT_VIF, settings.max_vifs - 1)
        self.vrfs = Allocator(1, 4095)
        self.nh_ids = Allocator(1, 65535)
        self.client: DatapathClient | None = None
        self.programmer: Programmer | None = None
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        # The derived state, kept until an input changes: introspect asks for it on
        # every request, and with 100k routes computing it takes about a second.
        self._gen = 0  # bumped by mark_dirty
        self._state: tuple[tuple[int, ...], State] | None = None
        # Per instance, its merged control-node routes and its serialised route list
        # (10k routes: ~0.3 s to build and dump), kept while they stay the same.
        self._remote: dict[str, tuple[tuple[int, ...], dict[str, tuple[Nexthop, ...]]]] = {}
        self._routes_json: dict[str, tuple[Any, bytes]] = {}
        self.syncs = 0
        self.started_at = time.time()
        # Per session: what we published there, instance -> prefix -> nexthop.
        self._published: dict[int, dict[str, dict[str, Nexthop]]] = {}
        self._subscribed: dict[int, set[str]] = {}
        self._session_locks: dict[int, asyncio.Lock] = {}
        self.flow_counters = {
            "flows_forward": 0,
            "flows_drop": 0,
            "flows_aged": 0,
            "flow_errors": 0,
        }
        self.pkt0 = (
            Pkt0(settings.pkt0_dir, self.port_of_vif, self.lease_of, self.knows, self.flow_miss)
            if settings.pkt0_dir
            else None
        )
        self.taps: dict[str, int] = {}  # tap name -> ifindex (0: not there)
        self._placed: dict[str, Port] = {}  # ports whose routing instance is known
        self.port_states: dict[str, PortState] = {}
        self.floating: dict[str, fips.Fip] = {}  # our ports' floating IPs, by address
        self._nat_flows: dict[fips.Fip, set[tuple[Any, ...]]] = {}  # flow keys per FIP
        # Flow and port records for the analytics collector (attach_analytics).
        self.emit: Emit | None = None
        self.export: FlowExport | None = None
        self.flow_interval = 30.0
        self._ports_sent: dict[str, Any] = {}
        self.status = (
            StatusReporter(
                ConfigClient(
                    settings.config_api_url,
                    settings.config_api_token,
                    ssl_context=settings.config_api_ssl,
                ),
                settings.name,
            )
            if settings.config_api_url
            else None
        )

    # ---- inputs ---------------------------------------------------------------------

    def mark_dirty(self) -> None:
        self._gen += 1
        self._synced.clear()
        self._dirty.set()

    def _inputs(self) -> tuple[int, ...]:
        """Changes whenever anything `state()` reads changes."""
        return (self._gen, self.ports.version, *(s.version for s in self.sessions))

    def add_port(self, port: Port) -> None:
        old = self.ports.ports.get(port.id)
        if old is not None and old.instance and not port.instance:
            # Plugged again without an instance (Nova's plugin now sends none): the
            # one it had stands, so nothing moves meanwhile.
            port = replace(port, instance=old.instance)
        if old is not None and old.instance != port.instance:
            raise ValueError(f"instance: port {port.id} is in {old.instance}; delete it first")
        if old is not None and old.network != port.network:
            raise ValueError(f"network: port {port.id} is in {old.network}; delete it first")
        if old is None:
            room = min(self.vifs.high - self.vifs.low, self.labels.high - self.labels.low) + 1
            if len(self.ports.ports) >= room:
                raise ValueError(f"id: no room for port {port.id}: {room} ports at most here")
        self.ports.put(port)
        if port.tap:
            self.taps[port.tap] = taps.ifindex(port.tap)
        self.mark_dirty()

    def delete_port(self, port_id: str) -> bool:
        found = self.ports.delete(port_id)
        self.mark_dirty()
        return found

    async def wait_synced(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    # ---- derived views --------------------------------------------------------------

    def config(self) -> dict[str, dict[str, Any]]:
        """The config of the session that saw the latest revision (all agree when up)."""
        best = max(self.sessions, key=lambda s: (s.up, s.config_revision), default=None)
        return best.config if best is not None else {}

    def encap_priority(self) -> tuple[str, ...]:
        for key, obj in self.config().items():
            if key.startswith("global-config/") and obj.get("encapsulation_priority"):
                return tuple(obj["encapsulation_priority"])
        return self.s.encap_priority

    def instance_vnis(self) -> dict[str, int]:
        out = {}
        for key, obj in self.config().items():
            if key.startswith("routing-instance/"):
                out[":".join(obj["fq_name"])] = int(obj.get("vni", 0))
        return out

    def placed(self) -> dict[str, Port]:
        """Ports whose routing instance is known, with it filled in: given by the port,
        or the pushed `routing-instance` whose parent is the port's network (by uuid or,
        failing that, by name)."""
        ri_of: dict[str, str] = {}
        net_by_name: dict[str, str] = {}
        for key, obj in self.config().items():  # one routing instance per network
            if key.startswith("routing-instance/"):
                ri_of.setdefault(obj["parent_uuid"], ":".join(obj["fq_name"]))
            elif key.startswith("virtual-network/"):
                net_by_name.setdefault(obj["name"], obj["uuid"])
        out = {}
        for pid, p in self.ports.ports.items():
            if p.instance:
                out[pid] = p
                continue
            inst = ri_of.get(p.network) or ri_of.get(net_by_name.get(p.network, ""))
            if inst:
                out[pid] = replace(p, instance=inst)
        return out

    def instances(self) -> set[str]:
        return {p.instance for p in self._placed.values()}

    def scan_taps(self) -> bool:
        """Look up every port's tap; True when one appeared, went or was made again."""
        now = {p.tap: taps.ifindex(p.tap) for p in self.ports.ports.values() if p.tap}
        changed = now != self.taps
        self.taps = now
        return changed

    def remote_routes(self) -> dict[str, dict[str, tuple[Nexthop, ...]]]:
        """Union of every session's routes (stale ones too), one nexthop per compute;
        only instances with a route. Read-only: each instance's table is kept."""
        insts: set[str] = set()
        for sess in self.sessions:
            insts.update(sess.routes, sess.stale)
        for gone in self._remote.keys() - insts:
            del self._remote[gone]
        out = {}
        for inst in sorted(insts):
            routes = self._remote_of(inst)
            if routes:
                out[inst] = routes
        return out

    def _remote_key(self, inst: str) -> tuple[int, ...]:
        return tuple(s.instance_versions.get(inst, 0) for s in self.sessions)

    def _remote_of(self, inst: str) -> dict[str, tuple[Nexthop, ...]]:
        """One instance's merged routes, merged again only when a session changed them."""
        key = self._remote_key(inst)
        kept = self._remote.get(inst)
        if kept is not None and kept[0] == key:
            return kept[1]
        merged: dict[str, dict[str, Nexthop]] = {}
        for sess in self.sessions:
            for table in (sess.stale, sess.routes):
                for prefix, hops in table.get(inst, {}).items():
                    slot = merged.setdefault(prefix, {})
                    for h in hops:
                        slot.setdefault(h.address, h)
        routes = {p: tuple(sorted(h.values())) for p, h in merged.items()}
        self._remote[inst] = (key, routes)
        return routes

    def port_of_vif(self, vif: int) -> Port | None:
        for pid, idx in self.vifs.ids.items():
            if idx == vif:
                return self._placed.get(pid)
        return None

    def lease_of(self, port: Port) -> Lease | None:
        nets = [o for k, o in self.config().items() if k.startswith("virtual-network/")]
        return lease_for(port, nets)

    def knows(self, port: Port, ip: str) -> bool:
        """Whether the port's VRF has a route for `ip` (a remote VM or another local port)."""
        addr = ipaddress.ip_address(ip)
        for p in self._placed.values():
            if p.instance == port.instance and ip in p.ips:
                return True
        # A floating address of a port here, asked for on its external network: the
        # flow from the asking port takes it to the port's VRF (fips.py).
        fip = self.floating.get(ip)
        if fip is not None and fip.instance == port.instance and fip.port in self._placed:
            return True
        remote = self._remote_of(port.instance)
        return any(addr in ipaddress.ip_network(prefix) for prefix in remote)

    # ---- flows -------------------------------------------------------------------------

    def _network_of(self, port: Port) -> dict[str, Any] | None:
        for key, obj in self.config().items():
            if key.startswith("virtual-network/") and port.network in (obj["uuid"], obj["name"]):
                return obj
        return None

    def _port_with_ip(self, ip: str) -> Port | None:
        return next((p for p in self._placed.values() if ip in p.ips), None)

    def _network_decides(
        self, port: Port | None, sip: str, dip: str, proto: int, sport: int, dport: int
    ) -> tuple[int, str]:
        """The flow's action and why by the ACL of `port`'s network (none: drop)."""
        net = self._network_of(port) if port else None
        entries = network_acl(self.config(), net["uuid"]) if net is not None else []
        subnets = [sub["cidr"] for sub in (net or {}).get("subnets", [])]
        return decide(entries, subnets, sip, dip, proto, sport, dport)

    def _nat_decides(
        self,
        nat: fips.NatPlan,
        sender: Port | None,
        receiver: Port | None,
        acl: tuple[int, str],
        flow: tuple[str, str, int, int, int],
    ) -> tuple[int, str]:
        """A floating IP's flow: its port's groups decide (ingress in, egress out), as on
        a flow from or to another compute. With the outside end a port here (a VRF
        translation), that end is decided here too, as its own compute would: its
        network's ACL and its groups, with the floating address as the far end."""
        config = self.config()
        sip, dip, proto, sport, dport = flow
        port = self._placed.get(nat.fip.port)
        if nat.inbound:
            if not nat.forward_to:
                return secgroups.decide(config, None, port, sip, nat.fip.fixed, proto, dport)
            if acl[0] != FORWARD:  # the sender's (external) network's ACL, already run
                return acl
            return secgroups.decide(config, sender, port, sip, dip, proto, dport)
        action, why = secgroups.decide(config, port, None, sip, dip, proto, dport)
        if action != FORWARD or not nat.forward_to:
            return action, why
        address = nat.fip.address
        action, why = self._network_decides(receiver, address, dip, proto, sport, dport)
        if action != FORWARD:
            return action, why
        return secgroups.decide(config, None, receiver, address, dip, proto, dport)

    def flow_miss(self, t: Trapped) -> None:
        """Decide a new flow by its network's ACL; install it and its reverse."""
        assert self.client is not None
        try:
            f = self.client.call(Op.GET, Obj.FLOW, FL_INDEX=t.flow).attrs
        except (DatapathError, OSError) as exc:
            self.flow_counters["flow_errors"] += 1
            log.warning("flow miss for a flow we cannot read", extra={"error": str(exc)})
            return
        sip, dip = str(f["FL_SIP"]), str(f["FL_DIP"])
        proto, sport, dport = (
            int(f["FL_PROTO"]),
            int(f.get("FL_SPORT", 0)),
            int(f.get("FL_DPORT", 0)),
        )
        port = self.port_of_vif(t.vif) or self._port_with_ip(dip) or self._port_with_ip(sip)
        config = self.config()
        action, why = self._network_decides(port, sip, dip, proto, sport, dport)
        dst_port = self._port_with_ip(dip)
        sender = self.port_of_vif(t.vif)
        sg_drop = False
        rsip, rdip = f["FL_DIP"], f["FL_SIP"]
        rvrf = self.vrfs.ids.get(dst_port.instance, t.vrf) if dst_port else t.vrf
        nat = fips.plan(self.floating, sender, sip, dip, why, dst_port)
        fwd_nat: dict[str, Any] = {}
        rev_nat: dict[str, Any] = {}
        if nat is not None:  # a floating IP's flow: its port's groups decide, then NAT
            # A VRF translation needs all three VRFs here; without them (not expected:
            # both ends are placed ports) the entries stay where the flow came in.
            vrfs = [self.vrfs.ids.get(i) for i in (nat.forward_to, nat.reverse_in, nat.reverse_to)]
            xlate = bool(nat.forward_to) and None not in vrfs
            if nat.forward_to and not xlate:
                nat = replace(nat, forward_to="", reverse_in="", reverse_to="")
            flow = (sip, dip, proto, sport, dport)
            action, why = self._nat_decides(nat, sender, dst_port, (action, why), flow)
            sg_drop = action != FORWARD
            if not sg_drop:
                fwd_nat, rev_nat = dict(nat.forward_nat), dict(nat.reverse_nat)
                if xlate:
                    fwd_nat["FL_DVRF"], rev_nat["FL_DVRF"] = vrfs[0], vrfs[2]
            rsip, rdip = (
                ipaddress.ip_address(nat.reverse_sip),
                ipaddress.ip_address(nat.reverse_dip),
            )
            # Both entries are where the flow came in (the port's VRF for a flow on the
            # label), unless translated: then the reverse is on the other side.
            rvrf = int(vrfs[1]) if xlate and vrfs[1] is not None else t.vrf
            self._nat_flows.setdefault(nat.fip, set()).update(
                {
                    (t.vrf, sip, dip, proto, sport, dport),
                    (rvrf, str(rsip), str(rdip), proto, dport, sport),
                }
            )
        elif action == FORWARD:  # the policy allows it: then both ends' security groups
            action, why = secgroups.decide(config, sender, dst_port, sip, dip, proto, dport)
            sg_drop = action != FORWARD
        # The reverse flow first: a reply sent the moment the held packet is released
        # then finds its flow instead of trapping as a new one. If it finds no room, the
        # flow still gets its action (a reply then traps as a flow of its own).
        # Groups are one-way: a flow they drop gets no reverse entry, so the other
        # direction is decided when it starts (its reverse then takes this entry over).
        rindex: int | None = None
        try:
            if not sg_drop:
                rindex = self.client.call(
                    Op.ADD, Obj.FLOW, FL_VRF=rvrf, FL_SIP=rsip, FL_DIP=rdip,
                    FL_PROTO=proto, FL_SPORT=dport, FL_DPORT=sport,
                    FL_ACTION=fips.NAT if rev_nat else action, FL_RINDEX=t.flow, **rev_nat,
                ).attrs.get("FL_INDEX")  # fmt: skip
        except (DatapathError, OSError) as exc:
            self.flow_counters["flow_errors"] += 1
            log.warning("reverse flow install failed", extra={"error": str(exc)})
        try:
            self.client.call(
                Op.ADD,
                Obj.FLOW,
                FL_INDEX=t.flow,
                FL_ACTION=fips.NAT if fwd_nat else action,
                **fwd_nat,
            )
        except (DatapathError, OSError) as exc:
            self.flow_counters["flow_errors"] += 1
            log.warning("flow install failed", extra={"error": str(exc)})
            return
        self.flow_counters["flows_forward" if action == FORWARD else "flows_drop"] += 1
        if self.export is not None:
            self.export.set_up(t.flow, *(() if rindex is None else (int(rindex),)))
        log.debug("flow", extra={"flow": f"{sip}:{sport}->{dip}:{dport}/{proto}", "why": why})

    def _end_nat_flows(self) -> None:
        """Delete the flows of floating IPs that are gone (disassociated, deleted or
        moved): their NAT must stop now, not when the flows age out."""
        for fip in [f for f in self._nat_flows if self.floating.get(f.address) != f]:
            for vrf, sip, dip, proto, sport, dport in self._nat_flows.pop(fip):
                with contextlib.suppress(DatapathError, OSError):
                    self.client.call(
                        Op.DEL, Obj.FLOW, FL_VRF=vrf, FL_SIP=ipaddress.ip_address(sip),
                        FL_DIP=ipaddress.ip_address(dip), FL_PROTO=proto, FL_SPORT=sport,
                        FL_DPORT=dport,
                    )  # fmt: skip
            log.info("floating IP flows ended", extra={"address": fip.address})

    def age_flows(self, now_ns: int | None = None) -> int:
        """Remove flows (with their reverse) idle for `flow_idle`; how many went."""
        assert self.client is not None
        now = time.monotonic_ns() if now_ns is None else now_ns
        idle = int(self.s.flow_idle * 1e9)
        gone = 0
        with FlowTable(self.s.flow_file) as table:
            entries = {e.index: e for e in table.entries()}
        if self.export is not None:
            self.export.observe(entries.values())
        for e in entries.values():
            if e.action == "hold" or now - e.last_ns < idle:
                continue
            rev = entries.get(e.rindex) if e.rindex is not None else None
            if rev is not None and now - rev.last_ns < idle:
                continue  # still used the other way
            for one in (e, *((rev,) if rev and rev.index > e.index else ())):
                with contextlib.suppress(DatapathError, OSError):
                    self.client.call(Op.DEL, Obj.FLOW, FL_INDEX=one.index)
                    gone += 1
                    if self.export is not None:
                        self.export.ended(one)
        self.flow_counters["flows_aged"] += gone
        # Forget the keys of floating IPs' flows that aged out (gone from the table).
        live = {
            (e.vrf, str(e.sip), str(e.dip), e.proto, e.sport, e.dport) for e in entries.values()
        }
        for keys in self._nat_flows.values():
            keys &= live
        return gone

    async def _ager(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(self.s.flow_idle / 2, 0.1))
            if not stop.is_set():
                try:
                    self.age_flows()
                except (OSError, FlowTableError) as exc:
                    log.warning("flow ageing failed", extra={"error": str(exc)})

    # ---- analytics ---------------------------------------------------------------------

    def attach_analytics(self, emit: Emit, flow_interval: float, max_flow_records: int) -> None:
        """Send flow and port records and route counts with `emit` (the sender's)."""
        self.emit = emit
        self.flow_interval = flow_interval
        self.export = FlowExport(emit, self.vrf_name, max_flow_records)

    def vrf_name(self, index: int) -> str:
        """The routing instance of a VRF index (the index as text if it has none)."""
        for inst, idx in self.vrfs.ids.items():
            if idx == index:
                return str(inst)
        return str(index)

    def export_flows(self) -> None:
        """Read the flow table and send this interval's flow records."""
        if self.export is None or not self.s.flow_file:
            return
        with FlowTable(self.s.flow_file) as table:
            self.export.observe(table.entries())
        self.export.report()

    async def _flow_exporter(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.flow_interval)
            try:
                self.export_flows()  # a last one at stop too: the sender flushes after
            except (OSError, FlowTableError) as exc:
                log.warning("flow export failed", extra={"error": str(exc)})

    def report_analytics(self, only_changed: bool = False) -> None:
        """One `port` record per placed port and a `routes` counter per VRF (with every
        status); with `only_changed`, just the ports whose record changed."""
        if self.emit is None:
            return
        records = {}
        for pid, p in self._placed.items():
            state = self.port_states.get(pid)
            rec = port_record(p, state.status if state else "down")
            if rec is not None:
                records[pid] = rec
        for pid, rec in sorted(records.items()):
            if not only_changed or self._ports_sent.get(pid) != rec:
                self.emit("port", **rec)
        for pid, rec in sorted(self._ports_sent.items()):
            if pid not in records:  # deleted or unplaced: down, so the page shows it gone
                self.emit("port", **{**rec, "state": "down"})
        self._ports_sent = records
        if only_changed:
            return
        st = self.state()
        local = self.local_routes()
        for inst in sorted(st.vrfs):
            count = len(local.get(inst, {}).keys() | st.remote.get(inst, {}).keys())
            self.emit("counter", name="routes", object=inst, value=float(count))

    def local_routes(self) -> dict[str, dict[str, Nexthop]]:
        vnis = self.instance_vnis()
        prio = self.encap_priority()
        out: dict[str, dict[str, Nexthop]] = {}
        for p in self._placed.values():
            vni = vnis.get(p.instance, 0)
            encap = tuple(e for e in prio if e != "VXLAN" or vni) or ("MPLSoUDP",)
            hop = Nexthop(self.s.fabric.address, self.labels.get(p.id), vni, encap)
            for ip in p.ips:
                plen = 128 if ":" in ip else 32  # port addresses are normalised text
                out.setdefault(p.instance, {})[f"{ip}/{plen}"] = hop
        # A floating address, in the external network's instance, on its port's label.
        # MPLS only: a VNI would land the packet in the external network's VRF here.
        mpls = tuple(e for e in prio if e != "VXLAN") or ("MPLSoUDP",)
        for fip in self.floating.values():
            if fip.port in self._placed:
                hop = Nexthop(self.s.fabric.address, self.labels.get(fip.port), 0, mpls)
                out.setdefault(fip.instance, {})[f"{fip.address}/32"] = hop
        return out

    def state(self) -> State:
        """The agent's derived state; recomputed only when an input changed."""
        key = self._inputs()
        if self._state is not None and self._state[0] == key:
            return self._state[1]
        st = self._compute_state()
        self._state = (key, st)
        return st

    def _compute_state(self) -> State:
        self._placed = ports = self.placed()
        self.floating = fips.floating_ips(self.config(), ports)
        insts = self.instances()
        # A port waiting for its instance keeps the label and vif it had.
        self.labels.keep_only(set(self.ports.ports))
        self.vifs.keep_only(set(self.ports.ports))
        self.vrfs.keep_only(insts)
        return State(
            fabric=self.s.fabric,
            ports=ports,
            vrfs={i: self.vrfs.get(i) for i in sorted(insts)},
            labels={p: self.labels.get(p) for p in ports},
            vnis=self.instance_vnis(),
            remote=self.remote_routes(),
            encap_priority=self.encap_priority(),
            port_vifs={p: self.vifs.get(p) for p in sorted(ports)},
            policy=self.pkt0 is not None,
            port_os_idx={pid: self.taps.get(p.tap, 0) for pid, p in ports.items() if p.tap},
        )

    def states_of(self, st: State, want: dict[Any, dict[str, Any]]) -> dict[str, PortState]:
        """Per port: up when its vif is attached to its tap and programmed, else why not."""
        out = {}
        assert self.programmer is not None
        installed = self.programmer.installed
        for pid, p in sorted(self.ports.ports.items()):
            if pid not in st.ports:
                out[pid] = PortState("down", p.tap, f"network {p.network}: no routing instance yet")
            elif not p.tap:
                out[pid] = PortState("down", "", "the port has no tap")
            elif not st.port_os_idx.get(pid):
                out[pid] = PortState("down", p.tap, f"waiting for {p.tap}")
            else:
                nh = self.nh_ids.ids.get(("encap", pid))
                keys = [vif_key(st.port_vifs[pid]), (int(Obj.NH), (("NH_ID", nh),))]
                ok = all(k in want and installed.get(k) == want[k] for k in keys)
                detail = "" if ok else f"datapath: {self.programmer.last_error}"
                out[pid] = PortState("up" if ok else "down", p.tap, detail[:1024])
        return out

    # ---- the loop ---------------------------------------------------------------------

    def load_vif_ports(self) -> None:
        """Take the os-vif plugin's records (Nova's plugged ports): they come back after
        an agent restart or reinstall without Nova plugging them again."""
        found, errors = read_dir(self.s.vif_ports_dir)
        for err in errors:
            log.warning("os-vif port record skipped", extra={"error": err})
        for port in found:
            if self.ports.ports.get(port.id) != port:
                self.ports.put(port)
        if found:
            log.info("os-vif port records read", extra={"ports": len(found)})

    def open_datapath(self) -> None:
        """Connect to the datapath (an OSError if it is not there): a socket path, or the
        kernel module over generic netlink when `datapath.socket` is `netlink`."""
        if self.client is None:
            self.load_vif_ports()
            self.scan_taps()
            self.client = connect(self.s.datapath_socket)
            self.programmer = Programmer(self.client)
            if self.pkt0 is not None:
                self.pkt0.open()
            adopted = self.programmer.adopt()
            self._keep_port_ids()
            self._gen += 1  # vifs and labels taken back from the datapath
            log.info("datapath connected", extra={"adopted_objects": adopted})

    def _keep_port_ids(self) -> None:
        """After a restart, give each replayed port the vif and label it has in the
        datapath: a new vif index would detach its TAP, a new label strand the remote
        computes' routes until they learn it."""
        assert self.client is not None
        by_tap = {p.tap: p.id for p in self.ports.ports.values() if p.tap}
        port_at: dict[int, str] = {}
        for m in self.client.dump(Obj.VIF):
            pid = by_tap.get(m.attrs.get("VIF_NAME", ""))
            if pid is not None and self.vifs.take(pid, m.attrs["VIF_IDX"]):
                port_at[m.attrs["VIF_IDX"]] = pid
        nh_oif = {m.attrs["NH_ID"]: m.attrs.get("NH_OIF") for m in self.client.dump(Obj.NH)}
        for m in self.client.dump(Obj.LABEL):
            pid = port_at.get(nh_oif.get(m.attrs["LBL_NH"], -1))
            if pid is not None:
                self.labels.take(pid, m.attrs["LBL_LABEL"])

    async def run(self, stop: asyncio.Event) -> None:
        self.open_datapath()
        assert self.client is not None
        tasks = [
            asyncio.ensure_future(sess.run(stop, lambda i=i: self._session_up(i)))
            for i, sess in enumerate(self.sessions)
        ]
        if self.pkt0 is not None:
            tasks.append(asyncio.ensure_future(self.pkt0.run(stop)))
        if self.s.flow_file:
            tasks.append(asyncio.ensure_future(self._ager(stop)))
            if self.export is not None:
                with contextlib.suppress(OSError, FlowTableError):
                    self.export_flows()  # flows there before us: counted from now
                tasks.append(asyncio.ensure_future(self._flow_exporter(stop)))
        tasks.append(asyncio.ensure_future(self._watch_taps(stop)))
        if self.status is not None:
            tasks.append(asyncio.ensure_future(self.status.run(stop)))
        self.mark_dirty()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), 1.0)
                if self._dirty.is_set():
                    self._dirty.clear()
                    await self.sync()
                    if not self._dirty.is_set():
                        self._synced.set()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.client.close()

    async def _watch_taps(self, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        events = taps.LinkEvents(wake.set)
        events.open()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.s.tap_poll)
                wake.clear()
                if self.scan_taps():
                    self.mark_dirty()
        finally:
            events.close()

    async def sync(self) -> None:
        """Program the datapath, then bring every up session's routes in step."""
        self.syncs += 1
        st = self.state()
        want = desired(st, self.nh_ids)
        used = {v["NH_ID"] for k, v in want.items() if k[0] == Obj.NH}
        live_nh = {k for k, v in self.nh_ids.ids.items() if v in used}
        assert self.programmer is not None
        self.programmer.apply(want)
        self.nh_ids.keep_only(live_nh)
        self._end_nat_flows()
        self.port_states = self.states_of(st, want)
        self.report_analytics(only_changed=True)
        if self.status is not None:
            self.status.set(self.port_states)
        for i, sess in enumerate(self.sessions):
            if sess.up:
                with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                    await self._sync_session(i)

    async def _session_up(self, i: int) -> None:
        """A (re)established session: subscribe and publish all, then end its resync."""
        self._published[i] = {}
        self._subscribed[i] = set()
        try:
            await self._sync_session(i)
        except (ConnectionError, TimeoutError, OSError):
            return
        # This node has resent everything: its view replaces what the down sessions left.
        for j, sess in enumerate(self.sessions):
            if j == i or not sess.up:
                sess.end_resync()

    async def _sync_session(self, i: int) -> None:
        lock = self._session_locks.setdefault(i, asyncio.Lock())
        async with lock:
            sess = self.sessions[i]
            subs = self._subscribed.setdefault(i, set())
            pub = self._published.setdefault(i, {})
            want_insts = self.instances()
            for inst in sorted(want_insts - subs):
                await sess.subscribe(inst)
                subs.add(inst)
            local = self.local_routes()
            for inst in sorted(set(local) | set(pub)):
                have, want = pub.get(inst, {}), local.get(inst, {})
                gone = sorted(p for p in have if p not in want)
                if gone:
                    await sess.retract(inst, gone)
                changed = {p: h for p, h in want.items() if have.get(p) != h}
                if changed:
                    await sess.publish(inst, changed)
                pub[inst] = dict(want)
            for inst in sorted(subs - want_insts):
                await sess.unsubscribe(inst)
                subs.discard(inst)

    # ---- introspect --------------------------------------------------------------------

    def introspect(self) -> dict[str, Any]:
        st = self.state()
        prog = self.programmer
        return {
            "name": self.s.name,
            "fabric_address": self.s.fabric.address,
            "headless": not any(s.up for s in self.sessions),
            "sessions": [s.view() for s in self.sessions],
            "config": {
                "revision": max((s.config_revision for s in self.sessions), default=0),
                "objects": len(self.config()),
                "encap_priority": list(st.encap_priority),
            },
            "counters": {
                "syncs": self.syncs,
                "ports": len(st.ports),
                "vrfs": len(st.vrfs),
                "datapath_objects": len(prog.installed) if prog else 0,
                **(prog.counters if prog else {}),
                **(self.pkt0.counters if self.pkt0 else {}),
                **self.flow_counters,
                **(self.export.counters if self.export else {}),
                **(self.status.counters if self.status else {}),
                "datapath_last_error": prog.last_error if prog else "",
                "status_last_error": self.status.last_error if self.status else "",
            },
        }

    def interfaces(self) -> list[dict[str, Any]]:
        """Every port; one waiting for its routing instance has no vif, VRF or label.
        `state`: active when its vif is in the datapath, else pending; `status`: what is
        reported to the config API (up: attached to its tap and programmed)."""
        st = self.state()
        installed = self.programmer.installed if self.programmer else {}
        out = []
        for pid, p in sorted(self.ports.ports.items()):
            placed = st.ports.get(pid)
            vif = st.port_vifs.get(pid)
            reported = self.port_states.get(pid, PortState("down", p.tap, "not programmed yet"))
            out.append(
                {
                    **(placed or p).to_dict(),
                    "vif": vif,
                    "vrf": st.vrfs[placed.instance] if placed else None,
                    "label": st.labels.get(pid),
                    "state": "active"
                    if vif is not None and vif_key(vif) in installed
                    else "pending",
                    "status": reported.status,
                    "detail": reported.detail,
                }
            )
        return out

    def datapath_view(self) -> dict[str, Any]:
        """Which datapath the agent programs and how full its tables are."""
        used = {kind: 0 for kind in ("vifs", "nexthops", "routes", "labels", "vnis")}
        names = {Obj.VIF: "vifs", Obj.NH: "nexthops", Obj.ROUTE: "routes"}
        names.update({Obj.LABEL: "labels", Obj.VNI: "vnis"})
        for kind, _key in self.programmer.installed if self.programmer else ():
            name = names.get(Obj(kind))
            if name:
                used[name] += 1
        low, high = self.s.label_range
        tables: dict[str, dict[str, int | None]] = {
            k: {"used": v, "size": None} for k, v in used.items()
        }
        tables["vifs"]["size"] = self.s.max_vifs
        tables["labels"]["size"] = high - low + 1
        if self.s.flow_file:
            try:
                with FlowTable(self.s.flow_file) as table:
                    tables["flows"] = {
                        "used": sum(1 for _ in table.entries()),
                        "size": table.nentries,
                    }
            except (OSError, FlowTableError):
                tables["flows"] = {"used": None, "size": None}
        return {
            "mode": "kernel" if self.s.datapath_socket == NETLINK else "user",
            "target": self.s.datapath_socket,
            "connected": self.programmer is not None,
            "tables": tables,
        }

    def vrf_list(self) -> list[dict[str, Any]]:
        st = self.state()
        return [
            {
                "instance": inst,
                "vrf": vrf,
                "vni": st.vnis.get(inst, 0),
                "ports": sorted(p.id for p in st.ports.values() if p.instance == inst),
                "remote_routes": len(st.remote.get(inst, {})),
            }
            for inst, vrf in sorted(st.vrfs.items())
        ]

    def flows(
        self, limit: int = 1000, vrf: int | None = None, ip: str = "", port: int | None = None
    ) -> list[dict[str, Any]]:
        """Flows read from the shared flow table (at most `limit`), optionally only those
        of one VRF index, with `ip` as source or destination, or `port` as either port."""
        if not self.s.flow_file:
            return []
        want_ip = ipaddress.ip_address(ip) if ip else None
        out: list[dict[str, Any]] = []
        with FlowTable(self.s.flow_file) as table:
            for e in table.entries():
                if len(out) >= limit:
                    break
                if vrf is not None and e.vrf != vrf:
                    continue
                if want_ip is not None and want_ip not in (e.sip, e.dip):
                    continue
                if port is not None and port not in (e.sport, e.dport):
                    continue
                out.append(
                    {
                        "index": e.index,
                        "vrf": e.vrf,
                        "source": f"{e.sip}:{e.sport}",
                        "destination": f"{e.dip}:{e.dport}",
                        "protocol": e.proto,
                        "action": e.action,
                        "reverse": e.rindex,
                        "dvrf": e.dvrf,
                        "packets": e.packets,
                        "bytes": e.bytes,
                    }
                )
        return out

    def routes_json(self, instance: str) -> bytes | None:
        """`routes(instance)` as JSON text, kept while the instance's routes (local and
        from the control nodes) stay the same."""
        if instance not in self.state().vrfs:
            self._routes_json.pop(instance, None)
            return None
        local = self.local_routes().get(instance, {})
        key = (self._remote_key(instance), sorted(local.items()))
        kept = self._routes_json.get(instance)
        if kept is None or kept[0] != key:
            got = self.routes(instance)
            assert got is not None
            kept = self._routes_json[instance] = (key, json.dumps(got).encode())
        return kept[1]

    def routes(self, instance: str) -> list[dict[str, Any]] | None:
        st = self.state()
        if instance not in st.vrfs:
            return None
        out = []
        for prefix, hop in sorted(self.local_routes().get(instance, {}).items()):
            out.append({"prefix": prefix, "source": "local", "label": hop.label})
        for prefix, hops in sorted(st.remote.get(instance, {}).items()):
            out.append(
                {
                    "prefix": prefix,
                    "source": "control",
                    "nexthops": [
                        {"address": h.address, "label": h.label, "vni": h.vni, "encap": h.encap}
                        for h in hops
                    ],
                }
            )
        return out
