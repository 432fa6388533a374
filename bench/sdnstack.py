"""The SDN processes the issue 5 benchmarks start: config API (SQLite), schema
transformer, one control node, and agents each on its own userspace `vrouterd`.

Everything listens on loopback or unix sockets in one work directory; `Stack.stop`
ends every process it started, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "files" / "sdn-src"
sys.path.insert(0, str(SRC))

from vrstack.config.client import ConfigClient  # noqa: E402
from vrstack.config.testing import ADMIN_TOKEN, Daemon, free_port  # noqa: E402

VROUTER_SRC = ROOT / "files" / "vrouter-src"
ASN = 64512


def build_datapath() -> Path:
    """Build `vrouterd` and `vrbench` (quick when up to date); returns the build dir."""
    subprocess.run(
        ["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd", "build/vrbench"], check=True
    )
    return VROUTER_SRC / "build"


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise SystemExit(f"not within {timeout:.0f}s: {what}")


class Vrouterd:
    """A userspace datapath: control socket (and pkt0, flow file) in its own directory."""

    def __init__(self, workdir: Path, name: str, pkt0: bool = False, flows: int = 0) -> None:
        self.dir = workdir / name
        self.dir.mkdir()
        self.sock = self.dir / "control.sock"
        self.flow_file = self.dir / "flows" if pkt0 else None
        args = ["--control", str(self.sock)]
        if pkt0:
            args += ["--pkt0-dir", str(self.dir), "--flow-file", str(self.flow_file)]
        if flows:
            args += ["--flows", str(flows)]
        self.log = open(self.dir / "vrouterd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(VROUTER_SRC / "build" / "vrouterd"), *args], stderr=self.log
        )
        for _ in range(250):
            if self.sock.exists():
                return
            time.sleep(0.02)
        raise SystemExit(f"vrouterd {name} did not start: see {self.dir / 'vrouterd.log'}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Stack:
    """Every process of a run; `profile` runs the Python services under cProfile."""

    def __init__(self, workdir: Path, profile: bool = False) -> None:
        self.workdir = workdir
        self.profile = profile
        self.daemons: list[Daemon] = []
        self.vrouters: list[Vrouterd] = []
        self.api_url = ""
        self.xmpp_port = 0

    def daemon(self, module: str, name: str, config: dict[str, Any]) -> Daemon:
        # Info level: Daemon finds the port in the "listening" line; nothing logs per port.
        prof = str(self.workdir / f"{name}.prof") if self.profile else ""
        d = Daemon(module, {**config, "log": {"level": "info"}}, self.workdir, name, prof)
        self.daemons.append(d)
        d.start(timeout=60)
        return d

    async def start_control_plane(self, client_cb: Callable[[ConfigClient], Awaitable[Any]]) -> Any:
        """API, schema transformer and control node; `client_cb` creates the config
        (after the global-config) before the control node starts. Returns its result."""
        api = self.daemon(
            "vrstack.config.main",
            "api",
            {
                "listen": {"host": "127.0.0.1", "port": 0},
                "store": {"backend": "sqlite", "path": str(self.workdir / "config.db")},
                "auth": {"admin_token": ADMIN_TOKEN},
            },
        )
        self.api_url = api.url
        conf = {"url": api.url, "token": ADMIN_TOKEN}
        self.daemon("vrstack.schema.main", "schema", {"api": conf, "listen": {"port": 0}})
        async with ConfigClient(api.url, ADMIN_TOKEN) as c:
            await c.create("global-config", {"name": "default", "asn": ASN})
            result = await client_cb(c)
        ctl = self.daemon(
            "vrstack.control.main",
            "control",
            {
                "name": "ctl1",
                "api": conf,
                "listen": {"host": "127.0.0.1", "port": 0},
                "bgp": {"address": "127.0.0.1", "port": free_port()},
                "xmpp": {"host": "127.0.0.1", "port": 0},
            },
        )
        async with aiohttp.ClientSession() as http, http.get(ctl.url + "/introspect") as r:
            self.xmpp_port = (await r.json())["xmpp_port"]
        return result

    def agent(
        self, name: str, address: str, labels: int, pkt0: bool = False, **extra: Any
    ) -> tuple[Daemon, Vrouterd]:
        dp = Vrouterd(self.workdir, name, pkt0=pkt0, flows=extra.pop("flows", 0))
        self.vrouters.append(dp)
        datapath: dict[str, Any] = {"socket": str(dp.sock)}
        if pkt0:
            datapath |= {"pkt0_dir": str(dp.dir), "flow_file": str(dp.flow_file)}
        d = self.daemon(
            "vrstack.agent.main",
            f"agent-{name}",
            {
                "name": name,
                "controls": [f"127.0.0.1:{self.xmpp_port}"],
                "fabric": {"address": address},
                "datapath": datapath,
                "ports_file": str(self.workdir / f"{name}-ports.json"),
                "labels": {"start": labels, "end": labels + 999},
                "listen": {"host": "127.0.0.1", "port": 0},
                **extra,
            },
        )
        return d, dp

    def stop(self) -> None:
        for d in reversed(self.daemons):
            if d.proc is not None and d.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    d.terminate()
                d.kill()
        for v in self.vrouters:
            v.stop()


async def instance_of(c: ConfigClient, net: dict[str, Any]) -> str:
    """The routing instance name the schema transformer derives for a network."""

    async def ri() -> Any:
        ris, _ = await c.list_all("routing-instance", parent_uuid=net["uuid"])
        return ris[0] if ris else None

    found = await wait_for(ri, 60, f"the routing instance of {net['name']}")
    return ":".join(found["fq_name"])


async def healthy(http: aiohttp.ClientSession, urls: list[str], timeout: float = 60) -> None:
    """Wait until every daemon's /health answers 200."""

    async def check() -> bool:
        for url in urls:
            async with http.get(url + "/health") as r:
                if r.status != 200:
                    return False
        return True

    await wait_for(check, timeout, "every agent's control session")


def fabric_address(i: int) -> str:
    return str(ipaddress.IPv4Address("198.19.0.10") + i)
