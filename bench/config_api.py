#!/usr/bin/env python3
"""Config API benchmark: ports created per second and latency under concurrent clients.

Starts a real `vrstack-api` on loopback (SQLite in a temporary directory, and etcd too
when the binary is installed and `--backends` asks for it), creates one network, then
has `--clients` concurrent clients create `--ports` ports (bounded by `--seconds`).
The same load against a trivial aiohttp handler on the same machine is the baseline,
so the printed ratio says how much of the cost is ours rather than HTTP's.

    .venv/bin/python bench/config_api.py [--ports 2000] [--clients 50] [--backends sqlite,etcd]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

SRC = Path(__file__).resolve().parent.parent / "files" / "sdn-src"
sys.path.insert(0, str(SRC))

from vrstack.config.testing import ADMIN_TOKEN, Daemon, Etcd  # noqa: E402

BASELINE_SERVER = """
import sys
from aiohttp import web
async def create(request):
    body = await request.json()
    return web.json_response({**body, "uuid": "x"}, status=201)
app = web.Application()
app.router.add_post("/virtual-machine-interfaces", create)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def load(
    url: str, body: dict[str, Any], total: int, clients: int, seconds: float
) -> tuple[int, float, list[float], int]:
    """Create up to `total` objects with `clients` concurrent clients; returns
    (created, elapsed seconds, latencies in seconds, errors)."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        connector=connector, headers={"X-Auth-Token": ADMIN_TOKEN}
    ) as s:

        async def client() -> None:
            nonlocal errors
            for i in counter:
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                async with s.post(
                    f"{url}/virtual-machine-interfaces", json={**body, "name": f"port-{i}"}
                ) as resp:
                    await resp.read()
                    if resp.status != 201:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return len(latencies), elapsed, latencies, errors


def p(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
    )


def report(name: str, created: int, elapsed: float, lat: list[float], errors: int) -> float:
    rate = created / elapsed if elapsed else 0.0
    print(
        f"{name:<22} {created:>6} created  {rate:>8.0f}/s  p50 {p(lat, 50) * 1000:7.1f} ms  "
        f"p99 {p(lat, 99) * 1000:7.1f} ms  errors {errors}"
    )
    return rate


async def bench_api(backend: str, args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    store: dict[str, Any] = {"backend": "sqlite", "path": str(workdir / "config.db")}
    etcd = None
    if backend == "etcd":
        etcd = Etcd(workdir)
        etcd.start()
        store = {"backend": "etcd", "endpoints": [etcd.url]}
    api = Daemon(
        "vrstack.config.main",
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "store": store,
            "auth": {"admin_token": ADMIN_TOKEN},
            "log": {"level": "info"},
        },
        workdir,
        f"api-{backend}",
    )
    # The daemon logs its port at info level; the API logs nothing per request.
    api.start()
    try:
        async with aiohttp.ClientSession(headers={"X-Auth-Token": ADMIN_TOKEN}) as s:
            async with s.post(f"{api.url}/projects", json={"name": "bench"}) as r:
                project = await r.json()
            async with s.post(
                f"{api.url}/virtual-networks",
                json={
                    "name": "bench",
                    "parent_uuid": project["uuid"],
                    "subnets": [{"cidr": "198.18.128.0/17"}],
                },
            ) as r:
                net = await r.json()
        body = {"parent_uuid": project["uuid"], "virtual_network": net["uuid"]}
        created, elapsed, lat, errors = await load(
            api.url, body, args.ports, args.clients, args.seconds
        )
        rate = report(f"vrstack-api ({backend})", created, elapsed, lat, errors)
        return rate, p(lat, 99)
    finally:
        api.terminate()
        if etcd:
            etcd.stop()


async def bench_baseline(args: argparse.Namespace) -> tuple[float, float]:
    from vrstack.config.testing import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER, str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.post(f"{url}/virtual-machine-interfaces", json={}) as r:
                        if r.status == 201:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        created, elapsed, lat, errors = await load(url, {}, args.ports, args.clients, args.seconds)
        return report("baseline aiohttp", created, elapsed, lat, errors), p(lat, 99)
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="bound per run")
    parser.add_argument(
        "--backends",
        default="sqlite",
        help="comma-separated: sqlite, etcd (etcd needs the etcd binary)",
    )
    args = parser.parse_args()
    print(
        f"{args.clients} concurrent clients, up to {args.ports} ports per run, "
        f"{args.seconds:.0f} s bound"
    )
    base_rate, base_p99 = await bench_baseline(args)
    results = {}
    for backend in args.backends.split(","):
        if backend == "etcd" and Etcd.binary() is None:
            print("etcd: skipped, the etcd binary is not installed")
            continue
        with tempfile.TemporaryDirectory(prefix="vrstack-bench-") as tmp:
            rate, p99 = await bench_api(backend, args, Path(tmp))
        results[backend] = {
            "ports_per_s": round(rate, 1),
            "p99_ms": round(p99 * 1000, 1),
            "rate_vs_baseline": round(rate / base_rate, 3),
        }
        print(
            f"  ratio vs baseline: {rate / base_rate:.3f} of the rate, "
            f"{p99 / base_p99:.1f}x the p99"
        )
    print(
        json.dumps(
            {
                "baseline": {"per_s": round(base_rate, 1), "p99_ms": round(base_p99 * 1000, 1)},
                **results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
