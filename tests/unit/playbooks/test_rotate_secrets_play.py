"""playbooks/rotate-secrets.yml's first play, run by ansible-playbook on this machine (a
local 'controller' host, a secrets file in a temporary directory, `--tags always` so the
plays that run roles on the cloud's hosts stay out): what `rotate` selects, what it
refuses, which roles it plans to run again, check mode, and nothing asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
STORED = {
    "keystone_admin_password": "A" * 32,
    "mariadb_root_password": "B" * 32,
    "keystone_db_password": "C" * 32,
    "glance_db_password": "D" * 32,
    "glance_keystone_password": "E" * 32,
    "neutron_keystone_password": "F" * 32,
    "nova_controller_db_password": "G" * 32,
    "rabbitmq_nova_password": "H" * 32,
    "rabbitmq_neutron_password": "I" * 32,
    "rabbitmq_erlang_cookie": "J" * 20,
    "sdn_api_admin_token": "K" * 32,
}
SERVICE_PASSWORDS = sorted(
    k
    for k in STORED
    if k.endswith("_password") and k not in ("keystone_admin_password", "mariadb_root_password")
)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store" / "secrets.yml"
    path.parent.mkdir(mode=0o700)
    path.write_text(yaml.safe_dump(STORED))
    path.chmod(0o600)
    inventory = tmp_path / "inventory.yml"
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "vrstack_fabric": {"name": "rotate-test"},
        "vrstack_secrets_file": str(path),
    }
    inventory.write_text(
        yaml.safe_dump({"all": {"children": {"controller": {"hosts": {"c1": host}}}}})
    )
    return path


def play(store: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    out = subprocess.run(
        ["ansible-playbook", "-i", str(store.parent.parent / "inventory.yml"),
         "playbooks/rotate-secrets.yml", "--tags", "always", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    return out.returncode, json.loads(out.stdout)


def plan(result: dict[str, Any]) -> dict[str, Any]:
    (first, *others) = result["plays"]
    assert all(not p["tasks"] for p in others), "--tags always ran a role"
    for task in first["tasks"]:
        if task["task"]["name"] == "Plan the roles to run again":
            got = task["hosts"]["c1"]["ansible_facts"]["rotate_secrets_plan"]
            assert isinstance(got, dict)
            return got
    raise AssertionError("the plan task did not run")


def changed_names(store: Path) -> list[str]:
    now = yaml.safe_load(store.read_text())
    assert set(now) == set(STORED)
    return sorted(k for k in now if now[k] != STORED[k])


def asking(value: Any) -> str:
    return json.dumps({"rotate": value})


def test_nothing_asked_rotates_nothing(store: Path) -> None:
    rc, result = play(store)
    assert rc == 0
    assert plan(result) == {"rotated": [], "fernet": False, "roles": []}
    assert result["stats"]["c1"]["changed"] == 0
    assert changed_names(store) == []


# -e value -> the secrets rotated, fernet keys or not, the roles planned (in the catalog's order)
ASKED = [
    (  # names: those secrets, and every role that uses one (nova.conf holds neutron's user)
        asking(["glance_keystone_password", "neutron_keystone_password"]),
        ["glance_keystone_password", "neutron_keystone_password"],
        False,
        ["glance", "neutron_server", "nova_controller", "nova_compute"],
    ),
    (  # words in a string: every RabbitMQ user's password (not the Erlang cookie), fernet
        "rotate=rabbitmq_users,keystone_fernet",
        ["rabbitmq_neutron_password", "rabbitmq_nova_password"],
        True,
        ["rabbitmq", "neutron_server", "nova_controller", "nova_compute"],
    ),
    (  # all, in brackets: every service password, not the admin's, root's, cookie or tokens
        "rotate=[all]",
        SERVICE_PASSWORDS,
        True,
        ["keystone", "glance", "nova_controller", "neutron_server", "nova_compute", "rabbitmq"],
    ),
]


@pytest.mark.parametrize(("extra", "rotated", "fernet", "roles"), ASKED)
def test_what_is_asked_is_rotated_and_the_roles_that_use_it_planned(
    store: Path, extra: str, rotated: list[str], fernet: bool, roles: list[str]
) -> None:
    rc, result = play(store, "-e", extra)
    assert rc == 0
    assert plan(result) == {"rotated": rotated, "fernet": fernet, "roles": roles}
    assert changed_names(store) == rotated
    assert result["stats"]["c1"]["changed"] == 1
    # Names only: no value, old or new, in the output.
    values = list(STORED.values()) + list(yaml.safe_load(store.read_text()).values())
    assert not any(v in json.dumps(result) for v in values if len(v) == 32)


@pytest.mark.parametrize(
    "asked",
    [["keystone_admin_password"], ["mariadb_root_password"], ["sdn_api_admin_token"], ["bogus"]],
)
def test_what_it_does_not_rotate_is_refused_before_anything_changes(
    store: Path, asked: list[str]
) -> None:
    rc, result = play(store, "-e", asking(asked))
    assert rc == 2
    text = json.dumps(result)
    assert f"rotate: {asked[0]} is not rotated by this playbook" in text
    assert changed_names(store) == []


def test_a_missing_secret_is_refused(store: Path) -> None:
    rc, result = play(store, "-e", asking(["placement_db_password"]))
    assert rc == 2
    assert "no secret named placement_db_password to rotate" in json.dumps(result)
    assert changed_names(store) == []


def test_check_mode_names_what_would_change_and_writes_nothing(store: Path) -> None:
    rc, result = play(store, "--check", "-e", asking(["glance_db_password"]))
    assert rc == 0
    assert plan(result)["rotated"] == ["glance_db_password"]
    assert changed_names(store) == []
