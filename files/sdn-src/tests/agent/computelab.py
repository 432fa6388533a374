"""One compute's SDN inside a network namespace the test makes: a config API (SQLite),
the schema transformer, a control node, a userspace `vrouterd --attach-only` and the
`vrstack-agent`, each a real process talking to the others over the namespace's own
loopback. The test process reaches them with sockets opened inside the namespace
(`netns.entered`), and makes and deletes taps there as libvirt would.

Used by tests/agent/test_agent_vif_lifecycle.py (make sdn-test) and by
tests/openstack/test_port_lifecycle.py (the os-vif plugin and the ML2 driver).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from vrstack.datapath.client import DatapathClient, DatapathError
from vrstack.datapath.codec import Obj, Op

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from netns import Proc, http_json, sh, wait_for

SRC = Path(__file__).resolve().parents[2]
VROUTER_SRC = SRC.parent / "vrouter-src"
TOKEN = "lab-admin-token-0123456789"
AGENT_TOKEN = "lab-agent-token-0123456789"  # may write port-state objects only
READER = "lab-reader-token-0123456789"  # the collector's reader token
API, SCHEMA, CONTROL, XMPP, AGENT, COLLECTOR = 8082, 8087, 8083, 5269, 8085, 8081
NAME = "compute1"
JSON = dict[str, Any]


class ComputeLab:
    """`flows`: vrouterd with pkt0 and a shared flow table, the agent deciding flows
    and ageing them; `collector`: a vrstack-collector the agent reports to (every
    second); `agent_extra`: more of the agent's config."""

    def __init__(
        self,
        tmp: Path,
        flows: bool = False,
        collector: bool = False,
        agent_extra: JSON | None = None,
    ) -> None:
        self.flows = flows
        self.collector = collector
        self.agent_extra = agent_extra or {}
        self.dir = tmp
        self.ns = f"vrlab-{os.getpid()}"
        self.port_dir = tmp / "vif-ports"
        self.procs: dict[str, Proc] = {}
        self.env = {**os.environ, "PYTHONPATH": str(SRC)}

    # ---- processes -------------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, self.ns, argv, self.dir / f"{name}.log", self.env).start()
        self.procs[name] = proc
        return proc

    def _service(self, name: str, module: str, config: JSON) -> Proc:
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return self._start(name, [sys.executable, "-m", module, "--config", str(path)])

    def _healthy(self, port: int, timeout: float = 20.0) -> None:
        def ok() -> bool:
            dead = [p for p in self.procs.values() if not p.running]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].tail()}")
            return http_json(self.ns, "127.0.0.1", port, "/health")[0] == 200

        wait_for(ok, timeout, f"/health on port {port}")

    def start(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        self._service(
            "api",
            "vrstack.config.main",
            {
                "listen": {"host": "127.0.0.1", "port": API},
                "store": {"backend": "sqlite", "path": str(self.dir / "config.db")},
                "auth": {"backend": "static", "admin_token": TOKEN, "agent_token": AGENT_TOKEN},
            },
        )
        self._healthy(API)
        api = {"url": f"http://127.0.0.1:{API}", "token": TOKEN}
        self._service("schema", "vrstack.schema.main", {"api": api, "listen": {"port": SCHEMA}})
        self.create("global-config", {"name": "default", "asn": 64512})
        self.create(
            "bgp-router",
            {"name": "ctl1", "address": "127.0.0.1", "asn": 64512, "role": "control-node"},
        )
        self.router = self.create(
            "virtual-router", {"name": NAME, "fabric_address": "198.18.2.11", "datapath": "user"}
        )
        self._healthy(SCHEMA)
        self._service(
            "control",
            "vrstack.control.main",
            {
                "name": "ctl1",
                "api": api,
                "listen": {"host": "127.0.0.1", "port": CONTROL},
                "bgp": {"address": "127.0.0.1", "port": 1179, "connect_retry": 0.5},
                "xmpp": {"host": "127.0.0.1", "port": XMPP, "hold_time": 9},
            },
        )
        self._healthy(CONTROL, 30)
        if self.collector:
            self._service(
                "collector",
                "vrstack.analytics.main",
                {
                    "listen": {"host": "127.0.0.1", "port": COLLECTOR},
                    "store": {"path": str(self.dir / "analytics.db")},
                    "auth": {"backend": "static", "admin_token": TOKEN, "reader_token": READER},
                },
            )
            self._healthy(COLLECTOR)
        subprocess.run(["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd"], check=True)
        self.start_vrouterd()
        self.start_agent()

    def start_vrouterd(self) -> None:
        sock = self.dir / "control.sock"
        sock.unlink(missing_ok=True)
        binary = str(VROUTER_SRC / "build" / "vrouterd")
        extra = []
        if self.flows:
            extra = ["--pkt0-dir", str(self.dir), "--flow-file", str(self.dir / "flows")]
            extra += ["--flows", "4096"]
        self._start("vrouterd", [binary, "--control", str(sock), "--attach-only", *extra])
        wait_for(sock.exists, 10, "vrouterd's control socket")

    def start_agent(self) -> None:
        config = {
            "name": NAME,
            "controls": [f"127.0.0.1:{XMPP}"],
            "fabric": {"address": "198.18.2.11"},
            "datapath": {"socket": str(self.dir / "control.sock")},
            "ports_file": str(self.dir / "ports.json"),
            "vif_ports_dir": str(self.port_dir),
            "config_api": {"url": f"http://127.0.0.1:{API}", "token": AGENT_TOKEN},
            "listen": {"host": "127.0.0.1", "port": AGENT},
            "tap_poll": 0.5,
            "ping_interval": 1,
            "retry": 0.3,
            **self.agent_extra,
        }
        if self.collector:
            url = f"http://127.0.0.1:{COLLECTOR}"
            config["analytics"] = {"url": url, "token": TOKEN, "source": NAME, "interval": 1}
            config["analytics"].update(self.agent_extra.get("analytics", {}))
        if self.flows:
            config["datapath"]["pkt0_dir"] = str(self.dir)
            config["datapath"]["flow_file"] = str(self.dir / "flows")
        self._service("agent", "vrstack.agent.main", config)
        self._healthy(AGENT)

    def stop_agent(self) -> None:
        assert self.procs.pop("agent").stop() == 0, "the agent must stop cleanly"

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.tail(30)}" for n, p in self.procs.items())

    # ---- the config API and the agent ----------------------------------------------

    def call(self, port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http_json(self.ns, "127.0.0.1", port, path, method, body, {"X-Auth-Token": TOKEN})

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(API, method, path, body)
        if status == 404 and method == "GET":
            return None
        assert status < 400, f"config API {method} {path}: HTTP {status}: {data}"
        return data

    def create(self, plural_type: str, body: JSON) -> JSON:
        return dict(self.api("POST", f"/{plural_type}s", body))

    def agent(self, path: str) -> Any:
        status, data = self.call(AGENT, "GET", path)
        assert status == 200, f"agent {path}: HTTP {status}: {data}"
        return data

    def network_and_port(self, cidr: str = "198.18.70.0/24") -> tuple[JSON, JSON]:
        """A project, a network and a port bound to this compute (what ML2 writes)."""
        project = self.create("project", {"name": f"p-{uuid.uuid4().hex[:8]}"})
        net = self.create(
            "virtual-network",
            {"name": "blue", "parent_uuid": project["uuid"], "subnets": [{"cidr": cidr}]},
        )
        vmi = self.create(
            "virtual-machine-interface",
            {
                "name": "vm1-eth0",
                "parent_uuid": project["uuid"],
                "virtual_network": net["uuid"],
                "virtual_router": self.router["uuid"],
                "device_owner": "compute:nova",
            },
        )
        return net, vmi

    def interface(self, port_id: str) -> JSON | None:
        found = [i for i in self.agent("/introspect/interfaces") if i["id"] == port_id]
        return found[0] if found else None

    def port_state(self, port_id: str) -> JSON | None:
        state = self.api("GET", f"/port-states/{port_id}")
        return dict(state) if state else None

    def vif(self, port_id: str) -> JSON | None:
        """The port's vif as vrouterd holds it (a unix socket: reachable from any
        network namespace), None without one."""
        iface = self.interface(port_id)
        if iface is None or iface["vif"] is None:
            return None
        with DatapathClient(str(self.dir / "control.sock")) as c:
            try:
                return dict(c.call(Op.GET, Obj.VIF, VIF_IDX=iface["vif"]).attrs)
            except DatapathError:
                return None

    # ---- taps, as libvirt makes them --------------------------------------------------

    def add_tap(self, name: str) -> int:
        sh("ip", "-n", self.ns, "tuntap", "add", "mode", "tap", "name", name)
        sh("ip", "-n", self.ns, "link", "set", name, "up")
        return self.ifindex(name)

    def del_tap(self, name: str) -> None:
        sh("ip", "-n", self.ns, "link", "del", name)

    def ifindex(self, name: str) -> int:
        out = sh("ip", "-n", self.ns, "-o", "link", "show", name, check=False)
        return int(out.stdout.split(":", 1)[0]) if out.returncode == 0 else 0
