#!/usr/bin/env python3
"""Convergence: a port created in the config API -> its route in a remote agent's datapath.

Real processes on loopback and unix sockets (no namespaces needed): `vrstack-api` on
SQLite, `vrstack-schema`, one `vrstack-control`, and agents (`vrstack-agent`) each on its
own userspace `vrouterd`. One agent, the observer, has a single port in the network, so
it subscribes to the network's routing instance; the ports under test go to the other
agents ("sources"; a `vrouterd` holds at most 254 port vifs, so --ports 1000 uses four).

Each port, one at a time, goes the way Neutron and Nova's vif plugin send it: created in
the API (`virtual-machine-interface` bound to its source's `virtual-router`), then added
on that agent's port API. The time counted ends when the observer's datapath answers a
route GET for the port's /32 (polled over the datapath's control socket). Baseline in the
same run: the time until the same port is read back from the API's watch feed, the first
hop every consumer of the config takes.

    .venv/bin/python bench/convergence.py [--ports 1000] [--timeout 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "files" / "sdn-src"
sys.path.insert(0, str(SRC))

from vrstack.config.client import ConfigClient  # noqa: E402
from vrstack.config.testing import ADMIN_TOKEN, Daemon, free_port  # noqa: E402
from vrstack.datapath.client import DatapathClient, DatapathError  # noqa: E402
from vrstack.datapath.codec import Obj, Op  # noqa: E402

VROUTER_SRC = ROOT / "files" / "vrouter-src"
PORTS_PER_SOURCE = 250  # vrouterd: vifs 2..255 for ports
NET = ipaddress.ip_network("198.18.0.0/20")
FABRIC = int(ipaddress.IPv4Address("198.19.0.10"))
ASN = 64512


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Vrouterd:
    """A userspace datapath on a unix control socket in its own directory."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.dir = workdir / name
        self.dir.mkdir()
        self.sock = self.dir / "control.sock"
        self.log = open(self.dir / "vrouterd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(VROUTER_SRC / "build" / "vrouterd"), "--control", str(self.sock)],
            stderr=self.log,
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
    """Every process of the run, started in order and stopped in reverse."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.daemons: list[Daemon] = []
        self.vrouters: list[Vrouterd] = []

    def daemon(self, module: str, name: str, config: dict[str, Any]) -> Daemon:
        # Info level: Daemon finds the port in the "listening" line; nothing logs per port.
        d = Daemon(module, {**config, "log": {"level": "info"}}, self.workdir, name)
        d.start(timeout=60)
        self.daemons.append(d)
        return d

    def agent(self, name: str, address: str, control_port: int, labels: int) -> tuple[Daemon, Path]:
        dp = Vrouterd(self.workdir, name)
        self.vrouters.append(dp)
        d = self.daemon(
            "vrstack.agent.main",
            f"agent-{name}",
            {
                "name": name,
                "controls": [f"127.0.0.1:{control_port}"],
                "fabric": {"address": address},
                "datapath": {"socket": str(dp.sock)},
                "ports_file": str(self.workdir / f"{name}-ports.json"),
                "labels": {"start": labels, "end": labels + 999},
                "listen": {"host": "127.0.0.1", "port": 0},
            },
        )
        return d, dp.sock

    def stop(self) -> None:
        for d in reversed(self.daemons):
            if d.proc is not None and d.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    d.terminate()
                d.kill()
        for v in self.vrouters:
            v.stop()


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise SystemExit(f"not within {timeout:.0f}s: {what}")


class FeedWatcher:
    """Follows the API's watch feed and notes when each port uuid first appears."""

    def __init__(self, client: ConfigClient, since: int) -> None:
        self.client = client
        self.since = since
        self.seen: dict[str, float] = {}
        self.arrived = asyncio.Event()

    async def run(self) -> None:
        while True:
            events, rev = await self.client.watch(
                self.since, timeout=30, types=["virtual-machine-interface"]
            )
            now = time.perf_counter()
            for ev in events:
                self.seen.setdefault(ev["uuid"], now)
            self.since = max(self.since, rev)
            if events:
                self.arrived.set()


def dp_has(client: DatapathClient, vrf: int, ip: str) -> bool:
    try:
        client.call(Op.GET, Obj.ROUTE, RT_VRF=vrf, RT_FAMILY=1, RT_PLEN=32,
                    RT_PREFIX=ipaddress.IPv4Address(ip))  # fmt: skip
    except DatapathError:
        return False
    return True


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    subprocess.run(["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd"], check=True)
    stack = Stack(workdir)
    try:
        api = stack.daemon(
            "vrstack.config.main",
            "api",
            {
                "listen": {"host": "127.0.0.1", "port": 0},
                "store": {"backend": "sqlite", "path": str(workdir / "config.db")},
                "auth": {"admin_token": ADMIN_TOKEN},
            },
        )
        async with ConfigClient(api.url, ADMIN_TOKEN) as c:
            await c.create("global-config", {"name": "default", "asn": ASN})
            project = await c.create("project", {"name": "bench"})
            net = await c.create(
                "virtual-network",
                {"name": "blue", "parent_uuid": project["uuid"], "subnets": [{"cidr": str(NET)}]},
            )
            api_conf = {"url": api.url, "token": ADMIN_TOKEN}
            stack.daemon(
                "vrstack.schema.main",
                "schema",
                {"api": api_conf, "listen": {"host": "127.0.0.1", "port": 0}},
            )

            async def instance() -> Any:
                ris, _ = await c.list_all("routing-instance", parent_uuid=net["uuid"])
                return ris[0] if ris else None

            ri = await wait_for(instance, 60, "the schema transformer's routing instance")
            inst = ":".join(ri["fq_name"])
            ctl = stack.daemon(
                "vrstack.control.main",
                "control",
                {
                    "name": "ctl1",
                    "api": api_conf,
                    "listen": {"host": "127.0.0.1", "port": 0},
                    "bgp": {"address": "127.0.0.1", "port": free_port()},
                    "xmpp": {"host": "127.0.0.1", "port": 0},
                },
            )
            async with aiohttp.ClientSession() as http:
                async with http.get(ctl.url + "/introspect") as r:
                    xmpp_port = (await r.json())["xmpp_port"]

                n_sources = max(1, -(-args.ports // PORTS_PER_SOURCE))
                names = ["observer"] + [f"source{i}" for i in range(n_sources)]
                agents: dict[str, tuple[Daemon, Path, dict[str, Any]]] = {}
                for i, name in enumerate(names):
                    address = str(ipaddress.IPv4Address(FABRIC + i))
                    vr = await c.create(
                        "virtual-router", {"name": name, "fabric_address": address}
                    )
                    d, sock = stack.agent(name, address, xmpp_port, 16 + 1000 * i)
                    agents[name] = (d, sock, vr)

                async def plug(name: str, port_id: str, ip: str, mac: str) -> dict[str, Any]:
                    """Create the port in the API, then add it on its agent (as Nova would)."""
                    d, _, vr = agents[name]
                    vmi = await c.create(
                        "virtual-machine-interface",
                        {
                            "name": port_id,
                            "parent_uuid": project["uuid"],
                            "virtual_network": net["uuid"],
                            "virtual_router": vr["uuid"],
                            "mac_address": mac,
                            "fixed_ips": [{"ip_address": ip}],
                        },
                    )
                    body = {"id": vmi["uuid"], "instance": inst, "network": net["uuid"],
                            "mac": mac, "ips": [ip]}  # fmt: skip
                    async with http.post(d.url + "/ports", json=body) as r:
                        if r.status != 201:
                            raise SystemExit(f"{name}: port add: {r.status} {await r.text()}")
                    return vmi

                async def sessions_up() -> bool:
                    for d, _, _ in agents.values():
                        async with http.get(d.url + "/health") as r:
                            if r.status != 200:
                                return False
                    return True

                await wait_for(sessions_up, 60, "every agent's control session")
                hosts = list(NET.hosts())[1:]  # .1 is the gateway
                await plug("observer", "observer-port", str(hosts[0]), "02:00:c6:12:00:01")
                obs_url, obs_sock = agents["observer"][0].url, agents["observer"][1]

                async def observer_vrf() -> int:
                    async with http.get(obs_url + "/introspect/vrfs") as r:
                        vrfs = await r.json()
                    return next((v["vrf"] for v in vrfs if v["instance"] == inst), 0)

                vrf = await wait_for(observer_vrf, 30, "the observer's VRF")
                _, rev = await c.list_all("virtual-machine-interface")
                feed = FeedWatcher(ConfigClient(api.url, ADMIN_TOKEN), rev)
                feed_task = asyncio.ensure_future(feed.run())
                dp = DatapathClient(str(obs_sock))
                total: list[float] = []
                api_lat: list[float] = []
                feed_lat: list[float] = []
                late = 0
                print(
                    f"{n_sources} source agent(s), observer VRF {vrf}; "
                    f"{args.ports} ports one at a time",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    for i in range(args.ports):
                        source = f"source{i // PORTS_PER_SOURCE}"
                        ip = str(hosts[i + 1])
                        mac = "02:00:c6:12:%02x:%02x" % divmod(i + 2, 256)
                        t0 = time.perf_counter()
                        vmi = await plug(source, f"p{i}", ip, mac)
                        api_lat.append(time.perf_counter() - t0)
                        deadline = t0 + args.timeout
                        while not dp_has(dp, vrf, ip):
                            if time.perf_counter() > deadline:
                                late += 1
                                break
                            await asyncio.sleep(0.002)
                        else:
                            total.append(time.perf_counter() - t0)
                        seen = feed.seen.get(vmi["uuid"])
                        while seen is None and time.perf_counter() < deadline:
                            feed.arrived.clear()
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(feed.arrived.wait(), 1)
                            seen = feed.seen.get(vmi["uuid"])
                        if seen is not None:
                            feed_lat.append(seen - t0)
                        if (i + 1) % 100 == 0:
                            print(
                                f"  {i + 1} ports: last 100 median "
                                f"{statistics.median(total[-100:]) * 1000:.0f} ms",
                                file=sys.stderr,
                                flush=True,
                            )
                finally:
                    dp.close()
                    feed_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await feed_task
                    await feed.client.close()
                async with http.get(obs_url + "/introspect") as r:
                    counters = (await r.json())["counters"]
        return {
            "ports": args.ports,
            "sources": n_sources,
            "converged": len(total),
            "late": late,
            "total": total,
            "api": api_lat,
            "feed": feed_lat,
            "observer_syncs": counters["syncs"],
            "observer_dp_errors": counters["dp_errors"],
        }
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per port at most")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if not 1 <= args.ports <= NET.num_addresses - 4:
        raise SystemExit(f"--ports: 1..{NET.num_addresses - 4}")
    workdir = Path(tempfile.mkdtemp(prefix="vrstack-convergence-"))
    try:
        r = asyncio.run(run(args, workdir))
    finally:
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(f"{'what':<44} {'median':>9} {'p99':>9} {'max':>9}")
    for name, values in (
        ("API create + agent port add", r["api"]),
        ("baseline: port read back from the watch feed", r["feed"]),
        ("port -> route in the remote datapath", r["total"]),
    ):
        print(
            f"{name:<44} {pct(values, 50) * 1000:7.0f}ms {pct(values, 99) * 1000:7.0f}ms "
            f"{max(values, default=float('nan')) * 1000:7.0f}ms"
        )
    ratio = pct(r["total"], 99) / pct(r["feed"], 99)
    print(
        f"{r['converged']}/{r['ports']} converged ({r['late']} over the {args.timeout:.0f}s bound), "
        f"{r['sources']} source agent(s); observer syncs {r['observer_syncs']}, "
        f"datapath errors {r['observer_dp_errors']}; p99 ratio to the feed baseline {ratio:.1f}x"
    )
    print(
        json.dumps(
            {
                "ports": r["ports"],
                "converged": r["converged"],
                "total_ms": {
                    "p50": round(pct(r["total"], 50) * 1000, 1),
                    "p99": round(pct(r["total"], 99) * 1000, 1),
                },
                "feed_ms": {
                    "p50": round(pct(r["feed"], 50) * 1000, 1),
                    "p99": round(pct(r["feed"], 99) * 1000, 1),
                },
                "load": round(load[0], 1),
            }
        )
    )
    return 0 if r["late"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
