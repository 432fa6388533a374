#!/usr/bin/python3
"""The smoke play's hands on a compute: a network namespace plugged into the vrouter as
a port of an overlay network, requests from inside it, and a count of the overlay
packets on the fabric interface.

  vrstack_smoke_probe.py up --name NS --port-id ID --network NET --instance RI --mac MAC
                         --ip ADDR/PREFIX --gateway GW [--agent URL]
  vrstack_smoke_probe.py down --name NS --port-id ID [--agent URL]
  vrstack_smoke_probe.py ping --name NS --ip IP
  vrstack_smoke_probe.py wait-ping --name NS --ip IP [--timeout S]
  vrstack_smoke_probe.py http --name NS --url URL
  vrstack_smoke_probe.py capture --iface IF|auto:ADDRESS --peer IP --seconds S

Each prints one JSON object; the exit status is 0 when the step did what it says.
Standard library only: it runs with the host's python3.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

AGENT = "http://127.0.0.1:8085"
MPLSOUDP_PORT = 6635
VXLAN_PORT = 4789
ETH_P_ALL = 0x0003
CAPTURE_MAX_SECONDS = 60.0


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, text=True, capture_output=True, timeout=60)


def agent(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def tap_name(port_id: str) -> str:
    return "tap" + port_id[:11]  # Nova's name for a port's tap; the agent expects it


def up(a: argparse.Namespace) -> dict[str, Any]:
    tap = tap_name(a.port_id)
    if a.name not in sh("ip", "netns", "list").stdout.split():
        sh("ip", "netns", "add", a.name)
    if sh("ip", "link", "show", tap, check=False).returncode != 0:
        sh("ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", a.name)
    ns = ("ip", "-n", a.name)
    # IPv4 only: no IPv6 neighbour or multicast-listener frames beside the test's own
    # (the analytics check accounts for every frame the probe sends).
    sh("ip", "netns", "exec", a.name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    sh("ip", "netns", "exec", a.name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    sh(*ns, "link", "set", "eth0", "address", a.mac)
    sh(*ns, "addr", "replace", a.ip, "dev", "eth0")
    sh(*ns, "link", "set", "eth0", "up")
    sh(*ns, "link", "set", "lo", "up")
    sh(*ns, "route", "replace", "default", "via", a.gateway)
    sh("ip", "link", "set", tap, "up")
    body = {
        "id": a.port_id,
        "instance": a.instance,
        "network": a.network,
        "mac": a.mac,
        "ips": [a.ip.split("/")[0]],
        "tap": tap,
    }
    status, out = agent(a.agent, "POST", "/ports", body)
    if status >= 400:
        raise SystemExit(json.dumps({"error": f"agent refused the port: {out}"}))
    return {"namespace": a.name, "tap": tap, "port": out}


def down(a: argparse.Namespace) -> dict[str, Any]:
    status = agent(a.agent, "DELETE", f"/ports/{a.port_id}")[0]
    sh("ip", "link", "del", tap_name(a.port_id), check=False)
    sh("ip", "netns", "del", a.name, check=False)
    return {"namespace": a.name, "agent_had_port": status == 200}


def ping(a: argparse.Namespace) -> dict[str, Any]:
    out = sh(
        "ip", "netns", "exec", a.name, "ping", "-c", "3", "-i", "0.3", "-W", "2", a.ip, check=False
    )
    return {"ok": out.returncode == 0, "output": out.stdout[-400:]}


def wait_ping(a: argparse.Namespace) -> dict[str, Any]:
    """Ping once every half second until an answer or the timeout; seconds it took."""
    start = time.monotonic()
    tries = 0
    while time.monotonic() - start < min(a.timeout, 600.0):
        tries += 1
        out = sh("ip", "netns", "exec", a.name, "ping", "-c", "1", "-W", "1", a.ip, check=False)
        if out.returncode == 0:
            return {"ok": True, "seconds": round(time.monotonic() - start, 2), "tries": tries}
        time.sleep(0.5)
    return {"ok": False, "seconds": round(time.monotonic() - start, 2), "tries": tries}


# Runs inside the namespace: one GET on its own connection, with the source port and
# what eth0 counted meanwhile (frames with their Ethernet header, as the datapath counts
# a flow's bytes), so the analytics check can compare the flow's record with it.
HTTP_CODE = """
import http.client, json, sys, time, urllib.parse
def counters():
    d = "/sys/class/net/eth0/statistics/"
    return {k: int(open(d + k).read()) for k in ("tx_bytes", "tx_packets", "rx_bytes", "rx_packets")}
url = urllib.parse.urlsplit(sys.argv[1])
before = counters()
conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
conn.connect()
sport = conn.sock.getsockname()[1]
conn.request("GET", (url.path or "/") + ("?" + url.query if url.query else ""))
body = conn.getresponse().read().decode()
conn.close()
time.sleep(1)  # the closing segments
after = counters()
print(json.dumps({"body": body, "sport": sport, **{k: after[k] - before[k] for k in after}}))
"""


def http(a: argparse.Namespace) -> dict[str, Any]:
    out = sh("ip", "netns", "exec", a.name, sys.executable, "-c", HTTP_CODE, a.url, check=False)
    if out.returncode != 0:
        return {"ok": False, "body": "", "error": out.stderr[-300:]}
    return {"ok": True, **json.loads(out.stdout), "error": ""}


def overlay_kind(frame: bytes, peer: bytes) -> str | None:
    """The encapsulation of an IPv4 frame to or from `peer`, or None for other traffic."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if peer not in (ip[12:16], ip[16:20]):
        return None
    if ip[9] == 47:
        return "MPLSoGRE"
    if ip[9] == 17 and len(ip) >= ihl + 4:
        dport = struct.unpack("!H", ip[ihl + 2 : ihl + 4])[0]
        return {MPLSOUDP_PORT: "MPLSoUDP", VXLAN_PORT: "VXLAN"}.get(dport)
    return None


def interface_of(address: str) -> str:
    """The interface that holds `address` (`ip -o -4 addr` lines: index, name, family, cidr)."""
    for line in sh("ip", "-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3].split("/")[0] == address:
            return fields[1].split("@")[0]
    raise SystemExit(json.dumps({"error": f"no interface holds {address}"}))


def capture(a: argparse.Namespace) -> dict[str, Any]:
    if a.iface.startswith("auto:"):
        a.iface = interface_of(a.iface.removeprefix("auto:"))
    peer = socket.inet_aton(a.peer)
    counts = {"MPLSoUDP": 0, "MPLSoGRE": 0, "VXLAN": 0}
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((a.iface, 0))
    sock.settimeout(0.5)
    end = time.monotonic() + min(a.seconds, CAPTURE_MAX_SECONDS)
    while time.monotonic() < end:
        try:
            frame = sock.recv(65535)
        except TimeoutError:
            continue
        kind = overlay_kind(frame, peer)
        if kind:
            counts[kind] += 1
    return {"iface": a.iface, "peer": a.peer, "packets": counts}


def main() -> int:
    p = argparse.ArgumentParser(prog="vrstack_smoke_probe.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "ping", "wait-ping", "http"):
        s = sub.add_parser(name)
        s.add_argument("--name", required=True)
        s.add_argument("--agent", default=AGENT)
        if name in ("up", "down"):
            s.add_argument("--port-id", required=True)
        if name == "up":
            for opt in ("--network", "--instance", "--mac", "--ip", "--gateway"):
                s.add_argument(opt, required=True)
        if name in ("ping", "wait-ping"):
            s.add_argument("--ip", required=True)
        if name == "wait-ping":
            s.add_argument("--timeout", type=float, default=300.0)
        if name == "http":
            s.add_argument("--url", required=True)
    s = sub.add_parser("capture")
    s.add_argument("--iface", required=True)
    s.add_argument("--peer", required=True)
    s.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    commands = {"up": up, "down": down, "ping": ping, "wait-ping": wait_ping, "http": http}
    result = (commands | {"capture": capture})[a.cmd](a)
    print(json.dumps(result))
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
