#!/usr/bin/env python3
"""vrouter_agent_info's reading code against an agent with 1,000 interfaces and 100k
routes: time and peak memory, against a baseline in the same run.

A child process runs the real agent (`vrstack.agent.agent.Agent`) and serves its real
HTTP application (`vrstack.agent.main.make_app`) on loopback, with its state filled
in: `--ports` ports over `--instances` routing instances, and `--routes` routes pushed
by a control node (spread over the instances, each /32 behind one of 50 computes). It
has no datapath and no control node: the introspect endpoints answer from that state.

The parent runs `module_utils/vrouter_agent.read()` as the module does (every subset
but flows, `instances: [all]`), and as the baseline fetches the same endpoints with
urllib and `json.loads` each payload, nothing else. Both are timed (median of
`--repeat` runs) and their peak Python memory measured (tracemalloc, separate runs).
The agent's own share is timed too: the same requests with their bodies read and not
parsed, after a change (every answer computed afresh: `--routes` changes once per run,
by a port added through the port API) and again (answers from the kept state).
Exit 1 when the module's time or memory exceeds the baseline's by more than the bounds.

    .venv/bin/python bench/agent_info.py [--ports 1000] [--routes 100000] [--instances 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
SDN_SRC = ROOT / "files" / "sdn-src"
MAX_TIME_RATIO = 1.5
MAX_MEMORY_RATIO = 2.5


def serve(port: int, ports: int, routes: int, instances: int) -> None:
    """The child: a real agent's HTTP API over a filled-in state."""
    sys.path.insert(0, str(SDN_SRC))
    from aiohttp import web

    from vrstack.agent.agent import Agent, AgentSettings
    from vrstack.agent.main import make_app
    from vrstack.agent.ports import Port
    from vrstack.agent.program import Fabric
    from vrstack.control.xmpp import Nexthop

    agent = Agent(
        AgentSettings(
            name="compute1",
            fabric=Fabric(address="198.18.2.11"),
            controls=[("127.0.0.1", 1), ("127.0.0.1", 2)],
            datapath_socket="/nonexistent",
            max_vifs=ports + 16,
        )
    )
    names = [f"demo:net{i}:net{i}" for i in range(instances)]
    for i in range(ports):
        inst = names[i % instances]
        ip = f"198.18.{100 + i // 250}.{i % 250 + 1}"
        agent.ports.ports[f"p{i}"] = Port(
            f"p{i}", inst, inst.split(":")[1], f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
            (ip,), f"tap{i}",
        )  # fmt: skip
    hops = [
        (Nexthop(f"198.18.3.{c + 1}", 1000 + c, 0, ("MPLSoUDP", "MPLSoGRE")),) for c in range(50)
    ]
    table = agent.sessions[0].routes
    for r in range(routes):
        inst = names[r % instances]
        prefix = f"10.{r // 65536}.{r // 256 % 256}.{r % 256}/32"
        table.setdefault(inst, {})[prefix] = hops[r % 50]
    app = make_app(agent)
    app.on_startup.clear()  # no datapath to open
    app.cleanup_ctx.clear()  # and no agent loop: no control node to reach
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def baseline_reader(url: str, parse: bool = True) -> Callable[[], Any]:
    """The same endpoints, fetched and parsed with json.loads only (or not parsed: the
    agent's answers alone; the instance list is parsed, it is needed)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def load(path: str) -> Any:
        with opener.open(url + path, timeout=120) as resp:
            body = resp.read()
            return json.loads(body) if parse or path.endswith("/vrfs") else len(body)

    def read() -> Any:
        out = {p: load(p) for p in ("/introspect", "/introspect/interfaces", "/introspect/vrfs")}
        out["/introspect/datapath"] = load("/introspect/datapath")
        for v in out["/introspect/vrfs"]:
            out[v["instance"]] = load(
                "/introspect/routes?" + urlencode({"instance": v["instance"]})
            )
        return out

    return read


def module_reader(url: str) -> Callable[[], Any]:
    sys.path.insert(0, str(ROOT / ".collections"))
    from ansible_collections.vrstack.cloud.plugins.module_utils import vrouter_agent

    get = vrouter_agent.open_url_getter(url, timeout=120)
    return lambda: vrouter_agent.read(get, instances=["all"])


def change(url: str, n: int) -> None:
    """A port added: every input of the agent's state changes, as a real change does."""
    body = {"id": f"bench{n}", "network": "net0", "instance": "demo:net0:net0"}
    body.update(mac="02:00:00:ff:00:01", ips=[f"198.18.99.{n % 250 + 1}"], tap=f"bench{n}")
    req = urllib.request.Request(url + "/ports", json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        assert resp.status == 201, resp.status


def timed(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        result = fn()
        _, top = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return top


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child's port
    args = ap.parse_args()
    if not (1 <= args.ports <= 4000 and 1 <= args.routes <= 1_000_000 and 1 <= args.repeat <= 20):
        ap.error("--ports 1..4000, --routes 1..1000000, --repeat 1..20")
    if args.serve:
        serve(args.serve, args.ports, args.routes, args.instances)
        return 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--ports", str(args.ports),
         "--routes", str(args.routes), "--instances", str(args.instances)],
        env={**os.environ, "PYTHONPATH": str(SDN_SRC)},
    )  # fmt: skip
    try:
        base, mod = baseline_reader(url), module_reader(url)
        deadline = time.monotonic() + 120
        while True:
            try:
                got = mod()
                break
            except Exception:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        n_routes = sum(len(r) for r in got["routes"].values())
        n_remote = sum(1 for rs in got["routes"].values() for r in rs if r["source"] == "control")
        assert len(got["interfaces"]) == args.ports, len(got["interfaces"])
        assert n_remote == args.routes, n_remote
        payload = sum(len(json.dumps(v)) for v in base().values())
        t_base, t_mod = timed(base, args.repeat), timed(mod, args.repeat)
        m_base, m_mod = peak(base), peak(mod)
        raw = baseline_reader(url, parse=False)
        cold = []
        for n in range(args.repeat):
            change(url, n)
            cold.append(timed(raw, 1))
        t_cold, t_warm = statistics.median(cold), timed(raw, args.repeat)
    finally:
        child.terminate()
        child.wait(timeout=10)
    print(f"agent: {args.ports} interfaces, {n_routes} routes over {args.instances} VRFs; "
          f"payload {payload / 2**20:.1f} MiB JSON")  # fmt: skip
    print(f"baseline (GET + json.loads): {t_base * 1000:7.0f} ms  peak {m_base / 2**20:6.1f} MiB")
    print(f"vrouter_agent_info read():   {t_mod * 1000:7.0f} ms  peak {m_mod / 2**20:6.1f} MiB")
    print(f"agent answers (GET, unparsed): {t_cold * 1000:5.0f} ms after a change, "
          f"{t_warm * 1000:.0f} ms unchanged")  # fmt: skip
    t_ratio, m_ratio = t_mod / t_base, m_mod / m_base
    print(f"ratio: time {t_ratio:.2f}x (bound {MAX_TIME_RATIO}x), "
          f"memory {m_ratio:.2f}x (bound {MAX_MEMORY_RATIO}x)")  # fmt: skip
    return 0 if t_ratio <= MAX_TIME_RATIO and m_ratio <= MAX_MEMORY_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
