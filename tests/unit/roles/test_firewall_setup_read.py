"""The firewall role's read of what its Debian part makes (issue 7): the part (package,
rules directory, rules file, unit file, unit state) is included only when the role's one
read finds something other than what it would make. The read's shell runs here against a
rules file in a scratch directory; its lines are compared with the role's own rendering."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_firewall_guards import ROLE, lab, run_sh

MARKERS = "--- vrstack firewall: in force\n--- vrstack firewall: loaded\n"


def render(**extra: Any) -> Any:
    return lab(ansible_search_path=[str(ROLE)], **extra)


def todo(r: Any, setup_lines: list[str] | None) -> bool:
    """__firewall_setup_todo with the read giving these lines before its markers (None:
    the read did not run)."""
    read = (
        {}
        if setup_lines is None
        else {"stdout": "\n".join(["ssh ", *setup_lines]) + "\n" + MARKERS}
    )
    r.templar.available_variables = r.templar.available_variables | {"__firewall_read": read}
    return bool(r.var("__firewall_setup_todo"))


def test_in_place_skips_the_part_and_each_difference_includes_it() -> None:
    r = render()
    wanted = list(r.var("__firewall_setup_wanted"))
    assert wanted[0] == "pkg nftables installed" and wanted[1] == "dir root:root:755"
    rules = base64.b64decode(wanted[2].split(" ")[3]).decode()
    assert wanted[2].startswith("file /etc/vrstack/firewall.nft root:root:600 ")
    assert "table inet vrstack {" in rules and "policy drop" in rules
    unit = base64.b64decode(wanted[3].split(" ")[3]).decode()
    assert "ExecStart=/usr/sbin/nft -f /etc/vrstack/firewall.nft" in unit
    assert wanted[4] == "unit enabled active"
    assert todo(r, wanted) is False
    for index, other in [
        (0, "pkg nftables not-installed"),
        (1, "dir root:root:700"),
        (2, wanted[2].replace("root:root:600", "root:root:644")),
        (3, wanted[3][:-8] + "AAAAAAAA"),
        (4, "unit disabled active"),
        (4, "unit enabled inactive"),
    ]:
        changed = list(wanted)
        changed[index] = other
        assert todo(r, changed) is True, other
    assert todo(r, wanted[:2] + wanted[3:]) is True  # the rules file missing
    assert todo(r, None) is True  # no read (both guards and the read switched off)


@pytest.mark.parametrize(
    "extra",
    [
        {"firewall_read_before_write": False},
        {"vrstack_rerun_shortcuts": False},
        {"vrstack_os": "freebsd14"},
        {"firewall_enabled": False},
    ],
)
def test_switched_off_freebsd_or_disabled_always_includes(extra: dict[str, Any]) -> None:
    r = render(**extra)
    wanted = list(render().var("__firewall_setup_wanted"))
    assert todo(r, wanted) is True
    assert "dpkg-query" not in str(r.var("__firewall_read_cmd"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the rules file must be root's")
def test_the_read_gives_the_rules_file_as_the_role_renders_it(tmp_path: Path) -> None:
    rules_file = tmp_path / "firewall.nft"
    r = render(firewall_nft_file=str(rules_file))
    tmp_path.chmod(0o755)
    wanted = list(r.var("__firewall_setup_wanted"))
    rules_file.write_bytes(base64.b64decode(wanted[2].split(" ")[3]))
    rules_file.chmod(0o600)
    out = run_sh(str(r.var("__firewall_read_cmd")), {"PATH": os.environ["PATH"]}).stdout
    lines = out.split("--- vrstack firewall: in force")[0].splitlines()
    assert wanted[2] in lines
    assert any(line.startswith("pkg nftables ") for line in lines)
    assert any(line.startswith("unit ") for line in lines)
