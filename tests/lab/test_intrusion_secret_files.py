"""Every file the roles write with a secret in it has its owner and mode, on the deployed
lab (issue 11: "stored in service config files mode 0640 owned by root and the service's
group"), and the deploy host's secrets stay its owner's.

The list below is written from the roles' own variables (`roles/*/defaults` and `vars`,
read here, so a moved file is followed) and says why each file is on it. A file may be
stricter than its entry (0600 passes for 0640), never wider, and never open to others.
`test_every_role_that_writes_a_secret_is_listed` keeps the list complete: a role that
gains a `no_log` file task must be added here. `test_security.py`'s
`test_secret_files_are_closed_to_other_users` is the other half: it greps the nodes for
secret values, so a file nobody listed is found too. Paths are Debian 12's (the lab).
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass
from typing import Any

import test_security as security
import yaml
from labcloud import REPO, STATE
from test_security import Lab, Node, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

ROLES = REPO / "roles"


@dataclass(frozen=True)
class SecretFile:
    role: str  # the role that writes it
    on: tuple[str, ...]  # the fabric roles of the hosts that have it ("all": every host)
    path: str  # str.format over the roles' variables
    owner: str
    group: str
    mode: int  # the widest allowed (a directory: its own mode)
    why: str
    files: int | None = None  # a directory: the widest mode of each file in it
    several: bool = False  # only with several controllers (haproxy, keepalived)


SERVICE = 0o640  # root:<service group>: the service reads it, only root writes it

SECRET_FILES = (
    SecretFile("pki", ("all",), "{pki_dir}/node.key", "root", "{pki_group}", SERVICE,
               "the node's TLS key (XMPP, BGP peers' trust, the APIs, MariaDB, RabbitMQ)"),
    SecretFile("sdn_config", ("controller",), "{sdn_config_etc_dir}/api.yaml", "root",
               "{sdn_config_group}", SERVICE,
               "the config API's static tokens and its Keystone service password"),
    SecretFile("sdn_config", ("controller",), "{sdn_config_etc_dir}/schema.yaml", "root",
               "{sdn_config_group}", SERVICE, "the config API admin token"),
    SecretFile("sdn_control", ("control",), "{sdn_control_etc_dir}/control.yaml", "root",
               "{sdn_control_group}", SERVICE,
               "the config API token, the BGP MD5 passwords, the analytics token"),
    SecretFile("sdn_analytics", ("analytics",), "{sdn_analytics_etc_dir}/collector.yaml",
               "root", "{sdn_analytics_group}", SERVICE,
               "the collector's static tokens, its Keystone password (MariaDB's with that store)"),
    SecretFile("vrouter", ("compute",), "{vrouter_agent_etc_dir}/agent.yaml", "root",
               "{vrouter_agent_group}", SERVICE, "the agent's config API and analytics tokens"),
    SecretFile("keystone", ("controller",), "{keystone_conf_dir}/keystone.conf", "root",
               "{keystone_group}", SERVICE, "the database password"),
    SecretFile("keystone", ("controller",), "{keystone_clouds_yaml}", "root", "root", 0o600,
               "the cloud admin's password (root's tools only)"),
    SecretFile("keystone", ("controller",), "{keystone_openrc_path}", "root", "root", 0o600,
               "the cloud admin's password (root's shell only)"),
    # keystone-manage makes and rotates these as the keystone user: it owns them.
    SecretFile("keystone", ("controller",), "{keystone_conf_dir}/fernet-keys", "{keystone_user}",
               "{keystone_group}", 0o700, "the keys that sign every token", files=0o600),
    SecretFile("keystone", ("controller",), "{keystone_conf_dir}/credential-keys",
               "{keystone_user}", "{keystone_group}", 0o700,
               "the keys of users' stored credentials", files=0o600),
    SecretFile("glance", ("controller",), "{glance_conf_dir}/glance-api.conf", "root",
               "{glance_group}", SERVICE, "the database and Keystone passwords"),
    SecretFile("placement", ("controller",), "{placement_conf_dir}/placement.conf", "root",
               "{placement_group}", SERVICE, "the database and Keystone passwords"),
    SecretFile("nova_controller", ("controller", "compute"), "{nova_controller_conf_dir}/nova.conf",
               "root", "{nova_controller_group}", SERVICE,
               "RabbitMQ and Keystone passwords (controllers: the databases' too)"),
    SecretFile("nova_compute", ("compute",), "{nova_controller_conf_dir}/nova-compute.conf",
               "root", "{nova_controller_group}", SERVICE, "os-vif's config API token"),
    SecretFile("neutron_server", ("controller",), "{neutron_server_conf_dir}/neutron.conf",
               "root", "{neutron_server_group}", SERVICE,
               "the database, RabbitMQ and Keystone passwords"),
    SecretFile("neutron_server", ("controller",),
               "{neutron_server_conf_dir}/plugins/ml2/ml2_conf.ini", "root",
               "{neutron_server_group}", SERVICE, "the ML2 driver's config API token"),
    # Erlang refuses a cookie anyone but its own user can read.
    SecretFile("rabbitmq", ("messaging",), "{__rabbitmq_os[debian][home]}/.erlang.cookie",
               "rabbitmq", "rabbitmq", 0o400, "the Erlang distribution cookie (rabbitmqctl)"),
    SecretFile("haproxy", ("controller",), "{__haproxy_os[debian][config]}", "root",
               "{__haproxy_os[debian][config_group]}", SERVICE,
               "the statistics page's password", several=True),
    SecretFile("haproxy", ("controller",), "/etc/keepalived/keepalived.conf", "root", "root",
               0o600, "the VRRP password", several=True),
    SecretFile("gateway", ("gateway",), "{gateway_bird_config}", "root", "bird", SERVICE,
               "the BGP MD5 password of the control nodes (multirack gateway)"),
)  # fmt: skip

# Not here: sdn_control's FreeBSD setkey file (tasks/freebsd_md5.yml, 0600 root:wheel),
# which tests/freebsd/test_bgp_md5_setkey.py checks; the lab is Debian.


def role_variables() -> dict[str, Any]:
    """Every role's defaults and vars in one dict (their names carry the role's prefix)."""
    out: dict[str, Any] = {}
    for path in [
        *sorted(ROLES.glob("*/defaults/main.yml")),
        *sorted(ROLES.glob("*/vars/main.yml")),
    ]:
        out.update(yaml.safe_load(path.read_text()) or {})
    return out


def resolved(entry: SecretFile, variables: dict[str, Any]) -> tuple[str, str, str]:
    """The entry's path, owner and group with the roles' values filled in."""
    found = tuple(v.format(**variables) for v in (entry.path, entry.owner, entry.group))
    for value in found:
        assert "{{" not in value and value, f"{entry.path}: the role's value is a template: {value}"
    return found  # type: ignore[return-value]


def file_tasks(tasks: Any) -> list[dict[str, Any]]:
    """Tasks (blocks opened) that write a file with a template or a copy."""
    out = []
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for key in ("block", "rescue", "always"):
            out += file_tasks(task.get(key))
        if {"ansible.builtin.template", "ansible.builtin.copy"} & set(task):
            out.append(task)
    return out


def test_every_role_that_writes_a_secret_is_listed() -> None:
    """Needs no lab: the roles' tasks against the list above."""
    writers = set()
    for path in ROLES.glob("*/tasks/*.yml"):
        if any(t.get("no_log") for t in file_tasks(yaml.safe_load(path.read_text()))):
            writers.add(path.parts[-3])
    assert writers, "no role writes a file with no_log: the scan is broken"
    listed = {f.role for f in SECRET_FILES}
    assert writers <= listed, f"roles writing secret files missing here: {sorted(writers - listed)}"
    variables = role_variables()
    for entry in SECRET_FILES:
        resolved(entry, variables)


def wanted_on(node: Node, several: bool) -> list[SecretFile]:
    return [
        f for f in SECRET_FILES if (set(f.on) & {"all", *node.roles}) and (several or not f.several)
    ]


def problems_of(line: str, owner: str, group: str, widest: int) -> str:
    """`stat -c '%a %U %G %n'` output against the wanted owner, group and widest mode."""
    mode, got_owner, got_group, path = line.split(" ", 3)
    perm = int(mode, 8)
    wrong = []
    if perm & ~widest & 0o7777:
        wrong.append(f"mode {mode}, wanted {widest:o} or stricter")
    if perm & 0o007:
        wrong.append("open to others")
    if (got_owner, got_group) != (owner, group):
        wrong.append(f"{got_owner}:{got_group}, wanted {owner}:{group}")
    return f"{path}: {', '.join(wrong)}" if wrong else ""


def test_secret_files_have_their_owner_and_mode(lab: Lab) -> None:
    variables = role_variables()
    several = len(lab.by_role("controller")) > 1
    problems, checked = [], 0
    for node in lab.nodes:
        entries = [(f, *resolved(f, variables)) for f in wanted_on(node, several)]
        paths = [path for _f, path, _o, _g in entries]
        dirs = [path for f, path, _o, _g in entries if f.files is not None]
        script = (
            "stat -c '%a %U %G %n' -- " + " ".join(map(shlex.quote, paths)) + " 2>/dev/null;"
            " echo ==;"
            + "".join(
                f" find {shlex.quote(d)} -type f -exec stat -c '%a %U %G %n' {{}} +;" for d in dirs
            )
            + " true"
        )
        out = on_node(lab, node, script, timeout=120)
        assert out.returncode == 0, f"{node.name}: {out.stderr.strip()}"
        own, inside = out.stdout.split("==\n", 1) if "==\n" in out.stdout else (out.stdout, "")
        seen = {line.split(" ", 3)[3]: line for line in own.splitlines() if line.count(" ") >= 3}
        for entry, path, owner, group in entries:
            if path not in seen:
                problems.append(f"{node.name}:{path} is missing ({entry.why})")
                continue
            checked += 1
            wrong = problems_of(seen[path], owner, group, entry.mode)
            if wrong:
                problems.append(f"{node.name}:{wrong} ({entry.why})")
            if entry.files is None:
                continue
            keys = [
                line for line in inside.splitlines() if line.split(" ", 3)[3].startswith(path + "/")
            ]
            if not keys:
                problems.append(f"{node.name}:{path} holds no key")
            for line in keys:
                checked += 1
                wrong = problems_of(line, owner, group, entry.files)
                if wrong:
                    problems.append(f"{node.name}:{wrong} ({entry.why})")
    assert checked >= len(lab.nodes), "fewer files than nodes checked: every node has node.key"
    assert not problems, "; ".join(problems)
    print(f"{checked} secret files and keys checked on {len(lab.nodes)} nodes")


def test_the_deploy_hosts_secrets_are_its_owners_only() -> None:
    """The secrets file, the CA's key, the node keys and certificates of the pki store and
    the admin openrc (keystone_openrc_deploy_path, beside the secrets file; only once
    OpenStack is deployed) 0600, their directories 0700, all owned by who deploys."""
    wanted = [(STATE, 0o700), (STATE / "secrets.yml", 0o600), (STATE / "ca.key", 0o600),
              (STATE / "pki", 0o700)]  # fmt: skip
    # Directories in the store (the revoked certificates) are 0700 like the store.
    wanted += [(p, 0o700 if p.is_dir() else 0o600) for p in sorted((STATE / "pki").glob("*"))]
    if (STATE / "openrc").exists():
        wanted.append((STATE / "openrc", 0o600))
    problems = []
    for path, widest in wanted:
        if not path.exists():
            problems.append(f"{path} is missing")
            continue
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & ~widest:
            problems.append(f"{path} is {stat.S_IMODE(st.st_mode):04o}, wanted {widest:04o}")
        if st.st_uid != os.getuid():
            problems.append(f"{path} is owned by uid {st.st_uid}, not the deploying user")
    assert len(wanted) > 4, f"{STATE / 'pki'} holds no node certificate: is the lab deployed?"
    assert not problems, "; ".join(problems)
