"""Prechecks for the example FreeBSD inventory. They read the hosts themselves (setup,
date, getent, sockstat), so without FreeBSD hosts they run in the harness's play
(FreeBSD facts, stand-in commands that print nothing, the clock skew limit lifted);
played on this Debian machine as it is, they must refuse it by name and field."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import harness
import pytest

INVENTORY = harness.REPO / "inventories" / "example-freebsd"
# The checks each FreeBSD host must pass (task names in roles/prechecks).
# The OS, Python, memory, clock, host name, name resolution and port checks are one
# vrstack.cloud.checks task (issue 7).
CHECKS = [
    "Check the OS, Python, python3-apt, memory, clock, analytics database, host name, name "
    "resolution and ports",
]


def task_results(output: str, task: str) -> str:
    """The lines Ansible printed for one task (all of its occurrences)."""
    pattern = (
        r"^TASK \[[^\]]*" + re.escape(task) + r"[^\]]*\][^\n]*\n(.*?)(?=^TASK |^PLAY |^RUNNING )"
    )
    return "".join(re.findall(pattern, output, re.M | re.S))


def playbook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), *args],
        cwd=harness.REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(harness.REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_fabric_check_passes(applied: harness.Run) -> None:
    lines = task_results(applied.output, "Check every host comes from a fabric file")
    assert "ok: [localhost]" in lines, applied.output[-3000:]


@pytest.mark.parametrize("check", CHECKS)
def test_host_check_passes_with_freebsd_facts(
    applied: harness.Run, freebsd_hosts: list[str], check: str
) -> None:
    lines = task_results(applied.output, check)
    for host in freebsd_hosts:
        assert re.search(r"^ok: \[" + re.escape(host) + r"\]", lines, re.M), (
            f"{check} did not pass on {host}:\n{lines or applied.output[-3000:]}"
        )


def test_this_debian_machine_is_refused_as_a_freebsd_host() -> None:
    """The OS check reads the host: this Linux machine, played as bsd-cmp1, fails it
    with a message naming the host and the fabric field."""
    res = playbook(
        "-i", str(INVENTORY), "--check", "--limit", "bsd-cmp1",
        "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}",
        "playbooks/prechecks.yml",
    )  # fmt: skip
    assert res.returncode != 0
    assert "bsd-cmp1 runs Debian" in res.stdout, res.stdout[-3000:]
    assert "hosts.bsd-cmp1.os" in res.stdout


def test_inventory_without_fabric_is_refused() -> None:
    res = playbook("-i", "localhost,", "-c", "local", "playbooks/prechecks.yml")
    assert res.returncode != 0
    assert "no vrstack_fabric host var: localhost" in res.stdout, res.stdout[-3000:]
