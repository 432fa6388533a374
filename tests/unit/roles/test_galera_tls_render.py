"""Galera over TLS by default (issue 11): replication, IST and rsync state transfers with
the node certificate, as roles/mariadb renders them for the ha-lab (three database nodes)
and the lab (one: no Galera, nothing changes); the packages it adds; and how a running
cluster is told to switch node by node (tasks/galera_tls.yml, socket.dynamic)."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.template import trust_as_template

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as tls
from test_infra_tls_render import CA, CERT_STAT, ROOT, Render

HA_INV = ROOT / "inventories" / "ha-lab"
TASKS = ROOT / "roles" / "mariadb" / "tasks"
PKI = "/etc/vrstack/pki"
TLS_OPTIONS = [
    "socket.ssl=YES",
    f"socket.ssl_ca={CA}",
    f"socket.ssl_cert={PKI}/node.crt",
    f"socket.ssl_key={PKI}/node.key",
]


def _render(host: str = "ha-ctl2", inventory: Path = HA_INV, **extra: Any) -> Render:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tls, "LAB_INV", inventory)
        return Render(host, ["mariadb"], pki_service_cert=CERT_STAT, **extra)


def _cnf(r: Render) -> configparser.RawConfigParser:
    # Keys without a value (skip-name-resolve) are allowed, as in MariaDB's own files.
    parser = configparser.RawConfigParser(strict=False, allow_no_value=True)
    parser.read_string(r.template("mariadb", "vrstack.cnf.j2"))
    return parser


def _options(cnf: configparser.RawConfigParser) -> list[str]:
    return sorted(cnf.get("galera", "wsrep_provider_options").strip('"').split(";"))


# ---- the configuration -------------------------------------------------------------------


def test_three_nodes_replicate_and_transfer_state_over_tls_by_default() -> None:
    r = _render()
    assert r.var("__mariadb_galera_tls") is True
    cnf = _cnf(r)
    assert cnf.get("galera", "wsrep_on") == "ON"
    # Replication and IST: TLS only (no socket.dynamic), peers checked against the CA.
    assert _options(cnf) == TLS_OPTIONS
    # SST: rsync through stunnel, each end verifying the other against the CA.
    assert cnf.get("galera", "wsrep_sst_method") == "rsync"
    assert dict(cnf.items("sst")) == {
        "tkey": f"{PKI}/node.key",
        "tcert": f"{PKI}/node.crt",
        "tca": CA,
        "ssl-mode": "VERIFY_CA",
    }


def test_one_database_node_has_no_galera_and_no_sst_settings() -> None:
    r = _render("lab-ctl1", ROOT / "inventories" / "lab")
    assert r.var("__mariadb_galera") is False
    assert r.var("__mariadb_galera_tls") is False
    cnf = _cnf(r)
    assert not cnf.has_section("galera") and not cnf.has_section("sst")
    # The server's own TLS is unchanged.
    assert cnf.get("mysqld", "ssl_cert") == f"{PKI}/node.crt"


@pytest.mark.parametrize("off", [{"mariadb_galera_tls": False}, {"vrstack_infra_tls": False}])
def test_switched_off_keeps_plain_replication_and_plain_sst(off: dict[str, bool]) -> None:
    cnf = _cnf(_render(**off))
    assert cnf.get("galera", "wsrep_on") == "ON"
    assert not cnf.has_option("galera", "wsrep_provider_options")
    # Explicitly plain: MariaDB 10.11.19's rsync script otherwise insists on stunnel as soon
    # as [mysqld] names a certificate (mariadb_tls), and aborts the transfer without it.
    assert dict(cnf.items("sst")) == {"ssl-mode": "DISABLED"}


def test_galera_tls_alone_still_names_the_certificate_checksum() -> None:
    # Without the server's TLS the node certificate is still Galera's: a renewed one must
    # change the file (and so restart the nodes one at a time).
    text = _render(mariadb_tls=False).template("mariadb", "vrstack.cnf.j2")
    assert "# c0ffee" in text.splitlines()
    assert "ssl_cert =" not in text
    assert "socket.ssl=YES" in text
    assert _render(mariadb_tls=False).var("__mariadb_pki") is True


@pytest.mark.parametrize("galera_tls", [True, False])
def test_a_switching_node_accepts_both_kinds_and_takes_ist_over_tcp(galera_tls: bool) -> None:
    r = _render(mariadb_galera_tls=galera_tls, __mariadb_galera_dynamic=True)
    cnf = _cnf(r)
    ip = str(r.var("vrstack_fabric_ip"))
    # TLS to TLS peers, plain to plain ones, on either direction of the switch.
    assert _options(cnf) == sorted(
        [*TLS_OPTIONS, "socket.dynamic=true", f"ist.recv_addr=tcp://{ip}"]
    )
    # The SST settings are already the final ones.
    assert cnf.get("sst", "ssl-mode") == ("VERIFY_CA" if galera_tls else "DISABLED")


def test_a_switching_node_on_ipv6_brackets_its_ist_address() -> None:
    cnf = _cnf(_render(__mariadb_galera_dynamic=True, mariadb_bind_address="2001:db8::5"))
    assert "ist.recv_addr=tcp://[2001:db8::5]" in _options(cnf)


# ---- packages -----------------------------------------------------------------------------


def _install_names(family: str, r: Render) -> list[str]:
    task = yaml.safe_load((TASKS / f"{family}.yml").read_text())[0]
    module = task.get("ansible.builtin.apt") or task["community.general.pkgng"]
    return list(r.templar.template(trust_as_template(module["name"])))


def test_stunnel_is_installed_with_galera_over_tls_only() -> None:
    assert "stunnel4" in _install_names("debian", _render())
    assert "stunnel" in _install_names("freebsd", _render(vrstack_os="freebsd14"))
    assert "stunnel4" not in _install_names("debian", _render(mariadb_galera_tls=False))
    assert "stunnel" not in _install_names(
        "freebsd", _render(vrstack_os="freebsd14", mariadb_galera_tls=False)
    )
    lab = _render("lab-ctl1", ROOT / "inventories" / "lab")
    assert _install_names("debian", lab) == ["mariadb-server", "python3-pymysql"]


def test_the_lab_repository_has_stunnel() -> None:
    lines = (ROOT / "requirements" / "lab-debs.txt").read_text().splitlines()
    assert "stunnel4" in lines


# ---- deciding the switch (tasks/galera_tls.yml) -------------------------------------------


def _galera_tls_tasks() -> dict[str, Any]:
    tasks = yaml.safe_load((TASKS / "galera_tls.yml").read_text())
    return {task["name"]: task for task in tasks}


def _kind(stdout: str, rc: int = 0) -> str:
    task = _galera_tls_tasks()[
        "Note how this node runs Galera (plain, tls, dynamic; empty when stopped)"
    ]
    # Task vars are templates, as Ansible reads them from the role.
    task_vars = {name: trust_as_template(value) for name, value in task["vars"].items()}
    r = _render(__mariadb_options_read={"rc": rc, "stdout": stdout}, **task_vars)
    return str(
        r.templar.template(
            trust_as_template(task["ansible.builtin.set_fact"]["__mariadb_galera_kind"])
        )
    )


OPTS = (
    "base_dir = /var/lib/mysql/; base_host = 198.18.1.12; {}; socket.ssl_cipher = ; pc.weight = 1"
)


@pytest.mark.parametrize(
    ("stdout", "rc", "kind"),
    [
        (OPTS.format("socket.ssl = NO"), 0, "plain"),
        # As a plain 26.4.23 node prints them: no socket.ssl at all.
        ("base_port = 4567; ist.recv_addr = 198.18.1.12; socket.checksum = 2", 0, "plain"),
        (OPTS.format("socket.ssl = YES; socket.ssl_ca = /x"), 0, "tls"),
        (OPTS.format("socket.dynamic = true; socket.ssl = YES"), 0, "dynamic"),
        ("socket.ssl = yes", 0, "tls"),
        # A plain node: socket.ssl_compression and friends are not socket.ssl.
        ("socket.ssl_compression = YES; socket.ssl = NO", 0, "plain"),
        # Stand-alone (the package's first start: no provider) and stopped servers.
        ("\n", 0, ""),
        ("NULL\n", 0, ""),
        ("", 1, ""),
    ],
)
def test_a_nodes_kind_is_read_from_its_provider_options(stdout: str, rc: int, kind: str) -> None:
    assert _kind(stdout, rc) == kind


def _switch(kinds: dict[str, str], **extra: Any) -> bool:
    task = _galera_tls_tasks()["Decide whether the cluster switches between plain and TLS"]
    hostvars = {host: {"__mariadb_galera_kind": kind} for host, kind in kinds.items()}
    r = _render(hostvars=hostvars, ansible_play_hosts=list(kinds), **extra)
    text = task["ansible.builtin.set_fact"]["__mariadb_galera_switch"]
    return bool(r.templar.template(trust_as_template(text)))


NODES = ["ha-ctl1", "ha-ctl2", "ha-ctl3"]


@pytest.mark.parametrize(
    ("kinds", "galera_tls", "switch"),
    [
        (["plain", "plain", "plain"], True, True),  # a plain cluster turns TLS on
        (["tls", "tls", "tls"], True, False),  # already there: no restart (changed=0)
        (["", "", ""], True, False),  # nothing runs: a fresh cluster starts with TLS
        (["tls", "plain", ""], True, True),  # half done by hand
        (["dynamic", "dynamic", "dynamic"], True, True),  # an interrupted switch goes on
        (["tls", "tls", "tls"], False, True),  # switched off
        (["plain", "plain", "plain"], False, False),
    ],
)
def test_the_cluster_switches_when_a_running_node_is_of_the_other_kind(
    kinds: list[str], galera_tls: bool, switch: bool
) -> None:
    assert _switch(dict(zip(NODES, kinds, strict=True)), mariadb_galera_tls=galera_tls) is switch


# ---- tasks_from: verify ---------------------------------------------------------------------


def _verify_passes(options: str, **extra: Any) -> bool:
    tasks = yaml.safe_load((TASKS / "verify_node.yml").read_text())
    block = next(task for task in tasks if "block" in task)["block"]
    check = next(task for task in block if task["name"].startswith("Check Galera runs over TLS"))
    r = _render(__mariadb_verify_options={"stdout": options}, **extra)
    r.templar.available_variables = r.templar.available_variables | {
        name: trust_as_template(value) for name, value in check["vars"].items()
    }
    conditions = check["ansible.builtin.assert"]["that"]
    return all(
        r.templar.template(trust_as_template("{{ " + cond + " }}")) is True for cond in conditions
    )


def test_verify_reports_galera_of_the_wrong_kind_or_left_switching() -> None:
    tls_on = OPTS.format("socket.ssl = YES")
    plain = OPTS.format("socket.ssl = NO")
    switching = OPTS.format("socket.dynamic = YES; socket.ssl = YES")
    assert _verify_passes(tls_on)
    assert not _verify_passes(plain)
    assert not _verify_passes(switching)
    assert _verify_passes(plain, mariadb_galera_tls=False)
    assert not _verify_passes(tls_on, mariadb_galera_tls=False)
