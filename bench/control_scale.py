#!/usr/bin/env python3
"""Control node scale by simulation: N simulated agents x M routes each.

Runs a real `vrstack-control` process (config from an in-process config API on SQLite
with the schema transformer), then connects N simulated agents over XMPP. Agents are
spread over N/10 networks (10 computes per network); each subscribes to its network
and publishes M VM routes. Converged = every agent holds every route of its network.
Printed per run: the node's CPU time and resident memory (from /proc), the time from
the first connect to convergence, route items pushed, the CPU time of the simulated
agents (all in this one process: at 1,000 agents they, not the node, bound the
convergence time), and, once converged, how long one new route takes to reach every
agent of its network; and each figure as a ratio to the smallest run, to show how they
grow with N.

    .venv/bin/python bench/control_scale.py [--runs 100x10,1000x10] [--timeout 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

SRC = Path(__file__).resolve().parent.parent / "files" / "sdn-src"
sys.path.insert(0, str(SRC))

from vrstack.config.client import ConfigClient  # noqa: E402
from vrstack.config.store_sqlite import SQLiteStore  # noqa: E402
from vrstack.config.testing import ADMIN_TOKEN, Daemon, free_port, running_api  # noqa: E402
from vrstack.control.simagent import SimAgent  # noqa: E402
from vrstack.control.xmpp import Nexthop  # noqa: E402
from vrstack.schema.transformer import SchemaTransformer  # noqa: E402

AGENTS_PER_NETWORK = 10
CONNECT_BATCH = 50
BASE = int(ipaddress.IPv4Address("198.18.0.0"))


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def holds_all(inst: str, count: int, agent: SimAgent) -> bool:
    return len(agent.routes[inst]) == count


def holds(inst: str, prefix: str, agent: SimAgent) -> bool:
    return prefix in agent.routes[inst]


async def networks(client: ConfigClient, count: int) -> list[str]:
    """Create `count` networks and wait for their routing instances; returns their names."""
    project = await client.create("project", {"name": "bench"})
    for i in range(count):
        await client.create(
            "virtual-network",
            {
                "name": f"net{i}",
                "parent_uuid": project["uuid"],
                "subnets": [{"cidr": f"198.18.{i % 256}.0/24"}],
            },
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ris, _ = await client.list_all("routing-instance")
        if len(ris) == count:
            return sorted(":".join(r["fq_name"]) for r in ris)
        await asyncio.sleep(0.2)
    raise SystemExit("the schema transformer did not derive the routing instances in time")


async def run_one(n: int, m: int, timeout: float, workdir: Path) -> dict[str, Any]:
    store = SQLiteStore(str(workdir / f"config-{n}x{m}.db"))
    async with running_api(store) as url, ConfigClient(url, ADMIN_TOKEN) as client:
        await client.create("global-config", {"name": "default", "asn": 64512})
        schema = SchemaTransformer(ConfigClient(url, ADMIN_TOKEN), host="bench")
        stop = asyncio.Event()
        schema_task = asyncio.ensure_future(schema.run(stop))
        nets = await networks(client, max(1, n // AGENTS_PER_NETWORK))
        stop.set()
        await asyncio.wait_for(schema_task, 30)
        await schema.client.close()

        daemon = Daemon(
            "vrstack.control.main",
            {
                "name": "bench-ctl",
                "api": {"url": url, "token": ADMIN_TOKEN},
                "listen": {"host": "127.0.0.1", "port": 0},
                "bgp": {"address": "127.0.0.41", "port": free_port()},
                # Every simulated agent connects from 127.0.0.1: lift the per-source cap
                # (8 by default, docs/security.md) to the run's size.
                "xmpp": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "hold_time": 600,
                    "max_connections": n + 64,
                    "max_connections_per_source": n + 64,
                },
                "log": {"level": "info"},
            },
            workdir,
            f"control-{n}x{m}",
        )
        await asyncio.to_thread(daemon.start)  # it blocks; the API serves from this loop
        try:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            async with aiohttp.ClientSession() as s:
                deadline = time.monotonic() + 60
                while True:
                    async with s.get(daemon.url + "/introspect") as resp:
                        intro = await resp.json()
                    if all(intro["instances"].get(x, {}).get("configured") for x in nets):
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit("control node did not load the config in time")
                    await asyncio.sleep(0.1)
            cpu0, rss0 = proc_stats(pid)
            sim0 = time.process_time()
            agents = [SimAgent(f"compute{i}", "127.0.0.1", intro["xmpp_port"]) for i in range(n)]

            async def bring_up(i: int) -> None:
                agent = agents[i]
                inst = nets[i % len(nets)]
                await agent.connect(timeout=60)
                await agent.subscribe(inst)
                fabric = str(ipaddress.IPv4Address(BASE + (1 << 16) + i))  # 198.19.x.y
                routes = {
                    f"{ipaddress.IPv4Address(BASE + i * m + j + 1)}/32": Nexthop(
                        fabric, 16 + j, 0, ("MPLSoUDP",)
                    )
                    for j in range(m)
                }
                await agent.publish(inst, routes, timeout=60)

            start = time.monotonic()
            for b in range(0, n, CONNECT_BATCH):
                await asyncio.gather(*(bring_up(i) for i in range(b, min(n, b + CONNECT_BATCH))))
            published = time.monotonic() - start
            expected = {
                inst: sum(1 for i in range(n) if nets[i % len(nets)] == inst) * m for inst in nets
            }
            for i, agent in enumerate(agents):
                inst = nets[i % len(nets)]
                left = max(1.0, timeout - (time.monotonic() - start))
                await agent.wait_for(functools.partial(holds_all, inst, expected[inst]), left)
            converged = time.monotonic() - start
            cpu1, rss1 = proc_stats(pid)
            sim_cpu = time.process_time() - sim0
            # One more route on a converged node: time until every agent of its network has it.
            extra = f"{ipaddress.IPv4Address(BASE + (1 << 16) - 2)}/32"
            peers = [a for i, a in enumerate(agents) if i % len(nets) == 0]
            t0 = time.monotonic()
            await agents[0].publish(nets[0], {extra: Nexthop("198.19.255.1", 99, 0, ("VXLAN",))})
            for agent in peers:
                await agent.wait_for(functools.partial(holds, nets[0], extra), 30)
            one_route = time.monotonic() - t0
            pushed = sum(a.updates for a in agents)
            for agent in agents:
                await agent.abort()
            return {
                "n": n,
                "m": m,
                "networks": len(nets),
                "routes": n * m,
                "pushed": pushed,
                "published_s": published,
                "converge_s": converged,
                "cpu_s": cpu1 - cpu0,
                "sim_cpu_s": sim_cpu,
                "one_route_ms": one_route * 1000,
                "rss_mb": rss1 / 2**20,
                "rss_growth_mb": (rss1 - rss0) / 2**20,
            }
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                await asyncio.to_thread(daemon.terminate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="100x10,1000x10", help="NxM,NxM,... agents x routes")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    args = parser.parse_args()
    runs = [tuple(int(x) for x in r.split("x")) for r in args.runs.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(n for n, _ in runs) * 2 + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    results = []
    with tempfile.TemporaryDirectory(prefix="vrstack-control-bench-") as tmp:
        for n, m in runs:
            print(f"running {n} agents x {m} routes ...", file=sys.stderr, flush=True)
            results.append(asyncio.run(run_one(n, m, args.timeout, Path(tmp))))
    first = results[0]
    print(
        f"{'agents':>7} {'routes':>7} {'nets':>5} {'pushed':>8} {'publish s':>9} "
        f"{'converge s':>10} {'cpu s':>7} {'rss MB':>7} {'+rss MB':>8} {'sim cpu s':>9}"
        f" {'1 route ms':>10}"
        "   ratios to first: "
        "routes converge cpu +rss"
    )
    for r in results:
        ratios = " ".join(
            f"{r[k] / first[k]:.1f}x" if first[k] else "-"
            for k in ("routes", "converge_s", "cpu_s", "rss_growth_mb")
        )
        print(
            f"{r['n']:>7} {r['routes']:>7} {r['networks']:>5} {r['pushed']:>8} "
            f"{r['published_s']:>9.2f} {r['converge_s']:>10.2f} {r['cpu_s']:>7.2f} "
            f"{r['rss_mb']:>7.1f} {r['rss_growth_mb']:>8.1f} {r['sim_cpu_s']:>9.2f}"
            f" {r['one_route_ms']:>10.1f}   {ratios}"
        )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
