"""pkt0 through a real vrouterd: a VM in its own network namespace (a veth pair; the
compute side is the port's tap, made after the port is added, as libvirt does) gets a DHCP offer and ack from the agent with its port's address and subnet options,
and ARP replies for its gateway and for a remote VM, but not for unknown addresses; its
first packets set up flows by the network's policy, which age out when idle.

Root only (veth and namespace); skipped with a message otherwise.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agentkit import dp_dump, eventually, running_agent, settings
from controlkit import Cluster, instance_name
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from test_packets import VM_MAC, discover

from vrstack.agent.ports import Port
from vrstack.control.simagent import SimAgent
from vrstack.control.xmpp import Nexthop
from vrstack.datapath.codec import Obj

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a veth and a namespace"),
]
VMSIDE = Path(__file__).with_name("vmside.py")
ROUTER = "00:00:5e:00:01:00"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


async def exchange(
    ns: str, tap: str, frame: bytes, ethertype: int, limit: float = 5.0
) -> bytes | None:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, str(VMSIDE), tap, frame.hex(),
        f"{ethertype:x}", str(limit), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    return bytes.fromhex(out.decode().strip()) if proc.returncode == 0 else None


async def test_dhcp_and_arp_from_a_vm(
    cluster: Cluster, vrouterd: Callable[[str], Path], tmp_path: Path
) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    sub = {"cidr": "198.18.10.0/24", "dhcp": {"dns_servers": ["198.18.10.2"], "lease_time": 600}}
    rule = {"action": "deny", "protocol": "udp", "destination_ports": [9999, 9999]}
    pol = await c.create(
        "network-policy", {"name": "no9999", "parent_uuid": project["uuid"], "rules": [rule]}
    )
    blue = await c.create(
        "virtual-network",
        {
            "name": "blue",
            "parent_uuid": project["uuid"],
            "subnets": [sub],
            "network_policies": [pol["uuid"]],
        },
    )
    inst = instance_name(await cluster.instance_of(blue))
    vr = await c.create("virtual-router", {"name": "compute1", "fabric_address": "198.18.2.11"})
    vmi = {"name": "p1", "parent_uuid": project["uuid"], "virtual_network": blue["uuid"]}
    await c.create("virtual-machine-interface", {**vmi, "virtual_router": vr["uuid"]})
    node = await cluster.start_node("ctl-a", "127.0.0.1")
    dp = vrouterd("dp")
    tag = f"{os.getpid() % 100000}"
    tap, ns, vm = f"vat{tag}", f"vrstack-agent-{tag}", "vm0"
    s = settings("compute1", "198.18.2.11", [("127.0.0.1", node.xmpp_port)], dp)
    s.pkt0_dir = str(dp.parent)
    s.flow_file = str(dp.parent / "flows")
    s.flow_idle = 60.0
    # another compute's VM in the same network, so ARP for it is answered
    other = SimAgent("compute2", "127.0.0.1", node.xmpp_port)
    await other.connect()
    await other.publish(inst, {"198.18.10.9/32": Nexthop("198.18.2.12", 300, 0, ("MPLSoUDP",))})
    sh("ip", "netns", "add", ns)
    try:
        async with running_agent(s) as agent:
            agent.add_port(Port("p1", inst, blue["uuid"], VM_MAC, ("198.18.10.3",), tap))
            await eventually(lambda: agent.lease_of(agent.ports.ports["p1"]), what="config")
            await eventually(lambda: agent.knows(agent.ports.ports["p1"], "198.18.10.9"))
            assert "VIF_NAME" not in dp_dump(dp, Obj.VIF)[-1]  # no tap yet: nothing attached
            sh("ip", "link", "add", tap, "type", "veth", "peer", "name", vm, "netns", ns)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "link", "set", tap, "up")
            sh("ip", "-n", ns, "link", "set", vm, "up")
            await eventually(
                lambda: any(v.get("VIF_NAME") == tap for v in dp_dump(dp, Obj.VIF)),
                what="the tap attached",
            )

            offer = await exchange(ns, vm, discover(), 0x0800)
            assert offer is not None, "no DHCP offer"
            o = Ether(offer)
            assert o[BOOTP].yiaddr == "198.18.10.3" and o[Ether].src == ROUTER
            opts = {x[0]: x[1:] for x in o[DHCP].options if isinstance(x, tuple)}
            assert opts["message-type"] == (2,) and opts["router"] == ("198.18.10.1",)
            assert opts["name_server"] == ("198.18.10.2",) and opts["lease_time"] == (600,)
            ack = await exchange(ns, vm, discover("request", "198.18.10.3"), 0x0800)
            assert ack is not None and Ether(ack)[DHCP].options[0] == ("message-type", 5)
            nak = await exchange(ns, vm, discover("request", "198.18.10.77"), 0x0800)
            assert nak is not None and Ether(nak)[DHCP].options[0] == ("message-type", 6)

            for target in ("198.18.10.1", "198.18.10.9"):
                req = Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
                    op=1, hwsrc=VM_MAC, psrc="198.18.10.3", pdst=target
                )
                got = await exchange(ns, vm, bytes(req), 0x0806)
                assert got is not None, f"no ARP reply for {target}"
                assert Ether(got)[ARP].hwsrc == ROUTER and Ether(got)[ARP].psrc == target
            req = Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
                op=1, hwsrc=VM_MAC, psrc="198.18.10.3", pdst="198.18.10.50"
            )
            assert await exchange(ns, vm, bytes(req), 0x0806, limit=1.0) is None

            # First packets of two UDP flows to the remote VM: port 5000 passes (same
            # network), port 9999 is denied by the policy; each gets its reverse flow.
            await eventually(
                lambda: any(k.startswith("access-control-list/") for k in agent.config()),
                what="acl",
            )
            for dport in (5000, 9999):
                pkt = (
                    Ether(src=VM_MAC, dst=ROUTER)
                    / IP(src="198.18.10.3", dst="198.18.10.9")
                    / UDP(sport=40000, dport=dport)
                    / b"x"
                )
                await exchange(ns, vm, bytes(pkt), 0x9999, limit=0.2)
            flows = await eventually(
                lambda: len(dp_dump(dp, Obj.FLOW)) == 4 and dp_dump(dp, Obj.FLOW)
            )
            by_key = {(str(f["FL_SIP"]), f["FL_DPORT"], f["FL_SPORT"]): f for f in flows}
            fwd, rev = by_key[("198.18.10.3", 5000, 40000)], by_key[("198.18.10.9", 40000, 5000)]
            assert fwd["FL_ACTION"] == 1 and rev["FL_ACTION"] == 1
            assert fwd["FL_RINDEX"] == rev["FL_INDEX"] and rev["FL_RINDEX"] == fwd["FL_INDEX"]
            assert by_key[("198.18.10.3", 9999, 40000)]["FL_ACTION"] == 2
            assert by_key[("198.18.10.9", 40000, 9999)]["FL_ACTION"] == 2
            seen = {(f["destination"], f["action"]) for f in agent.flows()}
            assert ("198.18.10.9:9999", "drop") in seen and ("198.18.10.9:5000", "forward") in seen
            # Ageing from the shared flow table: nothing is idle yet, then everything is.
            assert agent.age_flows() == 0
            assert agent.age_flows(now_ns=time.monotonic_ns() + 120 * 10**9) == 4
            assert dp_dump(dp, Obj.FLOW) == []

            counters = agent.introspect()["counters"]
            assert counters["flows_forward"] == 1 and counters["flows_drop"] == 1
            assert counters["flows_aged"] == 4
            assert counters["dhcp_offers"] == 1 and counters["dhcp_acks"] == 1
            assert counters["dhcp_naks"] == 1 and counters["arp_replies"] == 2
            assert counters["arp_ignored"] >= 1
    finally:
        await other.close()
        subprocess.run(["ip", "link", "del", tap], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
