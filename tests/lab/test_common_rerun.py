"""prechecks and common on a no-op rerun (issue 7, H7): a handful of tasks a host, every
check still made, and a drifted account or kernel setting still found and fixed.

- `site.yml --tags common` twice in a row: the second reports changed=0; the prechecks
  play runs at most 8 task headers a host (20 before), common's account tasks are one read
  and one skipped include, and its verify is one read and one `vrstack.cloud.checks`.
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

USERS_INCLUDE = (
    "vrstack.cloud.common : Create or fix the service groups, users and home directories"
)
USERS_READ = "vrstack.cloud.common : Read the service users, groups and home directories"
VERIFY_CHECK = (
    "vrstack.cloud.common : Check the fabric hosts block, name resolution, service users, "
    "kernel settings and time daemon"
)
PRECHECKS_CHECK = (
    "vrstack.cloud.prechecks : Check the OS, Python, python3-apt, memory, clock, analytics "
    "database, host name and name resolution"
)
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
    assert play_headers(out, "Check the hosts before changing any") <= 8
    tasks = results(out)
    hosts = len(lab.nodes)
    assert tasks[PRECHECKS_CHECK] == ["ok"] * hosts
    assert tasks[USERS_READ] == ["ok"] * hosts
    assert set(tasks[USERS_INCLUDE]) == {"skipping"}
    assert "vrstack.cloud.common : Create service users" not in tasks
    assert headers(out, VERIFY_CHECK) == 1 and tasks[VERIFY_CHECK] == ["ok"] * hosts


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
