"""tasks_from verify of mariadb and rabbitmq after main in the same run (issue 7, helper D):
a single node that main probed is not probed again (one skipped include); a cluster, a
failed or missing probe, or the switch off still runs every check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.template import trust_as_template

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as infra
from test_rerun_conditions import runs

MARIADB = (
    "mariadb",
    "verify.yml",
    "Check MariaDB answers (and, with Galera, is a Synced member of a full cluster)",
)
RABBITMQ = (
    "rabbitmq",
    "verify.yml",
    "Check RabbitMQ answers (and, with several nodes, runs them in one cluster)",
)
PROBED = {"attempts": 1, "changed": False, "failed": False}


@pytest.mark.parametrize(
    ("check", "probe"), [(MARIADB, "__mariadb_probe"), (RABBITMQ, "__rabbitmq_probe")]
)
def test_a_single_node_probed_by_main_is_not_probed_again(
    check: tuple[str, str, str], probe: str
) -> None:
    assert runs(*check, **{probe: PROBED}) is False


@pytest.mark.parametrize(
    ("check", "probe"), [(MARIADB, "__mariadb_probe"), (RABBITMQ, "__rabbitmq_probe")]
)
@pytest.mark.parametrize(
    "extra",
    [
        {},  # verify without main
        {"probe": {"failed": True}},
        {"probe": {"skipped": True, "changed": False}},
        {"probe": PROBED, "switch": False},
        {"probe": PROBED, "shortcuts": False},
    ],
)
def test_verify_probes_otherwise(
    check: tuple[str, str, str], probe: str, extra: dict[str, Any]
) -> None:
    role = check[0]
    values: dict[str, Any] = {}
    if "probe" in extra:
        values[probe] = extra["probe"]
    if "switch" in extra:
        values[f"{role}_verify_trust_main"] = extra["switch"]
    if "shortcuts" in extra:
        values["vrstack_rerun_shortcuts"] = extra["shortcuts"]
    assert runs(*check, **values) is True


def test_clusters_are_always_checked() -> None:
    assert runs(*MARIADB, __mariadb_probe=PROBED, __mariadb_galera=True) is True
    assert runs(*RABBITMQ, __rabbitmq_probe=PROBED, __rabbitmq_nodes=["a", "b", "c"]) is True


# ---- libvirt's one read of the host ------------------------------------------------------

LIBVIRT_TASKS = Path(__file__).resolve().parents[3] / "roles/libvirt/tasks"


def libvirt_read_argv(hosts_file: Path, **extra: Any) -> list[str]:
    """The read's argv as Ansible templates it for lab-cmp1, with another hosts file."""
    tasks = yaml.safe_load((LIBVIRT_TASKS / "main.yml").read_text())
    (read,) = [t for t in tasks if t["name"].startswith("Read the host")]
    render = infra.Render("lab-cmp1", ["libvirt"], **extra)
    argv = [
        str(render.templar.template(trust_as_template(a)))
        for a in read["ansible.builtin.command"]["argv"]
    ]
    assert argv[-1] == "/etc/hosts"
    return [*argv[:-1], str(hosts_file)]


@pytest.mark.parametrize(
    ("hosts", "found"),
    [
        ("127.0.0.1 localhost\n127.0.1.1 lab-cmp1\n", "1"),
        ("127.0.1.1 other lab-cmp1 x\n", "1"),
        ("127.0.1.1 lab-cmp10\n127.0.0.1 lab-cmp1\n", "0"),
        ("", "0"),
    ],
)
def test_the_read_finds_the_hosts_line_as_the_grep_did(
    tmp_path: Path, hosts: str, found: str
) -> None:
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(hosts)
    argv = libvirt_read_argv(hosts_file, libvirt_container="false")
    assert argv[5:7] == ["0", "1"]  # no container question; /dev/kvm asked (virt type auto)
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"hosts={found}" and lines[1] in ("kvm=0", "kvm=1") and len(lines) == 2
    r = infra.Render("lab-cmp1", ["libvirt"], __libvirt_host={"stdout_lines": lines})
    assert r.var("__libvirt_host_facts.hosts | default('1') == '0'") is (found == "0")


def test_the_read_fails_on_an_unreadable_hosts_file(tmp_path: Path) -> None:
    out = subprocess.run(
        libvirt_read_argv(tmp_path / "missing"), capture_output=True, text=True, check=False
    )
    assert out.returncode == 2 and "grep" in out.stderr


@pytest.mark.parametrize(
    ("lines", "extra", "virt"),
    [
        (["hosts=1", "container=1", "kvm=1"], {}, "kvm"),
        (["hosts=1", "container=1", "kvm=0"], {}, "qemu"),
        (["hosts=1", "kvm=0"], {"libvirt_virt_type": "kvm"}, "kvm"),
    ],
)
def test_the_virtualisation_type_from_the_read(
    lines: list[str], extra: dict[str, Any], virt: str
) -> None:
    r = infra.Render("lab-cmp1", ["libvirt"], __libvirt_host={"stdout_lines": lines}, **extra)
    assert r.var("__libvirt_virt_type_found") == virt


def test_verify_without_main_probes_with_detect() -> None:
    r = infra.Render("lab-cmp1", ["libvirt"], __libvirt_kvm={"rc": 0})
    assert r.var("__libvirt_virt_type_found") == "kvm"
    check = ("libvirt", "verify.yml", "Pick the virtualisation type")
    assert runs(*check) is True
    assert (
        runs(*check, __libvirt_host={"stdout_lines": []}, libvirt_effective_virt_type="qemu")
        is False
    )
