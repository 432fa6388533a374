"""The whole SDN on network namespaces, as a deploy would run it.

    fab   bridge br0 = the rack: every host's eth0 is a port; br0 itself (198.18.0.1)
          is the fabric gateway every tunnel is sent to (it routes, like a ToR)
    cfg   vrstack-api (SQLite) + vrstack-schema                      198.18.0.2
    ctl1  vrstack-control                                           198.18.0.3
    ctl2  vrstack-control                                           198.18.0.4
    cmp1  vrouterd (fabric vif = eth0) + vrstack-agent              198.18.0.11
    cmp2  vrouterd + vrstack-agent                                  198.18.0.12
    vm1..vm4  one namespace per VM; a veth pair to its compute, whose side is the port's tap

Each service is its own process started with `python -m` and a config file; every
object is created through the config API; ports reach the agents with `vrstack-port`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from netns import Proc, entered, http_json, ip, nsexec, sh, sysctl, wait_for

from vrstack.config.model import RESOURCES
from vrstack.datapath.client import DatapathClient, DatapathError
from vrstack.datapath.codec import Err, Obj, Op

SRC = Path(__file__).resolve().parents[2]  # files/sdn-src
VROUTER_SRC = SRC.parent / "vrouter-src"
HERE = Path(__file__).resolve().parent
TOKEN = "e2e-admin-token-0123456789"
ASN = 64512
GATEWAY_IP, GATEWAY_MAC = "198.18.0.1", "02:00:c6:12:00:01"
API_PORT, XMPP_PORT, BGP_PORT, HTTP_PORT = 8082, 5269, 179, 8085
NETWORKS = {"red": "198.18.10.0/24", "blue": "198.18.20.0/24"}
DNS = {"red": "198.18.10.2", "blue": "198.18.20.2"}  # outside the allocation pools
LEASE_TIME = 900
TUNNEL_FLAG = {"MPLSoGRE": 0x02, "MPLSoUDP": 0x04, "VXLAN": 0x08}
VM_MTU = 1450


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    mac: str
    dir: Path
    procs: dict[str, Proc] = field(default_factory=dict)


@dataclass
class Vm:
    name: str
    ns: str
    compute: Host
    network: str
    port: dict[str, Any]  # the virtual-machine-interface object from the API
    instance: str  # its routing instance, project:network:instance
    lease: dict[str, str] = field(default_factory=dict)

    @property
    def ip(self) -> str:
        return str(self.port["fixed_ips"][0]["ip_address"])

    @property
    def mac(self) -> str:
        return str(self.port["mac_address"])

    @property
    def tap(self) -> str:  # named as Nova names it: "tap" + the port id's first 11
        return "tap" + self.port["uuid"][:11]


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.prefix = f"vre2e-{os.getpid() % 100000}"
        self.env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.namespaces: list[str] = []
        self.fab = f"{self.prefix}-fab"
        self.hosts = {
            name: Host(name, f"{self.prefix}-{name}", ip, mac, tmp / name)
            for name, ip, mac in (
                ("cfg", "198.18.0.2", "02:00:c6:12:00:02"),
                ("ctl1", "198.18.0.3", "02:00:c6:12:00:03"),
                ("ctl2", "198.18.0.4", "02:00:c6:12:00:04"),
                ("cmp1", "198.18.0.11", "02:00:c6:12:00:0b"),
                ("cmp2", "198.18.0.12", "02:00:c6:12:00:0c"),
            )
        }
        self.vms: dict[str, Vm] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.instances: dict[str, str] = {}  # network name -> routing instance name
        self.vrouterd = VROUTER_SRC / "build" / "vrouterd"

    # ---- namespaces and wiring ----------------------------------------------------

    def add_netns(self, ns: str) -> None:
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        ip(ns, "link set lo up")
        # No IPv6: no router solicitations or DAD on the captured fabric.
        sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")

    def wire(self) -> None:
        self.add_netns(self.fab)
        ip(self.fab, "link add br0 type bridge")
        ip(self.fab, f"link set br0 address {GATEWAY_MAC} up")
        ip(self.fab, f"addr add {GATEWAY_IP}/24 dev br0")
        # The gateway routes tunnels back out of br0: no redirects to the computes.
        sysctl(
            self.fab,
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.br0.send_redirects=0",
        )
        for h in self.hosts.values():
            h.dir.mkdir()
            self.add_netns(h.ns)
            port = f"p-{h.name}"
            ip(self.fab, f"link add {port} type veth peer name eth0 netns {h.ns}")
            ip(self.fab, f"link set {port} master br0 up")
            ip(h.ns, f"link set eth0 address {h.mac} up")
            ip(h.ns, f"addr add {h.ip}/24 dev eth0")

    # ---- processes ----------------------------------------------------------------

    def start(self, host: Host, name: str, argv: list[str], ns: str = "") -> Proc:
        """Run `argv` in `ns` (default: the host's namespace), logged in the host's dir."""
        proc = Proc(name, ns or host.ns, argv, host.dir / f"{name}.log", self.env).start()
        host.procs[name] = proc
        return proc

    def service(self, host: Host, name: str, module: str, config: dict[str, Any]) -> Proc:
        path = host.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return self.start(host, name, [sys.executable, "-m", module, "--config", str(path)])

    def healthy(self, host: Host, port: int, ip: str = "127.0.0.1", timeout: float = 20) -> None:
        def ok() -> bool:
            dead = [p for p in host.procs.values() if not p.running]
            if dead:
                raise RuntimeError(f"{dead[0].name} on {host.name} exited:\n{dead[0].tail()}")
            return http_json(host.ns, ip, port, "/health")[0] == 200

        wait_for(ok, timeout, f"{host.name}: /health on {ip}:{port}")

    def start_control(self, name: str) -> None:
        h = self.hosts[name]
        config = {
            "name": name,
            "api": {"url": self.api_url, "token": TOKEN},
            "listen": {"host": "127.0.0.1", "port": 8083},
            "bgp": {"address": h.ip, "port": BGP_PORT, "connect_retry": 0.5},
            "xmpp": {"host": h.ip, "port": XMPP_PORT, "hold_time": 9},
        }
        self.service(h, "control", "vrstack.control.main", config)

    def start_compute(self, name: str, labels: tuple[int, int]) -> None:
        h = self.hosts[name]
        sock = h.dir / "control.sock"
        # --attach-only, as on a Nova compute: a tap deleted while the agent still names
        # it must not come back as vrouterd's own TAP (the next veth would clash).
        argv = f"{self.vrouterd} --control {sock} --pkt0-dir {h.dir} --flow-file {h.dir}/flows"
        argv += " --attach-only"
        self.start(h, "vrouterd", [*argv.split(), "--flows", "4096"])
        wait_for(sock.exists, 10, f"{name}: vrouterd's control socket")
        config = {
            "name": name,
            "controls": [f"{self.hosts[c].ip}:{XMPP_PORT}" for c in ("ctl1", "ctl2")],
            "fabric": {
                "address": h.ip,
                "mac": h.mac,
                "gateway_mac": GATEWAY_MAC,
                "interface": "eth0",
            },
            "datapath": {
                "socket": str(sock),
                "pkt0_dir": str(h.dir),
                "flow_file": str(h.dir / "flows"),
            },
            "ports_file": str(h.dir / "ports.json"),
            "labels": {"start": labels[0], "end": labels[1]},
            "listen": {"host": "127.0.0.1", "port": HTTP_PORT},
            "ping_interval": 1,  # a node gone silent is noticed within 4 s
            "retry": 0.3,
        }
        self.service(h, "agent", "vrstack.agent.main", config)

    # ---- talking to the services --------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://{self.hosts['cfg'].ip}:{API_PORT}"

    def api(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        cfg, auth = self.hosts["cfg"], {"X-Auth-Token": TOKEN, **headers}
        status, data = http_json(cfg.ns, cfg.ip, API_PORT, path, method, body, auth)
        if status >= 400:
            raise AssertionError(f"config API {method} {path}: HTTP {status}: {data}")
        return data

    def create(self, rtype: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.api("POST", f"/{RESOURCES[rtype].plural}", body))

    def update(self, rtype: str, obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
        path = f"/{RESOURCES[rtype].plural}/{obj['uuid']}"
        current = self.api("GET", path)
        body = {**current, **changes}
        return dict(self.api("PUT", path, body, **{"If-Match": f'"{current["version"]}"'}))

    def agent(self, cmp: str, path: str) -> Any:
        status, data = http_json(self.hosts[cmp].ns, "127.0.0.1", HTTP_PORT, path)
        assert status == 200, f"{cmp} agent {path}: HTTP {status}: {data}"
        return data

    def control(self, ctl: str, path: str) -> Any:
        status, data = http_json(self.hosts[ctl].ns, "127.0.0.1", 8083, path)
        assert status in (200, 503), f"{ctl} {path}: HTTP {status}: {data}"
        return data

    def port_cli(self, vm: Vm, *args: str) -> str:
        """`vrstack-port` on the VM's compute, as Nova's vif plugin runs it."""
        cli = [
            sys.executable,
            "-m",
            "vrstack.agent.portcli",
            "--agent",
            f"http://127.0.0.1:{HTTP_PORT}",
        ]
        res = nsexec(vm.compute.ns, *cli, *args, check=False, env=self.env)
        assert res.returncode == 0, f"vrstack-port {' '.join(args)}: {res.stdout}{res.stderr}"
        return res.stdout

    def dp_route(self, cmp: str, vm: Vm, prefix: str) -> dict[str, Any] | None:
        """The route for `prefix` in the datapath of `cmp`, in the VRF of `vm`'s network."""
        vrfs = {v["instance"]: v["vrf"] for v in self.agent(cmp, "/introspect/vrfs")}
        if vm.instance not in vrfs:
            return None
        net = ipaddress.ip_network(prefix)
        with DatapathClient(str(self.hosts[cmp].dir / "control.sock")) as c:
            key = {
                "RT_VRF": vrfs[vm.instance],
                "RT_FAMILY": 1,
                "RT_PREFIX": net.network_address,
                "RT_PLEN": net.prefixlen,
            }
            for _ in range(5):  # the agent may replace the nexthop between our two reads
                try:
                    r = c.call(Op.GET, Obj.ROUTE, **key).attrs
                except DatapathError as exc:
                    if exc.code == -Err.ENOENT:
                        return None
                    raise
                with contextlib.suppress(DatapathError):
                    return {**r, "nh": c.call(Op.GET, Obj.NH, NH_ID=r["RT_NH"]).attrs}
        raise AssertionError(f"{cmp}: route {prefix} keeps changing")

    # ---- the VMs ------------------------------------------------------------------

    def attach(self, vm: Vm) -> None:
        """Plug the port (vrstack-port), then make its tap, and take a DHCP lease."""
        args = f"--id {vm.port['uuid']} --instance {vm.instance} --mac {vm.mac} --ip {vm.ip}"
        self.port_cli(
            vm, "add", *args.split(), "--network", vm.port["virtual_network"], "--tap", vm.tap
        )
        # As libvirt does, after the plug: the compute side of a veth pair is the port's
        # tap, which the agent attaches once it is there; the VM has the other side,
        # under the same name. A pair left from an earlier attach goes first.
        cns = vm.compute.ns
        sh("ip", "-n", vm.ns, "link", "del", vm.tap, check=False)
        # The VM's MTU is the overlay's: the fabric's 1500 less the largest encapsulation
        # (VXLAN, 50 bytes), as Neutron gives an overlay network.
        ip(cns, f"link add {vm.tap} mtu {VM_MTU} type veth peer name {vm.tap} netns {vm.ns}")
        ip(cns, f"link set {vm.tap} up")
        ip(vm.ns, f"link set {vm.tap} address {vm.mac} mtu {VM_MTU} up")
        # Checksum and segmentation offload on, as a virtio-net guest sends: its TCP
        # leaves checksums undone and sends 64 KiB frames, which vrouterd finishes and cuts.
        on = nsexec(vm.ns, sys.executable, str(HERE / "vmtool.py"), "offload", vm.tap)
        assert on.stdout.split() == ["txcsum=1", "sg=1", "tso=1", "gso=1"], on.stdout

        def attached() -> bool:
            up = self.agent(vm.compute.name, "/introspect/interfaces")
            return any(i["id"] == vm.port["uuid"] and i["status"] == "up" for i in up)

        wait_for(attached, 10, f"{vm.name}: {vm.tap} attached on {vm.compute.name}")

    def dhcp(self, vms: list[Vm]) -> None:
        """Run busybox udhcpc in every VM at once; record each lease."""
        procs = {}
        for vm in vms:
            lease = vm.compute.dir / f"{vm.name}.lease"
            lease.unlink(missing_ok=True)
            env = {**self.env, "VRE2E_LEASE": str(lease)}
            # -q: exit once bound; -n: fail after 8 discovers 1 s apart
            udhcpc = f"busybox udhcpc -i {vm.tap} -f -q -n -t 8 -T 1 -s {HERE}/udhcpc.script"
            argv = ["ip", "netns", "exec", vm.ns, *udhcpc.split()]
            procs[vm.name] = (
                subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
                lease,
            )
        for name, (p, lease) in procs.items():
            out, _ = p.communicate(timeout=20)
            assert p.returncode == 0 and lease.exists(), (
                f"{name}: no DHCP lease (udhcpc exit {p.returncode}):\n{out.decode()}"
            )
            pairs = (line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)
            self.vms[name].lease = dict(pairs)

    # ---- the fabric -----------------------------------------------------------------

    def capture(self) -> socket.socket:
        """A packet socket on the fabric gateway's bridge (every tunnel crosses it)."""
        with entered(self.fab):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
            s.bind(("br0", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        return s

    # ---- whole stack ----------------------------------------------------------------

    def up(self) -> None:
        t0 = time.monotonic()
        sh("make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd", timeout=300)
        self.wire()
        cfg = self.hosts["cfg"]
        self.service(
            cfg,
            "api",
            "vrstack.config.main",
            {
                "listen": {"host": cfg.ip, "port": API_PORT},
                "store": {"backend": "sqlite", "path": str(cfg.dir / "config.db")},
                "auth": {"backend": "static", "admin_token": TOKEN},
            },
        )
        self.healthy(cfg, API_PORT, cfg.ip)
        self.service(
            cfg,
            "schema",
            "vrstack.schema.main",
            {
                "api": {"url": self.api_url, "token": TOKEN},
                "listen": {"host": "127.0.0.1", "port": 8087},
            },
        )
        # What the deploy's roles register: the cluster, the control nodes, the computes.
        self.create(
            "global-config",
            {
                "name": "default",
                "asn": ASN,
                "encapsulation_priority": ["MPLSoUDP", "MPLSoGRE", "VXLAN"],
            },
        )
        for c in ("ctl1", "ctl2"):
            self.create(
                "bgp-router",
                {
                    "name": c,
                    "address": self.hosts[c].ip,
                    "asn": ASN,
                    "role": "control-node",
                    "port": BGP_PORT,
                    "hold_time": 9,
                },
            )
        routers = {
            c: self.create(
                "virtual-router",
                {"name": c, "fabric_address": self.hosts[c].ip, "datapath": "user"},
            )
            for c in ("cmp1", "cmp2")
        }
        self.healthy(cfg, 8087)
        for c in ("ctl1", "ctl2"):
            self.start_control(c)
        self.tenant()
        placement = (
            ("vm1", "cmp1", "red"),
            ("vm2", "cmp1", "red"),
            ("vm3", "cmp2", "red"),
            ("vm4", "cmp2", "blue"),
        )
        project = self.api("GET", "/projects?name=demo")["items"][0]
        for name, cmp, net in placement:
            port = self.create(
                "virtual-machine-interface",
                {
                    "name": f"{name}-eth0",
                    "parent_uuid": project["uuid"],
                    "virtual_network": self.networks[net]["uuid"],
                    "virtual_router": routers[cmp]["uuid"],
                    "device_owner": "compute:nova",
                    "device_id": name,
                },
            )
            vm = Vm(name, f"{self.prefix}-{name}", self.hosts[cmp], net, port, self.instances[net])
            self.vms[name] = vm
            self.add_netns(vm.ns)
        for c in ("ctl1", "ctl2"):
            self.healthy(self.hosts[c], 8083, timeout=30)
        self.start_compute("cmp1", (1000, 1999))
        self.start_compute("cmp2", (2000, 2999))
        for c in ("cmp1", "cmp2"):
            self.healthy(self.hosts[c], HTTP_PORT)
        for vm in self.vms.values():
            self.attach(vm)
        self.wait_network_config(list(self.vms.values()))
        self.dhcp(list(self.vms.values()))
        for vm in self.vms.values():
            argv = [sys.executable, str(HERE / "vmtool.py"), "serve", "8080", "9090"]
            self.start(vm.compute, f"{vm.name}-serve", argv, ns=vm.ns)
        self.setup_seconds = time.monotonic() - t0

    def tenant(self) -> None:
        """Two networks and a policy between them (ICMP and TCP 8080 only)."""
        project = self.create("project", {"name": "demo"})
        for name, cidr in NETWORKS.items():
            pool = {"start": cidr.replace(".0/24", ".10"), "end": cidr.replace(".0/24", ".99")}
            sub = {
                "cidr": cidr,
                "allocation_pools": [pool],
                "dhcp": {
                    "dns_servers": [DNS[name]],
                    "lease_time": LEASE_TIME,
                    "domain_name": f"{name}.e2e.test",
                },
            }
            self.networks[name] = self.create(
                "virtual-network", {"name": name, "parent_uuid": project["uuid"], "subnets": [sub]}
            )
        red, blue = ({"network": self.networks[n]["uuid"]} for n in ("red", "blue"))
        policy = self.create(
            "network-policy",
            {
                "name": "red-blue",
                "parent_uuid": project["uuid"],
                "rules": [
                    {"action": "pass", "protocol": "icmp", "source": red, "destination": blue},
                    {
                        "action": "pass",
                        "protocol": "tcp",
                        "source": red,
                        "destination": blue,
                        "destination_ports": [8080, 8080],
                    },
                ],
            },
        )
        for name, net in self.networks.items():
            self.networks[name] = self.update(
                "virtual-network", net, network_policies=[policy["uuid"]]
            )

        def instance(name: str) -> str:
            uuid = self.networks[name]["uuid"]
            items = self.api("GET", f"/routing-instances?parent_uuid={uuid}")["items"]
            return ":".join(items[0]["fq_name"]) if items else ""

        for name in NETWORKS:
            self.instances[name] = wait_for(lambda n=name: instance(n), 15, f"{name}'s instance")

    def wait_network_config(self, vms: list[Vm]) -> None:
        """Until each agent has its VMs' network config (the node pushes it: VNI, DHCP)."""

        def has_vni(vm: Vm) -> bool:
            vrfs = self.agent(vm.compute.name, "/introspect/vrfs")
            return any(v["instance"] == vm.instance and v["vni"] for v in vrfs)

        for vm in vms:
            wait_for(lambda vm=vm: has_vni(vm), 20, f"{vm.name}: network config on its agent")

    def logs(self) -> str:
        out = []
        for h in self.hosts.values():
            for p in h.procs.values():
                out.append(f"--- {h.name}/{p.name} ({p.log})\n{p.tail(8)}")
        return "\n".join(out)

    def down(self) -> None:
        """Stop every process (newest first) and delete every namespace we made."""
        procs = [p for h in self.hosts.values() for p in h.procs.values()]
        for p in reversed(procs):
            p.stop(signal.SIGTERM, timeout=5)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
