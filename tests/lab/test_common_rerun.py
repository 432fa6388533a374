"""prechecks and common on a no-op rerun (issue 7, H7): a handful of tasks a host, every
check still made, and a drifted account or kernel setting still found and fixed.

- `site.yml --tags common` twice in a row: the second reports changed=0; the prechecks
  play runs at most 6 task headers a host (20 before; the ports are checked in the one
  `vrstack.cloud.checks` task, H23), common's account tasks are one read and one skipped
  include, so are its package-source, package, service, kernel-setting and hosts tasks
  (H23) and pki's group and directory tasks, the
  host facts are not read again after the prechecks, and its verify is one read and one
  `vrstack.cloud.checks`.
- With `vrstack_rerun_shortcuts=false` the package-source tasks are included again and
  the run still changes nothing (the switch back to the old way).
- A compute's service user given another shell and a net.* sysctl changed by hand:
  `verify.yml --tags common` fails naming both (one task, both messages); the common run
  includes the account tasks and fixes the user and the sysctl; verify passes again and
  the run after that is a no-op.

Run by the lead on a deployed lab (`make lab`), never by hand on a shared machine:

    ./scripts/run-pytest.sh -rA tests/lab/test_common_rerun.py
"""

from __future__ import annotations

import os
import subprocess
import sys

import test_security as security
from labcloud import REPO
from test_openstack_rerun import changed_hosts, headers, play, results
from test_security import Lab, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory)

# One read and one include for the accounts, the kernel settings and the hosts block (H23).
USERS_INCLUDE = (
    "vrstack.cloud.common : Create or fix the service accounts, kernel settings and fabric "
    "hosts (when one differs)"
)
USERS_READ = (
    "vrstack.cloud.common : Read the service users, groups and home directories, the kernel "
    "settings and /etc/hosts"
)
VERIFY_CHECK = (
    "vrstack.cloud.common : Check the fabric hosts block, name resolution, service users, "
    "kernel settings and time daemon"
)
PRECHECKS_CHECK = (
    "vrstack.cloud.prechecks : Check the OS, Python, python3-apt, memory, clock, analytics "
    "database, host name, name resolution and ports"
)
SOURCES_INCLUDE = (
    "vrstack.cloud.common : Set the package sources, install the base packages, start the base "
    "services and configure chrony (when one differs)"
)
FACTS_INCLUDE = "vrstack.cloud.common : Read host facts (once a run)"
SYSCTL = "net.ipv4.tcp_keepalive_time"


def failing(playbook: str, *extra: str) -> str:
    """The output of a run that must fail (play() asserts success)."""
    cmd = [sys.executable, "tools/lab.py", "hold", "--",
           "ansible-playbook", "-i", security.INVENTORY, f"playbooks/{playbook}", *extra]  # fmt: skip
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    out = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    assert out.returncode != 0, out.stdout[-4000:]
    return out.stdout


def play_headers(output: str, play_name: str) -> int:
    """Task headers of one play (up to the next PLAY line)."""
    part = output.split(f"PLAY [{play_name}]", 1)[1].split("\nPLAY ", 1)[0]
    return part.count("\nTASK [")


def test_noop_rerun_runs_few_tasks_and_changes_nothing(lab: Lab) -> None:
    play("site.yml", "--tags", "common")
    out = play("site.yml", "--tags", "common")
    assert {h: n for h, n in changed_hosts(out).items() if n} == {}
    assert play_headers(out, "Check the hosts before changing any") <= 6
    assert "List listening ports" not in out
    tasks = results(out)
    hosts = len(lab.nodes)
    assert tasks[PRECHECKS_CHECK] == ["ok"] * hosts
    assert tasks[USERS_READ] == ["ok"] * hosts
    assert set(tasks[USERS_INCLUDE]) == {"skipping"}
    assert "vrstack.cloud.common : Create service users" not in tasks
    assert set(tasks[SOURCES_INCLUDE]) == {"skipping"}
    assert "vrstack.cloud.common : Write the inventory's apt sources" not in tasks
    assert "vrstack.cloud.common : Set kernel settings" not in tasks
    # The facts the prechecks decided: common main and verify skip the read.
    assert set(tasks[FACTS_INCLUDE]) == {"skipping"} and len(tasks[FACTS_INCLUDE]) == 2 * hosts
    assert headers(out, VERIFY_CHECK) == 1 and tasks[VERIFY_CHECK] == ["ok"] * hosts


def test_shortcuts_off_includes_the_tasks_again_and_changes_nothing(lab: Lab) -> None:
    out = play("site.yml", "--tags", "common", "-e", "vrstack_rerun_shortcuts=false")
    assert {h: n for h, n in changed_hosts(out).items() if n} == {}
    assert "included: " in out.split(SOURCES_INCLUDE, 1)[1].split("TASK [", 1)[0]
    assert "vrstack.cloud.common : Write the inventory's apt sources" in results(out)


def test_drift_is_reported_then_fixed(lab: Lab) -> None:
    node = lab.by_role("compute")[0]
    user = "nova"
    done = on_node(lab, node, f"usermod -s /bin/sh {user} && sysctl -w {SYSCTL}=7200")
    assert done.returncode == 0, done.stderr
    try:
        out = failing("verify.yml", "--tags", "common", "--limit", node.name)
        assert f"service user {user}" in out
        assert f"sysctl {SYSCTL}=7200" in out
        out = play("site.yml", "--tags", "common", "--limit", node.name)
        assert "included: " in out.split(USERS_INCLUDE, 1)[1].split("TASK [", 1)[0]
        assert changed_hosts(out)[node.name] >= 2
    finally:
        play("site.yml", "--tags", "common", "--limit", node.name)
    play("verify.yml", "--tags", "common", "--limit", node.name)
    out = play("site.yml", "--tags", "common", "--limit", node.name)
    assert changed_hosts(out)[node.name] == 0
    shell = on_node(lab, node, f"getent passwd {user} | cut -d: -f7").stdout.strip()
    assert shell == "/usr/sbin/nologin"
