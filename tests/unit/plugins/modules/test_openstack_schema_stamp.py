"""vrstack.cloud.openstack_schema_stamp (action on the deploy host + module on the node),
run by ansible-playbook on this machine: the stamp it writes is byte for byte what
openstack_venv's former schema_record wrote (so the lab's stamps stay valid), reading it
sets openstack_venv_schema_current, other inputs or constraints are not current, check
mode writes nothing, a second write changes nothing, and the entry points still work."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.vrstack.cloud.plugins.action.openstack_schema_stamp import (
    CONSTRAINTS,
    stamp_id,
)

ROOT = Path(__file__).resolve().parents[4]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stamp is root-owned")


def play(
    tmp_path: Path, tasks: list[dict[str, Any]], check: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    """Exit code and each task's result for localhost."""
    (tmp_path / "play.yml").write_text(
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_STRATEGY="linear",
        # As `make lab` runs: facts only under ansible_facts, which is where roles read it.
        ANSIBLE_INJECT_FACT_VARS="False",
    )
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i", "localhost,", "-c", "local",
        "-e", f"ansible_python_interpreter={sys.executable}",
        "-e", json.dumps({"vrstack_os": "debian"}),
        str(tmp_path / "play.yml"),
    ]  # fmt: skip
    if check:
        cmd.append("--check")
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False
    )
    assert done.stdout, done.stderr
    tasks = json.loads(done.stdout)["plays"][0]["tasks"]
    return done.returncode, [t["hosts"]["localhost"] for t in tasks]


def stamp(service: str, state: str, dirpath: Path, **more: Any) -> dict[str, Any]:
    return {
        "name": f"{state} {service}",
        "vrstack.cloud.openstack_schema_stamp": {
            "service": service,
            "state": state,
            "dir": str(dirpath),
            **more,
        },
    }


def test_same_stamp_as_the_former_entry_point(tmp_path: Path) -> None:
    stamps = tmp_path / "schema"
    # What the former schema_check/schema_record computed in Jinja, for a check of equality.
    old_id = {
        "name": "old id",
        "ansible.builtin.debug": {
            "msg": "{{ (lookup('ansible.builtin.file', '"
            + str(CONSTRAINTS)
            + "') | hash('sha1')) ~ ' ' ~ 'cell cell1 tls True' }}"
        },
    }
    rc, results = play(
        tmp_path,
        [
            stamp("nova", "read", stamps, inputs="cell cell1 tls True"),
            {
                "name": "fact",
                "ansible.builtin.debug": {"var": "ansible_facts.openstack_venv_schema_current"},
            },
            stamp("nova", "present", stamps, inputs="cell cell1 tls True"),
            stamp("nova", "present", stamps, inputs="cell cell1 tls True"),
            stamp("nova", "read", stamps, inputs="cell cell1 tls True"),
            {
                "name": "fact",
                "ansible.builtin.debug": {"var": "ansible_facts.openstack_venv_schema_current"},
            },
            stamp("nova", "read", stamps, inputs="cell cell2 tls True"),
            old_id,
        ],
    )
    assert rc == 0, results
    read, fact, write, rewrite, reread, refact, other, old = results
    assert not read["current"] and not read["changed"]
    assert fact["ansible_facts.openstack_venv_schema_current"] is False
    assert write["changed"] and not rewrite["changed"]
    assert reread["current"] and refact["ansible_facts.openstack_venv_schema_current"] is True
    assert not other["current"]
    path = stamps / "nova"
    assert (
        path.read_text() == old["msg"] == stamp_id(CONSTRAINTS.read_text(), "cell cell1 tls True")
    )
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    assert stat.S_IMODE(stamps.stat().st_mode) == 0o755


def test_check_mode_writes_nothing_and_a_wrong_mode_is_fixed(tmp_path: Path) -> None:
    stamps = tmp_path / "schema"
    rc, (planned,) = play(tmp_path, [stamp("glance", "present", stamps)], check=True)
    assert rc == 0 and planned["changed"] and not stamps.exists(), planned
    rc, _results = play(tmp_path, [stamp("glance", "present", stamps)])
    (stamps / "glance").chmod(0o600)
    rc, (fixed, again) = play(
        tmp_path, [stamp("glance", "present", stamps), stamp("glance", "present", stamps)]
    )
    assert rc == 0 and fixed["changed"] and not again["changed"]
    assert stat.S_IMODE((stamps / "glance").stat().st_mode) == 0o644


def test_other_constraints_are_not_current(tmp_path: Path) -> None:
    stamps = tmp_path / "schema"
    other = tmp_path / "constraints.txt"
    other.write_text("keystone===99.0.0\n")
    rc, (write, same, changed) = play(
        tmp_path,
        [
            stamp("keystone", "present", stamps),
            stamp("keystone", "read", stamps),
            stamp("keystone", "read", stamps, constraints=str(other)),
        ],
    )
    assert rc == 0 and write["changed"] and same["current"] and not changed["current"]
    rc, (missing,) = play(
        tmp_path, [stamp("keystone", "read", stamps, constraints=str(tmp_path / "none"))]
    )
    assert rc != 0 and missing["msg"].startswith(f"constraints: cannot read {tmp_path / 'none'}: ")


def test_entry_points_call_the_module(tmp_path: Path) -> None:
    stamps = tmp_path / "schema"

    def entry(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "ansible.builtin.include_role": {
                "name": "vrstack.cloud.openstack_venv",
                "tasks_from": name,
            },
            "vars": {
                "openstack_venv_schema_service": "placement",
                "openstack_venv_schema_dir": str(stamps),
            },
        }

    rc, results = play(
        tmp_path,
        [
            entry("schema_check"),
            {
                "name": "fact",
                "ansible.builtin.debug": {"var": "ansible_facts.openstack_venv_schema_current"},
            },
            entry("schema_record"),
            entry("schema_check"),
            {
                "name": "fact",
                "ansible.builtin.debug": {"var": "ansible_facts.openstack_venv_schema_current"},
            },
        ],
    )
    assert rc == 0, results
    facts = [
        r["ansible_facts.openstack_venv_schema_current"]
        for r in results
        if "ansible_facts.openstack_venv_schema_current" in r
    ]
    assert facts == [False, True]
    assert (stamps / "placement").read_text() == stamp_id(CONSTRAINTS.read_text(), "")
