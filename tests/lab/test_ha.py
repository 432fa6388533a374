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
    # Then until every API answers again through the VIP, at most FAILOVER_LIMIT more.
    while time.monotonic() < deadline and not all(
        _answers(lab.url(lab.vip, p, path), s) for p, path, s in APIS.values()
    ):
        time.sleep(POLL_INTERVAL)
    time.sleep(5)
    poller.stop.set()
    outage = poller.longest_outage()
    print(f"\nHA: stopped {victim}; VIP on {vip_holders(lab)} after {moved:.1f}s; "
          f"longest API outage through the VIP {outage:.1f}s over {poller.checks} rounds")  # fmt: skip
    assert vip_holders(lab) == others[:1], f"the VIP did not move from {victim} to {others[0]}"
    assert outage <= FAILOVER_LIMIT, f"APIs did not answer through the VIP for {outage:.1f}s"

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
