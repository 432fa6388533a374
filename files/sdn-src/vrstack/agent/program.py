"""Turn the agent's state into datapath objects and keep the datapath in step.

`desired()` computes every vif, nexthop, label, VNI and route the datapath should hold;
`Programmer.apply` adds what is new or changed and deletes what went away (routes
first, vifs last, so nothing points at a deleted object). Ids are allocated once per
key and kept, so a resync rewrites nothing that did not change.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from ..control.xmpp import Nexthop
from ..datapath import codec
from ..datapath.client import DatapathClient, DatapathError
from ..datapath.codec import Obj, Op
from .ports import Port

log = logging.getLogger(__name__)

ROUTER_MAC = "00:00:5e:00:01:00"  # the datapath routes frames sent to this MAC
# The vif layout of the kernel datapath, as vrouter-vhost0 (roles/vrouter) programs it:
# vif 0 the fabric uplink, vif 1 vhost0 (the host's own interface: the agent leaves it
# alone), vif 2 pkt0. vrouterd has no vhost0; it uses the same numbers, vif 1 unused.
FABRIC_VIF = 0
HOST_VIF = 1
AGENT_VIF = 2
FIRST_PORT_VIF = 3
NH_ENCAP, NH_TUNNEL, NH_COMPOSITE = 3, 4, 5
TUNNEL_FLAGS = {"MPLSoGRE": 0x02, "MPLSoUDP": 0x04, "VXLAN": 0x08}
NH_F_ECMP = 0x10
AF_INET, AF_INET6 = 1, 2
VIF_FABRIC, VIF_VIRTUAL, VIF_AGENT = 1, 3, 4


@dataclass
class Fabric:
    address: str  # our tunnel endpoint
    mac: str = "02:00:00:00:00:01"
    gateway_mac: str = "02:00:00:00:00:02"  # next hop on the fabric for every tunnel
    interface: str = ""  # OS interface of the fabric vif; empty: none attached


class Allocator:
    """Small integers per key from [low, high], kept while the key lives."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.ids: dict[Any, int] = {}
        self._free: list[int] = []
        self._next = low

    def get(self, key: Any) -> int:
        if key not in self.ids:
            if self._free:
                self.ids[key] = self._free.pop()
            elif self._next <= self.high:
                self.ids[key] = self._next
                self._next += 1
            else:
                raise RuntimeError(f"no free id in [{self.low}, {self.high}] for {key}")
        return self.ids[key]

    def keep_only(self, keys: set[Any]) -> None:
        for key in [k for k in self.ids if k not in keys]:
            self._free.append(self.ids.pop(key))

    def take(self, key: Any, value: int) -> bool:
        """Give `key` this very id (one it had before a restart), if it is free."""
        if key in self.ids or not self.low <= value <= self.high or value in self.ids.values():
            return False
        if value >= self._next:
            self._free.extend(range(self._next, value))
            self._next = value + 1
        else:
            self._free.remove(value)
        self.ids[key] = value
        return True


# An object: (kind, key attrs as a sorted tuple) -> all its attrs.
ObjKey = tuple[int, tuple[tuple[str, Any], ...]]


@dataclass
class State:
    """What the agent wants forwarded (inputs of `desired`)."""

    fabric: Fabric
    ports: dict[str, Port]
    vrfs: dict[str, int]  # instance -> VRF index
    labels: dict[str, int]  # port id -> MPLS label
    vnis: dict[str, int]  # instance -> VNI (0: none known)
    remote: dict[str, dict[str, tuple[Nexthop, ...]]]  # instance -> prefix -> nexthops
    encap_priority: tuple[str, ...]
    port_vifs: dict[str, int] = field(default_factory=dict)
    policy: bool = False  # port vifs trap new flows to the agent (needs pkt0)
    port_os_idx: dict[str, int] = field(default_factory=dict)  # port id -> its tap's ifindex


def choose_encap(hop: Nexthop, priority: tuple[str, ...]) -> str:
    """Our most preferred encapsulation that the remote compute offers."""
    for e in priority:
        if e in hop.encap and (e != "VXLAN" or hop.vni):
            return e
    return next((e for e in hop.encap if e != "VXLAN" or hop.vni), "MPLSoUDP")


@functools.lru_cache(maxsize=1 << 16)
def _ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(addr)


# The prefix is kept as text: keys are hashed many times per recomputation, and an
# ipaddress object's hash is computed in Python each time (the codec takes either).
@functools.lru_cache(maxsize=1 << 16)
def _route_key(vrf: int, prefix: str) -> tuple[tuple[str, Any], ...]:
    net = ipaddress.ip_network(prefix)
    fam = AF_INET if net.version == 4 else AF_INET6
    return (
        ("RT_FAMILY", fam),
        ("RT_PLEN", net.prefixlen),
        ("RT_PREFIX", str(net.network_address)),
        ("RT_VRF", vrf),
    )


# A recomputation is O(ports + routes) and runs on every change, so the objects of one
# port or one route are built once per distinct input and reused (never mutated) after.
Item = tuple[ObjKey, dict[str, Any]]


def _obj(obj: Obj, key: dict[str, Any], **attrs: Any) -> Item:
    return (int(obj), tuple(sorted(key.items()))), {**key, **attrs}


def vif_key(vif: int) -> ObjKey:
    return (int(Obj.VIF), (("VIF_IDX", vif),))


@functools.lru_cache(maxsize=1 << 14)
def _port_objs(
    port: Port, vif: int, vrf: int, label: int, nh: int, policy: bool, os_idx: int
) -> tuple[Item, ...]:
    attrs: dict[str, Any] = {"VIF_TYPE": VIF_VIRTUAL, "VIF_VRF": vrf, "VIF_MAC": port.mac}
    attrs["VIF_FLAGS"] = codec.VIF_F_POLICY if policy else 0
    # The tap is named only while it exists (the datapath must never create it: libvirt
    # does); its ifindex changes when it is made again, so the vif is re-added then.
    if port.tap and os_idx:
        attrs["VIF_NAME"] = port.tap
        attrs["VIF_OS_IDX"] = os_idx
    out = [
        _obj(Obj.VIF, {"VIF_IDX": vif}, **attrs),
        _obj(
            Obj.NH,
            {"NH_ID": nh},
            NH_TYPE=NH_ENCAP,
            NH_VRF=vrf,
            NH_OIF=vif,
            NH_SMAC=ROUTER_MAC,
            NH_DMAC=port.mac,
        ),
        _obj(Obj.LABEL, {"LBL_LABEL": label}, LBL_NH=nh),
    ]
    for ip in port.ips:
        plen = 32 if _ip(ip).version == 4 else 128
        out.append(_obj(Obj.ROUTE, dict(_route_key(vrf, f"{ip}/{plen}")), RT_NH=nh))
    return tuple(out)


@functools.lru_cache(maxsize=1 << 10)
def _tunnel_obj(tid: int, encap: str, src: str, mac: str, gateway_mac: str, dst: str) -> Item:
    return _obj(
        Obj.NH,
        {"NH_ID": tid},
        NH_TYPE=NH_TUNNEL,
        NH_FLAGS=TUNNEL_FLAGS[encap],
        NH_OIF=FABRIC_VIF,
        NH_SMAC=mac,
        NH_DMAC=gateway_mac,
        NH_TUN_SIP=_ip(src),
        NH_TUN_DIP=_ip(dst),
    )


@functools.lru_cache(maxsize=1 << 17)
def _route_obj(vrf: int, prefix: str, nh: int, label: int | None) -> Item:
    """A remote route: via a tunnel with its label (or VNI), or via an ECMP composite."""
    key = _route_key(vrf, prefix)
    if label is None:
        return (int(Obj.ROUTE), key), {**dict(key), "RT_NH": nh}
    return (int(Obj.ROUTE), key), {**dict(key), "RT_NH": nh, "RT_LABEL": label, "RT_FLAGS": 1}


def desired(s: State, nh_ids: Allocator) -> dict[ObjKey, dict[str, Any]]:
    """Every datapath object the state implies, keyed by (object kind, identity)."""
    out: dict[ObjKey, dict[str, Any]] = {}
    f = s.fabric
    fab: dict[str, Any] = {"VIF_TYPE": VIF_FABRIC, "VIF_MAC": f.mac}
    fab["VIF_IP"] = _ip(f.address)
    if f.interface:
        fab["VIF_NAME"] = f.interface
    for k, v in (
        _obj(Obj.VIF, {"VIF_IDX": FABRIC_VIF}, **fab),
        _obj(Obj.VIF, {"VIF_IDX": AGENT_VIF}, VIF_TYPE=VIF_AGENT, VIF_NAME="pkt0"),
    ):
        out[k] = v
    for pid, port in sorted(s.ports.items()):
        vrf = s.vrfs[port.instance]
        nh = nh_ids.get(("encap", pid))
        os_idx = s.port_os_idx.get(pid, 0)
        out.update(_port_objs(port, s.port_vifs[pid], vrf, s.labels[pid], nh, s.policy, os_idx))
    for inst, vni in sorted(s.vnis.items()):
        if vni and inst in s.vrfs:
            k, v = _obj(Obj.VNI, {"VNI_VNI": vni}, VNI_VRF=s.vrfs[inst])
            out[k] = v
    local = {
        (s.vrfs[p.instance], f"{ip}/{32 if ':' not in ip else 128}")
        for p in s.ports.values()
        for ip in p.ips
    }
    # Our own VMs by prefix, whatever their instance: a route leaked from another
    # network (by policy) to a VM on this compute goes straight to its port.
    local_nh = {
        f"{ip}/{32 if ':' not in ip else 128}": nh_ids.get(("encap", pid))
        for pid, p in sorted(s.ports.items())
        for ip in p.ips
    }
    for inst, table in sorted(s.remote.items()):
        if inst not in s.vrfs:
            continue
        vrf = s.vrfs[inst]
        for prefix, hops in sorted(table.items()):
            if (vrf, prefix) in local:
                continue  # our own VM in this VRF: the local route above wins
            if prefix in local_nh and any(h.address == f.address for h in hops):
                k, v = _route_obj(vrf, prefix, local_nh[prefix], None)
                out[k] = v
                continue
            remote_hops = [h for h in hops if h.address != f.address]
            if not remote_hops:
                continue
            comps: list[tuple[int, int]] = []
            for hop in sorted(remote_hops):
                encap = choose_encap(hop, s.encap_priority)
                tid = nh_ids.get(("tunnel", hop.address, encap))
                k, v = _tunnel_obj(tid, encap, f.address, f.mac, f.gateway_mac, hop.address)
                out[k] = v
                comps.append((tid, hop.vni if encap == "VXLAN" else hop.label))
            if len(comps) == 1:
                k, v = _route_obj(vrf, prefix, comps[0][0], comps[0][1])
            else:
                cid = nh_ids.get(("ecmp", tuple(comps)))
                flat = [x for c in comps for x in c]
                k, v = _obj(
                    Obj.NH,
                    {"NH_ID": cid},
                    NH_TYPE=NH_COMPOSITE,
                    NH_FLAGS=NH_F_ECMP,
                    NH_COMPONENTS=flat,
                )
                out[k] = v
                k, v = _route_obj(vrf, prefix, cid, None)
            out[k] = v
    return out


# Adds in this order, deletes in the reverse: nothing refers to a missing object.
_ORDER = (Obj.VIF, Obj.NH, Obj.LABEL, Obj.VNI, Obj.ROUTE)


class Programmer:
    """Holds what was installed; `apply` moves the datapath to a new desired set."""

    def __init__(self, client: DatapathClient) -> None:
        self.client = client
        self.installed: dict[ObjKey, dict[str, Any]] = {}
        self.counters = {"dp_adds": 0, "dp_deletes": 0, "dp_errors": 0}
        self.last_error = ""

    def adopt(self) -> int:
        """Take what the datapath already holds (an agent restart) as installed, so the
        next `apply` replaces what it still wants and deletes the rest."""
        found: dict[ObjKey, dict[str, Any]] = {}
        idents = {Obj.VIF: ("VIF_IDX",), Obj.NH: ("NH_ID",), Obj.LABEL: ("LBL_LABEL",)}
        idents[Obj.VNI] = ("VNI_VNI",)
        vrfs = set()
        for obj, keys in idents.items():
            for m in self.client.dump(obj):
                if obj == Obj.VIF and m.attrs["VIF_IDX"] == HOST_VIF:
                    continue  # vhost0 is vrouter-vhost0's: never ours to delete
                found[(int(obj), tuple((k, m.attrs[k]) for k in keys))] = {"adopted": True}
                if obj == Obj.VIF:
                    vrfs.add(m.attrs.get("VIF_VRF", 0))
        for vrf in sorted(vrfs):
            for fam in (AF_INET, AF_INET6):
                for m in self.client.dump(Obj.ROUTE, RT_VRF=vrf, RT_FAMILY=fam):
                    prefix = f"{m.attrs['RT_PREFIX']}/{m.attrs['RT_PLEN']}"
                    key = _route_key(cast(int, vrf), prefix)
                    found[(int(Obj.ROUTE), key)] = {"adopted": True}
        self.installed.update(found)
        return len(found)

    def apply(self, want: dict[ObjKey, dict[str, Any]]) -> None:
        """Add or replace first (so routes move to their new nexthops), then delete."""

        def nh_rank(k: ObjKey) -> int:  # composites after the tunnels they name
            return int(want.get(k, self.installed.get(k, {})).get("NH_TYPE") == NH_COMPOSITE)

        changed: dict[int, list[ObjKey]] = {int(obj): [] for obj in _ORDER}
        for k, v in want.items():
            have = self.installed.get(k)
            if have is not v and have != v:  # most are the very same (cached) objects
                changed[k[0]].append(k)
        for obj in _ORDER:
            for k in sorted(changed[int(obj)], key=nh_rank):
                if self._call(Op.ADD, obj, want[k]):
                    self.installed[k] = want[k]
        gone = [k for k in self.installed if k not in want]
        for obj in reversed(_ORDER):
            for k in sorted((k for k in gone if k[0] == obj), key=nh_rank, reverse=True):
                self._call(Op.DEL, obj, dict(k[1]))
                self.installed.pop(k, None)

    def _call(self, op: Op, obj: Obj, attrs: dict[str, Any]) -> bool:
        try:
            self.client.call(op, obj, **attrs)
        except (DatapathError, codec.CodecError, OSError) as exc:
            self.counters["dp_errors"] += 1
            self.last_error = f"{op.name.lower()} {obj.name.lower()} {attrs}: {exc}"
            log.error("datapath request failed", extra={"error": self.last_error})
            return False
        self.counters["dp_adds" if op == Op.ADD else "dp_deletes"] += 1
        return True
