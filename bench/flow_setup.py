#!/usr/bin/env python3
"""Flow setup rate through the agent (new flows per second), against the datapath's own
flow insert rate.

Real processes: config API (SQLite), schema transformer, control node, and one agent
(`vrstack-agent` with pkt0 and the shared flow table) on a userspace `vrouterd`. Two
ports of one network get their TAPs moved into two network namespaces this script
creates (addresses in 198.18.0.0/15 only; removed at the end). The network has a policy
of a few rules, so every decision walks an ACL.

In the first namespace a sender opens new UDP flows to the second VM (a new source port
each, at most `--window` unanswered at a time); in the second an echo sends each packet
back. The window may exceed the agent socket's `net.unix.max_dgram_qlen` (10): vrouterd
queues the flow misses that socket cannot take yet. Its bound is dp-core's hold queue
(`VR_HOLD_MAX`, 256 packets awaiting the agent in all); past it first packets are dropped.
A flow's first packet is trapped to pkt0 and held; the agent reads the flow,
decides by the ACL, sets the action and adds the reverse flow; the datapath releases the
held packet, and the echo comes back over the reverse flow without a trap. Flows/s =
echoes received / time. Baseline in the same run: `vrbench flow`, dp-core's own flow
table inserts (no agent, no messages).

Root only (TAPs and namespaces).

    .venv/bin/python bench/flow_setup.py [--flows 10000] [--window 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from sdnstack import Stack, build_datapath, fabric_address, healthy, instance_of, wait_for

from vrstack.config.client import ConfigClient
from vrstack.config.testing import ADMIN_TOKEN

ROUTER_MAC = "00:00:5e:00:01:00"
VM1 = ("198.18.32.3", "02:00:c6:12:20:03")
VM2 = ("198.18.32.4", "02:00:c6:12:20:04")
DPORT = 5000

# Runs inside a namespace: `send` opens flows and counts echoes; `echo` answers them.
VM_SIDE = r"""
import json, socket, struct, sys, time

def mac(text):
    return bytes.fromhex(text.replace(":", ""))

def csum(b):
    s = sum(struct.unpack("!10H", b))
    s = (s & 0xFFFF) + (s >> 16)
    return ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF

def frame(src_mac, dst_mac, sip, dip, sport, dport):
    udp = struct.pack("!HHHH", sport, dport, 8 + 4, 0) + b"flow"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(sip), socket.inet_aton(dip))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + udp

role, tap, my_mac, router, my_ip, peer_ip = sys.argv[1:7]
count, window, limit, dport = (int(sys.argv[7]), int(sys.argv[8]), float(sys.argv[9]),
                               int(sys.argv[10]))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((tap, 0))
s.settimeout(0.05)
print("ready", flush=True)
deadline = time.monotonic() + limit
got, sent, lost, start, last = set(), 0, 0, time.monotonic(), 0.0
waiting = {}  # source port -> when sent; unanswered for 2 s counts as lost
while time.monotonic() < deadline and len(got) + lost < count:
    if role == "send":
        now = time.monotonic()
        for sp in [sp for sp, t in waiting.items() if now - t > 2.0]:
            del waiting[sp]
            lost += 1
        while sent < count and len(waiting) < window:
            waiting[1024 + sent] = time.monotonic()
            s.send(frame(my_mac, router, my_ip, peer_ip, 1024 + sent, dport))
            sent += 1
    try:
        data, addr = s.recvfrom(2048)
    except TimeoutError:
        continue
    if addr[2] == socket.PACKET_OUTGOING or data[23] != 17 or data[30:34] != socket.inet_aton(my_ip):
        continue
    sport, dp = struct.unpack("!HH", data[34:38])
    if role == "echo" and dp == dport:
        s.send(frame(my_mac, router, my_ip, peer_ip, dport, sport))
        got.add(sport)
    elif role == "send" and sport == dport and waiting.pop(dp, None) is not None:
        got.add(dp)
        last = time.monotonic()
print(json.dumps({"sent": sent, "answered": len(got), "lost": lost, "seconds": last - start}))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def datapath_insert_rate(build: Path, flows: int) -> tuple[float, str]:
    """dp-core's own flow inserts per second (`vrbench flow`), and its output line."""
    out = subprocess.run(
        [str(build / "vrbench"), "flow", str(flows)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    m = re.search(r"([\d.]+) M inserts/s", out)
    if not m:
        raise SystemExit(f"vrbench flow: unexpected output {out!r}")
    return float(m.group(1)) * 1e6, out


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    build = build_datapath()
    tag = f"{os.getpid() % 100000}"
    namespaces = [f"vrstack-fs1-{tag}", f"vrstack-fs2-{tag}"]
    taps = [f"vfs1-{tag}", f"vfs2-{tag}"]
    stack = Stack(workdir, args.profile)
    procs: list[subprocess.Popen[str]] = []
    try:

        async def config(c: ConfigClient) -> tuple[dict[str, Any], dict[str, Any], str]:
            project = await c.create("project", {"name": "bench"})
            # A few rules before the one that matches, so each decision walks the ACL; the
            # denied ports are above every source port the sender uses (1024 + flow number).
            rules = [
                {"action": "deny", "protocol": "udp", "destination_ports": [62000 + i, 62000 + i]}
                for i in range(8)
            ]
            rules.append({"action": "pass", "protocol": "udp"})
            policy = await c.create(
                "network-policy", {"name": "bench", "parent_uuid": project["uuid"], "rules": rules}
            )
            net = await c.create(
                "virtual-network",
                {
                    "name": "green",
                    "parent_uuid": project["uuid"],
                    "subnets": [{"cidr": "198.18.32.0/24"}],
                    "network_policies": [policy["uuid"]],
                },
            )
            return project, net, await instance_of(c, net)

        project, net, inst = await stack.start_control_plane(config)
        async with ConfigClient(stack.api_url, ADMIN_TOKEN) as c, aiohttp.ClientSession() as http:
            vr = await c.create(
                "virtual-router", {"name": "compute1", "fabric_address": fabric_address(0)}
            )
            agent, _ = stack.agent(
                "compute1",
                fabric_address(0),
                16,
                pkt0=True,
                flows=args.table,
                flow_idle=3600,  # no ageing pass during the run
            )
            await healthy(http, [agent.url])
            for (ip, mac), tap in zip((VM1, VM2), taps, strict=True):
                vmi = await c.create(
                    "virtual-machine-interface",
                    {
                        "name": tap,
                        "parent_uuid": project["uuid"],
                        "virtual_network": net["uuid"],
                        "virtual_router": vr["uuid"],
                        "mac_address": mac,
                        "fixed_ips": [{"ip_address": ip}],
                    },
                )
                body = {"id": vmi["uuid"], "instance": inst, "network": net["uuid"],
                        "mac": mac, "ips": [ip], "tap": tap}  # fmt: skip
                async with http.post(agent.url + "/ports", json=body) as r:
                    if r.status != 201:
                        raise SystemExit(f"port add: {r.status} {await r.text()}")

            async def ready() -> bool:
                async with http.get(agent.url + "/introspect") as r:
                    intro = await r.json()
                # global-config, virtual-router, 2 ports, network, instance, ACL
                return intro["config"]["objects"] >= 7 and all(
                    os.path.exists(f"/sys/class/net/{t}") for t in taps
                )

            await wait_for(ready, 60, "the agent's config and the TAPs")
            for ns, tap in zip(namespaces, taps, strict=True):
                sh("ip", "netns", "add", ns)
                sh("ip", "link", "set", tap, "netns", ns)
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                sh("ip", "-n", ns, "link", "set", tap, "up")

            def vm(role: str, i: int, me: tuple[str, str], peer: tuple[str, str]) -> Any:
                p = subprocess.Popen(
                    ["ip", "netns", "exec", namespaces[i], sys.executable, "-c", VM_SIDE,
                     role, taps[i], me[1], ROUTER_MAC, me[0], peer[0], str(args.flows),
                     str(args.window), str(args.seconds), str(DPORT)],
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
                procs.append(p)
                assert p.stdout is not None
                if p.stdout.readline().strip() != "ready":
                    raise SystemExit(f"{role}: the namespace side did not start")
                return p

            echo = vm("echo", 1, VM2, VM1)
            sender = vm("send", 0, VM1, VM2)
            out, _ = await asyncio.to_thread(sender.communicate, timeout=args.seconds + 30)
            sent = json.loads(out)
            echo.terminate()
            async with http.get(agent.url + "/introspect") as r:
                counters = (await r.json())["counters"]
        rate, line = datapath_insert_rate(build, args.table // 2)  # same slot count
        return {**sent, "counters": counters, "dp_rate": rate, "dp_line": line}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        stack.stop()
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=10000, help="new flows to open")
    parser.add_argument("--window", type=int, default=64, help="unanswered flows at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="bound on the run")
    parser.add_argument("--table", type=int, default=262144, help="flow table size (power of 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--profile", action="store_true", help="run the services under cProfile (implies --keep)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("flow_setup.py: needs root (TAPs and network namespaces)")
    if not 1 <= args.flows <= 60000 or args.flows * 8 > args.table:
        raise SystemExit("--flows: 1..60000 and at most an eighth of --table")
    if not 1 <= args.window <= 256:
        raise SystemExit("--window: 1..256 (dp-core holds 256 packets for the agent in all)")
    args.keep |= args.profile
    workdir = Path(tempfile.mkdtemp(prefix="vrstack-flow-bench-"))
    try:
        r = asyncio.run(run(args, workdir))
    finally:
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    c = r["counters"]
    rate = r["answered"] / r["seconds"] if r["seconds"] else 0.0
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(
        f"through the agent: {r['answered']}/{r['sent']} flows answered ({r['lost']} lost) "
        f"in {r['seconds']:.2f} s: "
        f"{rate:.0f} flows/s (window {args.window}; agent: forward {c['flows_forward']}, "
        f"drop {c['flows_drop']}, errors {c['flow_errors']})"
    )
    print(f"baseline, dp-core alone: {r['dp_line']}")
    print(f"ratio agent / datapath inserts: {rate / r['dp_rate']:.5f}")
    print(
        json.dumps(
            {
                "flows_per_s": round(rate, 1),
                "answered": r["answered"],
                "sent": r["sent"],
                "lost": r["lost"],
                "datapath_inserts_per_s": round(r["dp_rate"]),
                "load": round(load[0], 1),
            }
        )
    )
    return 0 if r["answered"] == args.flows else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
