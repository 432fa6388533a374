"""Build, inspect and remove the local multi-rack lab.

The lab's hosts are Debian 12 systemd containers (systemd-nspawn), each in its
own network namespace, wired as the fabric model says: one namespace per rack
acts as the ToR (a bridge holding the rack gateway), one namespace is the spine,
and this machine's root namespace reaches the spine over the model's `deploy`
link. The topology comes only from `ansible-inventory --list`; this tool never
computes an address itself.

Several labs may be up at once, one per inventory `cluster.name`, each with its
own namespaces, run and state directories, lock and root-namespace routes (only
its own prefixes). The lab named `lab` keeps the original, unprefixed names.

    python tools/lab.py up|down|summary|status [--inventory DIR]
    python tools/lab.py labs                              (the labs that are up)
    python tools/lab.py hold [--lab NAME] -- CMD...       (CMD has that lab to itself)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# lab_packages sits beside this file (also when a test loads this file by path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab_packages

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = "inventories/lab"

# The root file system every host shares (read-only lower layer of its overlay).
# Keep this the one list of what a lab host has before Ansible touches it: the
# hosts have no route out, so whatever the roles install must already be here.
SUITE = "bookworm"
ROOTFS_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "iputils-ping",
    "sudo",
    "ca-certificates",
    "procps",
    "chrony",
)
# Bump when the post-debootstrap preparation below changes, so a new cache is built.
ROOTFS_LAYOUT = 3

CACHE_DIR = Path("/var/cache/vrstack/lab")
STATE_DIR = Path("/var/lib/vrstack-lab")
RUN_DIR = Path("/run/vrstack-lab")
NETNS_DIR = Path("/run/netns")
DEFAULT_SSH_KEY = CACHE_DIR / "ssh" / "id_ed25519"

# Every lab address must be in here (the project's network rule); the root
# namespace routes each lab's own prefixes inside it to that lab's spine.
LAB_SUPERNET = ipaddress.ip_network("198.18.0.0/15")

# The lab of `inventories/lab` (cluster `lab`) keeps the names it had before
# labs were named, so a lab made by an older lab.py is still found and removed.
LEGACY_CLUSTER = "lab"
SPINE_NS = "vrs-spine"
DEPLOY_DEV = "vrs-deploy"  # root namespace end of the deploy link
BRIDGE = "br0"

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSH_WAIT_SECONDS = 120.0
STOP_WAIT_SECONDS = 30.0
LOCK_WAIT_SECONDS = 900.0
HELD_ENV = "VRSTACK_LAB_LOCK_HELD"

REQUIRED_HOSTVARS = (
    "vrstack_rack",
    "vrstack_roles",
    "vrstack_fabric_ip",
    "vrstack_fabric_prefixlen",
    "vrstack_fabric_gateway",
    "vrstack_loopback_ip",
    "vrstack_fabric",
)


class LabError(Exception):
    """A failure the user can act on; main() prints it and exits non-zero."""


# --------------------------------------------------------------------------
# The lab as the inventory describes it (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    rack: str
    roles: tuple[str, ...]
    ip: str
    prefixlen: int
    gateway: str
    loopback: str


@dataclass(frozen=True)
class Rack:
    name: str
    gateway: str
    prefixlen: int
    subnet: str
    spine_ip: str  # spine end of the rack's /31
    tor_ip: str  # ToR end of the rack's /31
    link_prefixlen: int


@dataclass(frozen=True)
class Lab:
    hosts: tuple[Host, ...]
    racks: tuple[Rack, ...]
    deploy_spine_ip: str
    deploy_local_ip: str
    deploy_prefixlen: int
    ssh_key: str
    ssh_user: str
    cluster: str = LEGACY_CLUSTER
    endpoints: Mapping[str, Any] = field(default_factory=dict)
    # What the root namespace routes to this lab's spine (collapsed CIDRs).
    prefixes: tuple[str, ...] = ()
    inventory: str = ""  # absolute path, to name the lab in messages
    # A managed gateway (group `gateway`): a host hung off the spine by one link.
    gateway: Host | None = None

    @property
    def all_hosts(self) -> tuple[Host, ...]:
        return (*self.hosts, self.gateway) if self.gateway else self.hosts


def _need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise LabError(f"{where}: missing field '{key}'")
    return mapping[key]


def _link_ends(link: Mapping[str, Any], far: str, where: str) -> tuple[str, str, int]:
    """Spine end, far end (`far` names its field) and prefix length of a model link."""
    spine = str(_need(link, "spine_ip", where))
    peer = str(_need(link, far, where))
    prefixlen = int(_need(link, "prefixlen", where))
    return spine, peer, prefixlen


def unwrap(value: Any) -> Any:
    """Strip the `{"__ansible_unsafe": ...}` wrappers ansible-inventory's JSON carries."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def parse_inventory(data: Mapping[str, Any], source: str) -> Lab:
    """Turn `ansible-inventory --list` output into a Lab, checking what it needs."""
    data = unwrap(data)
    hostvars: Mapping[str, Any] = data.get("_meta", {}).get("hostvars", {})
    group = data.get("vrstack", {})
    names = sorted(group.get("hosts", [])) if isinstance(group, Mapping) else []
    if not names:
        raise LabError(
            f"inventory {source}: no hosts in group 'vrstack' "
            "(is it a vrstack.cloud.fabric inventory?)"
        )
    hosts = []
    for name in names:
        hv = hostvars.get(name, {})
        where = f"inventory {source}: host {name}"
        for key in REQUIRED_HOSTVARS:
            _need(hv, key, where)
        hosts.append(
            Host(
                name=name,
                rack=str(hv["vrstack_rack"]),
                roles=tuple(hv["vrstack_roles"]),
                ip=str(hv["vrstack_fabric_ip"]),
                prefixlen=int(hv["vrstack_fabric_prefixlen"]),
                gateway=str(hv["vrstack_fabric_gateway"]),
                loopback=str(hv["vrstack_loopback_ip"]),
            )
        )
    first = hostvars[names[0]]
    model = first["vrstack_fabric"]
    where = f"inventory {source}: vrstack_fabric"
    spine = _need(model, "spine", where)
    if not spine:
        raise LabError(f"{where}: the lab needs a spine to join racks and reach this machine")
    links = _need(spine, "links", f"{where}.spine")
    racks = []
    for rack_name, rack in sorted(_need(model, "racks", where).items()):
        rwhere = f"{where}.racks.{rack_name}"
        link = _need(links, rack_name, f"{where}.spine.links")
        spine_ip, tor_ip, link_len = _link_ends(link, "tor_ip", f"{where}.spine.links.{rack_name}")
        racks.append(
            Rack(
                name=rack_name,
                gateway=str(_need(rack, "gateway", rwhere)),
                prefixlen=int(_need(rack, "prefixlen", rwhere)),
                subnet=str(_need(rack, "subnet", rwhere)),
                spine_ip=spine_ip,
                tor_ip=tor_ip,
                link_prefixlen=link_len,
            )
        )
    deploy = _need(links, "deploy", f"{where}.spine.links")
    d_spine, d_local, d_len = _link_ends(deploy, "host_ip", f"{where}.spine.links.deploy")
    key = str(first.get("ansible_ssh_private_key_file", DEFAULT_SSH_KEY))
    user = str(first.get("ansible_user", "root"))
    lab = Lab(tuple(hosts), tuple(racks), d_spine, d_local, d_len, key, user)
    lab = replace(
        lab,
        gateway=gateway_host(data, model, d_spine),
        cluster=str(model.get("name", LEGACY_CLUSTER)),
        endpoints=model.get("endpoints") or {},
        prefixes=lab_prefixes(model, racks, where),
        inventory=str(Path(source).resolve()),
    )
    check_lab(lab, source)
    return lab


def gateway_host(data: Mapping[str, Any], model: Mapping[str, Any], spine_ip: str) -> Host | None:
    """The managed gateway as a lab host: its address on eth0 (/32), reached over a
    link to the spine that borrows the spine's deploy-link address (no new address)."""
    group = data.get("gateway", {})
    names = group.get("hosts", []) if isinstance(group, Mapping) else []
    gw = model.get("gateway")
    if not names or not gw:
        return None
    address = str(gw["address"])
    return Host(str(names[0]), "", ("gateway",), address, 32, spine_ip, address)


def lab_prefixes(model: Mapping[str, Any], racks: Sequence[Rack], where: str) -> tuple[str, ...]:
    """The lab's own address space: rack subnets, the spine's link pool, the
    loopback pool and any VIP or gateway address outside those (collapsed)."""
    nets = [ipaddress.ip_network(r.subnet) for r in racks]
    nets.append(ipaddress.ip_network(str(_need(model["spine"], "link_pool", f"{where}.spine"))))
    nets.append(ipaddress.ip_network(str(_need(model, "loopback_pool", where))))
    singles = [str(v) for v in (model.get("vips") or {}).values()]
    if model.get("gateway"):
        singles.append(str(_need(model["gateway"], "address", f"{where}.gateway")))
    for addr in singles:
        one = ipaddress.ip_network(f"{addr}/32")
        if not any(one.subnet_of(n) for n in nets):  # type: ignore[arg-type]
            nets.append(one)
    return tuple(str(n) for n in ipaddress.collapse_addresses(nets))  # type: ignore[arg-type]


def check_lab(lab: Lab, source: str) -> None:
    """Refuse a lab that would route outside 198.18.0.0/15 or that cannot be wired."""
    rack_names = {r.name for r in lab.racks}
    addresses: list[tuple[str, str]] = [("deploy link", lab.deploy_spine_ip)]
    addresses.append(("deploy link", lab.deploy_local_ip))
    for rack in lab.racks:
        addresses += [
            (f"rack {rack.name} subnet", rack.subnet),
            (f"rack {rack.name} gateway", rack.gateway),
            (f"rack {rack.name} spine link", rack.spine_ip),
            (f"rack {rack.name} spine link", rack.tor_ip),
        ]
    if lab.gateway:
        addresses.append((f"gateway {lab.gateway.name} address", lab.gateway.ip))
    for host in lab.hosts:
        if host.rack not in rack_names:
            raise LabError(f"inventory {source}: host {host.name}: unknown rack '{host.rack}'")
        addresses += [
            (f"host {host.name} vrstack_fabric_ip", host.ip),
            (f"host {host.name} vrstack_loopback_ip", host.loopback),
            (f"host {host.name} vrstack_fabric_gateway", host.gateway),
        ]
    addresses += [("prefix", prefix) for prefix in lab.prefixes]
    for what, addr in addresses:
        net = ipaddress.ip_network(addr, strict=False)
        if not net.subnet_of(LAB_SUPERNET):  # type: ignore[arg-type]
            raise LabError(
                f"inventory {source}: {what} {addr} is outside {LAB_SUPERNET}; "
                "the local lab only uses that range"
            )
    taken: dict[str, str] = {}
    for host in lab.all_hosts:
        for name in (host_netns(host.name), host_veth(host.name)):
            if name in taken and taken[name] != host.name:
                raise LabError(
                    f"inventory {source}: hosts {taken[name]} and {host.name} "
                    f"map to the same lab name {name}; rename one"
                )
            taken[name] = host.name
    clash = {host_netns(h.name) for h in lab.all_hosts} & set(router_namespaces(lab))
    if clash:
        raise LabError(f"inventory {source}: host name collides with lab namespace {clash}")


def foreign_routes(lab: Lab, routes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Routes of this machine (`ip -j route show`) into this lab's prefixes that no
    lab made: something else (a test's veth, a VPN) already uses those addresses."""
    mine = [ipaddress.ip_network(p) for p in lab.prefixes]
    found = []
    for r in routes:
        dev = str(r.get("dev", ""))
        if r.get("dst") in (None, "default") or dev == DEPLOY_DEV or dev.startswith("vrs-d-"):
            continue  # other labs are checked from their state files
        net = ipaddress.ip_network(str(r["dst"]), strict=False)
        if any(net.overlaps(m) for m in mine):
            found.append(f"{net} on {dev}")
    return found


@dataclass(frozen=True)
class UpLab:
    """A lab that is up, as its state file recorded it."""

    cluster: str
    inventory: str
    prefixes: tuple[str, ...]
    hosts: tuple[str, ...]
    namespaces: tuple[str, ...]
    old: bool = False  # written by a lab.py before named labs (no prefixes recorded)


def check_overlap(lab: Lab, source: str, others: Sequence[UpLab]) -> None:
    """Refuse a lab that shares addresses, hosts or namespaces with another lab
    that is up: both would claim the same routes in this machine's namespace."""
    mine = [ipaddress.ip_network(p) for p in lab.prefixes]
    hosts = {h.name for h in lab.all_hosts}
    namespaces = set(make_plan(lab).namespaces)
    for other in others:
        if other.cluster == lab.cluster:
            continue
        them = f"lab '{other.cluster}' (inventory {other.inventory}), which is up"
        for net in mine:
            for theirs in (ipaddress.ip_network(p) for p in other.prefixes):
                if net.overlaps(theirs):
                    raise LabError(
                        f"inventory {source} (lab '{lab.cluster}'): {net} overlaps {theirs} of "
                        f"{them}; give this lab other addresses or take that one down "
                        f"(tools/lab.py down --inventory {other.inventory})"
                    )
        same = sorted(hosts & set(other.hosts)) or sorted(namespaces & set(other.namespaces))
        if same:
            raise LabError(
                f"inventory {source} (lab '{lab.cluster}'): {', '.join(same)} already "
                f"belongs to {them}; host names must differ between labs"
            )


# --------------------------------------------------------------------------
# The wiring plan (pure): namespaces, veths, bridges, addresses, routes
# --------------------------------------------------------------------------


def host_netns(host: str) -> str:
    return f"vrs-{host}"


def _legacy(cluster: str) -> bool:
    return cluster == LEGACY_CLUSTER


def tor_netns(rack: str, cluster: str = LEGACY_CLUSTER) -> str:
    return f"vrs-tor-{rack}" if _legacy(cluster) else f"vrs-tor-{cluster}-{rack}"


def spine_netns(cluster: str = LEGACY_CLUSTER) -> str:
    return SPINE_NS if _legacy(cluster) else f"{SPINE_NS}-{cluster}"


def deploy_dev(cluster: str = LEGACY_CLUSTER) -> str:
    """The root namespace's end of a lab's deploy link (at most 15 characters)."""
    return DEPLOY_DEV if _legacy(cluster) else _ifname("vrs-d-", cluster)


def run_dir(cluster: str = LEGACY_CLUSTER) -> Path:
    """Pid files, console logs, the lock and the state file of one lab."""
    return RUN_DIR if _legacy(cluster) else RUN_DIR / cluster


def state_dir(cluster: str = LEGACY_CLUSTER) -> Path:
    """Per-host overlays of one lab."""
    return STATE_DIR if _legacy(cluster) else STATE_DIR / cluster


def router_namespaces(lab: Lab) -> list[str]:
    return [spine_netns(lab.cluster), *(tor_netns(r.name, lab.cluster) for r in lab.racks)]


def _ifname(prefix: str, name: str) -> str:
    """An interface name under Linux's 15-character limit, stable for a name."""
    full = prefix + name
    if len(full) <= 15:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:5]
    return f"{prefix}{name[: 15 - len(prefix) - 6]}-{digest}"


def host_veth(host: str) -> str:
    """The ToR end of a host's link (the host end is always eth0)."""
    return _ifname("h-", host)


def gateway_veth(name: str) -> str:
    """The spine end of a managed gateway's link (the gateway end is eth0)."""
    return _ifname("g-", name)


def spine_veth(rack: str) -> str:
    """The spine end of a rack's link (the ToR end is always `spine`)."""
    return _ifname("r-", rack)


@dataclass(frozen=True)
class Veth:
    ns: str | None  # None: this machine's root namespace
    name: str
    peer_ns: str
    peer_name: str


@dataclass(frozen=True)
class Address:
    ns: str | None
    dev: str
    cidr: str


@dataclass(frozen=True)
class Route:
    ns: str | None
    dst: str
    via: str  # "" for a route straight out of `dev`
    dev: str = ""


@dataclass
class Plan:
    namespaces: list[str] = field(default_factory=list)
    routers: list[str] = field(default_factory=list)  # namespaces that forward
    veths: list[Veth] = field(default_factory=list)
    bridges: dict[str, list[str]] = field(default_factory=dict)  # ns -> ports of br0
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)

    def devices(self, ns: str | None) -> list[str]:
        """Interfaces the plan puts in a namespace (to bring up), in order."""
        devs: list[str] = []
        for v in self.veths:
            if v.ns == ns:
                devs.append(v.name)
            if v.peer_ns == ns:
                devs.append(v.peer_name)
        if ns in self.bridges:
            devs.append(BRIDGE)
        return devs


def make_plan(lab: Lab) -> Plan:
    """Everything `up` creates, derived only from the inventory's addresses."""
    plan = Plan()
    racks = {r.name: r for r in lab.racks}
    spine = spine_netns(lab.cluster)
    plan.namespaces.append(spine)
    plan.routers.append(spine)
    for rack in lab.racks:
        ns = tor_netns(rack.name, lab.cluster)
        plan.namespaces.append(ns)
        plan.routers.append(ns)
        plan.bridges[ns] = []
        plan.veths.append(Veth(spine, spine_veth(rack.name), ns, "spine"))
        plan.addresses.append(
            Address(spine, spine_veth(rack.name), f"{rack.spine_ip}/{rack.link_prefixlen}")
        )
        plan.addresses.append(Address(ns, "spine", f"{rack.tor_ip}/{rack.link_prefixlen}"))
        plan.addresses.append(Address(ns, BRIDGE, f"{rack.gateway}/{rack.prefixlen}"))
        plan.routes.append(Route(ns, "default", rack.spine_ip))
        plan.routes.append(Route(spine, rack.subnet, rack.tor_ip))
    for host in lab.hosts:
        ns = host_netns(host.name)
        rack = racks[host.rack]
        tor = tor_netns(rack.name, lab.cluster)
        plan.namespaces.append(ns)
        plan.veths.append(Veth(tor, host_veth(host.name), ns, "eth0"))
        plan.bridges[tor].append(host_veth(host.name))
        plan.addresses.append(Address(ns, "eth0", f"{host.ip}/{host.prefixlen}"))
        plan.addresses.append(Address(ns, "lo", f"{host.loopback}/32"))
        plan.routes.append(Route(ns, "default", host.gateway))
        plan.routes.append(Route(tor, f"{host.loopback}/32", host.ip))
        plan.routes.append(Route(spine, f"{host.loopback}/32", rack.tor_ip))
    if lab.gateway:
        gw, ns, link = lab.gateway, host_netns(lab.gateway.name), gateway_veth(lab.gateway.name)
        plan.namespaces.append(ns)
        plan.veths.append(Veth(spine, link, ns, "eth0"))
        plan.addresses.append(Address(spine, link, f"{lab.deploy_spine_ip}/32"))
        plan.addresses.append(Address(ns, "eth0", f"{gw.ip}/32"))
        plan.routes.append(Route(spine, f"{gw.ip}/32", "", link))
        plan.routes.append(Route(ns, f"{gw.gateway}/32", "", "eth0"))
        plan.routes.append(Route(ns, "default", gw.gateway, "eth0"))
    dev = deploy_dev(lab.cluster)
    plan.veths.append(Veth(None, dev, spine, "deploy"))
    plan.addresses.append(Address(spine, "deploy", f"{lab.deploy_spine_ip}/{lab.deploy_prefixlen}"))
    plan.addresses.append(Address(None, dev, f"{lab.deploy_local_ip}/{lab.deploy_prefixlen}"))
    # Only this lab's own prefixes: another lab may be up beside it.
    for prefix in lab.prefixes:
        plan.routes.append(Route(None, prefix, lab.deploy_spine_ip))
    return plan


def route_line(r: Route) -> str:
    via = f" via {r.via}" if r.via else ""
    dev = f" dev {r.dev}" if r.dev else ""
    return f"route replace {r.dst}{via}{dev}"


def ip_batch(plan: Plan, ns: str | None) -> list[str]:
    """`ip -batch` lines that set a namespace's links up, addresses and routes.

    `replace` makes each line idempotent, so the batch is safe to run again.
    """
    lines = [] if ns is None else ["link set lo up"]
    for port_ns, ports in plan.bridges.items():
        if port_ns == ns:
            lines += [f"link set {p} master {BRIDGE}" for p in ports]
    lines += [f"link set {dev} up" for dev in plan.devices(ns)]
    lines += [f"address replace {a.cidr} dev {a.dev}" for a in plan.addresses if a.ns == ns]
    lines += [route_line(r) for r in plan.routes if r.ns == ns]
    return lines


# --------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------


def run(
    cmd: Sequence[str], *, input_text: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), input=input_text, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
        )
    return proc


def ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *(("-n", ns) if ns else ()), *args], check=check)


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def require_root_and_tools(tools: Sequence[str]) -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root (namespaces, mounts and containers need it): sudo ...")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)}; run `make bootstrap` "
            "(installs systemd-container, debootstrap, iproute2, openssh-client)"
        )


def load_inventory(inventory: str) -> Lab:
    source = str(Path(inventory))
    venv_tool = Path(sys.executable).parent / "ansible-inventory"
    tool = str(venv_tool) if venv_tool.exists() else shutil.which("ansible-inventory")
    if tool is None:
        raise LabError("ansible-inventory not found; run `make bootstrap` and use .venv/bin/python")
    if not Path(inventory).exists():
        raise LabError(f"inventory {source} does not exist")
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    proc = subprocess.run(
        [tool, "-i", inventory, "--list"], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise LabError(f"ansible-inventory -i {source} failed:\n{proc.stderr.strip()}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise LabError(f"ansible-inventory -i {source} printed no JSON: {exc}") from exc
    return parse_inventory(data, source)


def held_labs(value: str | None) -> set[str]:
    """Labs whose lock a parent `lab.py hold` holds ("1", from older callers, is `lab`)."""
    names = {n for n in (value or "").split(",") if n}
    return {LEGACY_CLUSTER if n == "1" else n for n in names}


@contextlib.contextmanager
def locked(limit: float = LOCK_WAIT_SECONDS, cluster: str = LEGACY_CLUSTER) -> Iterator[None]:
    """One lab.py changing a lab at a time (each lab has its own lock)."""
    if cluster in held_labs(os.environ.get(HELD_ENV)):  # inside `lab.py hold`: ours
        yield
        return
    run_dir(cluster).mkdir(parents=True, exist_ok=True)
    path = run_dir(cluster) / "lock"
    with open(path, "w") as fh:
        if not lab_packages.wait_for_flock(fh, path, limit, "another lab.py or a measurement"):
            raise LabError(
                f"{path} is still held after {limit:.0f}s by another lab user; "
                f"see `fuser -v {path}`"
            )
        yield


# --------------------------------------------------------------------------
# Root file system (built once, shared read-only)
# --------------------------------------------------------------------------


def rootfs_key() -> str:
    spec = json.dumps([SUITE, "minbase", sorted(ROOTFS_PACKAGES), ROOTFS_LAYOUT])
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (first `URIs:` line)."""
    files = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in files:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(None, 1)[1].split()[0]
    legacy = sources_dir / "sources.list"
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2].startswith(SUITE):
                return parts[1]
    raise LabError(f"no Debian mirror found in {sources_dir}/sources.list.d/*.sources")


def ensure_rootfs(cache: Path) -> Path:
    target = cache / f"rootfs-{rootfs_key()}"
    if (target / "usr/lib/systemd/systemd").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Labs have separate locks but share the tree: one builds it, the others wait.
    lock = cache / "rootfs.lock"
    with open(lock, "w") as fh:
        if not lab_packages.wait_for_flock(fh, lock, LOCK_WAIT_SECONDS, "another lab's build"):
            raise LabError(f"{lock} is still held after {LOCK_WAIT_SECONDS:.0f}s")
        if (target / "usr/lib/systemd/systemd").exists():
            return target
        return build_rootfs(cache, target)


def build_rootfs(cache: Path, target: Path) -> Path:
    require_root_and_tools(["debootstrap"])
    mirror = apt_mirror()
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=cache))
    log(f"building root file system {target} from {mirror} (a few minutes, once)")
    start = time.monotonic()
    try:
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(ROOTFS_PACKAGES)}",
            SUITE,
            str(tmp),
            mirror,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise LabError(f"debootstrap failed; see {tmp}/debootstrap/debootstrap.log\n{tail}")
        prepare_rootfs(tmp)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"root file system built in {time.monotonic() - start:.0f}s")
    prune_rootfs(cache, keep=target)
    return target


def prune_rootfs(cache: Path, keep: Path) -> None:
    """Remove root file systems of older package lists that no host's overlay uses."""
    in_use = {str(keep)}
    # Hosts of the `lab` lab, then hosts of named labs (one directory deeper).
    for lower in [*STATE_DIR.glob("*/lower"), *STATE_DIR.glob("*/*/lower")]:
        in_use.add(lower.read_text().strip())
    for old in cache.glob("rootfs-*"):
        if old.is_dir() and ".tmp-" not in old.name and str(old) not in in_use:
            log(f"removing stale {old}")
            shutil.rmtree(old, ignore_errors=True)


def prepare_rootfs(root: Path) -> None:
    """Make a debootstrapped tree safe to share between hosts."""
    (root / "etc/machine-id").write_text("")  # each host gets its own id at boot
    (root / "etc/hostname").unlink(missing_ok=True)  # nspawn -M names each host
    # debootstrap copies this machine's resolver, unreachable from the lab: every
    # lookup would wait for its timeout. Lab names come from /etc/hosts.
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("# vrstack lab: no DNS server; names are in /etc/hosts\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # per-host keys are made at `up`
    # Only an ed25519 host key per host: RSA keys take seconds each to generate.
    (root / "etc/ssh/sshd_config.d/vrstack-lab-hostkey.conf").write_text(f"HostKey {HOST_KEY}\n")
    (root / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    # Timers that would run apt inside a host and hold dpkg's lock under Ansible.
    wants = root / "etc/systemd/system"
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        link = wants / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")


# --------------------------------------------------------------------------
# Hosts: overlays and containers
# --------------------------------------------------------------------------


def ensure_ssh_key(key: Path) -> str:
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vrstack-lab", "-f", str(key)])
    return Path(f"{key}.pub").read_text()


def mountpoints() -> set[str]:
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.add(line.split()[4].replace("\\040", " "))
    return points


def host_dir(host: str, cluster: str = LEGACY_CLUSTER) -> Path:
    return state_dir(cluster) / host


def ensure_overlay(host: Host, rootfs: Path, pubkey: str, cluster: str = LEGACY_CLUSTER) -> Path:
    base = host_dir(host.name, cluster)
    upper, work, merged = base / "upper", base / "work", base / "root"
    lower_file = base / "lower"
    if lower_file.exists() and lower_file.read_text().strip() != str(rootfs):
        raise LabError(
            f"host {host.name}: its overlay was made over {lower_file.read_text().strip()}, "
            f"not the current root file system {rootfs}; "
            "run `tools/lab.py down --purge` to start it afresh"
        )
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    lower_file.write_text(f"{rootfs}\n")
    if str(merged) not in mountpoints():
        opts = f"lowerdir={rootfs},upperdir={upper},workdir={work}"
        run(["mount", "-t", "overlay", f"vrs-{host.name}", "-o", opts, str(merged)])
    seed_host_files(host.name, merged, pubkey)
    return merged


def seed_host_files(name: str, root: Path, pubkey: str) -> None:
    """First-boot files; written only when absent so Ansible may own them later."""
    hosts = root / "etc/hosts"
    if not (hosts.exists() and name in hosts.read_text()):
        hosts.write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        )
    key = root / HOST_KEY.lstrip("/")
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)])
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    if not (keys.exists() and pubkey.strip() in keys.read_text()):
        with keys.open("a") as fh:
            fh.write(pubkey if pubkey.endswith("\n") else pubkey + "\n")
        keys.chmod(0o600)


def pid_file(host: str, cluster: str = LEGACY_CLUSTER) -> Path:
    return run_dir(cluster) / f"{host}.pid"


def running_pid(host: str, cluster: str = LEGACY_CLUSTER) -> int | None:
    """The nspawn pid of a host if it is alive (not a zombie) and really its container."""
    try:
        pid = int(pid_file(host, cluster).read_text())
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X") or b"-M" not in cmdline:
        return None
    return pid if cmdline[cmdline.index(b"-M") + 1] == host.encode() else None


def container_pid(nspawn_pid: int) -> int | None:
    """The container's init (the child of nspawn), for nsenter."""
    try:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


CGROUP_ROOT = Path("/sys/fs/cgroup")


def host_cgroups(host: str) -> list[Path]:
    """One cgroup per host in each hierarchy systemd uses (cgroup2 alone, or the
    hybrid layout's `unified` and `systemd`). nspawn --keep-unit builds the
    container's tree under the cgroup it starts in; hosts started from one shell
    would share it, and their systemds then race for the same unit cgroups
    (units failing with 219/CGROUP)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT / f"vrstack-lab-{host}"]
    return [
        CGROUP_ROOT / tree / f"vrstack-lab-{host}"
        for tree in ("unified", "systemd")
        if (CGROUP_ROOT / tree / "cgroup.procs").exists()
    ]


def remove_cgroups(host: str) -> None:
    for top in host_cgroups(host):
        if top.exists():
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def start_host(
    host: Host,
    merged: Path,
    mounts: Sequence[lab_packages.Mount] = (),
    cluster: str = LEGACY_CLUSTER,
) -> int:
    run_dir(cluster).mkdir(parents=True, exist_ok=True)
    cmd = [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path={NETNS_DIR / host_netns(host.name)}",
        "-D",
        str(merged),
        "-M",
        host.name,
        "--console=read-only",
        "--resolv-conf=off",
        "--capability=CAP_NET_ADMIN",
        # The package caches (apt repository, wheelhouse): the hosts have no route out.
        *(f"--bind-ro={m.source}:{m.target}" for m in mounts),
    ]
    # nspawn keeps /proc/sys read-only; the host owns its network namespace, so
    # let it set net.* sysctls (forwarding, rp_filter) like a real machine.
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    cgroups = host_cgroups(host.name)
    for path in cgroups:
        path.mkdir(exist_ok=True)

    def enter_own_cgroup() -> None:
        for path in cgroups:
            (path / "cgroup.procs").write_text("0")

    with open(run_dir(cluster) / f"{host.name}.log", "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, preexec_fn=enter_own_cgroup,
        )  # fmt: skip
    pid_file(host.name, cluster).write_text(f"{proc.pid}\n")
    return proc.pid


def caches_visible(
    name: str, mounts: Sequence[lab_packages.Mount], cluster: str = LEGACY_CLUSTER
) -> bool:
    pid = running_pid(name, cluster)
    init = container_pid(pid) if pid else None
    return init is None or lab_packages.mounted_in(init, mounts)


def forget_ssh_masters(lab: Lab, hosts: Sequence[Host]) -> None:
    """Close Ansible's persistent ssh connections to hosts that were (re)started:
    a master still bound to the previous incarnation would hang or fail the next
    run ("Data could not be sent"). Ansible names them ControlPath=DIR/%C."""
    cp_dir = os.environ.get("ANSIBLE_SSH_CONTROL_PATH_DIR", str(Path.home() / ".ansible" / "cp"))
    for host in hosts:
        res = subprocess.run(
            ["ssh", "-G", "-o", f"ControlPath={cp_dir}/%C", "-l", lab.ssh_user, host.ip],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        path = next((line.split(" ", 1)[1] for line in res.stdout.splitlines()
                     if line.startswith("controlpath ")), None)  # fmt: skip
        if path and Path(path).exists():
            subprocess.run(
                ["ssh", "-O", "exit", "-o", f"ControlPath={path}", host.ip],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            Path(path).unlink(missing_ok=True)


def ssh_answers(address: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_ssh(
    hosts: Sequence[Host], limit: float = SSH_WAIT_SECONDS, cluster: str = LEGACY_CLUSTER
) -> None:
    waiting = {h.name: h for h in hosts}
    deadline = time.monotonic() + limit
    logs = run_dir(cluster)
    while waiting and time.monotonic() < deadline:
        for name, host in list(waiting.items()):
            if running_pid(name, cluster) is None:
                raise LabError(f"host {name}: container exited during boot; see {logs}/{name}.log")
            if ssh_answers(host.ip, timeout=0.5):
                del waiting[name]
        if waiting:
            time.sleep(0.2)
    if waiting:
        raise LabError(
            f"ssh did not answer within {limit:.0f}s on: {', '.join(sorted(waiting))}; "
            f"see {logs}/<host>.log and `nsenter -t PID -a journalctl -b`"
        )


def stop_pid(pid: int, limit: float = STOP_WAIT_SECONDS) -> None:
    """SIGTERM (nspawn then powers the container off), bounded wait, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        log(f"pid {pid} did not stop within {limit:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


# --------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------


def existing_netns() -> set[str]:
    return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def link_names(ns: str | None) -> set[str]:
    out = ip(ns, "-j", "link", "show").stdout
    return {link["ifname"] for link in json.loads(out or "[]")}


def stable_mac(ns: str | None, dev: str) -> str:
    """A locally administered unicast MAC named by the namespace and device: a lab host's
    NIC and its rack's gateway keep their MACs when the lab is taken down and brought up
    again, as real hardware does (the agent's config names both)."""
    digest = bytearray(hashlib.sha256(f"{ns or ''}/{dev}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def ensure_network(plan: Plan) -> list[str]:
    """Create what is missing (returned); `replace` fixes addresses and routes in place."""
    made: list[str] = []
    present = existing_netns()
    for ns in plan.namespaces:
        if ns not in present:
            ip(None, "netns", "add", ns)
            made.append(f"netns {ns}")
    for ns in plan.routers:
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    names: dict[str | None, set[str]] = {}

    def has(ns: str | None, dev: str) -> bool:
        if ns not in names:
            names[ns] = link_names(ns)
        return dev in names[ns]

    for v in plan.veths:
        if has(v.ns, v.name):
            continue
        if has(v.peer_ns, v.peer_name):  # a stale end left from an older wiring
            ip(v.peer_ns, "link", "del", v.peer_name)
        where = ("-n", v.ns) if v.ns else ()
        run(["ip", *where, "link", "add", v.name, "address", stable_mac(v.ns, v.name),
             "type", "veth", "peer", "name", v.peer_name,
             "address", stable_mac(v.peer_ns, v.peer_name), "netns", v.peer_ns])  # fmt: skip
        made.append(f"veth {v.ns or 'root'}/{v.name}")
        names.pop(v.ns, None)
        names.pop(v.peer_ns, None)
    for ns in plan.bridges:
        if not has(ns, BRIDGE):
            ip(ns, "link", "add", BRIDGE, "address", stable_mac(ns, BRIDGE), "type", "bridge")
            names.pop(ns, None)
            made.append(f"bridge {ns}/{BRIDGE}")
    for ns in [None, *plan.namespaces]:
        lines = ip_batch(plan, ns)
        if lines:
            run(
                ["ip", *(("-n", ns) if ns else ()), "-batch", "-"],
                input_text="\n".join(lines) + "\n",
            )
    planned = {ipaddress.ip_network(r.dst) for r in plan.routes if r.ns is None}
    for v in plan.veths:
        if v.ns is None:  # the deploy link: drop what an older wiring routed over it
            out = ip(None, "-j", "route", "show", "dev", v.name).stdout
            for dst in stale_routes(json.loads(out or "[]"), planned):
                ip(None, "route", "del", dst, "dev", v.name)
                made.append(f"old route {dst} removed")
    return made


def stale_routes(routes: Sequence[Mapping[str, Any]], planned: set[Any]) -> list[str]:
    """Routes (`ip -j route show dev X`) the plan does not have, except the link's own."""
    return [
        str(r["dst"])
        for r in routes
        if r.get("protocol") != "kernel"
        and r.get("dst") != "default"
        and ipaddress.ip_network(str(r["dst"])) not in planned
    ]


def remove_network(namespaces: Sequence[str], dev: str) -> None:
    present = existing_netns()
    for ns in namespaces:
        if ns in present:
            ip(None, "netns", "del", ns)
    if dev in link_names(None):
        ip(None, "link", "del", dev)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

RUNTIME_TOOLS = ("ip", "systemd-nspawn", "ssh-keygen", "mount", "umount")


def state_file(cluster: str = LEGACY_CLUSTER) -> Path:
    return run_dir(cluster) / "state.json"


def record_state(plan: Plan, lab: Lab) -> None:
    """What `up` made, so `down` can undo it even if the inventory changed since,
    and what other labs must not overlap (its prefixes)."""
    old = read_state(lab.cluster)
    state = {
        "cluster": lab.cluster,
        "inventory": lab.inventory,
        "prefixes": list(lab.prefixes),
        "namespaces": sorted(set(old["namespaces"]) | set(plan.namespaces)),
        "hosts": sorted(set(old["hosts"]) | {h.name for h in lab.all_hosts}),
    }
    run_dir(lab.cluster).mkdir(parents=True, exist_ok=True)
    state_file(lab.cluster).write_text(json.dumps(state, indent=1) + "\n")


def read_state(cluster: str = LEGACY_CLUSTER) -> dict[str, list[str]]:
    try:
        data = json.loads(state_file(cluster).read_text())
        return {"namespaces": list(data["namespaces"]), "hosts": list(data["hosts"])}
    except (OSError, ValueError, KeyError):
        return {"namespaces": [], "hosts": []}


def up_labs() -> list[UpLab]:
    """Every lab whose state file exists (`down` removes it; /run empties at boot)."""
    labs = []
    for path in [RUN_DIR / "state.json", *sorted(RUN_DIR.glob("*/state.json"))]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        cluster = str(data.get("cluster", LEGACY_CLUSTER))
        labs.append(
            UpLab(
                cluster=cluster,
                inventory=str(data.get("inventory") or f"{DEFAULT_INVENTORY} (older lab.py)"),
                # An older lab.py routed the whole lab range to its spine.
                prefixes=tuple(data.get("prefixes") or [str(LAB_SUPERNET)]),
                hosts=tuple(data.get("hosts", [])),
                namespaces=tuple(data.get("namespaces", [])),
                old="prefixes" not in data,
            )
        )
    return labs


def with_known_prefixes(up: UpLab) -> UpLab:
    """An old lab's real prefixes: it routes all of 198.18.0.0/15 from this machine,
    but uses only its inventory's addresses (the only lab before named labs was
    inventories/lab); more specific routes of another lab do not disturb it."""
    if not up.old:
        return up
    try:
        known = load_inventory(str(REPO / DEFAULT_INVENTORY))
    except LabError:
        return up
    return replace(up, prefixes=known.prefixes)


@contextlib.contextmanager
def labs_locked() -> Iterator[None]:
    """Short lock around checking the other labs and recording this one."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    path = RUN_DIR / "labs.lock"
    with open(path, "w") as fh:
        if not lab_packages.wait_for_flock(fh, path, 60.0, "another lab's up"):
            raise LabError(f"{path} is still held after 60s; see `fuser -v {path}`")
        yield


def claim(lab: Lab, plan: Plan) -> None:
    """Refuse a lab that overlaps one that is up, else record it as up."""
    legacy_host = STATE_DIR / lab.cluster / "lower"
    if not _legacy(lab.cluster) and legacy_host.exists():
        raise LabError(
            f"inventory {lab.inventory}: cluster.name '{lab.cluster}' is a host of lab "
            f"'{LEGACY_CLUSTER}' ({legacy_host.parent}); choose another cluster name"
        )
    with labs_locked():
        check_overlap(lab, lab.inventory, [with_known_prefixes(u) for u in up_labs()])
        used = foreign_routes(lab, json.loads(ip(None, "-j", "route", "show").stdout or "[]"))
        if used:
            raise LabError(
                f"inventory {lab.inventory} (lab '{lab.cluster}'): this machine already routes "
                f"{', '.join(used)} inside the lab's prefixes; free them or move the lab"
            )
        record_state(plan, lab)


# Every host's systemd takes inotify instances from root's per-user limit (128 by
# default on Debian): three labs side by side (~20 hosts) run out and a host fails to
# boot with "Too many open files". Raised, never lowered.
INOTIFY_INSTANCES = 1024
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")


def raise_inotify_limit(path: Path = INOTIFY_SYSCTL, want: int = INOTIFY_INSTANCES) -> None:
    if int(path.read_text().strip()) < want:
        path.write_text(f"{want}\n")
        log(f"fs.inotify.max_user_instances raised to {want} (one systemd per lab host)")


def cmd_up(lab: Lab, rootfs_cache: Path) -> int:
    require_root_and_tools(RUNTIME_TOOLS)
    start = time.monotonic()
    cluster = lab.cluster
    with locked(cluster=cluster):
        plan = make_plan(lab)
        claim(lab, plan)
        rootfs = ensure_rootfs(rootfs_cache)
        try:
            mounts = lab_packages.ensure_caches(rootfs, rootfs_key(), rootfs_cache)
        except lab_packages.PackagesError as exc:
            raise LabError(str(exc)) from None
        pubkey = ensure_ssh_key(Path(lab.ssh_key))
        present = existing_netns()
        # A running host whose namespace vanished is stuck in a dead one: restart it.
        for host in lab.all_hosts:
            pid = running_pid(host.name, cluster)
            if pid is not None and host_netns(host.name) not in present:
                log(f"{host.name}: namespace missing, restarting the host")
                stop_pid(pid)
        running = {h.name for h in lab.all_hosts if running_pid(h.name, cluster) is not None}
        made = ensure_network(plan)
        if made:
            log(f"wired: {', '.join(made)}")
        raise_inotify_limit()
        started = []
        for host in lab.all_hosts:
            merged = ensure_overlay(host, rootfs, pubkey, cluster)
            if host.name not in running:
                start_host(host, merged, mounts, cluster)
                started.append(host.name)
            elif not caches_visible(host.name, mounts, cluster):
                log(
                    f"{host.name}: started before the package caches existed and cannot "
                    "see them; `tools/lab.py down` then `up` restarts it with them"
                )
        forget_ssh_masters(lab, [h for h in lab.all_hosts if h.name in started])
        wait_for_ssh(lab.all_hosts, cluster=cluster)
    took = time.monotonic() - start
    what = f"started {', '.join(started)}" if started else "already up"
    log(f"lab '{cluster}': {len(lab.all_hosts)} hosts ready ({what}) in {took:.1f}s")
    changed = bool(started or made)
    print(json.dumps({"changed": changed, "started": started, "seconds": round(took, 2)}))
    return 0


def cmd_down(lab: Lab | None, purge: bool, cluster: str = LEGACY_CLUSTER) -> int:
    require_root_and_tools(("ip", "umount"))
    start = time.monotonic()
    if lab is not None:
        cluster = lab.cluster
    with locked(cluster=cluster):
        state = read_state(cluster)
        hosts = set(state["hosts"])
        namespaces = list(state["namespaces"])
        if lab is not None:
            hosts |= {h.name for h in lab.all_hosts}
            namespaces += [ns for ns in make_plan(lab).namespaces if ns not in namespaces]
        for name in sorted(hosts):
            pid = running_pid(name, cluster)
            if pid is not None:
                stop_pid(pid)
            pid_file(name, cluster).unlink(missing_ok=True)
            remove_cgroups(name)
        for name in sorted(hosts):
            merged = host_dir(name, cluster) / "root"
            if str(merged) in mountpoints():
                run(["umount", str(merged)])
            if purge:
                shutil.rmtree(host_dir(name, cluster), ignore_errors=True)
        remove_network(namespaces, deploy_dev(cluster))
        if lab is not None:
            forget_ssh_masters(lab, lab.all_hosts)
        state_file(cluster).unlink(missing_ok=True)
    took = time.monotonic() - start
    log(f"lab '{cluster}' down in {took:.1f}s" + (" (overlays purged)" if purge else ""))
    return 0


def memory_kib(nspawn_pid: int) -> int | None:
    """Proportional memory of a container's processes (its cgroup-free estimate)."""
    init = container_pid(nspawn_pid)
    if init is None:
        return None
    try:
        target = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return None
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "ns/pid") != target:
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def host_status(lab: Lab) -> list[dict[str, Any]]:
    rows = []
    for host in lab.all_hosts:
        pid = running_pid(host.name, lab.cluster)
        init = container_pid(pid) if pid else None
        rows.append(
            {
                "host": host.name,
                "running": pid is not None,
                "ssh": pid is not None and ssh_answers(host.ip),
                "nspawn_pid": pid,
                "init_pid": init,
                "memory_kib": memory_kib(pid) if pid else None,
            }
        )
    return rows


def cmd_summary(lab: Lab) -> int:
    rows = {r["host"]: r for r in host_status(lab)} if os.geteuid() == 0 else {}
    print(
        f"vrstack lab '{lab.cluster}': {len(lab.hosts)} hosts in {len(lab.racks)} racks, "
        f"joined by {spine_netns(lab.cluster)}"
    )
    print(
        f"deploy link: this machine {deploy_dev(lab.cluster)} {lab.deploy_local_ip} -> "
        f"spine {lab.deploy_spine_ip}; routed there: {', '.join(lab.prefixes)}"
    )
    for rack in lab.racks:
        tor = tor_netns(rack.name, lab.cluster)
        print(
            f"\n{rack.name}: subnet {rack.subnet}, gateway {rack.gateway}, "
            f"ToR netns {tor} ({rack.tor_ip} <-> spine {rack.spine_ip})"
        )
        for host in (h for h in lab.hosts if h.rack == rack.name):
            row = rows.get(host.name, {})
            state = "up" if row.get("ssh") else ("running" if row.get("running") else "down")
            if not rows:
                state = "?"  # only root can see the containers
            print(
                f"  {host.name:<12} {state:<7} {host.ip}/{host.prefixlen} "
                f"lo {host.loopback}  roles: {', '.join(host.roles)}"
            )
            print(f"    ssh -i {lab.ssh_key} {lab.ssh_user}@{host.ip}")
            target = row.get("init_pid") or "PID"
            print(f"    nsenter -t {target} -a   (shell inside; PID from `tools/lab.py status`)")
    if lab.gateway:
        gw = lab.gateway
        state = {True: "up", False: "down"}[bool(rows.get(gw.name, {}).get("ssh"))] if rows else "?"
        print(f"\ngateway {gw.name} {state}: {gw.ip}/32 on a link to the spine")
        print(f"    ssh -i {lab.ssh_key} {lab.ssh_user}@{gw.ip}")
    print_cloud(lab)
    return 0


def print_cloud(lab: Lab) -> None:
    """How to use the cloud, once site.yml has written the admin credentials."""
    openrc = Path.home() / ".local/share/vrstack" / lab.cluster / "openrc"
    api = lab.endpoints.get("api")
    if not openrc.exists() or not api:
        return
    # The fabric model's URLs: https unless cluster.openstack_tls / cluster.sdn_tls is false.
    keystone = lab.endpoints.get("keystone_url")
    print(f"\ncloud: Keystone {keystone}, Nova :8774, Neutron :9696, Glance :9292, noVNC :6080")
    print(f"  SDN config API {lab.endpoints.get('api_url')}", end="")
    if lab.endpoints.get("analytics_url"):
        print(f", analytics and operator page {lab.endpoints['analytics_url']}/", end="")
    print(
        f"\n  the deployment CA (checks every API's certificate): {openrc.parent / 'ca.crt'}",
        end="",
    )
    print(f"\n  admin credentials: {openrc} (secrets beside it, mode 0600)")
    print(f"  source {openrc}")
    print(
        "  client=$(scripts/openstack-venv.sh)/bin/openstack   # or on a controller: /opt/openstack/venv/bin/openstack"
    )
    print(
        "  $client network create demo && $client subnet create --network demo --subnet-range 198.19.10.0/24 demo"
    )
    print(
        "  $client server create --image vrstack-guest --flavor vrstack.tiny --network demo --wait demo1"
    )
    print("  $client console log show demo1    # the guest prints its DHCP address")


def cmd_status(lab: Lab) -> int:
    require_root_and_tools(("ip",))
    rows = host_status(lab)
    for r in rows:
        mem = f"{r['memory_kib'] / 1024:.0f} MiB" if r["memory_kib"] else "-"
        print(
            f"{r['host']:<12} {'up' if r['ssh'] else 'DOWN':<5} "
            f"nspawn {r['nspawn_pid'] or '-'} init {r['init_pid'] or '-'} mem {mem}"
        )
    return 0 if all(r["ssh"] for r in rows) else 1


def cmd_labs() -> int:
    """The labs that are up, with the prefixes each routes from this machine."""
    for up in up_labs():
        print(f"{up.cluster:<12} {len(up.hosts)} hosts  {', '.join(up.prefixes)}  {up.inventory}")
    return 0


def cmd_hold(command: Sequence[str], cluster: str = LEGACY_CLUSTER) -> int:
    """Run a command (molecule, a benchmark) with one lab to itself.

    Other lab.py calls on that lab wait meanwhile; the command's own lab.py
    calls see the variable below and do not wait for the lock their parent holds.
    """
    if not command:
        raise LabError("hold: give a command after `--`")
    with locked(cluster=cluster):
        held = held_labs(os.environ.get(HELD_ENV)) | {cluster}
        env = dict(os.environ, **{HELD_ENV: ",".join(sorted(held))})
        return subprocess.run(list(command), env=env, preexec_fn=_die_with_parent).returncode


def _die_with_parent() -> None:
    """In the held command's child: SIGTERM when `hold` dies. A caller that kills `hold`
    (a test's timeout) must not leave a playbook running on the lab without the lock."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def cluster_name(inventory: str) -> str:
    """`cluster.name` read straight from a fabric file, for `down` when the
    inventory no longer passes the model's checks; `lab` when it cannot be read."""
    try:
        import yaml  # the virtualenv's PyYAML (Ansible's own dependency)

        for path in sorted(Path(inventory).glob("*.y*ml")):
            data = yaml.safe_load(path.read_text())
            if isinstance(data, dict) and data.get("plugin") == "vrstack.cloud.fabric":
                return str(data["cluster"]["name"])
    except (ImportError, OSError, ValueError, KeyError, TypeError):
        pass
    return LEGACY_CLUSTER


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/lab.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "build or repair the lab (idempotent)"),
        ("down", "stop hosts and remove the lab's namespaces and mounts"),
        ("summary", "print hosts, racks, roles, addresses and how to reach them"),
        ("status", "per-host state and memory; exit 1 unless every host answers ssh"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--inventory", default=DEFAULT_INVENTORY, help="fabric inventory dir")
        if name == "up":
            p.add_argument(
                "--rootfs-cache",
                type=Path,
                default=CACHE_DIR,
                help=f"where root file systems are cached (default {CACHE_DIR})",
            )
        if name == "down":
            p.add_argument("--purge", action="store_true", help="also delete per-host overlays")
    sub.add_parser("labs", help="list the labs that are up")
    hold = sub.add_parser("hold", help="run a command holding a lab's lock: hold -- CMD ...")
    hold.add_argument("--lab", default=LEGACY_CLUSTER, help="the lab's cluster name (default: lab)")
    hold.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.command == "hold":
            return cmd_hold(args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd, args.lab)
        if args.command == "labs":
            return cmd_labs()
        if args.command == "down":
            try:
                lab: Lab | None = load_inventory(args.inventory)
            except LabError as exc:  # still tear down what state.json recorded
                log(f"warning: {exc}")
                lab = None
            return cmd_down(lab, args.purge, cluster_name(args.inventory))
        lab = load_inventory(args.inventory)
        if args.command == "up":
            return cmd_up(lab, args.rootfs_cache)
        if args.command == "summary":
            return cmd_summary(lab)
        return cmd_status(lab)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
