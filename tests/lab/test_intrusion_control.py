"""Intruders against the deployed control nodes (issue 11, "tests that try to get in").

- **A self-signed agent**: from a compute's network namespace, a TLS connection to each
  control node's XMPP port with a self-signed client certificate (made here, in a
  temporary directory) and an agent's stream header. The node must answer no stream,
  log `agent refused` naming this connection's address and port and a certificate
  reason, count it in `agents_refused`, and keep the real agents' sessions.
- **A BGP peer with the wrong password**: from another control node's namespace (an
  address the node has a configured, TCP MD5 keyed peer on), TCP 179 to the node with
  a wrong MD5 key and with none. Neither connects; the node's kernel counts the bad and
  the missing signature (`TcpExtTCPMD5Failure`, `TcpExtTCPMD5NotFound`), so the silence
  is the MD5 check's and not the firewall's; the real session stays Established without
  a flap.

The probes run inside the namespaces as `python test_intrusion_control.py xmpp|bgp ...`
(the scanner of test_security.py works the same way).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

XMPP_TIMEOUT = 10.0  # the node closes a failed handshake at once; its own limit is 10 s
BGP_TIMEOUT = 6.0  # a SYN and two retransmissions: an answer would come within 1 s
TCP_MD5SIG = 14  # linux/tcp.h


# ---- the probes (run inside a namespace) ------------------------------------------------


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A P-256 key and a certificate for `name` signed by that key itself, valid a day,
    usable as a TLS client certificate (what an agent's looks like, without the CA)."""
    cert, key = directory / "agent.crt", directory / "agent.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", "extendedKeyUsage=clientAuth",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def stream_header(name: str, to: str) -> bytes:
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' "
        f"from='{name}' to='{to}'>"
    ).encode()


def xmpp_probe(host: str, port: int, name: str) -> dict[str, str]:
    """Connect with a self-signed certificate for `name` and open an agent's stream.
    `outcome`: `answered` (the node sent a stream back: let in), `no answer`, or how the
    connection ended. TLS 1.3 finishes the client's side of the handshake before the
    server has checked the certificate, so the refusal shows at the first read."""
    with tempfile.TemporaryDirectory(prefix="vrs-intruder-") as tmp:
        cert, key = self_signed(Path(tmp), name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The node's certificate is not what is tested here: only whether it lets us in.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection((host, port), timeout=XMPP_TIMEOUT)
    local = "{}:{}".format(*raw.getsockname()[:2])
    try:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(stream_header(name, host))
            data = tls.recv(4096)
        outcome = "answered" if data else "closed"
    except ssl.SSLError as exc:
        outcome = f"TLS alert: {exc.reason or exc}"
    except TimeoutError:
        outcome = "no answer"
    except OSError as exc:  # reset, broken pipe
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        raw.close()
    return {"local": local, "outcome": outcome}


def md5sig(address: str, password: str) -> bytes:
    """struct tcp_md5sig (linux/tcp.h): sockaddr_storage (128 bytes), flags, prefixlen,
    keylen, ifindex, the key padded to 80 bytes."""
    ip = ipaddress.IPv4Address(address)
    sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + ip.packed
    key = password.encode()
    return (
        sockaddr.ljust(128, b"\0") + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(80, b"\0")
    )


def bgp_probe(source: str, host: str, port: int, password: str | None) -> dict[str, str]:
    """A TCP connection from `source` to a BGP port, signed with `password` (None: unsigned)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((source, 0))
        if password is not None:
            s.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(host, password))
        s.settimeout(BGP_TIMEOUT)
        local = "{}:{}".format(*s.getsockname()[:2])
        try:
            s.connect((host, port))
            outcome = "connected"
        except TimeoutError:
            outcome = "no answer"
        except OSError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
    return {"local": local, "outcome": outcome}


def probe_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="test_intrusion_control.py")
    sub = ap.add_subparsers(dest="what", required=True)
    x = sub.add_parser("xmpp")
    x.add_argument("host")
    x.add_argument("port", type=int)
    x.add_argument("name")
    b = sub.add_parser("bgp")
    b.add_argument("source")
    b.add_argument("host")
    b.add_argument("port", type=int)
    b.add_argument("--password-stdin", action="store_true", help="else unsigned")
    args = ap.parse_args(argv)
    if args.what == "xmpp":
        result = xmpp_probe(args.host, args.port, args.name)
    else:
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        result = bgp_probe(args.source, args.host, args.port, password)
    print(json.dumps(result))
    return 0


if __name__ == "__main__" and sys.argv[1:2] in (["xmpp"], ["bgp"]):
    sys.exit(probe_main(sys.argv[1:]))


# ---- the lab ---------------------------------------------------------------------------

import pytest  # noqa: E402
import test_security as security  # noqa: E402
from test_security import Lab, Node, on_node, secrets_file  # noqa: E402

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

XMPP_PORT = 5269  # sdn_control_xmpp_port
BGP_PORT = 179  # sdn_control_bgp_port
CONTROL_UNIT = "vrstack-control"
INTROSPECT = "http://127.0.0.1:8083/introspect"  # sdn_control_listen_host/port: loopback


def probe(netns: str, *args: str, stdin: str = "") -> dict[str, str]:
    cmd = ["ip", "netns", "exec", netns, sys.executable, __file__, *args]
    out = subprocess.run(cmd, input=stdin, text=True, capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, f"probe {args[0]} from {netns}: {out.stderr.strip()[-2000:]}"
    return dict(json.loads(out.stdout))


def introspect(lab: Lab, node: Node) -> dict[str, Any]:
    read = (
        "python3 -c 'import sys, urllib.request;"
        f' sys.stdout.write(urllib.request.urlopen("{INTROSPECT}", timeout=10).read().decode())\''
    )
    out = on_node(lab, node, read, timeout=60)
    assert out.returncode == 0, f"{node.name}: introspect: {out.stderr.strip()}"
    return dict(json.loads(out.stdout))


def refusals(lab: Lab, node: Node, since: float) -> list[dict[str, Any]]:
    """The node's `agent refused` log lines since `since` (epoch seconds)."""
    out = on_node(
        lab, node,
        f"journalctl -u {CONTROL_UNIT} --since @{int(since) - 1} -o cat --no-pager"
        " | grep -F '\"agent refused\"' || true",
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, f"{node.name}: journalctl: {out.stderr.strip()}"
    lines = []
    for line in out.stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_an_agent_with_a_self_signed_certificate_cannot_join(lab: Lab) -> None:
    compute = lab.by_role("compute")[0]
    controls = lab.by_role("control")
    assert controls, "no control node in the lab"
    name = f"intruder-{secrets.token_hex(3)}"  # no compute's: a wrong "yes" replaces nobody
    problems = []
    for node in controls:
        before = introspect(lab, node)
        assert before["xmpp_tls"] == "mutual", f"{node.name}: XMPP is {before['xmpp_tls']}"
        t0 = time.time()
        result = probe(compute.netns, "xmpp", node.ip, str(XMPP_PORT), name)
        if result["outcome"] in ("answered", "no answer"):
            problems.append(f"{node.name}: the self-signed agent was let in: {result}")
        deadline, logged = time.monotonic() + 15, []
        while not logged and time.monotonic() < deadline:
            logged = [r for r in refusals(lab, node, t0) if r.get("addr") == result["local"]]
            if not logged:
                time.sleep(1)
        if not logged:
            problems.append(f"{node.name}: no 'agent refused' line for {result['local']}")
        elif "certificate" not in str(logged[0].get("reason", "")):
            problems.append(f"{node.name}: refused for another reason: {logged[0]}")
        after = introspect(lab, node)
        if after["agents_refused"] <= before["agents_refused"]:
            problems.append(f"{node.name}: agents_refused did not count the refusal")
        agents = {a["name"] for a in after["agents"]}
        if name in agents:
            problems.append(f"{node.name}: has a session for {name}")
        if {a["name"] for a in before["agents"]} - agents:
            problems.append(f"{node.name}: real agents lost their sessions: {before['agents']}")
        print(f"{node.name}: {result}; logged {logged[:1]}")
    assert not problems, "; ".join(problems)


def md5_counters(lab: Lab, node: Node) -> dict[str, int]:
    """The node's TcpExt counters of TCP MD5 (its own network namespace's)."""
    out = on_node(lab, node, "cat /proc/net/netstat", timeout=60)
    assert out.returncode == 0, f"{node.name}: {out.stderr.strip()}"
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("TcpExt:")]
    assert len(rows) == 2, f"{node.name}: no TcpExt counters in /proc/net/netstat"
    counters = dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))
    return {k: counters.get(k, 0) for k in ("TCPMD5NotFound", "TCPMD5Failure", "TCPMD5Unexpected")}


def peer_state(intro: dict[str, Any], address: str) -> dict[str, Any]:
    found = [p for p in intro["bgp_peers"] if p["address"] == address]
    assert found, f"{intro['name']} has no BGP peer {address}: {intro['bgp_peers']}"
    return dict(found[0])


def test_a_bgp_peer_with_a_wrong_password_gets_no_session(lab: Lab) -> None:
    controls = lab.by_role("control")
    if len(controls) < 2:
        pytest.skip("one control node: no BGP peer to pretend to be (see the multirack lab)")
    right = secrets_file()["sdn_bgp_password"]
    wrong = secrets.token_urlsafe(24)
    assert wrong != right
    problems = []
    for node, source in zip(controls, controls[1:] + controls[:1], strict=True):
        before = introspect(lab, node)
        peer = peer_state(before, source.ip)
        if peer["state"] != "Established" or peer["auth"] != "md5":
            problems.append(f"{node.name}: peer {source.name} is {peer} before the test")
            continue
        counted = md5_counters(lab, node)
        wrong_key = probe(source.netns, "bgp", source.ip, node.ip, str(BGP_PORT),
                          "--password-stdin", stdin=wrong + "\n")  # fmt: skip
        unsigned = probe(source.netns, "bgp", source.ip, node.ip, str(BGP_PORT))
        now = md5_counters(lab, node)
        for what, result in (("a wrong MD5 key", wrong_key), ("no MD5 key", unsigned)):
            if result["outcome"] != "no answer":
                problems.append(f"{node.name}: {what} from {source.name}'s address: {result}")
        if now["TCPMD5Failure"] <= counted["TCPMD5Failure"]:
            problems.append(f"{node.name}: the wrong key was not dropped by TCP MD5: {now}")
        if now["TCPMD5NotFound"] <= counted["TCPMD5NotFound"]:
            problems.append(f"{node.name}: the unsigned SYN was not dropped by TCP MD5: {now}")
        after = peer_state(introspect(lab, node), source.ip)
        for key in ("state", "flaps", "established_at"):
            if after[key] != peer[key]:
                problems.append(
                    f"{node.name}: the real session's {key}: {peer[key]} -> {after[key]}"
                )
        print(f"{node.name} from {source.name}: {wrong_key}, {unsigned}; {counted} -> {now}")
    assert not problems, "; ".join(problems)
