"""RabbitMQ's Erlang distribution over TLS on the deployed lab (issue 11, docs/security.md,
roles/rabbitmq `rabbitmq_dist_tls`).

- The CLI tools reach their node through the TLS distribution: `rabbitmq-diagnostics
  status` and `rabbitmqctl cluster_status` work on every messaging node, and the cluster
  runs every messaging node with no partition; the running server (not only its file)
  was started with `-proto_dist inet_tls`.
- The distribution port (25672) speaks TLS only: a plain client's Erlang handshake gets
  a TLS alert and no Erlang status; a TLS client without a certificate is refused; with
  a node certificate of the deployment CA the handshake completes, and the server's
  certificate names the node and verifies against the CA. Each messaging node probes
  every messaging node (itself too), from where the firewall lets 25672 through.
- With several messaging nodes, each has an established 25672 connection with every other.

Runs on the lab (one messaging node) and on the ha-lab (three):

    ./scripts/run-pytest.sh -rA tests/lab/test_rabbitmq_dist_tls.py
    VRSTACK_CLUSTER=ha-lab ./scripts/run-pytest.sh -rA tests/lab/test_rabbitmq_dist_tls.py
"""

from __future__ import annotations

import json
import os
import shlex

import pytest
from labcloud import CLUSTER, STATE
from test_security import Lab, Node, load_lab, on_node

INVENTORY = os.environ.get("VRSTACK_LAB_INVENTORY") or f"inventories/{CLUSTER}"
DIST_PORT = 25672
PKI = "/etc/vrstack/pki"
OPTFILE = "/etc/rabbitmq/inter_node_tls.config"


@pytest.fixture(scope="module")
def lab() -> Lab:
    if not (STATE / "openrc").exists():
        pytest.skip(f"{CLUSTER} is not deployed ({STATE / 'openrc'} is missing)")
    return load_lab(INVENTORY)


def _ok(lab: Lab, node: Node, script: str) -> str:
    out = on_node(lab, node, script)
    assert out.returncode == 0, f"{node.name}: {script}: {out.stderr.strip()[-1500:]}"
    return out.stdout


def test_cli_tools_work_over_the_tls_distribution(lab: Lab) -> None:
    nodes = lab.by_role("messaging")
    assert nodes, "no messaging node in the inventory"
    want = sorted(f"rabbit@{n.name}" for n in nodes)
    for node in nodes:
        assert "Runtime" in _ok(lab, node, "rabbitmq-diagnostics -q status")
        status = json.loads(_ok(lab, node, "rabbitmqctl --quiet --formatter json cluster_status"))
        assert sorted(status["running_nodes"]) == want, f"{node.name}: {status['running_nodes']}"
        assert not status["partitions"], f"{node.name}: partitions {status['partitions']}"
        # The server listening on 25672 runs with the flags of rabbitmq-env.conf.
        script = (
            f"pid=$(ss -Htlnp 'sport = :{DIST_PORT}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2);"
            ' test -n "$pid" && ps -o args= -p "$pid"'
        )
        args = _ok(lab, node, script).split()
        assert "-proto_dist" in args and args[args.index("-proto_dist") + 1] == "inet_tls", (
            f"{node.name}: the server on {DIST_PORT} runs a plain distribution"
        )
        assert args[args.index("-ssl_dist_optfile") + 1] == OPTFILE, node.name
        env = _ok(lab, node, "cat /etc/rabbitmq/rabbitmq-env.conf")
        assert f'CTL_ERL_ARGS="-proto_dist inet_tls -ssl_dist_optfile {OPTFILE}"' in env


# Run on a messaging node: three connections to ip:port (the node `name`).
PROBE = r"""
import json, socket, ssl, struct, sys
ip, port, name, pki = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
# An Erlang distribution handshake's first message, send_name in the OTP 23+ format:
# flags (those OTP 25 requires; a hidden node), creation, name. A plain distribution
# answers it with a status message ('s' + ok/nok/...).
FLAGS = 0x4 | 0x10 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x20000 | 0x40000 | 0x1000000
me = b"vrstack-probe@" + name.encode()
msg = b"N" + struct.pack(">QIH", FLAGS, 1, len(me)) + me
HELLO = struct.pack(">H", len(msg)) + msg

def plain():
    with socket.create_connection((ip, port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(HELLO)
        data = b""
        try:
            while len(data) < 64:
                chunk = sock.recv(64)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    if data[2:3] == b"s":
        return "erlang status " + data[3 : 2 + struct.unpack(">H", data[:2])[0]].decode("latin-1")
    # 0x15: a TLS alert record (the server read the message as a broken ClientHello).
    return "tls alert" if data[:1] == b"\x15" else "other " + repr(data[:16])

def tls(cert):
    ctx = ssl.create_default_context(cafile=pki + "/ca.crt")
    if cert:
        ctx.load_cert_chain(pki + "/node.crt", pki + "/node.key")
    try:
        with socket.create_connection((ip, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as sock:
                sock.settimeout(3)
                version = sock.version()
                try:
                    # TLS 1.3: a missing client certificate is refused after the
                    # client's side of the handshake, as an alert on the first read.
                    sock.recv(1)
                except socket.timeout:
                    pass
                return "handshake " + version
    except ssl.SSLError as exc:
        return "refused " + (exc.reason or str(exc))
    except OSError as exc:
        return "error " + type(exc).__name__

print(json.dumps({"plain": plain(), "no_cert": tls(False), "node_cert": tls(True)}))
"""


def test_distribution_port_speaks_only_tls_with_a_deployment_certificate(lab: Lab) -> None:
    nodes = lab.by_role("messaging")
    problems = []
    for source in nodes:
        for target in nodes:
            args = [target.ip, str(DIST_PORT), target.name, PKI]
            got = json.loads(
                _ok(lab, source, f"python3 -c {shlex.quote(PROBE)} {shlex.join(args)}")
            )
            where = f"{source.name} -> {target.name}:{DIST_PORT}"
            if got["plain"] != "tls alert":
                problems.append(f"{where} plain: {got['plain']}")
            if not got["no_cert"].startswith("refused"):
                problems.append(f"{where} without a certificate: {got['no_cert']}")
            if got["node_cert"] not in ("handshake TLSv1.3", "handshake TLSv1.2"):
                problems.append(f"{where} with the node certificate: {got['node_cert']}")
    assert not problems, "; ".join(problems)


def test_messaging_nodes_are_connected_on_the_distribution_port(lab: Lab) -> None:
    nodes = lab.by_role("messaging")
    if len(nodes) < 2:
        pytest.skip("one messaging node: no peer to connect to")
    for node in nodes:
        peers = set()
        for line in _ok(lab, node, "ss -Htn state established").splitlines():
            # With a state filter ss prints no State column: Recv-Q Send-Q Local Peer.
            local, remote = line.split()[2:4]
            rip, _sep, rport = remote.rpartition(":")
            if DIST_PORT in (int(local.rpartition(":")[2]), int(rport)):
                peers.add(rip)
        others = {n.ip for n in nodes if n != node}
        assert peers >= others, f"{node.name}: 25672 connections with {sorted(peers)}"
