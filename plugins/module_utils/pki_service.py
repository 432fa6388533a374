# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of vrstack.cloud.pki_service: what vrstack.cloud.pki's tasks_from service did
in five tasks (stat node.crt, read the group, read the users, add the server's user, check)
in one call. Lookups and the command runner are passed in so the tests need no host."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

# Unix user and group names as Debian's useradd and FreeBSD's pw accept them.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


class PkiServiceError(Exception):
    """A bad option, a failed command or a missing certificate or group."""


def check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise PkiServiceError(f"{kind} {name!r} is not a Unix {kind} name")
    return name


def cert_stat(path: str) -> dict[str, Any]:
    """The keys of ansible.builtin.stat the callers' templates read (checksum: sha256)."""
    if not os.path.isfile(path):
        return {"exists": False, "path": path}
    with open(path, "rb") as f:
        checksum = hashlib.sha256(f.read()).hexdigest()
    return {"exists": True, "path": path, "checksum": checksum}


def add_command(system: str, user: str, group: str) -> list[str]:
    """Append the group to the user's groups (the others stay)."""
    if system == "FreeBSD":
        return ["pw", "groupmod", group, "-m", user]
    return ["usermod", "-a", "-G", group, user]


# getgrnam-like: (gid, members) or None; getpwnam-like: primary gid or None.
GroupLookup = Callable[[str], "tuple[int, list[str]] | None"]
UserLookup = Callable[[str], "int | None"]
Runner = Callable[[list[str]], "tuple[int, str, str]"]


def ensure(
    *,
    user: str,
    group: str,
    pki_dir: str,
    system: str,
    check_mode: bool,
    get_group: GroupLookup,
    get_user: UserLookup,
    run: Runner,
) -> dict[str, Any]:
    check_name("user", user)
    check_name("group", group)
    if not os.path.isabs(pki_dir):
        raise PkiServiceError(f"dir {pki_dir!r} is not an absolute path")
    cert = cert_stat(os.path.join(pki_dir, "node.crt"))
    entry = get_group(group)
    primary = get_user(user)
    members = sorted(entry[1]) if entry else []
    # A user the host does not have is left alone (the user module would create it); a
    # group that is not there yet (check mode on a fresh host) too.
    add = entry is not None and primary is not None and user not in members and primary != entry[0]
    if add and not check_mode:
        rc, out, err = run(add_command(system, user, group))
        if rc != 0:
            raise PkiServiceError(f"adding {user} to {group}: {(err or out).strip()}")
    # In check mode on a fresh host vrstack.cloud.pki only said it would install them.
    if not check_mode and not (cert["exists"] and entry is not None):
        raise PkiServiceError(
            f"{user} needs {cert['path']} and the group {group} for TLS; apply "
            "vrstack.cloud.pki first (site.yml does), or set vrstack_infra_tls: false to "
            "run MariaDB and RabbitMQ without TLS"
        )
    after = sorted([*members, user]) if add else members
    result: dict[str, Any] = {
        "changed": add,
        "stat": cert,
        "group_exists": entry is not None,
        "user_exists": primary is not None,
        "members": after,
    }
    if add:
        result["diff"] = {
            "before": f"{group}: {','.join(members)}\n",
            "after": f"{group}: {','.join(after)}\n",
            "before_header": f"group {group}",
            "after_header": f"group {group}",
        }
    return result
