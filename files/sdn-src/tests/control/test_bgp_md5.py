"""BGP with TCP MD5 passwords (RFC 2385).

Two speakers, each in its own network namespace joined by a veth pair on a /29 of
198.19.64.0/18 (inside 198.18.0.0/15): the same password establishes a session; a
wrong or missing password on one side gives no session, both speakers keep running,
and the kernel counts the refused segments. Then the struct the kernel reads, the
config file fields, and two control nodes fed their passwords from NodeSettings.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netnskit
import pytest
from controlkit import Cluster, control_settings
from netnskit import sh

from vrstack.config.testing import free_port
from vrstack.control import main as control_main
from vrstack.control import tcp_md5
from vrstack.service.settings import ConfigError

HERE = Path(__file__).resolve().parent
PASSWORD = "md5-test-password-0001"


class TwoHosts:
    """Namespaces `a` and `b`, a veth between them, and a speaker started in each."""

    def __init__(self, workdir: Path) -> None:
        n = os.getpid() % 60
        self.workdir = workdir
        self.ns = {"a": f"vrsmd5a-{os.getpid()}", "b": f"vrsmd5b-{os.getpid()}"}
        self.veth = f"vrsm{os.getpid() % 100000}"
        net = f"198.19.{64 + n}"
        self.addr = {"a": f"{net}.1", "b": f"{net}.2"}
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def up(self) -> None:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
        netnskit.veth(self.veth, (self.ns["a"], self.addr["a"]), (self.ns["b"], self.addr["b"]))

    def start(self, side: str, password: str, seconds: float = 40.0) -> None:
        other = "b" if side == "a" else "a"
        cmd = ["ip", "netns", "exec", self.ns[side], sys.executable, str(HERE / "md5peer.py")]
        cmd += ["--address", self.addr[side], "--peer", self.addr[other]]
        out = open(self.workdir / f"{side}.out", "w")  # noqa: SIM115 - closed by the process end
        self.procs[side] = subprocess.Popen(
            [*cmd, "--seconds", str(seconds)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "MD5PEER_PASSWORD": password},
        )

    def states(self, side: str) -> list[dict[str, Any]]:
        lines = (self.workdir / f"{side}.out").read_text().splitlines()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def last(self, side: str) -> dict[str, Any]:
        got = self.states(side)
        return got[-1] if got else {}

    def wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return False

    def md5_counters(self, side: str) -> dict[str, int]:
        """The kernel's TCP MD5 refusal counters in the namespace (nstat, absolute)."""
        text = sh("ip", "netns", "exec", self.ns[side], "nstat", "-az", "TcpExtTCPMD5*")
        out: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith("TcpExtTCPMD5"):
                out[parts[0]] = int(parts[1])
        return out

    def down(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nstat") is None:
        pytest.skip("needs root and iproute2 (ip, nstat) for network namespaces")
    if not tcp_md5.supported():
        pytest.skip(f"TCP MD5 is set by vrstack on Linux only, not {sys.platform}")
    lab = TwoHosts(tmp_path)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def established(lab: TwoHosts, side: str) -> bool:
    return lab.last(side).get("state") == "Established"


def test_same_password_establishes(hosts: TwoHosts) -> None:
    hosts.start("a", PASSWORD)
    hosts.start("b", PASSWORD)
    assert hosts.wait(lambda: established(hosts, "a") and established(hosts, "b"), 30), (
        hosts.last("a"),
        hosts.last("b"),
    )
    assert hosts.last("a")["auth"] == "md5" and hosts.last("b")["auth"] == "md5"
    # Nothing unsigned or wrongly signed on the way. (TCPMD5Unexpected, a signed segment
    # where no key is set yet, may count one: b's first SYN can beat a's listener key,
    # which is set once a has read its peers; b's retry then gets in.)
    counters = hosts.md5_counters("a")
    assert counters.get("TcpExtTCPMD5NotFound", 0) == 0, counters
    assert counters.get("TcpExtTCPMD5Failure", 0) == 0, counters


@pytest.mark.parametrize("b_password", ["another-password-0002", ""], ids=["wrong", "missing"])
def test_wrong_or_missing_password_gets_no_session(hosts: TwoHosts, b_password: str) -> None:
    hosts.start("a", PASSWORD)
    hosts.start("b", b_password)
    # Long enough for several connection attempts each way (connect_retry is 1 s).
    hosts.wait(lambda: len(hosts.states("a")) >= 40 and len(hosts.states("b")) >= 40, 30)
    for side in ("a", "b"):
        seen = {s["state"] for s in hosts.states(side)}
        assert "Established" not in seen and "OpenConfirm" not in seen, (side, seen)
        assert hosts.procs[side].poll() is None, f"speaker {side} exited"  # no crash
    # a (with the password) says what a silent peer may mean.
    assert "TCP MD5" in hosts.last("a")["last_error"], hosts.last("a")
    # The kernels dropped the segments: a saw unsigned or wrongly signed SYNs from b.
    counters = hosts.md5_counters("a")
    refused = counters.get("TcpExtTCPMD5Failure", 0) + counters.get("TcpExtTCPMD5NotFound", 0)
    assert refused > 0, counters


def test_both_without_password_establish(hosts: TwoHosts) -> None:
    """The harness itself: without passwords the same two speakers do peer."""
    hosts.start("a", "")
    hosts.start("b", "")
    assert hosts.wait(lambda: established(hosts, "a") and established(hosts, "b"), 30)
    assert hosts.last("a")["auth"] == "none"


# ---- the struct and the socket option --------------------------------------------------


def test_md5sig_layout() -> None:
    raw = tcp_md5.md5sig("198.18.1.2", "abc")
    assert len(raw) == 128 + 1 + 1 + 2 + 4 + 80
    assert int.from_bytes(raw[0:2], sys.byteorder) == socket.AF_INET
    assert raw[2:4] == b"\0\0" and raw[4:8] == bytes([198, 18, 1, 2])
    assert int.from_bytes(raw[130:132], sys.byteorder) == 3
    assert raw[136:139] == b"abc" and raw[139:] == bytes(77)
    assert int.from_bytes(tcp_md5.md5sig("198.18.1.2", "")[130:132], sys.byteorder) == 0
    with pytest.raises(ValueError):
        tcp_md5.md5sig("198.18.1.2", "x" * 81)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel keys")
def test_set_and_remove_key_on_a_socket() -> None:
    with socket.socket() as s:
        tcp_md5.set_key(s, "127.0.0.9", PASSWORD)
        tcp_md5.set_key(s, "127.0.0.9", "")
        tcp_md5.set_key(s, "127.0.0.9", "")  # removing twice is not an error


# ---- config file --------------------------------------------------------------------------


def test_config_reads_passwords(tmp_path: Path) -> None:
    bgp = {
        "address": "127.0.0.44",
        "password": PASSWORD,
        "peer_passwords": {"198.18.254.1": "gateway-password-0003"},
    }
    ns = control_main.load(control_settings(tmp_path, bgp))[0]
    assert ns.bgp_password == PASSWORD
    assert ns.bgp_peer_passwords == {"198.18.254.1": "gateway-password-0003"}
    assert PASSWORD not in repr(ns)  # never in a log line or traceback


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"password": "x" * 81}, "bgp.password", "longer than 80 bytes"),
        ({"peer_passwords": {"gw": "p"}}, "bgp.peer_passwords.gw", "IPv4 address"),
        ({"peer_passwords": {"198.18.254.1": 5}}, "bgp.peer_passwords.198.18.254.1", "string"),
        ({"peer_passwords": {"198.18.254.1": ""}}, "bgp.peer_passwords.198.18.254.1", "empty"),
        ({"peer_passwords": ["198.18.254.1"]}, "bgp.peer_passwords", "mapping"),
    ],
)
def test_bad_passwords_name_file_and_field(
    tmp_path: Path, extra: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        control_main.load(control_settings(tmp_path, extra))
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'control.yaml'}: {field}: "), text
    assert words in text and "x" * 81 not in text


# ---- control nodes fed from the config API -----------------------------------------------


@pytest.mark.asyncio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel keys")
async def test_control_nodes_peer_with_the_cluster_password(cluster: Cluster) -> None:
    """Two control nodes on loopback addresses: the password in NodeSettings reaches both
    sockets (an unsigned third party then gets nothing from the listener)."""
    ports = free_port(), free_port()
    await cluster.add_control_node("ctl-a", "127.0.0.61", ports[0])
    await cluster.add_control_node("ctl-b", "127.0.0.62", ports[1])
    a = await cluster.start_node("ctl-a", "127.0.0.61", bgp_port=ports[0], bgp_password=PASSWORD)
    b = await cluster.start_node("ctl-b", "127.0.0.62", bgp_port=ports[1], bgp_password=PASSWORD)
    for _ in range(200):
        if a.health()["bgp_established"] == 1 and b.health()["bgp_established"] == 1:
            break
        await asyncio.sleep(0.1)
    peers = a.introspect()["bgp_peers"]
    assert peers[0]["state"] == "Established" and peers[0]["auth"] == "md5", peers
    assert PASSWORD not in json.dumps(a.introspect())
    # ctl-b's address without the key: node A's listener never answers the SYN.
    with pytest.raises((TimeoutError, OSError)):
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.61", ports[0], local_addr=("127.0.0.62", 0)), 2
        )
