"""The prechecks' port rule (free, or held by the service's own user) on both
OS paths, rendered with Ansible's templar from the task file itself: on Linux
from community.general.listen_ports_facts results, on FreeBSD from sockstat
output (no FreeBSD host exists here, so the parser is checked on a sample)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
TASKS = ROOT / "roles" / "prechecks" / "tasks" / "main.yml"
PORT_TASK = "Check the roles' ports are free or held by their own service"

SOCKSTAT = """\
USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS
root     sshd        912   4  tcp6   *:22                  *:*
root     sshd        912   5  tcp4   *:22                  *:*
www      nginx      1001   6  tcp4   *:8085                *:*
vrouter  vrouter-ag 1200   7  tcp4   10.20.1.12:8085       *:*
root     syslogd     700   6  udp4   *:514                 *:*
?        ?           ?     ?  tcp4   *:8081                *:*
"""


def _holders(
    port: dict[str, Any],
    facts: dict[str, Any],
    sockstat: str = "",
    extra: dict[str, Any] | None = None,
) -> list[str]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already")
        init_plugin_loader([str(ROOT / ".collections")])
    loader = DataLoader()
    tasks = loader.load_from_file(str(TASKS), trusted_as_template=True)
    task = next(t for t in tasks if t.get("name") == PORT_TASK)
    variables = dict(task["vars"])
    variables.update(
        item=[{"key": "compute"}, port],
        ansible_facts=facts,
        __prechecks_sockstat={"stdout_lines": sockstat.splitlines()},
    )
    variables.update({"groups": {"controller": ["c1"]}, **(extra or {})})
    templar = Templar(loader=loader, variables=variables)
    return list(templar.template(trust_as_template("{{ __prechecks_holders }}")))


def _port(port: int, users: list[str], protocol: str = "tcp") -> dict[str, Any]:
    return {"port": port, "protocol": protocol, "service": "svc", "users": users}


def test_freebsd_port_held_by_another_user_is_reported() -> None:
    facts = {"system": "FreeBSD"}
    holders = _holders(_port(8085, ["vrouter", "root"]), facts, SOCKSTAT)
    assert len(holders) == 1
    assert holders[0].startswith("www      nginx")


def test_freebsd_port_free_or_own_service_passes() -> None:
    facts = {"system": "FreeBSD"}
    assert _holders(_port(8085, ["www", "vrouter"]), facts, SOCKSTAT) == []
    assert _holders(_port(5672, ["rabbitmq"]), facts, SOCKSTAT) == []
    # A udp listener does not take a tcp port, nor the other way round.
    assert _holders(_port(514, ["nobody"]), facts, SOCKSTAT) == []
    assert len(_holders(_port(514, ["nobody"], "udp"), facts, SOCKSTAT)) == 1


def test_freebsd_unattributed_socket_counts_as_taken() -> None:
    holders = _holders(_port(8081, ["sdn-analytics"]), {"system": "FreeBSD"}, SOCKSTAT)
    assert len(holders) == 1


def test_linux_port_holders_named_once_with_their_user() -> None:
    listen = [
        {"port": 22, "protocol": "tcp", "name": "sshd", "user": "root", "pid": 1},
        {"port": 22, "protocol": "tcp6", "name": "sshd", "user": "root", "pid": 1},
        {"port": 5672, "protocol": "tcp6", "name": "beam.smp", "user": "rabbitmq", "pid": 2},
    ]
    facts = {"system": "Linux", "tcp_listen": listen, "udp_listen": []}
    assert _holders(_port(22, ["nobody"]), facts) == ["sshd as user root"]
    assert _holders(_port(5672, ["rabbitmq"]), facts) == []
    assert _holders(_port(8085, ["vrouter"]), facts) == []


PROXY_SOCKSTAT = """\
USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS
www      haproxy    1300   5  tcp4   198.18.1.10:5000      *:*
keystone gunicorn   1400   6  tcp4   198.18.1.11:5000      *:*
www      nginx      1500   7  tcp4   198.18.1.10:9292      *:*
"""


def test_our_haproxy_on_the_vip_passes_only_with_several_controllers() -> None:
    """haproxy holds the API ports on the internal VIP when there are several controllers;
    another program on the VIP, or haproxy on another address or as another user, is not ours."""
    listen = [
        {"port": 5000, "protocol": "tcp", "name": "haproxy", "user": "haproxy",
         "address": "198.18.1.10", "pid": 3},
        {"port": 5000, "protocol": "tcp", "name": "gunicorn", "user": "keystone",
         "address": "198.18.1.11", "pid": 4},
        {"port": 9292, "protocol": "tcp", "name": "nginx", "user": "www-data",
         "address": "198.18.1.10", "pid": 5},
        {"port": 8778, "protocol": "tcp", "name": "haproxy", "user": "haproxy",
         "address": "0.0.0.0", "pid": 6},
    ]  # fmt: skip
    linux = {"system": "Linux", "tcp_listen": listen, "udp_listen": []}
    vip = {"vrstack_vips": {"internal": "198.18.1.10"}}
    three = {**vip, "groups": {"controller": ["c1", "c2", "c3"]}}
    one = {**vip, "groups": {"controller": ["c1"]}}
    assert _holders(_port(5000, ["keystone"]), linux, extra=three) == []
    assert _holders(_port(5000, ["keystone"]), linux, extra=one) == ["haproxy as user haproxy"]
    assert _holders(_port(9292, ["glance"]), linux, extra=three) == ["nginx as user www-data"]
    assert _holders(_port(8778, ["placement"]), linux, extra=three) == ["haproxy as user haproxy"]
    freebsd = {"system": "FreeBSD"}
    assert _holders(_port(5000, ["keystone"]), freebsd, PROXY_SOCKSTAT, extra=three) == []
    held = _holders(_port(5000, ["keystone"]), freebsd, PROXY_SOCKSTAT, extra=one)
    assert len(held) == 1 and held[0].startswith("www      haproxy")
    held = _holders(_port(9292, ["glance"]), freebsd, PROXY_SOCKSTAT, extra=three)
    assert len(held) == 1 and held[0].startswith("www      nginx")
