"""The common role's FreeBSD (and Debian) side without a host of that OS:
the playbooks pass --syntax-check against the example FreeBSD inventory, and the
role's derived variables and templates are rendered with Ansible's own templar
from the host vars the fabric inventory plugin gives. Only the facts a host
would report (OS, virtualization) are supplied by the test."""

from __future__ import annotations

import base64
import json
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
        # What tasks/decide.yml (imported by facts.yml) sets, with the same expression.
        facts_task = loader.load_from_file(
            str(ROLE / "tasks" / "decide.yml"), trusted_as_template=True
        )[0]
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


def _sources(*lines: str, **extra: Any) -> RoleRender:
    """common's vars for lab-cmp1 with debian.yml's read of what setup_debian.yml makes."""
    return RoleRender(
        LAB_INV,
        "lab-cmp1",
        DEBIAN_NSPAWN_FACTS,
        ansible_search_path=[str(ROLE)],
        __common_setup_read={"stdout_lines": list(lines)},
        **extra,
    )


def _file(path: str, content: str, meta: str = "root:root:644") -> str:
    return f"file {path} {meta} {base64.b64encode(content.encode()).decode()}"


def _lab_files(r: RoleRender) -> list[str]:
    """The read's lines for a lab host as common left it: its apt list and pip.conf, every
    base package installed, ssh enabled and running."""
    return [
        _file("/etc/apt/sources.list.d/vrstack.list", r.template("vrstack.list.j2")),
        _file("/etc/pip.conf", r.template("pip.conf.j2")),
        *(f"pkg {name} installed" for name in r.var("__common_packages")),
        *(f"service {name} enabled active" for name in r.var("__common_services_debian")),
    ]


def test_package_sources_in_place_need_no_include() -> None:
    """The lab's rerun case: its apt list and pip.conf as the templates make them, no proxy,
    no mirror, no source line on (vrstack_apt_default_sources: false)."""
    r = _sources()
    wanted = {w["path"]: w["content"] for w in r.var("__common_setup_files")}
    assert wanted == {
        "/etc/apt/apt.conf.d/80vrstack-proxy": None,
        "/etc/apt/sources.list.d/vrstack.list": r.template("vrstack.list.j2"),
        "/etc/pip.conf": r.template("pip.conf.j2"),
    }
    r = _sources(*_lab_files(r))
    assert json.loads(r.var("__common_setup_todo")) == []


@pytest.mark.parametrize(
    ("change", "todo"),
    [
        # pip.conf edited by hand; the apt list's mode changed; our list missing.
        (lambda lines: [lines[0], _file("/etc/pip.conf", "[global]\n"), *lines[2:]], ["/etc/pip.conf"]),
        (lambda lines: [lines[0].replace("root:root:644", "root:root:600"), *lines[1:]],
         ["/etc/apt/sources.list.d/vrstack.list"]),
        (lambda lines: lines[1:], ["/etc/apt/sources.list.d/vrstack.list"]),
        # A proxy file left behind although none is set.
        (lambda lines: [*lines, _file("/etc/apt/apt.conf.d/80vrstack-proxy", "x")],
         ["/etc/apt/apt.conf.d/80vrstack-proxy"]),
        # A distribution source line turned back on.
        (lambda lines: [*lines, "source /etc/apt/sources.list", "source /etc/apt/sources.list"],
         ["/etc/apt/sources.list"]),
        # A base package removed (dpkg keeps its config), ssh stopped.
        (lambda lines: [ln.replace("pkg procps installed", "pkg procps config-files") for ln in lines],
         ["package procps"]),
        (lambda lines: [ln.replace("service ssh enabled active", "service ssh enabled inactive")
                        for ln in lines], ["service ssh"]),
        (lambda lines: [ln for ln in lines if not ln.startswith("pkg iproute2 ")], ["package iproute2"]),
    ],
)  # fmt: skip
def test_package_sources_that_differ_are_each_named(change: Any, todo: list[str]) -> None:
    lines = _lab_files(_sources())
    assert json.loads(_sources(*change(lines)).var("__common_setup_todo")) == todo


def test_a_mirror_and_a_proxy_are_compared_too() -> None:
    extra = {
        "common_apt_mirror": "http://mirror.example/debian",
        "common_package_proxy": "http://p:3128",
    }
    r = _sources(**extra)
    base = _lab_files(r)
    proxy = _file("/etc/apt/apt.conf.d/80vrstack-proxy", r.var("__common_apt_proxy_conf"))
    mirror = _file("/etc/apt/sources.list", r.template("sources.list.j2"))
    assert json.loads(_sources(*base, proxy, mirror, **extra).var("__common_setup_todo")) == []
    debian = _file("/etc/apt/sources.list.d/debian.sources", "Types: deb\n")
    todo = json.loads(_sources(*base, mirror, debian, **extra).var("__common_setup_todo"))
    assert todo == ["/etc/apt/apt.conf.d/80vrstack-proxy", "/etc/apt/sources.list.d/debian.sources"]


def _settings(*lines: str, **extra: Any) -> RoleRender:
    """common's vars for lab-cmp1 with main.yml's read giving `lines` (no service users)."""
    return RoleRender(
        LAB_INV,
        "lab-cmp1",
        DEBIAN_NSPAWN_FACTS,
        common_service_users={},
        __common_accounts={"stdout_lines": list(lines)},
        **extra,
    )


def _in_place(r: RoleRender) -> list[str]:
    """The read's lines for kernel settings and a hosts block as the role leaves them."""
    sysctl = dict(r.var("__common_sysctl"))
    marker = r.var("__common_hosts_marker")
    return [
        *(f"sysctl {key} {value}" for key, value in sysctl.items()),
        "sysfile # vrstack",
        *(f"sysfile {key} = {value}" for key, value in sysctl.items()),
        "hostsmeta root:root:644",
        "hostsfile 127.0.0.1 localhost",
        f"hostsfile {marker.replace('{mark}', 'BEGIN')}",
        *(f"hostsfile {entry}" for entry in r.var("__common_hosts_entries")),
        f"hostsfile {marker.replace('{mark}', 'END')}",
    ]


def test_kernel_settings_and_hosts_block_in_place_need_no_include() -> None:
    lines = _in_place(_settings())
    r = _settings(*lines)
    assert r.var("__common_sysctl"), "the lab compute sets kernel settings"
    assert json.loads(r.var("__common_sysctl_todo")) == []
    assert r.var("__common_hosts_todo") is False


@pytest.mark.parametrize(
    ("change", "sysctl_todo", "hosts_todo"),
    [
        # The value in force differs (someone ran sysctl -w).
        (lambda ls: [ln + "0" if ln.startswith("sysctl ") else ln for ln in ls], True, False),
        # The file's value differs, or a later line of the file overrides it.
        (lambda ls: [ln + "0" if ln.startswith("sysfile net.") else ln for ln in ls], True, False),
        (lambda ls: [*ls, *(ln.split(" = ")[0] + "=7" for ln in ls if ln.startswith("sysfile net."))],
         True, False),
        # Missing from the file; only in a comment.
        (lambda ls: [ln for ln in ls if not ln.startswith("sysfile net.")], True, False),
        (lambda ls: [ln.replace("sysfile ", "sysfile #") for ln in ls], True, False),
        # The hosts file's mode, an entry gone, a second block, trailing blanks.
        (lambda ls: [ln.replace("root:root:644", "root:root:600") for ln in ls], False, True),
        (lambda ls: [ln for ln in ls if "lab-ctl2" not in ln], False, True),
        (lambda ls: ls + [ln for ln in ls if "vrstack fabric hosts" in ln], False, True),
        (lambda ls: [ln + " " if "lab-cmp2" in ln else ln for ln in ls], False, True),
        (lambda ls: [ln for ln in ls if not ln.startswith("hosts")], False, True),
    ],
)  # fmt: skip
def test_a_kernel_setting_or_hosts_block_that_differs_includes(
    change: Any, sysctl_todo: bool, hosts_todo: bool
) -> None:
    r = _settings(*change(_in_place(_settings())))
    assert bool(json.loads(r.var("__common_sysctl_todo"))) is sysctl_todo
    assert r.var("__common_hosts_todo") is hosts_todo


def test_hosts_left_alone_when_not_managed() -> None:
    assert _settings(common_manage_hosts=False).var("__common_hosts_todo") is False
