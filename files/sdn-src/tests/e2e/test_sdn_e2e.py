"""The whole SDN end to end on network namespaces (see `sdnstack.py` for the layout):
config API, schema transformer, two control nodes, two computes each with vrouterd and
the agent, four VMs on two networks joined by a policy (ICMP and TCP 8080 only).

The tests share one stack and run in file order: DHCP, traffic and policy, the overlay
following the encapsulation priority, then control nodes failing and coming back.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from netns import entered, ip, nsexec, wait_for
from sdnstack import DNS, HERE, HTTP_PORT, LEASE_TIME, NETWORKS, TUNNEL_FLAG, VM_MTU, Stack, Vm

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, TAPs, a bridge")
VMTOOL = str(HERE / "vmtool.py")
SO_RCVBUFFORCE = 33  # not in the socket module: a capture buffer past rmem_max (root)


# ---- traffic from the VMs ----------------------------------------------------------


def ping(src: Vm, ip: str, count: int = 1) -> bool:
    res = nsexec(src.ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", ip, check=False)
    return res.returncode == 0


def reachable(src: Vm, ip: str, timeout: float = 10.0) -> None:
    """Ping until it answers (the first try may race an ARP or a route), bounded."""
    wait_for(lambda: ping(src, ip), timeout, f"{src.name} pings {ip}", every=0.2)


def tcp_all(checks: list[tuple[Vm, str, int]], limit: float = 3.0) -> list[bool]:
    """One TCP connection per (VM, address, port), all at once: whether each echoed."""
    procs = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                vm.ns,
                sys.executable,
                VMTOOL,
                "connect",
                ip,
                str(port),
                str(limit),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for vm, ip, port in checks
    ]
    return [p.wait(limit + 10) == 0 for p in procs]


def bulk(src: Vm, ip: str, port: int, size: int, limit: float = 30.0) -> float:
    """Seconds to send `size` random bytes over one TCP connection and get them echoed."""
    res = nsexec(
        src.ns,
        sys.executable,
        VMTOOL,
        "bulk",
        ip,
        str(port),
        str(size),
        str(limit),
        check=False,
        timeout=limit + 10,
    )
    assert res.returncode == 0, f"{src.name} -> {ip}:{port}: {res.stdout}{res.stderr}"
    return float(res.stdout.split()[1])


class Session:
    """One long-lived TCP connection from a VM: an existing flow to probe over time."""

    def __init__(self, src: Vm, ip: str, port: int) -> None:
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", src.ns, sys.executable, VMTOOL, "session", ip, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self._line(10) == "connected", f"{src.name}: no session to {ip}:{port}"

    def _line(self, timeout: float) -> str:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        return self.p.stdout.readline().strip() if ready else "timeout"

    def say(self, word: str, timeout: float = 5.0) -> bool:
        assert self.p.stdin is not None
        self.p.stdin.write(word + "\n")
        self.p.stdin.flush()
        return self._line(timeout) == f"ok {word}"

    def close(self) -> None:
        self.p.kill()
        self.p.wait(5)


@contextmanager
def session(src: Vm, ip: str, port: int) -> Iterator[Session]:
    s = Session(src, ip, port)
    try:
        yield s
    finally:
        s.close()


# ---- the fabric ----------------------------------------------------------------------


def overlay(frame: bytes) -> tuple[str, str, str] | None:
    """(encapsulation, inner source, inner destination) of a tunnelled IPv4 frame."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    l4 = 14 + (frame[14] & 0x0F) * 4
    proto = frame[23]
    if proto == 17 and frame[l4 + 2 : l4 + 4] == (6635).to_bytes(2, "big"):
        kind, inner = "MPLSoUDP", l4 + 8 + 4  # UDP, one MPLS label
    elif proto == 17 and frame[l4 + 2 : l4 + 4] == (4789).to_bytes(2, "big"):
        kind, inner = "VXLAN", l4 + 8 + 8 + 14  # UDP, VXLAN header, inner Ethernet
    elif proto == 47 and frame[l4 + 2 : l4 + 4] == b"\x88\x47":
        kind, inner = "MPLSoGRE", l4 + 4 + 4  # GRE without options, one MPLS label
    else:
        return None
    pkt = frame[inner:]
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    return kind, socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])


def capture_port(vm: Vm) -> socket.socket:
    """A packet socket on the compute's side of a VM's veth: frames as the VM sent them."""
    with entered(vm.compute.ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        s.bind((vm.tap, 0))
    return s


def drain(s: socket.socket) -> list[bytes]:
    s.setblocking(False)
    out = []
    for _ in range(100000):
        try:
            out.append(s.recv(65536))
        except BlockingIOError:
            break
    return out


# ---- the tests -------------------------------------------------------------------------


def test_vms_get_their_address_by_dhcp_from_the_agent(stack: Stack) -> None:
    for vm in stack.vms.values():
        gateway = NETWORKS[vm.network].replace(".0/24", ".1")
        assert vm.lease["ip"] == vm.ip, vm.name  # the address IPAM gave the port
        assert vm.lease["subnet"] == "255.255.255.0"
        assert vm.lease["router"] == gateway and vm.lease["serverid"] == gateway
        assert vm.lease["dns"] == DNS[vm.network]
        assert vm.lease["domain"] == f"{vm.network}.e2e.test"
        assert vm.lease["lease"] == str(LEASE_TIME)
        shown = nsexec(vm.ns, "ip", "-4", "-o", "addr", "show", "dev", vm.tap).stdout
        assert f"inet {vm.ip}/24" in shown, shown
    for cmp, n in (("cmp1", 2), ("cmp2", 2)):
        counters = stack.agent(cmp, "/introspect")["counters"]
        assert counters["dhcp_offers"] >= n and counters["dhcp_acks"] >= n, counters


def test_traffic_within_a_network_on_one_compute_and_across(stack: Stack) -> None:
    vm1, vm2, vm3 = (stack.vms[n] for n in ("vm1", "vm2", "vm3"))
    for src, dst in ((vm1, vm2), (vm1, vm3), (vm3, vm2)):
        reachable(src, dst.ip)
    # Inside a network every port passes (no rule matches: same network).
    checks = [(s, d.ip, p) for s, d in ((vm1, vm2), (vm1, vm3), (vm3, vm2)) for p in (8080, 9090)]
    assert tcp_all(checks) == [True] * len(checks)
    # The remote VM is a tunnel route with the other compute's label.
    r = stack.dp_route("cmp1", vm1, f"{vm3.ip}/32")
    assert r is not None and r["nh"]["NH_TYPE"] == 4 and 2000 <= r["RT_LABEL"] <= 2999


def test_bulk_tcp_from_offloading_vms_is_segmented_by_the_datapath(stack: Stack) -> None:
    """The VMs send with TSO and checksum offload on: 64 KiB frames with the TCP
    checksum left undone reach vrouterd, which finishes and cuts them; the fabric only
    ever carries frames of its MTU, and 1 MiB comes back intact each time."""
    vm1, vm2, vm3, vm4 = (stack.vms[n] for n in ("vm1", "vm2", "vm3", "vm4"))
    mib = 1 << 20
    with contextlib.closing(stack.capture()) as fab, contextlib.closing(capture_port(vm1)) as tap:
        for s in (fab, tap):
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        drain(fab)
        drain(tap)
        secs = bulk(vm1, vm3.ip, 8080, mib)
        from_vm = [f for f in drain(tap) if f[6:12] == bytes.fromhex(vm1.mac.replace(":", ""))]
        tunnels = [(len(f), overlay(f)) for f in drain(fab)]
    print(f"1 MiB echoed vm1 -> vm3 across computes in {secs:.3f} s ({2 * 8 / secs:.1f} Mbit/s)")
    # The VM really offloaded: frames far above its MTU left it.
    assert max(len(f) for f in from_vm) > 8 * VM_MTU, sorted(len(f) for f in from_vm)[-5:]
    crossing = [n for n, o in tunnels if o and {o[1], o[2]} == {vm1.ip, vm3.ip}]
    # 2 MiB in ~1400-byte segments, each on br0 twice (in and out of the gateway); the
    # capture may miss some, never see one above the fabric's MTU.
    assert len(crossing) > 1500, len(crossing)
    assert max(n for n, _ in tunnels) <= 1514, max(n for n, _ in tunnels)
    for src, dst, what in ((vm3, vm1, "back"), (vm1, vm2, "on one compute"), (vm1, vm4, "to blue")):
        secs = bulk(src, dst.ip, 8080, mib)
        print(f"1 MiB echoed {src.name} -> {dst.name} ({what}) in {secs:.3f} s")


def test_between_networks_only_what_the_policy_allows(stack: Stack) -> None:
    vm1, vm2, vm3, vm4 = (stack.vms[n] for n in ("vm1", "vm2", "vm3", "vm4"))
    # red -> blue across computes and on one compute; blue -> red (ICMP goes both ways).
    pairs = ((vm1, vm4), (vm3, vm4), (vm4, vm2))
    for src, dst in pairs:
        reachable(src, dst.ip)
    allowed = tcp_all([(vm1, vm4.ip, 8080), (vm3, vm4.ip, 8080)])
    assert allowed == [True, True]
    # 9090 is served (vm4 reaches itself) but the policy does not let red in.
    assert tcp_all([(vm4, vm4.ip, 9090)]) == [True]
    denied = tcp_all([(vm1, vm4.ip, 9090), (vm3, vm4.ip, 9090), (vm4, vm2.ip, 8080)], limit=2)
    assert denied == [False, False, False]
    drops = {
        f["destination"] for f in stack.agent("cmp2", "/introspect/flows") if f["action"] == "drop"
    }
    assert f"{vm4.ip}:9090" in drops, drops


def test_encapsulation_priority_moves_the_traffic(stack: Stack) -> None:
    vm1, vm3, vm4 = stack.vms["vm1"], stack.vms["vm3"], stack.vms["vm4"]
    vm_ips = {vm.ip for vm in stack.vms.values()}
    gc = stack.api("GET", "/global-configs?name=default")["items"][0]
    with contextlib.closing(stack.capture()) as cap, session(vm1, vm3.ip, 8080) as flow:
        for prio in (
            ["MPLSoUDP", "MPLSoGRE", "VXLAN"],
            ["MPLSoGRE", "MPLSoUDP", "VXLAN"],
            ["VXLAN", "MPLSoUDP", "MPLSoGRE"],
            ["MPLSoUDP", "MPLSoGRE", "VXLAN"],
        ):
            gc = stack.update("global-config", gc, encapsulation_priority=prio)
            want = prio[0]

            def programmed(want: str = want) -> bool:
                r1 = stack.dp_route("cmp1", vm1, f"{vm3.ip}/32")
                r3 = stack.dp_route("cmp2", vm3, f"{vm1.ip}/32")
                return all(r and r["nh"]["NH_FLAGS"] == TUNNEL_FLAG[want] for r in (r1, r3))

            wait_for(programmed, 15, f"both computes tunnel {want}")
            drain(cap)
            assert ping(vm1, vm3.ip, count=3), f"ping over {want}"
            assert ping(vm1, vm4.ip, count=2), f"ping to the other network over {want}"
            assert flow.say(want), f"the existing TCP flow over {want}"
            assert tcp_all([(vm1, vm3.ip, 8080)]) == [True], f"a new TCP flow over {want}"
            time.sleep(0.2)  # the last frames still cross the bridge
            seen = [overlay(f) for f in drain(cap)]
            kinds = collections.Counter(o[0] for o in seen if o and {o[1], o[2]} <= vm_ips)
            # 5 echo requests and replies, each on br0 twice (to the gateway and back out)
            assert set(kinds) == {want} and kinds[want] >= 20, (want, kinds)


def test_control_nodes_fail_and_return(stack: Stack) -> None:
    vm1, vm2, vm3, vm4 = (stack.vms[n] for n in ("vm1", "vm2", "vm3", "vm4"))
    ctl1, ctl2 = stack.hosts["ctl1"], stack.hosts["ctl2"]

    def states(cmp: str) -> list[str]:
        return [s["state"] for s in stack.agent(cmp, "/introspect")["sessions"]]

    def remote_routes_in_datapaths() -> bool:
        return all(
            stack.dp_route(cmp, src, f"{dst.ip}/32") is not None
            for cmp, src, dst in (("cmp1", vm1, vm3), ("cmp1", vm1, vm4), ("cmp2", vm3, vm1))
        )

    with session(vm1, vm4.ip, 8080) as flow:
        assert flow.say("before")
        # ctl1's host dies: its link goes first, so nothing tells the agents (no FIN);
        # they notice by unanswered pings. ctl2 still serves both, nothing is withdrawn.
        ip(stack.fab, "link set p-ctl1 down")
        ctl1.procs["control"].stop(signal.SIGKILL)
        for cmp in ("cmp1", "cmp2"):
            wait_for(
                lambda c=cmp: states(c)[0] != "Established" and states(c)[1] == "Established",
                10,
                f"{cmp}: session to ctl1 down, ctl2 up",
            )
        assert remote_routes_in_datapaths()
        red = {
            r["prefix"] for r in stack.agent("cmp1", f"/introspect/routes?instance={vm1.instance}")
        }
        assert {f"{vm.ip}/32" for vm in (vm1, vm2, vm3, vm4)} <= red, red
        assert flow.say("one-node-down")
        reachable(vm1, vm3.ip, 5)
        assert tcp_all([(vm2, vm4.ip, 8080)]) == [True], "a new flow with one node"

        # ctl2 is killed (its kernel closes the streams): headless, the datapaths keep
        # their state and flows keep working.
        ctl2.procs["control"].stop(signal.SIGKILL)
        for cmp in ("cmp1", "cmp2"):
            wait_for(lambda c=cmp: stack.agent(c, "/introspect")["headless"], 10, f"{cmp} headless")
        assert remote_routes_in_datapaths()
        assert flow.say("headless")
        reachable(vm1, vm3.ip, 5)
        # vm2's port goes while no node can tell cmp2: cmp2 still routes to it (stale).
        stack.port_cli(vm2, "delete", "--id", vm2.port["uuid"])
        assert stack.dp_route("cmp2", vm3, f"{vm2.ip}/32") is not None

        # Both back: sessions resync, the stale route goes, new flows are set up.
        ip(stack.fab, "link set p-ctl1 up")
        for c in ("ctl1", "ctl2"):
            stack.start_control(c)
        for cmp in ("cmp1", "cmp2"):
            wait_for(
                lambda c=cmp: states(c) == ["Established", "Established"],
                20,
                f"{cmp}: both sessions back",
            )

        def converged() -> bool:
            views = [s for c in ("cmp1", "cmp2") for s in stack.agent(c, "/introspect")["sessions"]]
            return (
                all(not s["stale_instances"] for s in views)
                and stack.dp_route("cmp2", vm3, f"{vm2.ip}/32") is None
                and remote_routes_in_datapaths()
            )

        wait_for(converged, 20, "agents resynced: stale routes gone, remote routes kept")

        def node_converged(ctl: str) -> bool:
            routes = stack.control(ctl, f"/introspect/routes?instance={vm1.instance}")
            table = routes.get(vm1.instance, {})
            sources = [{p["source"].split(":")[0] for p in r["paths"]} for r in table.values()]
            # each VM's route from its agent and from the other node (iBGP is back)
            return set(table) == {f"{vm.ip}/32" for vm in (vm1, vm3, vm4)} and all(
                s == {"agent", "bgp"} for s in sources
            )

        for c in ("ctl1", "ctl2"):
            wait_for(lambda c=c: node_converged(c), 15, f"{c}: routes from agents and iBGP")
        assert flow.say("after")
        assert tcp_all([(vm3, vm1.ip, 9090), (vm1, vm4.ip, 8080)]) == [True, True]
        assert tcp_all([(vm1, vm4.ip, 9090)], limit=2) == [False]

    # The port returns: its route reaches the other compute again.
    stack.attach(vm2)
    stack.dhcp([vm2])
    wait_for(lambda: stack.dp_route("cmp2", vm3, f"{vm2.ip}/32"), 15, "vm2's route on cmp2")
    reachable(vm3, vm2.ip)


def test_agent_restart_keeps_the_vms_connected(stack: Stack) -> None:
    vm1, vm2, vm3, vm4 = (stack.vms[n] for n in ("vm1", "vm2", "vm3", "vm4"))
    cmp1 = stack.hosts["cmp1"]
    before = {v["id"]: v for v in stack.agent("cmp1", "/introspect/interfaces")}
    with session(vm1, vm2.ip, 8080) as local, session(vm1, vm4.ip, 8080) as remote:
        assert local.say("before") and remote.say("before")
        assert cmp1.procs["agent"].stop() == 0, cmp1.procs["agent"].tail()
        # No agent: this compute's datapath still forwards between its own VMs. (The
        # control nodes withdrew its VMs' routes when its sessions closed: no graceful
        # restart, so cmp2 cannot answer vm1 until the agent is back.)
        assert local.say("no-agent")
        cmp1.procs["agent"].start()  # same command line and config file
        stack.healthy(cmp1, HTTP_PORT)
        # Ports replayed from its file with the same vifs and labels; the datapath's
        # state adopted, not rebuilt: the TAPs stay attached and both connections go on.
        after = {v["id"]: v for v in stack.agent("cmp1", "/introspect/interfaces")}
        assert after == before
        assert local.say("after")
        assert remote.say("after", timeout=10), "the cross-compute connection resumes"
        reachable(vm1, vm3.ip)
        assert tcp_all([(vm1, vm4.ip, 8080), (vm1, vm4.ip, 9090)], limit=2) == [True, False]
