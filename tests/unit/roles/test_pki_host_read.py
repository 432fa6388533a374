"""pki's one read of the host (issue 7): the read's shell run on this machine, and what
roles/pki/vars/main.yml makes of its lines decides whether host.yml is included
(openssl missing, the group missing, a member this host has not in the group yet, pki_dir
missing or not root's 0755)."""

from __future__ import annotations

import grp
import pwd
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "pki"
READ_TASK = (
    "Read openssl's presence, the group that may read the node key, its members and {{ pki_dir }}"
)


def _render(lines: list[str], members: list[str]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already")
        init_plugin_loader([str(ROOT / ".collections")])
    loader = DataLoader()
    variables = loader.load_from_file(str(ROLE / "vars" / "main.yml"), trusted_as_template=True)
    variables.update(
        pki_group_members=members, vrstack_os="debian12", __pki_host_read={"stdout_lines": lines}
    )
    templar = Templar(loader=loader, variables=variables)
    names = ["__pki_openssl_missing", "__pki_group_missing", "__pki_members_todo", "__pki_dir_todo"]
    return {n: templar.template(trust_as_template("{{ " + n + " }}")) for n in names}


DIR = "dir root:root:755"
CASES = [
    # Everything in place (the rerun case): nothing to include.
    (["group vrstack:x:999:sdn-config,vrouter", "user sdn-config:x:1:1::/h:/bin/false",
      "user vrouter:x:2:2::/h:/bin/false", DIR], False, False, [], False),
    # A member listed but not on this host (a compute has no sdn-config): nothing to do.
    (["group vrstack:x:999:vrouter", "user vrouter:x:2:2::/h:/bin/false", DIR], False, False, [], False),
    # A user this host has that is not in the group yet.
    (["group vrstack:x:999:", "user vrouter:x:2:2::/h:/bin/false", DIR], False, False, ["vrouter"], False),
    # pki_dir with another mode.
    (["group vrstack:x:999:", "dir root:root:700"], False, False, [], True),
    # A fresh host: no openssl, no group, no pki_dir; its users are added once the group exists.
    (["openssl missing", "user vrouter:x:2:2::/h:/bin/false"], True, True, ["vrouter"], True),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "openssl_missing", "group_missing", "todo", "dir_todo"), CASES)
def test_what_the_read_found(
    lines: list[str], openssl_missing: bool, group_missing: bool, todo: list[str], dir_todo: bool
) -> None:
    found = _render(lines, ["sdn-config", "sdn-control", "vrouter"])
    assert found["__pki_openssl_missing"] is openssl_missing
    assert found["__pki_group_missing"] is group_missing
    assert list(found["__pki_members_todo"]) == todo
    assert found["__pki_dir_todo"] is dir_todo


def test_the_read_runs_here_and_tags_its_lines(tmp_path: Path) -> None:
    loader = DataLoader()
    tasks = loader.load_from_file(str(ROLE / "tasks" / "main.yml"), trusted_as_template=True)
    task = next(t for t in tasks if t.get("name") == READ_TASK)
    user = pwd.getpwuid(0).pw_name
    group = grp.getgrgid(0).gr_name
    templar = Templar(
        loader=loader,
        variables={"pki_group": group, "pki_group_members": [user, "vrstack-no-such-user"],
                   "pki_dir": str(tmp_path), "__pki_freebsd": False},
    )  # fmt: skip
    tmp_path.chmod(0o755)
    cmd = str(templar.template(task["ansible.builtin.shell"]["cmd"]))
    out = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert f"group {group}:" in "\n".join(lines)
    assert [line.split(":")[0] for line in lines if line.startswith("user ")] == [f"user {user}"]
    assert ("openssl missing" in lines) is not Path("/usr/bin/openssl").exists()
    assert f"dir {user}:{group}:755" in lines
