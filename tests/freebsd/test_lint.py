"""Lint of what the FreeBSD gate covers: this test package (ruff), the gate script
(bash -n), the roles' FreeBSD task files and the example inventory (ansible-lint,
production profile). `make lint` lints the whole repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(harness.REPO / "ansible.cfg"), NO_COLOR="1")
    return subprocess.run(
        cmd, cwd=harness.REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_ruff() -> None:
    for args in (["check"], ["format", "--check"]):
        res = run(str(BIN / "ruff"), *args, str(HERE))
        assert res.returncode == 0, res.stdout + res.stderr


def test_gate_script_parses() -> None:
    res = run("bash", "-n", "scripts/freebsd-check.sh")
    assert res.returncode == 0, res.stderr


def test_ansible_lint_freebsd_files() -> None:
    """The roles' FreeBSD task files and the example inventory, production profile.
    ansible-lint also reports what it finds while loading the rest of the collection;
    those belong to `make lint`, so only violations in these files count here."""
    files = sorted(
        str(p.relative_to(harness.REPO)) for p in harness.REPO.glob("roles/*/tasks/freebsd*.yml")
    )
    assert files, "no role has a FreeBSD task file"
    inventory = "inventories/example-freebsd"
    res = run(
        str(BIN / "ansible-lint"), "--profile", "production", "--offline", "-f", "pep8",
        *files, inventory,
    )  # fmt: skip
    ours = [
        line
        for line in res.stdout.splitlines()
        if line.split(":", 1)[0] in files or line.startswith(inventory + "/")
    ]
    assert not ours, "\n".join(ours)
    # 0: clean, 2: violations (elsewhere, see above); anything else: ansible-lint broke.
    assert res.returncode in (0, 2), res.stdout[-2000:] + res.stderr[-2000:]
