"""pkt0 under a burst of new flows: every flow miss reaches the agent's socket
even though that socket queues only net.unix.max_dgram_qlen (10) datagrams,
and a flow whose miss was lost (queue overflow, no agent) traps again on its
next packet instead of staying held.

One vrouterd in its own namespace, one VM namespace on a TAP with a policy
vif, a plain unix datagram socket as the agent that reads only after the
burst.  Needs root; 198.18.0.0/15 inside its own namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

sys.path.insert(0, os.path.dirname(__file__))

from topology import CMD_TIMEOUT, ROUTER_MAC, SDN, SRC, nsexec, sh, socket_in_ns

from vrstack.datapath.client import DatapathClient
from vrstack.datapath.codec import DROP_REASONS, Obj, Op

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")

PFX = f"vrq{os.getpid() % 100000}"
VM_IP, PEER_IP, VM_MAC = "198.18.50.2", "198.18.50.3", "02:00:c6:12:32:02"
BURST = 200
TRAP_FLOW_MISS = 1
TX_FAILED = DROP_REASONS.index("tx_failed")


@dataclass
class Datapath:
    dir: Path
    tx: socket.socket  # raw socket on the VM's TAP, inside the VM namespace

    @property
    def sock(self) -> str:
        return str(self.dir / "control.sock")

    def cli(self, tool: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(SDN), VROUTER_SOCKET=self.sock)
        res = subprocess.run(
            [sys.executable, "-m", "vrstack.datapath.cli", tool, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=CMD_TIMEOUT,
            check=False,
        )
        assert res.returncode == 0, f"{tool} {' '.join(args)}: {res.stderr}"

    def agent(self) -> socket.socket:
        """The agent's end of pkt0, bound but not read until the test says so."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(self.dir / "agent.sock"))
        return s

    def send(self, sports: range) -> None:
        for sp in sports:
            frame = (
                Ether(src=VM_MAC, dst=ROUTER_MAC)
                / IP(src=VM_IP, dst=PEER_IP)
                / UDP(sport=sp, dport=5000)
                / b"burst"
            )
            self.tx.send(bytes(frame))

    def flows(self) -> int:
        with DatapathClient(self.sock) as c:
            return len(list(c.dump(Obj.FLOW)))

    def tx_failed(self) -> int:
        with DatapathClient(self.sock) as c:
            counters = c.call(Op.GET, Obj.DROPSTATS).attrs["DS_COUNTERS"]
        assert isinstance(counters, list)
        return int(counters[TX_FAILED])


def wait_until(check: Callable[[], bool]) -> None:
    """Until check() holds, 5 s at most (the asserts that follow say what failed)."""
    end = time.monotonic() + 5
    while not check() and time.monotonic() < end:
        time.sleep(0.05)


def misses(agent: socket.socket, want: int, seconds: float = 5.0) -> set[int]:
    """Source ports of the flow misses read from pkt0: until `want` of them,
    `seconds` in all, or 0.5 s with nothing new."""
    got: set[int] = set()
    agent.settimeout(0.5)
    end = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < end:
        try:
            data = agent.recv(65536)
        except TimeoutError:
            break
        _vif, _vrf, reason, _, _flow = struct.unpack_from(">IIHHI", data)
        frame = Ether(data[16:])
        if reason == TRAP_FLOW_MISS and UDP in frame and frame[UDP].dport == 5000:
            got.add(frame[UDP].sport)
    return got


@contextlib.contextmanager
def datapath(*extra: str) -> Iterator[Datapath]:
    vrouterd = SRC / "build" / "vrouterd"
    sh("make", "-s", "-C", str(SRC), "build/vrouterd", timeout=120)
    tmp = Path(tempfile.mkdtemp(prefix="vr-pkt0-"))
    cns, vns, tap = f"{PFX}c", f"{PFX}v", f"{PFX}t"
    proc = None
    tx = None
    try:
        for ns in (cns, vns):
            sh("ip", "netns", "add", ns)
            nsexec(ns, "ip", "link", "set", "lo", "up")
        # No IPv6 on the TAP: its router and neighbour solicitations would trap too.
        for key in ("all", "default"):
            nsexec(vns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        cmd = [str(vrouterd), "--control", str(tmp / "control.sock"), "--pkt0-dir", str(tmp)]
        cmd += ["--flow-file", str(tmp / "flows"), "--flows", "4096", *extra]
        with (tmp / "vrouterd.log").open("w") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", cns, *cmd], stderr=log)
        for _ in range(100):
            if (tmp / "control.sock").exists():
                break
            time.sleep(0.05)
        assert (tmp / "control.sock").exists(), "vrouterd did not start"
        dp = Datapath(tmp, socket.socket())
        dp.cli("vif", "--add", "2", "--type", "agent", "--name", "pkt0")
        dp.cli("vif", "--add", "3", "--vrf", "1", "--name", tap, "--mac", ROUTER_MAC, "--policy")
        sh("ip", "-n", cns, "link", "set", tap, "netns", vns)
        nsexec(vns, "ip", "link", "set", tap, "address", VM_MAC, "up")
        tx = socket_in_ns(vns, tap)
        dp.tx = tx
        yield dp
    finally:
        if tx:
            tx.close()
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in (cns, vns):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def test_burst_every_miss_reaches_the_agent() -> None:
    with datapath() as dp, dp.agent() as agent:
        dp.send(range(10000, 10000 + BURST))
        wait_until(lambda: dp.flows() == BURST)
        assert dp.flows() == BURST
        got = misses(agent, BURST)
        assert got == set(range(10000, 10000 + BURST)), f"{BURST - len(got)} misses lost"
        assert dp.tx_failed() == 0


def test_overflowed_misses_trap_again() -> None:
    # A queue of 50: the burst overflows it on purpose; the oldest are dropped.
    with datapath("--pkt0-queue", "50") as dp, dp.agent() as agent:
        sports = range(20000, 20000 + BURST)
        dp.send(sports)
        # Every frame handled: its flow exists or its miss was dropped (and counted).
        wait_until(lambda: dp.flows() + dp.tx_failed() == BURST)
        first = misses(agent, BURST)
        assert 50 <= len(first) < BURST
        dropped = BURST - len(first)
        assert dp.tx_failed() == dropped
        # Flows whose miss was dropped are gone, not held for ever.
        assert dp.flows() == len(first)
        # Their next packet traps again; read as we go so nothing overflows.
        again: set[int] = set()
        for sp in sports:
            dp.send(range(sp, sp + 1))
            if sp not in first:
                again |= misses(agent, 1, seconds=2.0)
        assert first | again == set(sports)
        assert not first & again  # a flow still held does not trap twice
        assert dp.flows() == BURST


def test_misses_without_an_agent_trap_once_it_is_there() -> None:
    with datapath() as dp:
        sports = range(30000, 30050)
        dp.send(sports)  # nobody bound agent.sock: every miss is lost
        wait_until(lambda: dp.tx_failed() == len(sports))
        assert dp.flows() == 0
        assert dp.tx_failed() == len(sports)
        with dp.agent() as agent:
            dp.send(sports)
            assert misses(agent, len(sports)) == set(sports)
