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
from sdnstack import Stack, build_datapath, fabric_address, healthy, instance_of, wait_for

from vrstack.config.client import ConfigClient
from vrstack.config.testing import ADMIN_TOKEN
from vrstack.datapath.client import DatapathClient, DatapathError
from vrstack.datapath.codec import Obj, Op

PORTS_PER_SOURCE = 250  # vrouterd: vifs 2..255 for ports
NET = ipaddress.ip_network("198.18.0.0/20")


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


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
    build_datapath()
    stack = Stack(workdir, args.profile)
    try:

        async def network(c: ConfigClient) -> tuple[dict[str, Any], dict[str, Any], str]:
            project = await c.create("project", {"name": "bench"})
            net = await c.create(
                "virtual-network",
                {"name": "blue", "parent_uuid": project["uuid"], "subnets": [{"cidr": str(NET)}]},
            )
            return project, net, await instance_of(c, net)

        project, net, inst = await stack.start_control_plane(network)
        async with ConfigClient(stack.api_url, ADMIN_TOKEN) as c, aiohttp.ClientSession() as http:
            n_sources = max(1, -(-args.ports // PORTS_PER_SOURCE))
            names = ["observer"] + [f"source{i}" for i in range(n_sources)]
            agents: dict[str, tuple[str, Path, dict[str, Any]]] = {}
            for i, name in enumerate(names):
                address = fabric_address(i)
                vr = await c.create("virtual-router", {"name": name, "fabric_address": address})
                d, dp = stack.agent(name, address, 16 + 1000 * i)
                agents[name] = (d.url, dp.sock, vr)

            create_lat: list[float] = []

            async def plug(name: str, port_id: str, ip: str, mac: str) -> dict[str, Any]:
                """Create the port in the API, then add it on its agent (as Nova would)."""
                t0 = time.perf_counter()
                url, _, vr = agents[name]
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
                create_lat.append(time.perf_counter() - t0)
                body = {"id": vmi["uuid"], "instance": inst, "network": net["uuid"],
                        "mac": mac, "ips": [ip]}  # fmt: skip
                async with http.post(url + "/ports", json=body) as r:
                    if r.status != 201:
                        raise SystemExit(f"{name}: port add: {r.status} {await r.text()}")
                return vmi

            await healthy(http, [u for u, _, _ in agents.values()])
            hosts = list(NET.hosts())[1:]  # .1 is the gateway
            await plug("observer", "observer-port", str(hosts[0]), "02:00:c6:12:00:01")
            obs_url, obs_sock = agents["observer"][0], agents["observer"][1]

            async def observer_vrf() -> int:
                async with http.get(obs_url + "/introspect/vrfs") as r:
                    vrfs = await r.json()
                return next((v["vrf"] for v in vrfs if v["instance"] == inst), 0)

            vrf = await wait_for(observer_vrf, 30, "the observer's VRF")
            _, rev = await c.list_all("virtual-machine-interface")
            feed = FeedWatcher(ConfigClient(stack.api_url, ADMIN_TOKEN), rev)
            feed_task = asyncio.ensure_future(feed.run())
            obs_dp = DatapathClient(str(obs_sock))
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
                    mac = f"02:00:c6:12:{(i + 2) >> 8:02x}:{(i + 2) & 255:02x}"
                    t0 = time.perf_counter()
                    vmi = await plug(source, f"p{i}", ip, mac)
                    api_lat.append(time.perf_counter() - t0)
                    deadline = t0 + args.timeout
                    while not dp_has(obs_dp, vrf, ip):
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
                obs_dp.close()
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
            "create": create_lat[1:],  # not the observer's port
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
    parser.add_argument(
        "--profile", action="store_true", help="run the services under cProfile (implies --keep)"
    )
    args = parser.parse_args()
    if not 1 <= args.ports <= NET.num_addresses - 4:
        raise SystemExit(f"--ports: 1..{NET.num_addresses - 4}")
    args.keep |= args.profile
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
        ("API create", r["create"]),
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
