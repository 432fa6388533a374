"""The common role's FreeBSD (and Debian) side without a host of that OS:
the playbooks pass --syntax-check against the example FreeBSD inventory, and the
role's derived variables and templates are rendered with Ansible's own templar
from the host vars the fabric inventory plugin gives. Only the facts a host
would report (OS, virtualization) are supplied by the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from ansible import context
from ansible.inventory.manager import InventoryManager
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template
from ansible.vars.manager import VariableManager

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "common"
FREEBSD_INV = ROOT / "inventories" / "example-freebsd"
LAB_INV = ROOT / "inventories" / "lab"

FREEBSD_HOST_FACTS = {
    "os_family": "FreeBSD",
    "system": "FreeBSD",
    "distribution": "FreeBSD",
    "distribution_major_version": "14",
    "distribution_release": "14.3-RELEASE",
    "virtualization_role": "host",
    "virtualization_type": "",
}
FREEBSD_JAIL_FACTS = FREEBSD_HOST_FACTS | {
    "virtualization_role": "guest",
    "virtualization_type": "jail",
}
DEBIAN_NSPAWN_FACTS = {
    "os_family": "Debian",
    "system": "Linux",
    "distribution": "Debian",
    "distribution_major_version": "12",
    "distribution_release": "bookworm",
    "virtualization_role": "guest",
    "virtualization_type": "systemd-nspawn",
}


def _env() -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    return env


_initialised = False


def _init_ansible() -> None:
    """What the ansible CLIs do first: find collections (vrstack.cloud, community.*)."""
    global _initialised
    if not _initialised:
        with warnings.catch_warnings():
            # Harmless when another test in this process set up the collection finder first.
            warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already")
            init_plugin_loader([str(ROOT / ".collections")])
        _initialised = True


class RoleRender:
    """Role defaults, role vars and one host's inventory vars, templated together."""

    def __init__(self, inventory: Path, host: str, facts: dict[str, Any], **extra: Any) -> None:
        _init_ansible()
        context.CLIARGS = ImmutableDict(connection="local")
        loader = DataLoader()
        inv = InventoryManager(loader=loader, sources=[str(inventory)])
        vm = VariableManager(loader=loader, inventory=inv)
        hostvars = vm.get_vars(host=inv.get_host(host), include_hostvars=False)
        variables: dict[str, Any] = {}
        variables.update(
            loader.load_from_file(str(ROLE / "defaults" / "main.yml"), trusted_as_template=True)
        )
        variables.update(hostvars)
        variables.update(
            loader.load_from_file(str(ROLE / "vars" / "main.yml"), trusted_as_template=True)
        )
        variables.update(extra)
        variables["ansible_facts"] = facts
        variables["inventory_hostname"] = host
        variables["ansible_managed"] = "Ansible managed"
        self.templar = Templar(loader=loader, variables=variables)
        # What tasks/facts.yml sets, with the same expression.
        facts_task = loader.load_from_file(
            str(ROLE / "tasks" / "facts.yml"), trusted_as_template=True
        )[1]
        self.templar.available_variables = variables | {
            "common_in_container": self.templar.template(
                facts_task["ansible.builtin.set_fact"]["common_in_container"]
            )
        }

    def var(self, name: str) -> Any:
        return self.templar.template(trust_as_template("{{ " + name + " }}"))

    def template(self, name: str) -> str:
        text = (ROLE / "templates" / name).read_text()
        return str(self.templar.template(trust_as_template(text)))


@pytest.mark.parametrize(
    "playbook", ["site.yml", "prechecks.yml", "verify.yml", "infra.yml", "sdn.yml"]
)
def test_playbooks_syntax_with_freebsd_inventory(playbook: str) -> None:
    beside = Path(sys.executable).with_name("ansible-playbook")
    exe = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    assert exe, "ansible-playbook is not on PATH (run make bootstrap)"
    res = subprocess.run(
        [exe, "--syntax-check", "-i", str(FREEBSD_INV), str(ROOT / "playbooks" / playbook)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_freebsd_compute_values() -> None:
    r = RoleRender(FREEBSD_INV, "bsd-cmp1", FREEBSD_HOST_FACTS)
    assert r.var("__common_family") == "freebsd"
    assert r.var("common_in_container") is False
    # FreeBSD sysctl names, the compute's forwarding among them; no Linux names.
    assert r.var("__common_sysctl") == {
        "net.inet.tcp.keepidle": 300000,
        "net.inet.ip.forwarding": 1,
        "net.inet6.ip6.forwarding": 1,
    }
    assert r.var("__common_sysctl_file") == "/etc/sysctl.conf"
    # vmm and nmdm are the libvirt role's (loaded now and at boot), not loader.conf's.
    assert r.var("__common_loader_conf") == {}
    # ntpd is in the base system: no time package, unlike chrony on Debian.
    assert r.var("__common_packages") == ["ca_root_nss"]
    assert r.var("__common_time_sync") is True
    assert r.var("__common_users") == [
        {
            "name": "nova",
            "group": "nova",
            "comment": "OpenStack Compute",
            "home": "/var/db/nova",
            "shell": "/usr/sbin/nologin",
        },
        {
            "name": "vrouter",
            "group": "vrouter",
            "comment": "vrstack vrouter agent",
            "home": "/var/db/vrouter",
            "shell": "/usr/sbin/nologin",
        },
    ]
    assert r.var("__common_home_base") == "/var/db"
    assert r.var("__common_hosts_entries") == ["10.20.1.11 ctl1", "10.20.1.12 bsd-cmp1"]


def test_freebsd_ntp_conf() -> None:
    r = RoleRender(FREEBSD_INV, "bsd-cmp1", FREEBSD_HOST_FACTS, common_ntp_servers=["ntp1.example"])
    lines = r.template("ntp.conf.j2").splitlines()
    assert "pool pool.ntp.org iburst" in lines
    assert "server ntp1.example iburst" in lines
    assert "driftfile /var/db/ntpd.drift" in lines
    assert lines[0].startswith("# Ansible managed")


def test_freebsd_jail_leaves_kernel_and_clock_to_host() -> None:
    r = RoleRender(FREEBSD_INV, "bsd-cmp1", FREEBSD_JAIL_FACTS)
    assert r.var("common_in_container") is True
    assert r.var("__common_time_sync") is False
    # vnet jails may set network sysctls; everything is net.* here, so all stay.
    assert set(r.var("__common_sysctl")) == {
        "net.inet.tcp.keepidle",
        "net.inet.ip.forwarding",
        "net.inet6.ip6.forwarding",
    }


def test_pip_conf_for_freebsd_with_proxy_and_index() -> None:
    r = RoleRender(
        FREEBSD_INV,
        "bsd-cmp1",
        FREEBSD_HOST_FACTS,
        common_pip_index_url="http://pypi.example/simple",
        common_package_proxy="http://proxy.example:3128",
    )
    text = r.template("pip.conf.j2")
    assert "[global]" in text
    assert "index-url = http://pypi.example/simple" in text
    assert "proxy = http://proxy.example:3128" in text


def test_debian_container_skips_kernel_wide_sysctls_and_time() -> None:
    r = RoleRender(LAB_INV, "lab-ctl1", DEBIAN_NSPAWN_FACTS)
    assert r.var("__common_family") == "debian"
    assert r.var("common_in_container") is True
    # The database's vm.swappiness is the host kernel's business in a container.
    assert r.var("__common_sysctl") == {"net.ipv4.tcp_keepalive_time": 300}
    assert r.var("__common_sysctl_left_to_host") == ["vm.swappiness"]
    assert "chrony" not in r.var("__common_packages")
    users = [u["name"] for u in r.var("__common_users")]
    assert users == [
        *["keystone", "glance", "placement", "nova", "neutron", "sdn-config"],  # controller
        "sdn-control",
        "sdn-analytics",
    ]


def test_debian_sources_list_for_a_mirror() -> None:
    r = RoleRender(
        LAB_INV,
        "lab-cmp1",
        DEBIAN_NSPAWN_FACTS,
        common_apt_mirror="http://mirror.example/debian",
    )
    lines = [ln for ln in r.template("sources.list.j2").splitlines() if not ln.startswith("#")]
    assert lines == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
    ]


def test_user_fields_given_in_the_inventory_win_over_defaults() -> None:
    users = {
        "compute": [{"name": "vrouter", "group": "sdn", "home": "/srv/vrouter", "shell": "/bin/sh"}]
    }
    r = RoleRender(LAB_INV, "lab-cmp1", DEBIAN_NSPAWN_FACTS, common_service_users=users)
    assert r.var("__common_users") == [
        {
            "name": "vrouter",
            "group": "sdn",
            "comment": "vrouter",
            "home": "/srv/vrouter",
            "shell": "/bin/sh",
        }
    ]


def _accounts(users: dict[str, Any], *lines: str) -> RoleRender:
    """common's vars for lab-cmp1 with main.yml's read of the accounts giving `lines`."""
    return RoleRender(
        LAB_INV,
        "lab-cmp1",
        DEBIAN_NSPAWN_FACTS,
        common_service_users=users,
        common_service_home_base_debian="/var/lib/vrstack",
        common_service_shell="/usr/sbin/nologin",
        __common_accounts={"stdout_lines": list(lines)},
    )


def test_accounts_that_match_need_no_include() -> None:
    """What main.yml's one read of the service accounts makes of getent and stat output:
    nothing to do when every group, user and home is as wanted (the include is skipped)."""
    users = {"compute": [{"name": "nova"}, {"name": "vrouter", "uid": 990}]}
    r = _accounts(
        users,
        "user nova:x:991:992:nova:/var/lib/vrstack/nova:/usr/sbin/nologin",
        "user vrouter:x:990:993:vrouter:/var/lib/vrstack/vrouter:/usr/sbin/nologin",
        "group nova:x:992:",
        "group vrouter:x:993:nova",
        "home nova nova /var/lib/vrstack/nova",
        "home vrouter vrouter /var/lib/vrstack/vrouter",
    )
    assert r.var("__common_groups_todo") == []
    assert r.var("__common_users_todo") == []
    assert r.var("__common_homes_todo") == []


def test_accounts_that_differ_are_each_named() -> None:
    users = {"compute": [{"name": "nova"}, {"name": "vrouter", "uid": 990}, {"name": "neutron"}]}
    r = _accounts(
        users,
        # nova's shell differs; vrouter's uid differs; neutron is missing with its group.
        "user nova:x:991:992:nova:/var/lib/vrstack/nova:/bin/sh",
        "user vrouter:x:995:993:vrouter:/var/lib/vrstack/vrouter:/usr/sbin/nologin",
        "group nova:x:992:",
        "group vrouter:x:993:",
        # nova's home belongs to root; vrouter's is missing.
        "home root root /var/lib/vrstack/nova",
        "home neutron neutron /var/lib/vrstack/neutron",
    )
    assert r.var("__common_groups_todo") == ["neutron"]
    assert sorted(r.var("__common_users_todo")) == ["neutron", "nova", "vrouter"]
    assert sorted(r.var("__common_homes_todo")) == ["nova", "vrouter"]


def test_a_user_in_another_group_is_fixed() -> None:
    users = {"compute": [{"name": "nova"}]}
    r = _accounts(
        users,
        "user nova:x:991:100:nova:/var/lib/vrstack/nova:/usr/sbin/nologin",
        "group nova:x:992:",
        "home nova nova /var/lib/vrstack/nova",
    )
    assert r.var("__common_users_todo") == ["nova"]
    assert r.var("__common_homes_todo") == []
