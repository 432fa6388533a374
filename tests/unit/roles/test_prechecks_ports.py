"""The prechecks' port rule (free, or held by the service's own user) on both OS paths,
rendered with Ansible's templar from the task file itself. On Linux the read's own shell
runs here with stand-in `ss` and `ps` (one call each, issue 7) and its output goes
through the check task's variables; on FreeBSD a sample of sockstat output does (no
FreeBSD host exists here, so the parser is checked on a sample)."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
TASKS = ROOT / "roles" / "prechecks" / "tasks" / "main.yml"
READ_TASK = (
    "Read python3-apt's status, the clock, the fabric names' addresses and the listening sockets"
)
CHECK_TASK = (
    "Check the OS, Python, python3-apt, memory, clock, analytics database, host name, "
    "name resolution and ports"
)

SOCKSTAT = """\
USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS
root     sshd        912   4  tcp6   *:22                  *:*
root     sshd        912   5  tcp4   *:22                  *:*
www      nginx      1001   6  tcp4   *:8085                *:*
vrouter  vrouter-ag 1200   7  tcp4   10.20.1.12:8085       *:*
root     syslogd     700   6  udp4   *:514                 *:*
?        ?           ?     ?  tcp4   *:8081                *:*
"""

# What `ss -Hltunp` prints (Netid State Recv-Q Send-Q Local Peer Process), and the
# `ps -axo pid=,user:64=` it is joined with.
SS = """\
tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*    users:(("sshd",pid=500,fd=3))
tcp   LISTEN 0      128             [::]:22            [::]:*    users:(("sshd",pid=500,fd=4))
tcp   LISTEN 0      4096         0.0.0.0:5672       0.0.0.0:*    users:(("beam.smp",pid=610,fd=40))
tcp   LISTEN 0      511      198.18.1.10:5000       0.0.0.0:*    users:(("haproxy",pid=700,fd=7),("haproxy",pid=701,fd=7))
tcp   LISTEN 0      128      198.18.1.11:5000       0.0.0.0:*    users:(("gunicorn",pid=800,fd=6))
tcp   LISTEN 0      511      198.18.1.10:9292       0.0.0.0:*    users:(("nginx",pid=900,fd=7))
tcp   LISTEN 0      511          0.0.0.0:8778       0.0.0.0:*    users:(("haproxy",pid=700,fd=8))
tcp   LISTEN 0      80           0.0.0.0:3306       0.0.0.0:*    users:(("systemd",pid=1,fd=40))
tcp   LISTEN 0      128          0.0.0.0:8081       0.0.0.0:*    users:(("python3",pid=950,fd=5))
tcp   LISTEN 0      128          0.0.0.0:8085       0.0.0.0:*
udp   UNCONN 0      0            0.0.0.0:5269       0.0.0.0:*    users:(("dnsmasq",pid=960,fd=4))
"""
PS = """\
      1 root
    500 root
    610 rabbitmq
    700 haproxy
    701 haproxy
    800 keystone
    900 www-data
    950 sdn-analytics
    960 dnsmasq
"""
CONTROLLER_PORTS = [5000, 9292, 8778]


@pytest.fixture(scope="module")
def tasks() -> list[dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already")
        init_plugin_loader([str(ROOT / ".collections")])
    loaded: list[dict[str, Any]] = DataLoader().load_from_file(str(TASKS), trusted_as_template=True)
    return loaded


def _task(tasks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t for t in tasks if t.get("name") == name)


def _base_vars(system: str, roles: list[str], extra: dict[str, Any] | None) -> dict[str, Any]:
    defaults = DataLoader().load_from_file(
        str(ROOT / "roles" / "prechecks" / "defaults" / "main.yml")
    )
    ports = dict(defaults["prechecks_ports"])
    # The controller's ports this sample holds (the others are free).
    ports["controller"] = [p for p in ports["controller"] if p["port"] in CONTROLLER_PORTS]
    return {
        "inventory_hostname": "h1",
        "ansible_facts": {"system": system},
        "prechecks_ports": ports,
        "vrstack_roles": roles,
        "groups": {"controller": ["c1"]},
        **(extra or {}),
    }


def _linux_read(tmp_path: Path, tasks: list[dict[str, Any]], ss: str, ps: str) -> list[str]:
    """The read task's shell run here, with `ss` and `ps` stand-ins printing the samples."""
    task = _task(tasks, READ_TASK)
    variables = {
        "vrstack_os": "debian12",
        "ansible_facts": {"system": "Linux"},
        "vrstack_fabric": {"hosts": {}},
        "common_getent_hosts": "ahostsv4",
        **dict(task["vars"]),
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    cmd = str(templar.template(task["ansible.builtin.shell"]["cmd"]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"ss": ss, "ps": ps, "dpkg-query": "installed"}.items():
        (bin_dir / f"{name}.out").write_text(text)
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\ncat {bin_dir / (name + '.out')}\n")
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    done = subprocess.run(
        ["/bin/sh", "-c", cmd], capture_output=True, text=True, env=env, check=True, timeout=30
    )
    return done.stdout.splitlines()


def _problems(
    tasks: list[dict[str, Any]], lines: list[str], system: str, roles: list[str],
    extra: dict[str, Any] | None = None,
) -> tuple[list[str], list[str]]:  # fmt: skip
    """The port problems and the noports lines the check task finds in the read's lines."""
    task = _task(tasks, CHECK_TASK)
    variables = {**dict(task["vars"]), **_base_vars(system, roles, extra)}
    variables["__prechecks_read"] = {"stdout_lines": lines}
    templar = Templar(loader=DataLoader(), variables=variables)
    problems = json.loads(
        str(templar.template(trust_as_template("{{ __prechecks_port_problems }}")))
    )
    noports = list(templar.template(trust_as_template("{{ __prechecks_noports }}")))
    return problems, noports


def _sock(text: str) -> list[str]:
    return ["sock " + line for line in text.splitlines()]


def test_linux_read_joins_each_socket_with_its_process_user(
    tmp_path: Path, tasks: list[dict[str, Any]]
) -> None:
    lines = _linux_read(tmp_path, tasks, SS, PS)
    listen = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("listen ")]
    assert {"protocol": "tcp", "address": "::", "port": 22, "pid": 500, "name": "sshd",
            "user": "root"} in listen  # fmt: skip
    # Both processes of a shared socket, each with its user.
    assert [x["pid"] for x in listen if x["port"] == 5000 and x["name"] == "haproxy"] == [700, 701]
    assert {"protocol": "udp", "address": "0.0.0.0", "port": 5269, "pid": 960,
            "name": "dnsmasq", "user": "dnsmasq"} in listen  # fmt: skip
    # No process named (as listen_ports_facts had it): left out.
    assert not [x for x in listen if x["port"] == 8085]
    assert not [line for line in lines if line.startswith("noports")]


def test_linux_ports_free_or_held_by_their_service_pass(
    tmp_path: Path, tasks: list[dict[str, Any]]
) -> None:
    lines = _linux_read(tmp_path, tasks, SS, PS)
    # rabbitmq's own user; mariadb.socket in pid 1; a udp listener does not take tcp 5269.
    problems, noports = _problems(
        tasks, lines, "Linux", ["messaging", "database", "control", "analytics", "compute"]
    )
    assert problems == [] and noports == []


def test_linux_port_held_by_another_user_is_named_once(
    tmp_path: Path, tasks: list[dict[str, Any]]
) -> None:
    ss = SS + 'tcp   LISTEN 0 128 [::]:5672 [::]:* users:(("nc",pid=970,fd=3))\n'
    lines = _linux_read(tmp_path, tasks, ss, PS + "    970 nobody\n")
    problems = _problems(tasks, lines, "Linux", ["messaging"])[0]
    assert problems == [
        "h1: port 5672/tcp is for rabbitmq (prechecks_ports.messaging, run as rabbitmq) but is held "
        "by nc as user nobody. Stop or reconfigure that process, or move the role messaging to "
        "another host (hosts.h1.roles in the fabric file)."
    ]


def test_linux_our_haproxy_on_the_vip_passes_only_with_several_controllers(
    tmp_path: Path, tasks: list[dict[str, Any]]
) -> None:
    lines = _linux_read(tmp_path, tasks, SS, PS)
    vip = {"vrstack_vips": {"internal": "198.18.1.10"}}
    three = {**vip, "groups": {"controller": ["c1", "c2", "c3"]}}
    one = {**vip, "groups": {"controller": ["c1"]}}
    problems = _problems(tasks, lines, "Linux", ["controller"], three)[0]
    # nginx on the VIP and haproxy on another address are not ours.
    assert len(problems) == 2
    assert "port 9292/tcp" in problems[0] and "held by nginx as user www-data." in problems[0]
    assert "port 8778/tcp" in problems[1] and "held by haproxy as user haproxy." in problems[1]
    problems = _problems(tasks, lines, "Linux", ["controller"], one)[0]
    assert len(problems) == 3 and "port 5000/tcp" in problems[0]
    assert "held by haproxy as user haproxy." in problems[0]


def test_linux_pid_1_passes_only_for_a_socket_unit(
    tmp_path: Path, tasks: list[dict[str, Any]]
) -> None:
    ss = SS + 'tcp LISTEN 0 128 0.0.0.0:8082 0.0.0.0:* users:(("systemd",pid=1,fd=50))\n'
    lines = _linux_read(tmp_path, tasks, ss, PS)
    assert _problems(tasks, lines, "Linux", ["database"])[0] == []
    extra = {"prechecks_ports": {"controller": [
        {"port": 8082, "protocol": "tcp", "service": "sdn-config-api", "users": ["sdn-config"]}]}}  # fmt: skip
    problems = _problems(tasks, lines, "Linux", ["controller"], extra)[0]
    assert len(problems) == 1 and "held by systemd as user root" in problems[0]


def test_linux_listing_failure_is_reported(tmp_path: Path, tasks: list[dict[str, Any]]) -> None:
    task = _task(tasks, READ_TASK)
    templar = Templar(
        loader=DataLoader(),
        variables={
            "vrstack_os": "debian12",
            "ansible_facts": {"system": "Linux"},
            "vrstack_fabric": {"hosts": {}},
            "common_getent_hosts": "ahostsv4",
            **dict(task["vars"]),
        },
    )
    cmd = str(templar.template(task["ansible.builtin.shell"]["cmd"]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ss").write_text("#!/bin/sh\necho 'ss: no netlink' >&2\nexit 1\n")
    (bin_dir / "ss").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    out = subprocess.run(
        ["/bin/sh", "-c", cmd], capture_output=True, text=True, env=env, check=True
    )
    lines = out.stdout.splitlines()
    problems, noports = _problems(tasks, lines, "Linux", ["messaging"])
    assert problems == []
    assert noports and "ss: no netlink" in noports[0]


def test_freebsd_port_held_by_another_user_is_reported(tasks: list[dict[str, Any]]) -> None:
    problems = _problems(tasks, _sock(SOCKSTAT), "FreeBSD", ["compute"])[0]
    assert len(problems) == 1
    assert "port 8085/tcp is for vrouter-agent-introspect" in problems[0]
    assert "held by www      nginx" in problems[0]


def test_freebsd_unattributed_socket_counts_as_taken(tasks: list[dict[str, Any]]) -> None:
    problems = _problems(tasks, _sock(SOCKSTAT), "FreeBSD", ["analytics"])[0]
    assert len(problems) == 1 and "port 8081/tcp" in problems[0]


def test_freebsd_free_ports_pass(tasks: list[dict[str, Any]]) -> None:
    assert _problems(tasks, _sock(SOCKSTAT), "FreeBSD", ["messaging", "control"])[0] == []


PROXY_SOCKSTAT = """\
USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS
www      haproxy    1300   5  tcp4   198.18.1.10:5000      *:*
keystone gunicorn   1400   6  tcp4   198.18.1.11:5000      *:*
www      nginx      1500   7  tcp4   198.18.1.10:9292      *:*
"""


def test_freebsd_our_haproxy_on_the_vip_passes_only_with_several_controllers(
    tasks: list[dict[str, Any]],
) -> None:
    vip = {"vrstack_vips": {"internal": "198.18.1.10"}}
    three = {**vip, "groups": {"controller": ["c1", "c2", "c3"]}}
    one = {**vip, "groups": {"controller": ["c1"]}}
    problems = _problems(tasks, _sock(PROXY_SOCKSTAT), "FreeBSD", ["controller"], three)[0]
    assert len(problems) == 1 and "port 9292/tcp" in problems[0] and "www      nginx" in problems[0]
    problems = _problems(tasks, _sock(PROXY_SOCKSTAT), "FreeBSD", ["controller"], one)[0]
    assert (
        len(problems) == 2 and "port 5000/tcp" in problems[0] and "www      haproxy" in problems[0]
    )
