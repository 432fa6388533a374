"""Fixtures of the lab's API checks: the admin and a fresh member project's user."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from labcloud import REPO, SERVER_TIMEOUT, STATE, Cli, openrc_env


@pytest.fixture(scope="session")
def client() -> str:
    found = os.environ.get("VRSTACK_OPENSTACK_CLIENT")
    if not found:
        venv = subprocess.check_output([str(REPO / "scripts/openstack-venv.sh")], text=True).strip()
        found = f"{venv}/bin/openstack"
    return found


@pytest.fixture(scope="session")
def admin_env() -> dict[str, str]:
    openrc = STATE / "openrc"
    if not openrc.exists():
        pytest.fail(f"{openrc} is missing: deploy the lab first (make lab)")
    return openrc_env(openrc)


@pytest.fixture(scope="session")
def admin(client: str, admin_env: dict[str, str]) -> Cli:
    return Cli(client, admin_env)


@pytest.fixture(scope="session")
def member(admin: Cli, admin_env: dict[str, str]) -> Iterator[Cli]:
    """A fresh project with a user holding only the `member` role in it."""
    yield from member_project(admin, admin_env)


@pytest.fixture(scope="session")
def other_member(admin: Cli, admin_env: dict[str, str]) -> Iterator[Cli]:
    """Another such project and user, for what one project may not see of another's."""
    yield from member_project(admin, admin_env)


def member_project(admin: Cli, admin_env: dict[str, str]) -> Iterator[Cli]:
    """A fresh project and a `member` user in it; everything it made is removed after."""
    tag = secrets.token_hex(3)
    project, user, password = f"apicheck-{tag}", f"apicheck-{tag}", secrets.token_urlsafe(16)
    admin.ok("project", "create", "--domain", "default", project)
    admin.ok("user", "create", "--domain", "default", "--password", password, user)
    admin.quiet("role", "add", "--project", project, "--user", user, "member")
    env = admin_env | {"OS_USERNAME": user, "OS_PASSWORD": password, "OS_PROJECT_NAME": project}
    yield Cli(admin.client, env)
    cli = Cli(admin.client, env)
    for server in cli.ok("server", "list"):
        cli.run("server", "delete", "--wait", server["ID"], timeout=SERVER_TIMEOUT)
    delete_routers_and_floating_ips(cli)
    for kind in ("port", "network", "security group"):
        for obj in cli.ok(*kind.split(), "list"):
            if kind == "security group" and obj["Name"] == "default":
                continue
            if kind == "port" and str(obj.get("Device Owner", "")).startswith("network:"):
                continue
            cli.run(*kind.split(), "delete", obj["ID"])
    admin.run("user", "delete", user)
    admin.run("project", "delete", project)


def delete_routers_and_floating_ips(cli: Cli) -> None:
    """Everything L3 the user's project holds (a router's interfaces go before it)."""
    for fip in cli.ok("floating", "ip", "list"):
        cli.run("floating", "ip", "delete", fip["ID"])
    for router in cli.ok("router", "list"):
        for itf in cli.ok("router", "show", router["ID"]).get("interfaces_info") or []:
            cli.run("router", "remove", "port", router["ID"], itf["port_id"])
        cli.run("router", "delete", router["ID"])


@pytest.fixture
def l3_member(member: Cli) -> Iterator[Cli]:
    """The member, whose routers and floating IPs go after each test, whatever happened."""
    yield member
    delete_routers_and_floating_ips(member)
