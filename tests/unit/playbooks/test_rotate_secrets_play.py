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
    "sdn_analytics_db_password": "L" * 32,
    "rabbitmq_nova_password": "H" * 32,
    "rabbitmq_neutron_password": "I" * 32,
    "rabbitmq_erlang_cookie": "J" * 20,
    "sdn_api_admin_token": "K" * 32,
    "sdn_keystone_password": "Q" * 32,
}
SERVICE_PASSWORDS = sorted(
    k
    for k in STORED
    if k.endswith("_password")
    and k not in ("keystone_admin_password", "mariadb_root_password", "sdn_keystone_password")
)
NO_KEYSTONE_USER: dict[str, str] = {}


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
    """The secrets with new values: changed in place, or (a token) waiting as <name>_next
    while <name> keeps the value every server accepts, or (the SDN's Keystone user) the
    standby user's password <name>_b while <name> keeps the one in use."""
    now = yaml.safe_load(store.read_text())
    waiting = sorted(k.removesuffix("_next") for k in now if k.endswith("_next"))
    standby = sorted(k.removesuffix("_b") for k in now if k.endswith("_b"))
    assert set(now) == set(STORED) | {k + "_next" for k in waiting} | {k + "_b" for k in standby}
    assert all(now[k] == STORED[k] != now[k + "_next"] for k in waiting)
    assert all(now[k] == STORED[k] != now[k + "_b"] for k in standby)
    return sorted([*(k for k in STORED if now[k] != STORED[k]), *waiting, *standby])


def asking(value: Any) -> str:
    return json.dumps({"rotate": value})


def test_nothing_asked_rotates_nothing(store: Path) -> None:
    rc, result = play(store)
    assert rc == 0
    assert plan(result) == {
        "rotated": [],
        "fernet": False,
        "roles": [],
        "tokens": [],
        "staged": [],
        "sdn_keystone": NO_KEYSTONE_USER,
    }
    assert result["stats"]["c1"]["changed"] == 0
    assert changed_names(store) == []


# -e value -> the secrets rotated, fernet keys or not, the roles planned (in the catalog's
# order), the tokens switched in three passes
ASKED = [
    (  # names: those secrets, and every role that uses one (nova.conf holds neutron's user)
        asking(["glance_keystone_password", "neutron_keystone_password"]),
        ["glance_keystone_password", "neutron_keystone_password"],
        False,
        ["glance", "neutron_server", "nova_controller", "nova_compute"],
        [],
    ),
    (  # words in a string: every RabbitMQ user's password (not the Erlang cookie), fernet
        "rotate=rabbitmq_users,keystone_fernet",
        ["rabbitmq_neutron_password", "rabbitmq_nova_password"],
        True,
        ["rabbitmq", "neutron_server", "nova_controller", "nova_compute"],
        [],
    ),
    (  # the collector's database password is a database user's like the others
        asking(["sdn_analytics_db_password"]),
        ["sdn_analytics_db_password"],
        False,
        ["sdn_analytics"],
        [],
    ),
    (  # the SDN's tokens by word: only those stored (the file has the API's admin token)
        asking(["sdn_tokens"]),
        ["sdn_api_admin_token"],
        False,
        [],
        ["sdn_api_admin_token"],
    ),
    (  # all, in brackets: every service password, the SDN's tokens and Keystone user,
        # not the admin's, root's or the cookie
        "rotate=[all]",
        [*SERVICE_PASSWORDS, "sdn_api_admin_token", "sdn_keystone_password"],
        True,
        [
            "keystone",
            "glance",
            "nova_controller",
            "sdn_analytics",
            "neutron_server",
            "nova_compute",
            "rabbitmq",
        ],
        ["sdn_api_admin_token"],
    ),
]


@pytest.mark.parametrize(("extra", "rotated", "fernet", "roles", "tokens"), ASKED)
def test_what_is_asked_is_rotated_and_the_roles_that_use_it_planned(
    store: Path, extra: str, rotated: list[str], fernet: bool, roles: list[str], tokens: list[str]
) -> None:
    rc, result = play(store, "-e", extra)
    assert rc == 0
    user = "sdn_keystone_password" in rotated
    assert plan(result) == {
        "rotated": rotated,
        "fernet": fernet,
        "roles": roles,
        "tokens": tokens,
        "staged": tokens,
        "sdn_keystone": {"to": "b", "from": "a"} if user else NO_KEYSTONE_USER,
    }
    assert changed_names(store) == rotated
    # One change per rotating task (the passwords', the tokens', the Keystone user's).
    others = [n for n in rotated if n not in tokens and n != "sdn_keystone_password"]
    assert result["stats"]["c1"]["changed"] == bool(others) + bool(tokens) + user
    # Names only: no value, old or new, in the output.
    values = list(STORED.values()) + list(yaml.safe_load(store.read_text()).values())
    assert not any(v in json.dumps(result) for v in values if len(v) == 32)


@pytest.mark.parametrize(
    "asked",
    [["keystone_admin_password"], ["mariadb_root_password"], ["bogus"]],
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


def test_a_token_rotation_stopped_half_way_is_finished_not_rotated_again(store: Path) -> None:
    """The passes did not all run (the new value still waits, or the old one is still
    kept): asking again keeps the values, so no client is cut off, and plans the passes."""
    rc, _result = play(store, "-e", asking(["sdn_api_admin_token"]))
    assert rc == 0
    first = yaml.safe_load(store.read_text())
    rc, result = play(store, "-e", asking(["sdn_tokens"]))
    assert rc == 0
    assert plan(result) == {
        "rotated": [],
        "fernet": False,
        "roles": [],
        "tokens": ["sdn_api_admin_token"],
        "staged": ["sdn_api_admin_token"],
        "sdn_keystone": NO_KEYSTONE_USER,
    }
    assert yaml.safe_load(store.read_text()) == first
    assert result["stats"]["c1"]["changed"] == 0
    # Promoted by the stopped run: the passes run again, nothing is staged.
    promoted = {k: v for k, v in first.items() if k != "sdn_api_admin_token_next"}
    promoted["sdn_api_admin_token"] = first["sdn_api_admin_token_next"]
    promoted["sdn_api_admin_token_previous"] = first["sdn_api_admin_token"]
    store.write_text(yaml.safe_dump(promoted))
    rc, result = play(store, "-e", asking(["sdn_tokens"]))
    assert rc == 0
    assert (plan(result)["tokens"], plan(result)["staged"]) == (["sdn_api_admin_token"], [])
    assert yaml.safe_load(store.read_text()) == promoted
    values = [first["sdn_api_admin_token"], first["sdn_api_admin_token_next"]]
    assert not any(v in json.dumps(result) for v in values)


# ---- which value each pass gives the roles -----------------------------------------------


def test_the_passes_give_each_token_its_old_and_new_values(store: Path, tmp_path: Path) -> None:
    """The token passes' variables (the playbook's own), templated for a plan with one token
    whose new value waits as <name>_next and one promoted by a run stopped half-way: pass
    (a) sends the old values and lists the new, pass (b) lists the old; a token that is
    not rotated keeps its value and no list, and no secret is made by asking."""
    values = {
        **STORED,
        "sdn_api_reader_token": "M" * 32,
        "sdn_api_agent_token": "N" * 32,
        "sdn_api_admin_token_next": "O" * 32,
        "sdn_api_reader_token_previous": "P" * 32,
    }
    store.write_text(yaml.safe_dump(values))
    plays = yaml.safe_load((ROOT / "playbooks/rotate-secrets.yml").read_text())
    (first_pass,) = [p for p in plays if p["name"].startswith("Tokens (a)")]
    token_vars = dict(first_pass["vars"])
    token_vars["__rotate_plan"] = {
        "tokens": ["sdn_api_admin_token", "sdn_api_reader_token"],
        "staged": ["sdn_api_admin_token"],
    }
    # (__old_* are read in pass (b) only, after the promotion: not for the staged token.)
    shown = [
        f"{p}_{t}" for p in ("__was", "__new") for t in ("api_admin", "api_reader", "api_agent")
    ]
    shown += ["__old_api_reader", "__old_api_agent", "__new_an_admin", "__old_an_reader"]
    probe = tmp_path / "probe.yml"
    probe.write_text(yaml.safe_dump([{
        "name": "probe", "hosts": "controller", "gather_facts": False, "vars": token_vars,
        "tasks": [{"name": "show", "ansible.builtin.debug": {"msg": {n: "{{ " + n + " }}" for n in shown}}}],
    }]))  # fmt: skip
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    out = subprocess.run(
        ["ansible-playbook", "-i", str(store.parent.parent / "inventory.yml"), str(probe)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    got = json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["c1"]["msg"]
    assert got == {
        "__was_api_admin": "K" * 32,  # staged: <name> is still the old value
        "__new_api_admin": ["O" * 32],
        "__was_api_reader": "P" * 32,  # promoted: the old value is <name>_previous
        "__new_api_reader": ["M" * 32],
        "__old_api_reader": ["P" * 32],
        "__was_api_agent": "N" * 32,  # not rotated: its value, no list
        "__new_api_agent": [],
        "__old_api_agent": [],
        "__new_an_admin": [],
        "__old_an_reader": [],
    }
    assert yaml.safe_load(store.read_text()) == values  # no secret made by the lookups


# ---- the SDN APIs' Keystone user: two users in turn --------------------------------------


def keystone_user_plan(store: Path, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    rc, result = play(store, *args)
    assert rc == 0
    got = plan(result)
    assert got["rotated"] == (["sdn_keystone_password"] if got["sdn_keystone"] else [])
    values = list(STORED.values()) + list(yaml.safe_load(store.read_text()).values())
    assert not any(v in json.dumps(result) for v in values if len(v) == 32)
    return got["sdn_keystone"], yaml.safe_load(store.read_text())


def test_the_keystone_user_not_in_use_gets_the_new_password(store: Path) -> None:
    """The file says which user the APIs use (a when it does not say): the other one gets
    a new password, the one in use keeps its own until the APIs have switched (the plays
    "Keystone user" record the switch, then change the old user's)."""
    switch, now = keystone_user_plan(store, "-e", asking(["sdn_keystone"]))
    assert switch == {"to": "b", "from": "a"}
    assert now["sdn_keystone_password"] == STORED["sdn_keystone_password"]
    assert now["sdn_keystone_password_b"] not in STORED.values()
    assert "sdn_keystone_password_active" not in now  # recorded by play (3) only
    # After a rotation to b: the next one goes back to a, b's password stays.
    now["sdn_keystone_password_active"] = "b"
    store.write_text(yaml.safe_dump(now))
    switch, after = keystone_user_plan(store, "-e", asking(["sdn_keystone_password"]))
    assert switch == {"to": "a", "from": "b"}
    assert after["sdn_keystone_password"] != now["sdn_keystone_password"]
    assert after["sdn_keystone_password_b"] == now["sdn_keystone_password_b"]


def test_one_keystone_user_rotates_in_place(store: Path) -> None:
    single = json.dumps({"rotate": ["sdn_keystone"], "sdn_keystone_users_alternate": False})
    switch, now = keystone_user_plan(store, "-e", single)
    assert switch == {"to": "a", "from": "a"}  # play (3) does not run
    assert now["sdn_keystone_password"] != STORED["sdn_keystone_password"]
    assert "sdn_keystone_password_b" not in now


def test_no_keystone_user_without_keystone_auth_or_in_check_mode(store: Path) -> None:
    off = json.dumps({"rotate": ["sdn_keystone"], "sdn_keystone_auth": False})
    assert keystone_user_plan(store, "-e", off)[0] == NO_KEYSTONE_USER
    assert changed_names(store) == []
    switch, _now = keystone_user_plan(store, "--check", "-e", asking(["sdn_keystone"]))
    assert switch == {"to": "b", "from": "a"}
    assert changed_names(store) == []


def test_the_keystone_user_plays_skip_check_mode_and_name_the_slots() -> None:
    """The plays' own variables: nothing in check mode; play (3) records `to` and sets
    the password of `from`, and only when they differ (one user: no step 3)."""
    plays = yaml.safe_load((ROOT / "playbooks/rotate-secrets.yml").read_text())
    ks = [p for p in plays if p["name"].startswith("Keystone user")]
    assert [p["hosts"] for p in ks] == ["controller[0]", "analytics:controller", "controller[0]"]
    assert ks[0]["vars"]["__ks"] == (
        "{{ {} if ansible_check_mode else __rotate_plan.sdn_keystone }}"
    )
    record, old_user = ks[2]["tasks"]
    assert record["vrstack.cloud.secret_rotate"]["alternate"] == ["sdn_keystone_password"]
    assert "__ks.to" in record["vrstack.cloud.secret_rotate"]["activate"]
    assert old_user["vars"] == {"sdn_config_keystone_slot": "{{ __ks.from }}"}
    assert all("__ks.to != __ks.from" in t["when"] for t in (record, old_user))
    switch = {t["ansible.builtin.include_role"]["name"]: t["vars"] for t in ks[1]["tasks"]}
    assert switch == {
        "vrstack.cloud.sdn_analytics": {"sdn_analytics_keystone_slot": "{{ __ks.to }}"},
        "vrstack.cloud.sdn_config": {"sdn_config_keystone_slot": "{{ __ks.to }}"},
    }
    # Before the token passes: they run the SDN roles with the slot the file records.
    names = [p["name"] for p in plays]
    assert names.index(ks[2]["name"]) < min(i for i, n in enumerate(names) if "Tokens" in n)
