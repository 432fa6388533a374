#!/usr/bin/env python3
"""Analytics collector benchmark: flow records ingested per second, and query latency.

Starts a real `vrstack-collector` on loopback (SQLite in a temporary directory), has
`--clients` concurrent sources post `--flows` flow records in NDJSON batches of `--batch`
(bodies encoded before the clock starts, bounded by `--seconds`), then times queries over
what was stored. The baseline, in the same run, is the same rows inserted straight into
an SQLite file with the collector's schema and settings (WAL, synchronous=FULL, one
transaction per batch): the printed ratio says how much of the cost is ours.

    .venv/bin/python bench/collector.py [--flows 100000] [--clients 4] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

SRC = Path(__file__).resolve().parent.parent / "files" / "sdn-src"
sys.path.insert(0, str(SRC))

from vrstack.analytics.records import KINDS, check_record  # noqa: E402
from vrstack.analytics.store_sqlite import SCHEMA, insert_sql  # noqa: E402
from vrstack.config.testing import ADMIN_TOKEN, Daemon  # noqa: E402

NOW = time.time()


def flow(i: int, rng: random.Random) -> dict[str, Any]:
    start = NOW - 3000 + rng.random() * 2900
    return {
        "kind": "flow",
        "id": f"f{i}",
        "start": start,
        "end": start + rng.random() * 60,
        "vrf": f"demo:net{i % 20}:net{i % 20}",
        "src_ip": f"198.18.{16 + i % 16}.{rng.randrange(1, 255)}",
        "dst_ip": f"198.18.{32 + i % 8}.{rng.randrange(1, 255)}",
        "proto": rng.choice((6, 17, 1)),
        "src_port": rng.randrange(1024, 65536),
        "dst_port": rng.choice((22, 53, 80, 443, 5201)),
        "bytes": rng.randrange(64, 10**7),
        "packets": rng.randrange(1, 10**4),
        "action": "drop" if rng.random() < 0.05 else "forward",
    }


def batches(flows: list[dict[str, Any]], size: int) -> list[bytes]:
    return [
        b"\n".join(json.dumps(f, separators=(",", ":")).encode() for f in flows[i : i + size])
        for i in range(0, len(flows), size)
    ]


async def ingest(url: str, bodies: list[bytes], clients: int, seconds: float) -> tuple[int, float]:
    """Post the bodies from `clients` sources at once; returns (records stored, seconds)."""
    stored = 0
    deadline = time.monotonic() + seconds
    queue = list(enumerate(bodies))
    headers = {"X-Auth-Token": ADMIN_TOKEN, "Content-Type": "application/x-ndjson"}
    async with aiohttp.ClientSession(headers=headers) as s:

        async def client(n: int) -> None:
            nonlocal stored
            while queue and time.monotonic() < deadline:
                _, body = queue.pop()
                async with s.post(f"{url}/ingest/compute{n}", data=body) as resp:
                    answer = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"ingest failed: {resp.status} {answer}")
                    stored += answer["accepted"]

        start = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(clients)))
        return stored, time.monotonic() - start


def baseline(path: Path, flows: list[dict[str, Any]], size: int) -> float:
    """Records per second straight into SQLite: the same schema, settings and batching."""
    rows = [check_record(f, "r")[1] for f in flows]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    insert = insert_sql(KINDS["flow"])
    start = time.monotonic()
    for i in range(0, len(rows), size):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, [("bench", *r) for r in rows[i : i + size]])
        db.execute("COMMIT")
    elapsed = time.monotonic() - start
    db.close()
    return len(rows) / elapsed


# Flow ends spread over [NOW-3000, NOW+60]: absolute times, so the ranges select the
# same rows however long the ingest took.
TOP = {
    "table": "flows",
    "select": ["src_ip", "sum(bytes)", "count()"],
    "group_by": ["src_ip"],
    "sort": [{"field": "sum(bytes)", "order": "desc"}],
    "limit": 10,
}
QUERIES: dict[str, dict[str, Any]] = {
    "top talkers, last hour (group-by + sum)": {**TOP, "since": NOW - 3600},
    "top talkers, last minute (group-by + sum)": {**TOP, "since": NOW - 60},
    "bytes per network and action, 10 min window": {
        "table": "flows",
        "since": NOW - 1800,
        "until": NOW - 1200,
        "select": ["vrf", "action", "sum(bytes)", "sum(packets)"],
        "group_by": ["vrf", "action"],
    },
    "flows from a /24 to port 443, first page": {
        "table": "flows",
        "where": [
            {"field": "src_ip", "op": "in", "value": "198.18.20.0/24"},
            {"field": "dst_port", "value": 443},
        ],
        "limit": 100,
    },
    "latest 100 flows (sorted by end)": {
        "table": "flows",
        "sort": [{"field": "end", "order": "desc"}],
        "limit": 100,
    },
}


async def time_queries(url: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(headers={"X-Auth-Token": ADMIN_TOKEN}) as s:
        for name, body in QUERIES.items():
            times = []
            for _ in range(runs):
                start = time.monotonic()
                async with s.post(f"{url}/query", json=body) as resp:
                    answer = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"{name}: {resp.status} {answer}")
                times.append(time.monotonic() - start)
            out[name] = times
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=300.0, help="bound on the ingest")
    parser.add_argument("--runs", type=int, default=5, help="runs of each query")
    args = parser.parse_args()
    rng = random.Random(8)
    flows = [flow(i, rng) for i in range(args.flows)]
    bodies = batches(flows, args.batch)
    with tempfile.TemporaryDirectory(prefix="vrstack-bench-") as tmp:
        work = Path(tmp)
        raw = baseline(work / "baseline.db", flows, args.batch)
        config = {
            "listen": {"host": "127.0.0.1", "port": 0},
            # Measure slow queries rather than cut them off at the default 10 s.
            "store": {"path": str(work / "analytics.db"), "query_timeout": 120},
            "auth": {"backend": "static", "admin_token": ADMIN_TOKEN},
            "limits": {"source_rate": 1e9, "source_burst": 10**9, "max_pending": 10**7},
            "log": {"level": "info"},  # the "listening" line tells the port
        }
        d = Daemon("vrstack.analytics.main", config, work, "collector")
        try:
            d.start()
            stored, elapsed = asyncio.run(ingest(d.url, bodies, args.clients, args.seconds))
            rate = stored / elapsed
            print(
                f"flows: {stored} ingested in {elapsed:.1f} s by {args.clients} sources, "
                f"batches of {args.batch}"
            )
            print(f"{'run':<48} {'records/s':>10} {'ratio':>6}")
            print(f"{'baseline: raw SQLite inserts (same schema)':<48} {raw:>10.0f} {1:>6}")
            print(
                f"{'vrstack-collector (HTTP, validation, commit)':<48} {rate:>10.0f} {rate / raw:>6.2f}"
            )
            print(f"\nquery latency over {stored} flows ({args.runs} runs)", flush=True)
            latencies = asyncio.run(time_queries(d.url, args.runs))
        finally:
            d.kill()
    print(f"{'query':<48} {'median':>9} {'max':>9}")
    for name, times in latencies.items():
        print(f"{name:<48} {statistics.median(times) * 1000:>7.0f}ms {max(times) * 1000:>7.0f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
