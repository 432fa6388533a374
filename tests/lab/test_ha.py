"""Three controllers behind one VIP (inventories/ha-lab): the APIs answer through the VIP,
Galera and RabbitMQ are full clusters, Keystone's keys agree on every controller (also
across a rotation), and stopping the controller that holds the VIP costs a few seconds of
API time and no committed object; the stopped controller rejoins when it comes back.

Runs only when the ha-lab is up and deployed:

    python tools/lab.py up --inventory inventories/ha-lab
    python tools/lab.py hold --lab ha-lab -- ansible-playbook -i inventories/ha-lab \\
        playbooks/site.yml
    VRSTACK_CLUSTER=ha-lab ./scripts/run-pytest.sh -rA tests/lab/test_ha.py

The numbers (failover window, rejoin times) are printed with `-rA`/`-s`; docs/performance.md
keeps the measured ones.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from labcloud import sdn_context

# tools/lab.py reads the inventory the way the lab was built from it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import lab as labtool

REPO = Path(__file__).resolve().parents[2]
INVENTORY = os.environ.get("VRSTACK_HA_INVENTORY", "inventories/ha-lab")
STATE = Path.home() / ".local/share/vrstack/ha-lab"
# The APIs behind haproxy: port, path, the statuses that mean "answering".
ALL_APIS = {
    "keystone": (5000, "/v3", {200}),
    "glance": (9292, "/", {300}),
    "placement": (8778, "/", {200}),
    "nova": (8774, "/", {200}),
    "neutron": (9696, "/", {200}),
}
# VRSTACK_HA_APIS=keystone,nova checks only those (a lab deployed with some tags only).
APIS = {
    name: ALL_APIS[name]
    for name in os.environ.get("VRSTACK_HA_APIS", ",".join(ALL_APIS)).split(",")
    if name in ALL_APIS
}
FAILOVER_LIMIT = 30.0  # seconds the APIs may not answer through the VIP
# The Galera health responder haproxy asks (vrstack.cloud.mariadb, mariadb_health_port).
GALERA_HEALTH_PORT = int(os.environ.get("VRSTACK_GALERA_HEALTH_PORT", "4569"))
# After the APIs answer again, tokens are issued through the VIP for this long: longer
# than a stopping MariaDB takes to shut down (~10 s), whose sessions used to hang.
TOKEN_WINDOW = 20.0
REJOIN_LIMIT = 600.0  # seconds for a restarted controller's Galera/RabbitMQ to rejoin
POLL_INTERVAL = 0.25


# --------------------------------------------------------------------------
# The lab as the inventory describes it
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HaLab:
    vip: str
    hosts: dict[str, str]  # controller name -> fabric address
    vip_hosts: list[str]  # controllers on the VIP's segment, in inventory order
    ssh_key: str
    env: dict[str, str] = field(default_factory=dict)
    # The fabric model's vrstack_endpoints.openstack_scheme (cluster.openstack_tls).
    scheme: str = "https"

    def url(self, address: str, port: int, path: str) -> str:
        return f"{self.scheme}://{address}:{port}{path}"


def _open(req: urllib.request.Request | str, timeout: float) -> Any:
    """`urlopen` that checks an https API with the deployment CA beside the secrets file."""
    url = req if isinstance(req, str) else req.full_url
    return urllib.request.urlopen(req, timeout=timeout, context=sdn_context(url, STATE))


def _answers(url: str, statuses: set[int], timeout: float = 2.0) -> bool:
    try:
        with _open(url, timeout) as resp:
            return resp.status in statuses
    except urllib.error.HTTPError as exc:
        return exc.code in statuses
    except OSError:
        return False


@pytest.fixture(scope="module")
def lab() -> HaLab:
    openrc = STATE / "openrc"
    if not openrc.exists():
        pytest.skip(f"the ha-lab is not deployed ({openrc} is missing): see this module's doc")
    model = labtool.load_inventory(str(REPO / INVENTORY))
    vip = str(model.endpoints.get("api"))
    scheme = str(model.endpoints.get("openstack_scheme", "https"))
    if not _answers(f"{scheme}://{vip}:5000/v3", {200}, timeout=5):
        pytest.skip(f"the ha-lab's Keystone does not answer on the VIP {vip}: is the lab up?")
    ctl = sorted((h for h in model.hosts if "controller" in h.roles), key=lambda h: h.name)
    subnets = {r.name: ipaddress.ip_network(r.subnet) for r in model.racks}
    vip_hosts = [h.name for h in ctl if ipaddress.ip_address(vip) in subnets[h.rack]]
    env = {}
    for line in openrc.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value.strip("'\"")
    return HaLab(vip, {h.name: h.ip for h in ctl}, vip_hosts, model.ssh_key, env, scheme)


def ssh(
    lab: HaLab, host: str, command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", lab.ssh_key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
         f"root@{lab.hosts[host]}", command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def vip_holders(lab: HaLab) -> list[str]:
    found = []
    for host in lab.vip_hosts:
        out = ssh(lab, host, f"ip -o -4 addr show to {lab.vip}/32", timeout=15)
        if out.returncode == 0 and lab.vip in out.stdout:
            found.append(host)
    return found


def wsrep(lab: HaLab, host: str) -> dict[str, str]:
    out = ssh(
        lab, host, "mysql --batch --skip-column-names -e \"SHOW GLOBAL STATUS LIKE 'wsrep_%'\""
    )
    return dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)


# Run on a lab host (the responder's port is open only to the haproxy nodes): prints the
# HTTP status and the body's first line, or "error <reason>".
_HTTP_GET = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as resp:
        print(resp.status, resp.read().decode().strip())
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode().strip())
except OSError as exc:
    print("error", exc)
"""


def http_from(lab: HaLab, host: str, url: str) -> str:
    """GET `url` from `host`; "<status> <body>" or "error <reason>"."""
    script = base64.b64encode(_HTTP_GET.encode()).decode()
    out = ssh(lab, host, f"echo {script} | base64 -d | python3 - {url}", timeout=30)
    return out.stdout.strip() or f"error ssh: {out.stderr.strip()}"


# haproxy's runtime API on its admin socket: "show stat" as CSV.
_SHOW_STAT = """
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("/run/haproxy/admin.sock")
s.sendall(b"show stat\\n")
print(b"".join(iter(lambda: s.recv(65536), b"")).decode())
"""


def haproxy_servers(lab: HaLab, host: str, proxy: str) -> dict[str, dict[str, str]]:
    """haproxy's view on `host` of the servers of `proxy`: name -> its stat row."""
    script = base64.b64encode(_SHOW_STAT.encode()).decode()
    out = ssh(lab, host, f"echo {script} | base64 -d | python3 -", timeout=30)
    rows = csv.DictReader(out.stdout.lstrip("# ").splitlines())
    return {
        row["svname"]: row
        for row in rows
        if row.get("pxname") == proxy and row.get("svname") not in ("FRONTEND", "BACKEND")
    }


def rabbit_running(lab: HaLab, host: str) -> list[str]:
    out = ssh(lab, host, "rabbitmqctl cluster_status --formatter json")
    if out.returncode != 0:
        return []
    return sorted(json.loads(out.stdout)["running_nodes"])


# --------------------------------------------------------------------------
# Keystone over its REST API (no client needed to issue and validate tokens)
# --------------------------------------------------------------------------


def issue_token(lab: HaLab, address: str) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": lab.env["OS_USERNAME"],
                        "domain": {"name": lab.env.get("OS_USER_DOMAIN_NAME", "Default")},
                        "password": lab.env["OS_PASSWORD"],
                    }
                },
            },
            "scope": {
                "project": {
                    "name": lab.env["OS_PROJECT_NAME"],
                    "domain": {"name": lab.env.get("OS_PROJECT_DOMAIN_NAME", "Default")},
                }
            },
        }
    }
    req = urllib.request.Request(
        lab.url(address, 5000, "/v3/auth/tokens"),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _open(req, 30) as resp:
        return str(resp.headers["X-Subject-Token"])


def token_failure(lab: HaLab) -> str:
    """Issue a token through the VIP: "" when it worked, else what went wrong."""
    try:
        issue_token(lab, lab.vip)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def token_valid(lab: HaLab, address: str, token: str) -> int:
    req = urllib.request.Request(
        lab.url(address, 5000, "/v3/auth/tokens"),
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
    )
    try:
        with _open(req, 30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def keystone_call(lab: HaLab, method: str, path: str, token: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        lab.url(lab.vip, 5000, "/v3" + path),
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-Auth-Token": token, "Content-Type": "application/json"},
        method=method,
    )
    with _open(req, 30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def key_digest(lab: HaLab, host: str) -> str:
    out = ssh(lab, host, "cd /etc/keystone && sha256sum fernet-keys/* credential-keys/* | sort -k2")
    assert out.returncode == 0, f"{host}: cannot read the key repositories: {out.stderr}"
    return hashlib.sha256(out.stdout.encode()).hexdigest()


def run_playbook(*args: str, timeout: float = 1800) -> None:
    cmd = [sys.executable, "tools/lab.py", "hold", "--lab", "ha-lab", "--",
           "ansible-playbook", "-i", INVENTORY, *args]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, (
        f"{' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"
    )


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


def test_apis_answer_through_the_vip(lab: HaLab) -> None:
    for name, (port, path, statuses) in APIS.items():
        assert _answers(lab.url(lab.vip, port, path), statuses, timeout=10), (
            f"{name} does not answer through the VIP {lab.url(lab.vip, port, path)}"
        )
    assert len(vip_holders(lab)) == 1, "exactly one controller should hold the VIP"


def test_galera_is_one_synced_cluster(lab: HaLab) -> None:
    for host in lab.hosts:
        state = wsrep(lab, host)
        assert state.get("wsrep_cluster_size") == str(len(lab.hosts)), f"{host}: {state}"
        assert state.get("wsrep_local_state_comment") == "Synced", f"{host}: {state}"
        assert state.get("wsrep_cluster_status") == "Primary", f"{host}: {state}"


def test_galera_health_answers_200_on_every_synced_node(lab: HaLab) -> None:
    checker = lab.vip_hosts[0]  # a haproxy node: the port is open to those only
    for host, address in lab.hosts.items():
        answer = http_from(lab, checker, f"http://{address}:{GALERA_HEALTH_PORT}/")
        assert answer == "200 Synced, Primary", f"{host}'s Galera health from {checker}: {answer}"
    # haproxy uses it: every database node UP by its HTTP check, one of them active.
    holder = vip_holders(lab)[0]
    servers = haproxy_servers(lab, holder, "mariadb")
    assert sorted(servers) == sorted(lab.hosts), f"haproxy's mariadb servers on {holder}: {servers}"
    for name, row in servers.items():
        # haproxy marks a check that is running at that moment with "* ".
        check = row["check_status"].removeprefix("* ")
        assert row["status"] == "UP" and check == "L7OK", (
            f"{holder}: mariadb server {name} is {row['status']} ({row['check_status']})"
        )
    assert [row["bck"] for row in servers.values()].count("0") == 1, "one active database node"


def test_galera_health_port_is_closed_to_other_hosts(lab: HaLab) -> None:
    others = [h for h in lab.hosts if h not in lab.vip_hosts]
    if not others:
        pytest.skip("every controller can hold the VIP: no host outside the haproxy nodes")
    target = lab.vip_hosts[0]
    answer = http_from(lab, others[0], f"http://{lab.hosts[target]}:{GALERA_HEALTH_PORT}/")
    assert answer.startswith("error"), f"{others[0]} reached {target}'s Galera health: {answer}"


def test_a_desynced_node_is_taken_out_and_put_back(lab: HaLab) -> None:
    # A node out of Synced (here: desynced on purpose, as a donor is) answers 503 and haproxy
    # marks it down; Synced again, it comes back. A backup node, so writes are untouched.
    holder = vip_holders(lab)[0]
    node = [h for h in lab.hosts if h != lab.vip_hosts[0]][-1]
    url = f"http://{lab.hosts[node]}:{GALERA_HEALTH_PORT}/"
    mysql = "mysql --batch --skip-column-names -e"
    try:
        assert ssh(lab, node, f"{mysql} 'SET GLOBAL wsrep_desync = ON'").returncode == 0
        answer = http_from(lab, holder, url)
        assert answer.startswith("503") and "local state 2" in answer, answer
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline
            and haproxy_servers(lab, holder, "mariadb")[node]["status"] != "DOWN"
        ):
            time.sleep(0.5)
        assert haproxy_servers(lab, holder, "mariadb")[node]["status"] == "DOWN"
    finally:
        ssh(lab, node, f"{mysql} 'SET GLOBAL wsrep_desync = OFF'")
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and haproxy_servers(lab, holder, "mariadb")[node]["status"] != "UP"
    ):
        time.sleep(0.5)
    assert http_from(lab, holder, url) == "200 Synced, Primary"
    assert haproxy_servers(lab, holder, "mariadb")[node]["status"] == "UP"


def test_rabbitmq_is_one_cluster_with_quorum_queues(lab: HaLab) -> None:
    expected = sorted(f"rabbit@{h}" for h in lab.hosts)
    for host in lab.hosts:
        assert rabbit_running(lab, host) == expected, f"{host}: RabbitMQ cluster differs"
    if "nova" not in APIS:
        return  # nova declares the queues: without it there are none to look at
    first = next(iter(lab.hosts))
    out = ssh(lab, first, "rabbitmqctl list_queues -p openstack name type --formatter json")
    queues = json.loads(out.stdout)
    quorum = [q["name"] for q in queues if q.get("type") == "quorum"]
    assert any(q.startswith(("conductor", "scheduler")) for q in quorum), (
        f"nova's queues should be quorum queues; found {[(q['name'], q.get('type')) for q in queues]}"
    )


def test_tokens_validate_on_every_controller_across_a_rotation(lab: HaLab) -> None:
    names = list(lab.hosts)
    before = issue_token(lab, lab.hosts[names[0]])
    for host in names:
        assert token_valid(lab, lab.hosts[host], before) == 200, (
            f"a token from {names[0]} fails on {host}"
        )
    assert len({key_digest(lab, h) for h in names}) == 1, "key repositories differ before rotation"

    run_playbook(
        "playbooks/openstack.yml", "--tags", "keystone", "-e", "keystone_fernet_rotate=true"
    )

    assert len({key_digest(lab, h) for h in names}) == 1, "key repositories differ after rotation"
    after = issue_token(lab, lab.hosts[names[-1]])
    for host in names:
        assert token_valid(lab, lab.hosts[host], before) == 200, (
            f"{host}: a token from before the rotation fails"
        )
        assert token_valid(lab, lab.hosts[host], after) == 200, (
            f"{host}: a token from {names[-1]} fails"
        )


@dataclass
class Poller:
    """Asks every API through the VIP every POLL_INTERVAL; records when any failed."""

    lab: HaLab
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[float] = field(default_factory=list)
    checks: int = 0

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            ok = all(
                _answers(self.lab.url(self.lab.vip, port, path), statuses, timeout=2)
                for port, path, statuses in APIS.values()
            )
            self.checks += 1
            if not ok:
                self.failures.append(now)
            self.stop.wait(POLL_INTERVAL)

    def longest_outage(self) -> float:
        """The longest run of consecutive failed rounds, in seconds."""
        longest, start, last = 0.0, None, None
        for t in self.failures:
            if start is None or last is None or t - last > 3 * POLL_INTERVAL + 5:
                start = t
            last = t
            longest = max(longest, last - start + POLL_INTERVAL)
        return longest


@pytest.fixture
def poller(lab: HaLab) -> Iterator[Poller]:
    p = Poller(lab)
    thread = threading.Thread(target=p.run, daemon=True)
    thread.start()
    yield p
    p.stop.set()
    thread.join(timeout=30)


def nspawn_pid(host: str) -> int:
    out = subprocess.run(
        [sys.executable, "tools/lab.py", "status", "--inventory", INVENTORY],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    for line in out.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == host and "nspawn" in fields:
            return int(fields[fields.index("nspawn") + 1])
    raise AssertionError(f"{host}: no nspawn pid in `lab.py status`:\n{out.stdout}")


def test_losing_the_vip_holder(lab: HaLab, poller: Poller) -> None:
    holders = vip_holders(lab)
    assert len(holders) == 1, f"VIP holders before the test: {holders}"
    victim = holders[0]
    others = [h for h in lab.vip_hosts if h != victim]
    assert others, "the VIP's rack needs a second controller to fail over to"

    # A committed object made through the VIP before the failure.
    token = issue_token(lab, lab.vip)
    name = f"ha-probe-{secrets.token_hex(3)}"
    project = keystone_call(
        lab, "POST", "/projects", token, {"project": {"name": name, "domain_id": "default"}}
    )
    time.sleep(5)  # the poller's baseline

    pid = nspawn_pid(victim)
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGTERM)  # the nspawn shuts the host down cleanly
    deadline = stopped_at + 120
    while time.monotonic() < deadline and vip_holders(lab) != others[:1]:
        time.sleep(1)
    moved = time.monotonic() - stopped_at
    # Then until every API answers again through the VIP, at most FAILOVER_LIMIT more,
    # and TOKEN_WINDOW beyond: a token through the VIP each round (Keystone reads the
    # database through haproxy, which must not send it to the stopping node).
    answered: float | None = None
    tokens: list[tuple[float, str]] = []  # (when asked, "" or the failure)
    while time.monotonic() < deadline:
        if answered is None and all(
            _answers(lab.url(lab.vip, p, path), s) for p, path, s in APIS.values()
        ):
            answered = time.monotonic()
        asked = time.monotonic()
        tokens.append((asked, token_failure(lab)))
        if answered is not None and asked - answered >= TOKEN_WINDOW:
            break
        time.sleep(POLL_INTERVAL)
    poller.stop.set()
    outage = poller.longest_outage()
    after = [
        (round(t - answered, 1), err) for t, err in tokens if answered is not None and t >= answered
    ]
    print(f"\nHA: stopped {victim}; VIP on {vip_holders(lab)} after {moved:.1f}s; "
          f"longest API outage through the VIP {outage:.1f}s over {poller.checks} rounds; "
          f"{len(tokens)} tokens through the VIP, {sum(1 for t in tokens if t[1])} failed, "
          f"{sum(1 for t in after if t[1])} of {len(after)} after the APIs answered again")  # fmt: skip
    assert vip_holders(lab) == others[:1], f"the VIP did not move from {victim} to {others[0]}"
    assert outage <= FAILOVER_LIMIT, f"APIs did not answer through the VIP for {outage:.1f}s"
    assert answered is not None, "the APIs did not answer again through the VIP"
    failed = [(t, err) for t, err in after if err]
    assert not failed, (
        "tokens through the VIP failed after the APIs answered again (seconds after, error): "
        f"{failed[:5]}"
    )

    # The object is still there, read through another controller's database, and
    # another is made while the controller is away.
    token = issue_token(lab, lab.vip)
    found = keystone_call(lab, "GET", f"/projects/{project['project']['id']}", token)
    assert found["project"]["name"] == name
    later = keystone_call(
        lab,
        "POST",
        "/projects",
        token,
        {"project": {"name": name + "-later", "domain_id": "default"}},
    )

    # The stopped controller comes back and rejoins Galera and RabbitMQ by itself, once
    # its previous incarnation is gone (both in one namespace: MariaDB's port in use).
    gone_by = time.monotonic() + 120
    while time.monotonic() < gone_by and Path(f"/proc/{pid}").exists():
        time.sleep(1)
    back_at = time.monotonic()
    subprocess.run(
        [sys.executable, "tools/lab.py", "up", "--inventory", INVENTORY],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    expected_rabbit = sorted(f"rabbit@{h}" for h in lab.hosts)
    galera_ok: float | None = None
    rabbit_ok: float | None = None
    while time.monotonic() - back_at < REJOIN_LIMIT and (galera_ok is None or rabbit_ok is None):
        if galera_ok is None:
            state = wsrep(lab, victim)
            synced = state.get("wsrep_local_state_comment") == "Synced"
            if synced and state.get("wsrep_cluster_size") == str(len(lab.hosts)):
                galera_ok = time.monotonic() - back_at
        if rabbit_ok is None and rabbit_running(lab, victim) == expected_rabbit:
            rabbit_ok = time.monotonic() - back_at
        time.sleep(2)
    print(
        f"HA: {victim} back: Galera Synced after {galera_ok}s, RabbitMQ clustered after {rabbit_ok}s"
    )
    assert galera_ok is not None, f"{victim} did not rejoin Galera within {REJOIN_LIMIT:.0f}s"
    assert rabbit_ok is not None, f"{victim} did not rejoin RabbitMQ within {REJOIN_LIMIT:.0f}s"

    # Its own Keystone (its own database node) has what was made while it was away.
    own = lab.hosts[victim]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not _answers(lab.url(own, 5000, "/v3"), {200}):
        time.sleep(2)
    own_token = issue_token(lab, own)
    found = keystone_call(lab, "GET", f"/projects/{later['project']['id']}", own_token)
    assert found["project"]["name"] == name + "-later"
    for made in (project, later):
        keystone_call(lab, "DELETE", f"/projects/{made['project']['id']}", own_token)
