"""The modules that replaced the internal entry points (issue 7, H9) against the converged
lab, run by ad-hoc `ansible` with the lab inventory: on a converged lab each reports no
change, in check mode and for real, and returns what the roles read from it.

- vrstack.cloud.pki_service: mysql and rabbitmq are in pki_group already; the checksum is
  node.crt's sha256 as the node computes it (the one the server configs name).
- vrstack.cloud.mariadb_database: keystone's database and user are as the role left them.
- vrstack.cloud.service_probe: MariaDB answers on the fabric address; a closed port fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import test_security as security
from test_security import INVENTORY, REPO, Lab, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition


def adhoc(pattern: str, module: str, args: dict[str, Any], *, check: bool = False):
    """Each host's result of one module run by ad-hoc `ansible` (and the exit code)."""
    env = os.environ | {
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    cmd = ["ansible", pattern, "-i", INVENTORY, "-m", f"vrstack.cloud.{module}",
           "-a", json.dumps(args)]  # fmt: skip
    if check:
        cmd.append("--check")
    out = subprocess.run(
        cmd, cwd=REPO, env=env, text=True, capture_output=True, timeout=300, check=False
    )
    assert out.stdout, out.stderr
    hosts = json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]
    return out.returncode, hosts


def test_pki_service_changes_nothing_and_names_the_checksum(lab: Lab) -> None:
    for role, user in (("database", "mysql"), ("messaging", "rabbitmq")):
        args = {"user": user, "group": "vrstack", "dir": "/etc/vrstack/pki"}
        for check in (True, False):
            rc, hosts = adhoc(role, "pki_service", args, check=check)
            assert rc == 0, hosts
            for node in lab.by_role(role):
                got = hosts[node.name]
                assert not got["changed"], f"{node.name}: {got}"
                assert user in got["members"]
                sha = on_node(lab, node, "sha256sum /etc/vrstack/pki/node.crt").stdout.split()[0]
                assert got["stat"]["checksum"] == sha, node.name


def test_mariadb_database_finds_keystone_as_left() -> None:
    args = {
        "name": "keystone",
        "user": "keystone",
        "password": "{{ lookup('vrstack.cloud.secret', 'keystone_db_password') }}",
        "tls": "{{ vrstack_infra_tls | default(true) }}",
    }
    for check in (True, False):
        rc, hosts = adhoc("database[0]", "mariadb_database", args, check=check)
        (got,) = hosts.values()
        assert rc == 0 and not got["changed"], got
        assert got["msg"] == "keystone: ok"


def test_service_probe_finds_mariadb_and_fails_on_a_closed_port(lab: Lab) -> None:
    node = lab.by_role("database")[0]
    args = {"service": "mariadb", "host": node.ip, "port": 3306, "expect": "MariaDB"}
    rc, hosts = adhoc(node.name, "service_probe", args, check=True)
    assert rc == 0 and hosts[node.name]["reply"] == "MariaDB", hosts
    rc, hosts = adhoc(node.name, "service_probe", {**args, "port": 9})
    assert rc != 0 and hosts[node.name]["msg"].startswith(f"service_probe mariadb: {node.ip}:9: ")
