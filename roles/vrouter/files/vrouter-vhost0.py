#!/usr/bin/python3
"""Hand the host's fabric address over to vhost0 (vrouter.ko), safely.

    vrouter-vhost0 status             JSON: is the handover in place?
    vrouter-vhost0 apply [--confirm-timeout S]
    vrouter-vhost0 confirm            (from a second connection) keep it
    vrouter-vhost0 boot               apply without waiting for a confirmation

apply programs the fabric vif (the uplink), vhost0 (with the uplink's MAC and
the fabric address) and pkt0, moves the addresses and routes from the uplink
to vhost0, then checks that --check-ip answers a ping through vhost0 and, unless
booting, waits for `confirm` (written by whoever could still reach the host).
If either fails, everything is put back as it was and the exit status is 1.

Configuration: /etc/vrouter-vhost0.json {"interface", "address", "check_ip"}.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time

LIB = "/usr/local/lib/vrstack-datapath"
sys.path.insert(0, LIB)
sys.dont_write_bytecode = True  # keep LIB exactly what Ansible installed

from vrstack.datapath.client import NETLINK, DatapathError, connect  # noqa: E402
from vrstack.datapath.codec import Obj, Op  # noqa: E402

CONFIG = "/etc/vrouter-vhost0.json"
CONFIRM = "/run/vrouter-vhost0.confirm"
FABRIC_VIF, HOST_VIF, AGENT_VIF = 0, 1, 2


def ip(*args: str, check: bool = True) -> str:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and res.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def addrs(dev: str) -> list[str]:
    data = json.loads(ip("-j", "-4", "addr", "show", "dev", dev) or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for d in data for a in d.get("addr_info", [])]


def routes(dev: str) -> list[dict[str, str]]:
    """Routes via dev that are not the kernel's own prefix routes."""
    data = json.loads(ip("-j", "-4", "route", "show", "dev", dev) or "[]")
    return [r for r in data if r.get("protocol") != "kernel"]


def route_args(r: dict[str, str], dev: str) -> list[str]:
    args = [r["dst"]]
    if "gateway" in r:
        args += ["via", r["gateway"]]
    if "metric" in r:
        args += ["metric", str(r["metric"])]
    return [*args, "dev", dev]


def mac(dev: str) -> str:
    with open(f"/sys/class/net/{dev}/address") as f:
        return f.read().strip()


def status(cfg: dict[str, str]) -> dict[str, object]:
    have = addrs("vhost0") if os.path.exists("/sys/class/net/vhost0") else []
    vifs: dict[int, str] = {}
    try:
        with connect(NETLINK) as c:
            vifs = {m.attrs["VIF_IDX"]: m.attrs.get("VIF_NAME", "") for m in c.dump(Obj.VIF)}
    except (OSError, DatapathError):
        pass
    ok = (
        cfg["address"] in have
        and vifs.get(FABRIC_VIF) == cfg["interface"]
        and vifs.get(HOST_VIF) == "vhost0"
    )
    return {"in_place": ok, "vhost0_addresses": have, "vifs": vifs}


def move(src: str, dst: str, moved_addrs: list[str], moved_routes: list[dict[str, str]]) -> None:
    ip("link", "set", dst, "up")
    for a in moved_addrs:
        ip("addr", "replace", a, "dev", dst)
        ip("addr", "del", a, "dev", src, check=False)
    for r in moved_routes:
        ip("route", "replace", *route_args(r, dst))


def ping(addr: str, tries: int = 10) -> bool:
    for _attempt in range(tries):
        res = subprocess.run(["ping", "-c", "1", "-W", "2", addr], capture_output=True, check=False)
        if res.returncode == 0:
            return True
    return False


def apply(cfg: dict[str, str], timeout: float, boot: bool) -> int:
    dev = cfg["interface"]
    if status(cfg)["in_place"]:
        print("vhost0: already in place")
        return 0
    net = ipaddress.ip_interface(cfg["address"])
    old_addrs = addrs(dev)
    old_routes = routes(dev)
    if cfg["address"] not in old_addrs and cfg["address"] not in addrs("vhost0"):
        old_addrs.append(cfg["address"])  # not configured anywhere yet: just add it
    fabric_mac = mac(dev)
    try:
        with connect(NETLINK) as c:
            c.call(
                Op.ADD, Obj.VIF, VIF_IDX=FABRIC_VIF, VIF_TYPE=1, VIF_NAME=dev, VIF_MAC=fabric_mac
            )
            c.call(Op.ADD, Obj.VIF, VIF_IDX=HOST_VIF, VIF_TYPE=2, VIF_NAME="vhost0",
                   VIF_MAC=fabric_mac, VIF_IP=net.ip)  # fmt: skip
            c.call(Op.ADD, Obj.VIF, VIF_IDX=AGENT_VIF, VIF_TYPE=4, VIF_NAME="pkt0")
        ip("link", "set", "vhost0", "address", fabric_mac)
        ip("link", "set", "pkt0", "up")
        move(dev, "vhost0", old_addrs, old_routes)
        ok = not cfg.get("check_ip") or ping(cfg["check_ip"])
        if ok and not boot:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not os.path.exists(CONFIRM):
                time.sleep(1)
            ok = os.path.exists(CONFIRM)
        if ok:
            print(f"vhost0: {cfg['address']} moved from {dev}")
            return 0
        print(f"vhost0: no answer from {cfg.get('check_ip')} or no confirmation: rolling back")
    except (OSError, RuntimeError, DatapathError) as exc:
        print(f"vhost0: {exc}: rolling back")
    move("vhost0", dev, old_addrs, old_routes)
    try:
        with connect(NETLINK) as c:
            for idx in (HOST_VIF, FABRIC_VIF):
                c.call(Op.DEL, Obj.VIF, VIF_IDX=idx)
    except (OSError, DatapathError) as exc:
        print(f"vhost0: rollback: {exc}")
    return 1


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["status", "apply", "confirm", "boot"])
    p.add_argument("--confirm-timeout", type=float, default=60)
    a = p.parse_args()
    with open(CONFIG) as f:
        cfg = json.load(f)
    if a.cmd == "status":
        print(json.dumps(status(cfg)))
        return 0
    if a.cmd == "confirm":
        with open(CONFIRM, "w") as f:
            f.write("ok\n")
        return 0
    if os.path.exists(CONFIRM):
        os.unlink(CONFIRM)
    return apply(cfg, a.confirm_timeout, a.cmd == "boot")


if __name__ == "__main__":
    sys.exit(main())
