"""vrstack.cloud.pki_service's logic with fake user and group databases (a table of cases);
main() against this host's databases is in test_module_main.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils.pki_service import (
    PkiServiceError,
    add_command,
    ensure,
)

CERT = b"-----BEGIN CERTIFICATE-----\nnode\n-----END CERTIFICATE-----\n"
GROUPS: dict[str, tuple[int, list[str]]] = {"vrstack": (990, ["vrstack-agent"])}
USERS: dict[str, int] = {"mysql": 110, "vrstack-agent": 995, "keystone": 990}


def call(
    tmp_path: Path, user: str, *, check: bool = False, cert: bool = True, group: str = "vrstack"
) -> tuple[dict[str, Any], list[list[str]]]:
    if cert:
        (tmp_path / "node.crt").write_bytes(CERT)
    ran: list[list[str]] = []

    def run(cmd: list[str]) -> tuple[int, str, str]:
        ran.append(cmd)
        return 0, "", ""

    got = ensure(
        user=user,
        group=group,
        pki_dir=str(tmp_path),
        system="Linux",
        check_mode=check,
        get_group=GROUPS.get,
        get_user=USERS.get,
        run=run,
    )
    return got, ran


@pytest.mark.parametrize(
    ("user", "check", "changed", "members", "commands"),
    [
        # Not a member yet: added (in check mode only reported).
        (
            "mysql",
            False,
            True,
            ["mysql", "vrstack-agent"],
            [["usermod", "-a", "-G", "vrstack", "mysql"]],
        ),
        ("mysql", True, True, ["mysql", "vrstack-agent"], []),
        # Already a member, or the group is its primary group: nothing to do.
        ("vrstack-agent", False, False, ["vrstack-agent"], []),
        ("keystone", False, False, ["vrstack-agent"], []),
        # A user the host does not have is not created.
        ("nobody-here", False, False, ["vrstack-agent"], []),
    ],
)
def test_membership(
    tmp_path: Path,
    user: str,
    check: bool,
    changed: bool,
    members: list[str],
    commands: list[list[str]],
) -> None:
    got, ran = call(tmp_path, user, check=check)
    assert (got["changed"], got["members"], ran) == (changed, members, commands)
    assert got["stat"] == {
        "exists": True,
        "path": str(tmp_path / "node.crt"),
        "checksum": hashlib.sha256(CERT).hexdigest(),
    }
    assert ("diff" in got) == changed
    if changed:
        assert got["diff"]["before"] == "vrstack: vrstack-agent\n"
        assert got["diff"]["after"] == "vrstack: mysql,vrstack-agent\n"


def test_missing_certificate_or_group(tmp_path: Path) -> None:
    with pytest.raises(
        PkiServiceError, match=r"^mysql needs .*/node.crt and the group vrstack for TLS"
    ):
        call(tmp_path, "mysql", cert=False)
    with pytest.raises(
        PkiServiceError, match=r"and the group other for TLS; apply vrstack\.cloud\.pki"
    ):
        call(tmp_path, "mysql", group="other")
    # Check mode on a fresh host: nothing there yet, only reported.
    got, ran = call(tmp_path / "none", "mysql", check=True, cert=False, group="other")
    assert (got["changed"], got["stat"]["exists"], got["group_exists"], ran) == (
        False,
        False,
        False,
        [],
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "my sql"}, "user 'my sql' is not a Unix user name"),
        ({"group": "-x"}, "group '-x' is not a Unix group name"),
        ({"pki_dir": "etc/pki"}, "dir 'etc/pki' is not an absolute path"),
    ],
)
def test_bad_options(kwargs: dict[str, str], message: str) -> None:
    args: dict[str, Any] = {
        "user": "mysql",
        "group": "vrstack",
        "pki_dir": "/etc/vrstack/pki",
        "system": "Linux",
        "check_mode": False,
        "get_group": GROUPS.get,
        "get_user": USERS.get,
        "run": lambda cmd: (0, "", ""),
    }
    with pytest.raises(PkiServiceError, match=f"^{message}$"):
        ensure(**{**args, **kwargs})


def test_failed_command(tmp_path: Path) -> None:
    (tmp_path / "node.crt").write_bytes(CERT)
    with pytest.raises(PkiServiceError, match=r"^adding mysql to vrstack: usermod: no such group$"):
        ensure(
            user="mysql",
            group="vrstack",
            pki_dir=str(tmp_path),
            system="Linux",
            check_mode=False,
            get_group=GROUPS.get,
            get_user=USERS.get,
            run=lambda cmd: (6, "", "usermod: no such group\n"),
        )


def test_add_command_per_os() -> None:
    assert add_command("FreeBSD", "mysql", "vrstack") == [
        "pw",
        "groupmod",
        "vrstack",
        "-m",
        "mysql",
    ]
    assert add_command("Linux", "mysql", "vrstack") == ["usermod", "-a", "-G", "vrstack", "mysql"]
