"""Who can reach a compute's agent API and its datapath.

The agent (`vrstack-agent` as a process, on a real vrouterd) is reached from a client
in another network namespace, over a veth pair on a /29 of 198.19.0.0/18: on its
default loopback listener it cannot be reached at all; moved to the fabric address with
mutual TLS it answers only a client certificate from the deployment CA, and logs each
refusal with the peer's address and the reason. A config asking for a non-loopback
address without TLS is refused. vrouterd, run as its unit runs it (its group, umask
0007), leaves its control socket and flow table to root and that group: another user
cannot connect or read, a member of the group can.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import netnskit
import pytest
from pkikit import CA, Issued

from vrstack.agent import introspect
from vrstack.config.testing import Daemon, free_port
from vrstack.service.settings import ConfigError, Settings

# A client run in the other namespace: prints what happened as one JSON line.
CLIENT = r"""
import json, socket, ssl, sys
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
try:
    raw = socket.create_connection((host, port), timeout=5)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        if cert:
            ctx.load_cert_chain(cert, key)
        raw = ctx.wrap_socket(raw)
    raw.sendall(b"GET /introspect HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := raw.recv(65536):
        data += chunk
    print(json.dumps({"status": data.split(b" ", 2)[1].decode() if data else ""}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc)}))
"""


class Link:
    """A namespace joined to this one by a veth pair: we are .1, the namespace is .2."""

    def __init__(self) -> None:
        n = os.getpid() % 60
        self.ns = f"vrsintro-{os.getpid()}"
        self.veth = f"vrsi{os.getpid() % 100000}"
        self.ours, self.theirs = f"198.19.{n}.1", f"198.19.{n}.2"

    def up(self) -> None:
        netnskit.sh("ip", "netns", "add", self.ns)
        netnskit.veth(self.veth, ("", self.ours), (self.ns, self.theirs))

    def get(self, port: int, ca: str = "", cert: Issued | None = None) -> dict[str, Any]:
        """GET /introspect from the namespace, over TLS when `ca` is given."""
        files = [str(cert.cert), str(cert.key)] if cert else ["", ""]
        args = [self.ours, str(port), ca, *files]
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", CLIENT, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self.veth + "a"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)


@pytest.fixture
def link() -> Iterator[Link]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    lab = Link()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA(d, "deployment-ca"), CA(d, "other-ca")
    return {
        "ca": ca,
        "agent": ca.issue("compute1", ("198.19.0.1",), server=True),
        "operator": ca.issue("operator"),
        "rogue": other.issue("intruder"),  # file names follow the name
    }


def agent_config(dp: Path, tmp_path: Path, listen: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "compute1",
        "controls": [f"127.0.0.1:{free_port()}"],  # no control node: sessions stay down
        "fabric": {"address": "198.18.2.11"},
        "datapath": {"socket": str(dp)},
        "ports_file": str(tmp_path / "ports.json"),
        "listen": listen,
    }


def test_default_listener_is_loopback_only(
    link: Link, vrouterd: Callable[[str], Path], tmp_path: Path
) -> None:
    port = free_port()
    daemon = Daemon(
        "vrstack.agent.main",
        agent_config(vrouterd("dp"), tmp_path, {"port": port}),
        tmp_path,
        "agent",
    )
    daemon.start()
    try:
        assert daemon.port == port
        # From the compute itself it answers (what the modules and vrstack-port use)...
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.")
        # ...from another host, and on this host's fabric-side address, nothing listens.
        got = link.get(port)
        assert "ConnectionRefused" in got.get("error", ""), got
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((link.ours, port), timeout=5).close()
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_fabric_listener_needs_a_client_certificate_from_the_ca(
    link: Link, vrouterd: Callable[[str], Path], tmp_path: Path, certs: dict[str, Any]
) -> None:
    ca: CA = certs["ca"]
    listen = {
        "host": link.ours,
        "port": free_port(),
        "tls": {
            "cert": str(certs["agent"].cert),
            "key": str(certs["agent"].key),
            "ca": str(ca.path),
            "verify_client": True,
        },
    }
    daemon = Daemon(
        "vrstack.agent.main", agent_config(vrouterd("dp"), tmp_path, listen), tmp_path, "agent"
    )
    daemon.start()
    try:
        port = daemon.port
        assert link.get(port, str(ca.path), certs["operator"]) == {"status": "200"}
        refused = [
            link.get(port),  # plain HTTP
            link.get(port, str(ca.path)),  # TLS without a certificate
            link.get(port, str(ca.path), certs["rogue"]),  # a certificate from another CA
        ]
        assert all("status" not in r or r["status"] == "" for r in refused), refused
        deadline = time.monotonic() + 10
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(lines) < 3:
            lines = [x for x in daemon.logs() if x["msg"] == "introspect client refused"]
            time.sleep(0.1)
        assert len(lines) == 3, lines
        assert all(x["addr"].startswith(link.theirs + ":") for x in lines), lines
        reasons = [x["reason"] for x in lines]
        assert reasons[0].startswith("not a TLS client"), reasons
        assert reasons[1] == "no client certificate", reasons
        assert reasons[2].startswith("certificate not accepted"), reasons
        # The one accepted client still gets answers afterwards.
        assert link.get(port, str(ca.path), certs["operator"]) == {"status": "200"}
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def settings(tmp_path: Path, listen: dict[str, Any]) -> Settings:
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps({"listen": listen}))
    return Settings.load(path)


def test_listener_settings(tmp_path: Path, certs: dict[str, Any]) -> None:
    assert introspect.listener(settings(tmp_path, {})) == introspect.Listener("127.0.0.1", 8085)
    assert introspect.listener(settings(tmp_path, {"host": "::1"})).tls is None
    files = {
        "cert": str(certs["agent"].cert),
        "key": str(certs["agent"].key),
        "ca": str(certs["ca"].path),
        "verify_client": True,
    }
    where = introspect.listener(settings(tmp_path, {"host": "198.18.2.11", "tls": files}))
    assert where.tls is not None and where.tls.verify_peer


@pytest.mark.parametrize(
    ("listen", "field"),
    [
        ({"host": "198.18.2.11"}, "listen.tls.cert"),
        ({"host": "0.0.0.0"}, "listen.tls.cert"),
        ({"host": "compute1.example"}, "listen.tls.cert"),
        (
            {"host": "198.18.2.11", "tls": {"cert": "AGENT", "key": "KEY"}},
            "listen.tls.verify_client",
        ),
    ],
)
def test_open_listener_is_refused(
    tmp_path: Path, certs: dict[str, Any], listen: dict[str, Any], field: str
) -> None:
    if "tls" in listen:
        listen["tls"] = {"cert": str(certs["agent"].cert), "key": str(certs["agent"].key)}
    with pytest.raises(ConfigError) as err:
        introspect.listener(settings(tmp_path, listen))
    assert str(err.value).startswith(f"{tmp_path / 'agent.yaml'}: {field}: "), str(err.value)


# ---- the datapath's control socket and flow table -------------------------------------


def run_as(user: str, code: str) -> subprocess.CompletedProcess[str]:
    """Python's standard library as `user` (its own groups only)."""
    gid = pwd.getpwnam(user).pw_gid
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups"]
    return subprocess.run(
        [*setpriv, "/usr/bin/python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )


def connect(path: Path) -> str:
    """Code that connects to the datapath's control socket at `path`."""
    return f"import socket; socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).connect({str(path)!r})"


def test_datapath_socket_and_flows_only_for_the_agent_group(vrouterd_binary: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to try as other users")
    # As roles/vrouter's unit runs it: root, Group= the agent's group, UMask=0007, in a
    # runtime directory 0770 root:group. `daemon` stands for the agent's user and group,
    # `nobody` for anyone else on the compute.
    gid = grp.getgrnam("daemon").gr_gid
    base = Path(tempfile.mkdtemp(prefix="vrs-dp-", dir="/tmp"))
    base.chmod(0o755)
    run = base / "vrouter"
    run.mkdir(mode=0o770)
    os.chown(run, 0, gid)
    run.chmod(0o770)
    sock, flows = run / "control.sock", run / "flows"
    args = ["--control", str(sock), "--pkt0-dir", str(run), "--flow-file", str(flows)]
    proc = subprocess.Popen(
        [str(vrouterd_binary), *args, "--flows", "1024"],
        group=gid,
        umask=0o007,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(250):
            if sock.exists() and flows.exists():
                break
            time.sleep(0.02)
        for path in (sock, flows):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (0, gid), path
            assert stat.S_IMODE(st.st_mode) & 0o007 == 0, f"{path}: {oct(st.st_mode)}"
        member = run_as("daemon", f"{connect(sock)}; open({str(flows)!r}, 'rb').read(1)")
        assert member.returncode == 0, member.stderr
        # Another user: the directory stops it, and so does each file's own mode.
        other = run_as("nobody", connect(sock))
        assert "PermissionError" in other.stderr, other.stderr
        run.chmod(0o775)
        other = run_as("nobody", connect(sock))
        assert "PermissionError" in other.stderr, other.stderr
        other = run_as("nobody", f"open({str(flows)!r}, 'rb')")
        assert "PermissionError" in other.stderr, other.stderr
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)
