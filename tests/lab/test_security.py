"""Tests that try to get into the deployed lab (issue 11; docs/security.md lists the ports).

- Port scans: every TCP port of every node from a namespace outside the fabric (a new
  veth on the spine) and from a compute, plus UDP probes of the overlay ports. What is
  open must be exactly what listens there and the source may reach (the tables below,
  written here by hand so they check the firewall role's table, not repeat it).
- The config and analytics APIs refuse requests without or with a wrong token and
  change nothing.
- No generated secret in any node's logs or in `ansible-playbook -v` output.
- Every file on a node holding a secret or a private key is closed to other users.

The scanner itself runs inside a namespace as `python test_security.py scan ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import http.client
import json
import os
import resource
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# ---- what may reach what (the oracle) --------------------------------------------------

PUBLIC_API = {5000, 6080, 8774, 8778, 9292, 9696}  # OpenStack's endpoints for users
# TCP ports a node of each fabric role answers for a source outside the fabric (not the
# deploy host): only the public APIs. ssh is for the deploy host and the fabric.
FROM_OUTSIDE: dict[str, set[int]] = {"controller": PUBLIC_API}
# ... and for a compute.
FROM_COMPUTE: dict[str, set[int]] = {
    "all": {22},
    "controller": PUBLIC_API | {8082},  # config API (port state); 8775 closed: no metadata API
    "messaging": {5671},  # nova-compute's RPC, AMQP over TLS (5672 is off)
    "analytics": {8081},  # the agent's records
    "control": {5269},  # XMPP
}
OVERLAY_UDP = [6635, 4789]  # MPLSoUDP, VXLAN: only between computes (and gateways)

# Seconds a SYN may go unanswered before the port counts as filtered: veths answer in
# milliseconds even on a loaded host, and an expected port that was slow gets a second look.
SCAN_TIMEOUT = 1.0
SCAN_CONCURRENCY = 8000
SCAN_LIMIT = 900  # seconds for a whole scan from one namespace


# ---- the scanner (runs inside a namespace) ---------------------------------------------


async def _tcp(ip: str, port: int, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(s, (ip, port)), timeout)
        except TimeoutError:
            return "filtered"
        except ConnectionRefusedError:
            return "closed"
        except OSError as exc:  # host or network unreachable (an ICMP error)
            unreachable = exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
            return "unreachable" if unreachable else "error"
        return "open"


async def _scan(targets: list[str], ports: list[int], timeout: float, limit: int) -> dict:
    """Every target's ports, `limit` workers each with one connection in flight (a task
    per worker, not per port: 262,140 pending tasks cost more than the scan itself)."""
    jobs = iter([(ip, p) for ip in targets for p in ports])
    out: dict[str, dict[str, list[int]]] = {ip: {} for ip in targets}

    async def worker() -> None:
        for ip, port in jobs:
            out[ip].setdefault(await _tcp(ip, port, timeout), []).append(port)

    await asyncio.gather(*(worker() for _worker in range(limit)))
    for states in out.values():
        for found in states.values():
            found.sort()
    return out


def probe_udp(ip: str, port: int, tries: int = 3) -> str:
    """`refused`: an ICMP port unreachable came back (the packet reached the host's stack
    and nothing listens); `silent`: no answer (dropped, or a listener said nothing)."""
    for _attempt in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.7)
            s.connect((ip, port))
            try:
                s.send(b"vrstack-security-probe")
                s.recv(2048)
                return "answered"
            except ConnectionRefusedError:
                return "refused"
            except TimeoutError:
                continue
    return "silent"


def scanner_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="test_security.py scan")
    ap.add_argument("--tcp", default="1-65535", help="first-last or a comma list")
    ap.add_argument("--udp", default="", help="comma list")
    ap.add_argument("--timeout", type=float, default=SCAN_TIMEOUT)
    ap.add_argument("--concurrency", type=int, default=SCAN_CONCURRENCY)
    ap.add_argument("targets", nargs="+")
    args = ap.parse_args(argv)
    if "-" in args.tcp:
        first, last = (int(x) for x in args.tcp.split("-"))
        ports = list(range(first, last + 1))
    else:
        ports = [int(p) for p in args.tcp.split(",") if p]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.concurrency + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    limit = min(args.concurrency, want - 256)
    result = asyncio.run(_scan(args.targets, ports, args.timeout, limit)) if ports else {}
    udp = {ip: {p: probe_udp(ip, int(p)) for p in args.udp.split(",") if p} for ip in args.targets}
    print(json.dumps({"tcp": result, "udp": udp}))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["scan"]:
    sys.exit(scanner_main(sys.argv[2:]))


# ---- the lab ---------------------------------------------------------------------------

import pytest  # noqa: E402  (the scanner above runs without pytest)
import yaml  # noqa: E402
from labcloud import STATE, sdn_open  # noqa: E402

INVENTORY = os.environ.get("VRSTACK_LAB_INVENTORY", "inventories/lab")
SPINE_NS = "vrs-spine"  # tools/lab.py's names
OUTSIDE_NS = "vrs-sec-out"
OUTSIDE_VETH = "sec-out"


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    roles: tuple[str, ...]

    @property
    def netns(self) -> str:
        return f"vrs-{self.name}"

    def allowed(self, table: dict[str, set[int]]) -> set[int]:
        return set().union(*(table.get(r, set()) for r in ("all", *self.roles)))


@dataclass(frozen=True)
class Lab:
    nodes: tuple[Node, ...]
    model: dict[str, Any]
    ssh_key: str
    ssh_user: str

    def by_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if role in n.roles]


def plain(value: Any) -> Any:
    """ansible-inventory's JSON marks unsafe strings as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@pytest.fixture(scope="module")
def lab() -> Lab:
    return load_lab(INVENTORY)


def load_lab(inventory: str) -> Lab:
    """The nodes of an inventory as ansible-inventory gives them (the fabric plugin)."""
    out = subprocess.run(
        ["ansible-inventory", "-i", inventory, "--list"],
        cwd=REPO, text=True, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, f"ansible-inventory -i {inventory}: {out.stderr.strip()}"
    hostvars = plain(json.loads(out.stdout)["_meta"]["hostvars"])
    nodes = tuple(
        Node(name, hv["vrstack_fabric_ip"], tuple(hv["vrstack_roles"]))
        for name, hv in sorted(hostvars.items())
    )
    first = hostvars[nodes[0].name]
    return Lab(
        nodes, first["vrstack_fabric"], first["ansible_ssh_private_key_file"], first["ansible_user"]
    )


def on_node(lab: Lab, node: Node, script: str, stdin: str = "", timeout: float = 180):
    """A shell script run on a node over ssh (the deploy host may reach ssh)."""
    return subprocess.run(
        ["ssh", "-i", lab.ssh_key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
         f"{lab.ssh_user}@{node.ip}", script],
        input=stdin, text=True, capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip


def listening_tcp(lab: Lab, node: Node) -> set[int]:
    """TCP ports a node listens on at its fabric address (or every address)."""
    out = on_node(lab, node, "ss -Hltn")
    assert out.returncode == 0, f"{node.name}: ss: {out.stderr.strip()}"
    ports = set()
    for line in out.stdout.splitlines():
        local = line.split()[3]
        addr, _sep, port = local.rpartition(":")
        if addr.strip("[]").split("%")[0] in ("0.0.0.0", "*", "::", node.ip):
            ports.add(int(port))
    return ports


def dropped(lab: Lab, node: Node) -> int:
    """Packets the node's firewall dropped so far (the input chain's counter)."""
    out = on_node(lab, node, "nft -j list counter inet vrstack input_dropped")
    assert out.returncode == 0, f"{node.name}: no table inet vrstack: {out.stderr.strip()}"
    objs = json.loads(out.stdout)["nftables"]
    return next(o["counter"]["packets"] for o in objs if "counter" in o)


def scan(netns: str, targets: list[str], tcp: str = "1-65535", udp: list[int] = ()) -> dict:
    cmd = ["ip", "netns", "exec", netns, sys.executable, __file__, "scan", "--tcp", tcp,
           "--udp", ",".join(map(str, udp)), *targets]  # fmt: skip
    out = subprocess.run(cmd, text=True, capture_output=True, timeout=SCAN_LIMIT, check=False)
    assert out.returncode == 0, f"scan from {netns}: {out.stderr.strip()[-2000:]}"
    return json.loads(out.stdout)


def open_ports(netns: str, node: Node, found: dict[str, list[int]], expected: set[int]) -> set[int]:
    """The ports found open, after a slower second look at expected ones that were not
    (a loaded machine may answer a SYN late)."""
    opened = set(found.get("open", []))
    missed = sorted(expected - opened)
    if missed:
        again = scan(netns, [node.ip], tcp=",".join(map(str, missed)))["tcp"][node.ip]
        opened |= set(again.get("open", []))
    return opened


@pytest.fixture(scope="module")
def outside(lab: Lab) -> Iterator[str]:
    """A namespace outside the fabric: a new veth on the spine, in the last /31 of the
    spine's link pool (the model hands links out from the start of it)."""
    import ipaddress

    pool = ipaddress.ip_network(lab.model["spine"]["link_pool"])
    spine_ip, my_ip = pool[-2], pool[-1]
    used = {v for link in lab.model["spine"]["links"].values() for v in link.values()}
    assert str(spine_ip) not in used and str(my_ip) not in used, f"{pool}: its last /31 is in use"

    def ip(*args: str, check: bool = True) -> None:
        subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)

    ip("netns", "del", OUTSIDE_NS, check=False)  # a leftover of an interrupted run
    ip("-n", SPINE_NS, "link", "del", OUTSIDE_VETH, check=False)
    ip("netns", "add", OUTSIDE_NS)
    try:
        ip("-n", SPINE_NS, "link", "add", OUTSIDE_VETH, "type", "veth", "peer", "eth0",
           "netns", OUTSIDE_NS)  # fmt: skip
        ip("-n", SPINE_NS, "address", "add", f"{spine_ip}/31", "dev", OUTSIDE_VETH)
        ip("-n", SPINE_NS, "link", "set", OUTSIDE_VETH, "up")
        ip("-n", OUTSIDE_NS, "address", "add", f"{my_ip}/31", "dev", "eth0")
        ip("-n", OUTSIDE_NS, "link", "set", "lo", "up")
        ip("-n", OUTSIDE_NS, "link", "set", "eth0", "up")
        ip("-n", OUTSIDE_NS, "route", "add", "198.18.0.0/15", "via", str(spine_ip))
        yield OUTSIDE_NS
    finally:
        ip("netns", "del", OUTSIDE_NS, check=False)
        ip("-n", SPINE_NS, "link", "del", OUTSIDE_VETH, check=False)


# ---- port scans -----------------------------------------------------------------------


def test_scan_from_outside_finds_only_the_public_apis(lab: Lab, outside: str) -> None:
    computes = lab.by_role("compute")
    before = {n.name: dropped(lab, n) for n in computes}
    t0 = time.monotonic()
    result = scan(outside, [n.ip for n in lab.nodes], udp=OVERLAY_UDP)
    took = time.monotonic() - t0
    problems, blocked = [], 0
    for node in lab.nodes:
        found = result["tcp"][node.ip]
        listening = listening_tcp(lab, node)
        allowed = node.allowed(FROM_OUTSIDE)
        opened = open_ports(outside, node, found, allowed & listening)
        if opened != allowed & listening:
            problems.append(
                f"{node.name}: open {sorted(opened)}, expected {sorted(allowed & listening)}"
            )
        # Dropped, not refused: a port nobody listens on must not answer either.
        closed = set(found.get("closed", []))
        if closed - allowed:
            problems.append(f"{node.name}: answered (RST) on {sorted(closed - allowed)[:20]}")
        blocked += len(listening - allowed)
    for node in computes:
        udp = result["udp"][node.ip]
        if any(state != "silent" for state in udp.values()):
            problems.append(f"{node.name}: overlay UDP from outside got {udp}")
        if dropped(lab, node) - before[node.name] < 65535:
            problems.append(f"{node.name}: its drop counter did not count the scan")
    assert not problems, "; ".join(problems)
    # The scan met listeners it had to be kept from (ssh at least, on every node).
    assert blocked >= len(lab.nodes), "nothing listening was blocked: was anything scanned?"
    print(f"outside scan: {len(lab.nodes)} nodes x 65535 TCP ports in {took:.0f} s")


def test_scan_from_a_compute_finds_what_a_compute_may_reach(lab: Lab) -> None:
    me = lab.by_role("compute")[0]
    targets = [n for n in lab.nodes if n != me]
    result = scan(me.netns, [n.ip for n in targets], udp=OVERLAY_UDP)
    problems = []
    for node in targets:
        listening = listening_tcp(lab, node)
        allowed = node.allowed(FROM_COMPUTE)
        opened = open_ports(me.netns, node, result["tcp"][node.ip], allowed & listening)
        if opened != allowed & listening:
            problems.append(
                f"{node.name}: open {sorted(opened)}, expected {sorted(allowed & listening)}"
            )
        udp = result["udp"][node.ip]
        if "compute" in node.roles and set(udp.values()) == {"silent"}:
            # Between computes the overlay must get through (nothing binds these
            # ports: the datapath reads frames, so the stack answers unreachable).
            problems.append(f"{node.name}: overlay UDP from {me.name} got no answer: {udp}")
        if "compute" not in node.roles and any(s != "silent" for s in udp.values()):
            problems.append(f"{node.name}: overlay UDP from {me.name} reached it: {udp}")
    assert not problems, "; ".join(problems)


# ---- the APIs refuse strangers ---------------------------------------------------------


# Entries of the secrets file that are state, not secrets: which of the SDN's two Keystone
# users is in use ("a" or "b"; a one-letter value is in every log).
NOT_SECRETS = {"sdn_keystone_password_active"}


def secrets_file() -> dict[str, str]:
    return {k: str(v) for k, v in yaml.safe_load((STATE / "secrets.yml").read_text()).items()}


def secret_values() -> dict[str, str]:
    """The secrets file without its state entries: what no log or output may show."""
    return {k: v for k, v in secrets_file().items() if k not in NOT_SECRETS}


def call(url: str, method: str = "GET", token: str | None = None, body: Any = None,
         ctype: str = "application/json") -> tuple[int, Any]:  # fmt: skip
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", ctype)
    if token is not None:
        req.add_header("X-Auth-Token", token)
    try:
        with sdn_open(req, timeout=20) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


WRONG_TOKENS = [None, "", "not-a-token", uuid.uuid4().hex]


def refuses_plain_http(url: str) -> None:
    """An https API answers nothing to plain HTTP (tokens never go in clear) and does not
    accept a client that lacks the deployment CA."""
    assert url.startswith("https://"), f"{url}: the lab deploys the SDN APIs over HTTPS"
    plain = urllib.request.Request("http://" + url.removeprefix("https://") + "/health")
    with pytest.raises((urllib.error.URLError, OSError, http.client.HTTPException)):
        urllib.request.urlopen(plain, timeout=10).read()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url + "/health", timeout=10)  # the system CAs only


def test_config_api_refuses_missing_and_wrong_tokens(lab: Lab) -> None:
    api = lab.model["endpoints"]["api_url"]
    sec = secrets_file()
    reader = sec["sdn_api_reader_token"]

    def count() -> int:
        status, body = call(f"{api}/virtual-networks?limit=1000", token=reader)
        assert status == 200, f"reader token: {status} {body}"
        return len(body["items"])

    # Writes aim at an object that does not exist: were a token wrongly taken, nothing
    # of the lab's is touched, and the answer (404, not 401/403) still fails the test.
    victim = str(uuid.uuid4())
    before = count()
    refuses_plain_http(api)
    problems = []
    new = {"name": f"sec-probe-{uuid.uuid4().hex[:6]}"}
    for token in WRONG_TOKENS:
        for method, path, payload in (
            ("GET", "/virtual-networks", None),
            ("POST", "/virtual-networks", new),
            ("PUT", f"/virtual-networks/{victim}", {"display_name": "hijacked"}),
            ("DELETE", f"/virtual-networks/{victim}", None),
        ):
            status, _body = call(api + path, method, token, payload)
            if status not in (401, 403):
                problems.append(f"{method} {path} with token {token!r}: {status}")
    # The reader may read, never write.
    for method, path, payload in (
        ("POST", "/virtual-networks", new),
        ("DELETE", f"/virtual-networks/{victim}", None),
    ):
        status, _body = call(api + path, method, reader, payload)
        if status != 403:
            problems.append(f"{method} {path} with the reader token: {status}, not 403")
    assert not problems, "; ".join(problems)
    assert count() == before, "a refused request changed the virtual networks"


def test_analytics_api_refuses_missing_and_wrong_tokens(lab: Lab) -> None:
    api = lab.model["endpoints"]["analytics_url"]
    refuses_plain_http(api)
    sec = secrets_file()
    marker = f"sec-probe-{uuid.uuid4().hex}"

    def count() -> int:
        query = {"table": "logs", "select": ["count()"], "since": "-1h",
                 "where": [{"field": "msg", "op": "=", "value": marker}]}  # fmt: skip
        status, body = call(f"{api}/query", "POST", sec["sdn_analytics_reader_token"], query)
        assert status == 200, f"query with the reader token: {status} {body}"
        return int(next(iter(body["items"][0].values())))

    def record() -> bytes:
        rec = {"kind": "log", "id": uuid.uuid4().hex, "ts": time.time(), "level": "info",
               "service": "sec-probe", "msg": marker}  # fmt: skip
        return json.dumps(rec).encode()

    problems = []
    for token in [*WRONG_TOKENS, sec["sdn_analytics_reader_token"]]:
        status, _body = call(
            f"{api}/ingest/sec-probe", "POST", token, record(), "application/x-ndjson"
        )
        want = (403,) if token == sec["sdn_analytics_reader_token"] else (401, 403)
        if status not in want:
            problems.append(f"ingest with token {token!r}: {status}")
        if token != sec["sdn_analytics_reader_token"]:
            status, _body = call(
                f"{api}/query", "POST", token, {"table": "logs", "select": ["count()"]}
            )
            if status not in (401, 403):
                problems.append(f"query with token {token!r}: {status}")
    assert not problems, "; ".join(problems)
    assert count() == 0, "a refused ingest stored a record"
    # The same record with the admin token is stored: the count above could see one.
    status, body = call(
        f"{api}/ingest/sec-probe", "POST", sec["sdn_analytics_admin_token"], record(),
        "application/x-ndjson",
    )  # fmt: skip
    assert status in (200, 202), f"ingest with the admin token: {status} {body}"
    deadline = time.monotonic() + 30
    while count() == 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert count() == 1


# ---- secrets stay secret -----------------------------------------------------------------

PATTERNS = "/root/.vrstack-secret-patterns"


def find_secrets(lab: Lab, node: Node, script: str, sec: dict[str, str]) -> tuple[str, str]:
    """Runs `script` on the node with $P naming a file of the secret values (removed after);
    returns its output and stderr."""
    patterns = "".join(f"{v}\n" for v in sec.values())
    wrapped = f"umask 077; P={PATTERNS}; cat > $P; trap 'rm -f $P' EXIT; {script}"
    out = on_node(lab, node, wrapped, stdin=patterns, timeout=600)
    return out.stdout, out.stderr


def names_of(text: str, sec: dict[str, str]) -> list[str]:
    return sorted(name for name, value in sec.items() if value in text)


def test_no_secret_in_any_service_log(lab: Lab) -> None:
    sec = secret_values()
    found = {}
    for node in lab.nodes:
        out, err = find_secrets(
            lab, node,
            "journalctl --no-pager -o cat | grep -oF -f $P | sort -u;"
            " grep -rhoaF -f $P --exclude-dir=journal /var/log | sort -u",
            sec,
        )  # fmt: skip
        assert "No such file" not in err, f"{node.name}: {err}"
        leaked = names_of(out, sec)
        if leaked:
            found[node.name] = leaked
    assert not found, f"secrets in service logs (names only): {found}"


def test_no_secret_in_verbose_ansible_output() -> None:
    """A saved `ansible-playbook -v` output ($VRSTACK_DEPLOY_LOG), else a verbose check-mode
    run of the roles that handle most secrets."""
    sec = secret_values()
    saved = os.environ.get("VRSTACK_DEPLOY_LOG")
    if saved:
        text = Path(saved).read_text(errors="replace")
    else:
        tags = "mariadb,rabbitmq,keystone,sdn_config,sdn_analytics"
        out = subprocess.run(
            ["ansible-playbook", "-v", "-i", INVENTORY, "playbooks/site.yml", "--check",
             "--diff", "--tags", tags],
            cwd=REPO, text=True, capture_output=True, timeout=1500, check=False,
        )  # fmt: skip
        text = out.stdout + out.stderr
        assert "PLAY RECAP" in text, f"the check run did not finish: {text[-2000:]}"
    assert "PLAY RECAP" in text
    leaked = names_of(text, sec)
    assert not leaked, f"secrets in ansible-playbook -v output: {leaked}"


def test_secret_files_are_closed_to_other_users(lab: Lab) -> None:
    """Every file under the configuration and state directories that holds a generated
    secret or a private key: no access for others, no writing for the group."""
    sec = secret_values()
    dirs = "/etc /root /usr/local/etc /var/lib/vrstack /opt/openstack/etc"
    script = (
        f"for d in {dirs}; do [ -d $d ] && echo $d; done | xargs -r grep -rlIF -f $P"
        ' --exclude-dir=.ansible 2>/dev/null | grep -v "^$P$";'
        f" for d in {dirs}; do [ -d $d ] && echo $d; done | xargs -r grep -rlI 'PRIVATE KEY'"
        " --exclude-dir=.ansible 2>/dev/null;"
        " for d in /etc/keystone/fernet-keys /etc/keystone/credential-keys; do"
        " [ -d $d ] && find $d -type f; done; true"
    )
    problems, checked = [], 0
    for node in lab.nodes:
        out, _err = find_secrets(lab, node, script, sec)
        files = sorted(set(out.split()))
        if not files:
            continue
        stat = on_node(lab, node, "stat -c '%a %U %G %n' " + " ".join(map(shlex.quote, files)))
        assert stat.returncode == 0, f"{node.name}: stat: {stat.stderr}"
        for line in stat.stdout.splitlines():
            mode, owner, group, path = line.split(" ", 3)
            checked += 1
            perm = int(mode, 8)
            if perm & 0o027 or group in ("users", "staff") or owner == "nobody":
                problems.append(f"{node.name}:{path} is {mode} {owner}:{group}")
    assert checked, "no secret-bearing file found: the search is broken"
    assert not problems, (
        "secret files open to others (want 0640 root:<service> or stricter): " + "; ".join(problems)
    )
