"""The one-task replacements of keystone's `register` and openstack_venv's `schema_check` /
`schema_record` entry points (issue 7) against the converged lab, by ad-hoc `ansible` with
the lab inventory on the first controller, as the roles run them:

- vrstack.cloud.keystone_register finds every service the site registered as it left them
  (check mode and for real: no change), registers a throw-away service once (check mode
  creates nothing, a second run changes nothing), applies a rotated password, and fails
  naming the cloud when clouds.yaml has no such cloud.
- vrstack.cloud.openstack_schema_stamp finds every service's stamp current (the content the
  former entry points wrote), in check mode and for real, and `state: present` changes
  nothing there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from labcloud import Cli
from test_entry_modules import adhoc

PRIMARY = "controller[0]"
# What the roles register (roles/*/tasks/main.yml, sdn_config's keystone.yml).
SITE = [
    ("glance", "image", "glance_keystone_password"),
    ("placement", "placement", "placement_keystone_password"),
    ("nova", "compute", "nova_controller_keystone_password"),
    ("neutron", "network", "neutron_keystone_password"),
]


def one(
    pattern: str, module: str, args: dict[str, Any], *, check: bool = False
) -> tuple[int, dict[str, Any]]:
    rc, hosts = adhoc(pattern, module, args, check=check)
    (got,) = hosts.values()
    return rc, got


def test_site_registrations_change_nothing() -> None:
    for name, kind, secret in SITE:
        # Without endpoints: the module reads the service, the user's password and roles.
        args = {
            "service": {"name": name, "type": kind},
            "user": name,
            "password": "{{ lookup('vrstack.cloud.secret', '" + secret + "') }}",
        }
        for check in (True, False):
            rc, got = one(PRIMARY, "keystone_register", args, check=check)
            assert rc == 0 and not got["changed"], f"{name}: {got}"
            assert got["service_id"], got


@pytest.fixture
def service(admin: Cli) -> Iterator[str]:
    name = f"vrstest{secrets.token_hex(3)}"
    yield name
    for s in admin.ok("service", "list"):
        if s["Name"] == name:
            admin.run("service", "delete", s["ID"])
    admin.run("user", "delete", name)


def test_registers_once_then_no_change_then_a_new_password(service: str) -> None:
    args: dict[str, Any] = {
        "service": {"name": service, "type": f"{service}-type"},
        "url": "http://198.19.99.1:1",
        "user": service,
        "password": secrets.token_urlsafe(16),
        "roles": ["service"],
    }
    rc, planned = one(PRIMARY, "keystone_register", args, check=True)
    assert rc == 0 and planned["changed"], planned
    assert f"create service {service} ({service}-type)" in planned["actions"]
    rc, again = one(PRIMARY, "keystone_register", args, check=True)
    assert again["actions"] == planned["actions"], "check mode created something"
    rc, made = one(PRIMARY, "keystone_register", args)
    assert rc == 0 and made["changed"] and args["password"] not in str(made), made
    rc, same = one(PRIMARY, "keystone_register", args)
    assert rc == 0 and not same["changed"], same["actions"]
    # A moved endpoint is updated and a new password applied, in one run.
    moved = {
        **args,
        "endpoints": {"public": "http://198.19.99.2:1"},
        "password": secrets.token_urlsafe(16),
    }
    rc, rotated = one(PRIMARY, "keystone_register", moved, check=False)
    assert rc == 0 and rotated["actions"] == [
        f"update endpoint {service} public http://198.19.99.1:1 -> http://198.19.99.2:1",
        f"set password of user {service}",
    ], rotated
    rc, same = one(PRIMARY, "keystone_register", moved)
    assert rc == 0 and not same["changed"], same["actions"]


def test_unknown_cloud_fails_naming_it() -> None:
    rc, got = one(PRIMARY, "keystone_register", {"cloud": "nowhere"})
    assert rc != 0
    assert got["msg"] == (
        "keystone (cloud nowhere): /etc/openstack/clouds.yaml: no cloud nowhere with an auth section"
    )


def test_schema_stamps_are_current() -> None:
    for service in ("keystone", "glance", "placement", "neutron"):
        for check in (True, False):
            rc, got = one(PRIMARY, "openstack_schema_stamp", {"service": service}, check=check)
            assert rc == 0 and got["current"] and not got["changed"], f"{service}: {got}"
            rc, got = one(
                PRIMARY,
                "openstack_schema_stamp",
                {"service": service, "state": "present"},
                check=check,
            )
            assert rc == 0 and not got["changed"], f"{service}: {got}"
    # A stamp that names other inputs is not current (nova's names its cell and transport).
    rc, got = one(PRIMARY, "openstack_schema_stamp", {"service": "keystone", "inputs": "other"})
    assert rc == 0 and not got["current"], got
