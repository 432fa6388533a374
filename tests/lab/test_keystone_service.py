"""vrstack.cloud.keystone_service against the lab's Keystone: create, no-op, update, check mode.

Runs the module from the deploy host with the OpenStack venv's python (openstacksdk) and
the admin credentials of the lab's openrc (`cloud: envvars`), on a throw-away service.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labcloud import STATE, Cli, openrc_env

REPO = Path(__file__).resolve().parents[2]


def venv_python() -> str:
    venv = subprocess.check_output([str(REPO / "scripts/openstack-venv.sh")], text=True).strip()
    return f"{venv}/bin/python"


def ansible_module(
    args: dict[str, Any], *, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """The module run once by ad-hoc `ansible` on the deploy host, its result as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    # Ad-hoc `ansible` loads a stdout callback only when told to.
    env |= openrc_env(STATE / "openrc") | {
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    cmd = [
        "ansible", "localhost", "-i", "localhost,", "-c", "local",
        "-m", "vrstack.cloud.keystone_service", "-a", json.dumps({"cloud": "envvars", **args}),
        "-e", f"ansible_python_interpreter={venv_python()}", "--diff",
    ]  # fmt: skip
    if check:
        cmd.append("--check")
    return subprocess.run(
        cmd, env=env, text=True, capture_output=True, timeout=180, check=False, cwd=REPO
    )


def run_module(args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    out = ansible_module(args, check=check)
    assert out.stdout, out.stderr
    result = json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert out.returncode == 0, result.get("msg", out.stderr)
    return result


@pytest.fixture
def service(admin: Cli) -> Iterator[str]:
    name = f"vrstest{secrets.token_hex(3)}"
    yield name
    for s in admin.ok("service", "list"):
        if s["Name"] == name:
            admin.run("service", "delete", s["ID"])
    admin.run("user", "delete", name)


def test_registers_once_then_reports_no_change(
    service: str, admin: Cli, admin_env: dict[str, str]
) -> None:
    password = secrets.token_urlsafe(16)
    args: dict[str, Any] = {
        "service": {"name": service, "type": f"{service}-type"},
        "endpoints": {"public": "http://198.19.99.1:1", "internal": "http://198.19.99.1:1"},
        "user": service,
        "password": password,
        "roles": ["service"],
    }
    planned = run_module(args, check=True)
    assert planned["changed"] and any(f"create service {service}" in a for a in planned["actions"])
    assert not [s for s in admin.ok("service", "list") if s["Name"] == service], (
        "check mode created it"
    )

    made = run_module(args)
    assert made["changed"], made
    assert password not in json.dumps(made)
    endpoints = {
        e["Interface"]: e["URL"] for e in admin.ok("endpoint", "list", "--service", service)
    }
    assert endpoints == {"public": "http://198.19.99.1:1", "internal": "http://198.19.99.1:1"}
    roles = admin.ok("role", "assignment", "list", "--names", "--user", service)
    assert [r["Role"] for r in roles] == ["service"]

    again = run_module(args)
    assert not again["changed"], again["actions"]

    # A new URL updates the endpoint; a new password is applied (the old one stops working).
    args["endpoints"]["public"] = "http://198.19.99.2:1"
    args["password"] = secrets.token_urlsafe(16)
    moved = run_module(args)
    assert sorted(a.split()[0] for a in moved["actions"]) == ["set", "update"], moved["actions"]
    endpoints = {
        e["Interface"]: e["URL"] for e in admin.ok("endpoint", "list", "--service", service)
    }
    assert endpoints["public"] == "http://198.19.99.2:1"
    as_user = Cli(
        admin.client,
        admin_env
        | {"OS_USERNAME": service, "OS_PASSWORD": args["password"], "OS_PROJECT_NAME": "service"},
    )
    as_user.ok("token", "issue")
    assert not run_module(args)["changed"]


def test_refuses_an_unknown_interface(service: str) -> None:
    out = ansible_module(
        {
            "service": {"name": service, "type": "x"},
            "endpoints": {"outside": "http://198.19.99.1:1"},
        }
    )
    assert out.returncode != 0
    assert "endpoints: outside is not one of public, internal, admin" in out.stdout
