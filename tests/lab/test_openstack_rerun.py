"""A no-op rerun skips the OpenStack checks that only prove what a change could break
(issue 7, H10; docs/openstack.md "Reruns: checks that run only when something changed").

- A no-op `site.yml` rerun reports changed=0 everywhere, skips neutron's scratch network
  test (one skipped include), reads no RabbitMQ user list for `retire`, finds the service
  project with a GET instead of the module, and lists the os-vif plugins and probes
  /dev/kvm once per compute (in `main`, the latter in libvirt's one read of the host; not
  again in `verify`); each Keystone registration and schema stamp read is one task (no
  keystone `register` / openstack_venv `schema_check` entry point included).
- `playbooks/verify.yml` alone still runs the scratch network test.
- A change to neutron (its gunicorn settings edited by hand, which the role rewrites and
  which restarts neutron-api) makes the same run do the scratch network test; the run
  after it is a no-op again.

Run by the lead on a deployed lab (`make lab`), never by hand on a shared machine:

    ./scripts/run-pytest.sh -rA tests/lab/test_openstack_rerun.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import test_security as security
from labcloud import REPO
from test_security import Lab, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory)

SCRATCH_INCLUDE = (
    "vrstack.cloud.neutron_server : Create and delete a network and a subnet through Neutron"
)
SCRATCH_CREATE = "vrstack.cloud.neutron_server : Create the scratch network"
RETIRE_READ = "vrstack.cloud.rabbitmq : Read the RabbitMQ users"
PROJECT_GET = "vrstack.cloud.keystone : Look for the service project with the admin token"
PROJECT_MODULE = "vrstack.cloud.keystone : Create the service project"
OS_VIF = "vrstack.cloud.nova_compute : List the os-vif plugins and import the libvirt binding"
KVM = "vrstack.cloud.libvirt : Try to open /dev/kvm"
REGISTRATIONS = [
    "vrstack.cloud.sdn_config : Register the SDN config API and its token-checking user in keystone",
    "vrstack.cloud.glance : Register the image service and its user in keystone",
    "vrstack.cloud.placement : Register the placement service and its user in keystone",
    "vrstack.cloud.nova_controller : Register nova in the catalog and create its keystone user",
    "vrstack.cloud.neutron_server : Register the network service and its user in keystone",
]
STAMP_READS = [
    f"vrstack.cloud.{role} : Look for the {service} schema stamp"
    for role, service in (
        ("keystone", "keystone"),
        ("glance", "glance"),
        ("placement", "placement"),
        ("nova_controller", "nova"),
        ("neutron_server", "neutron"),
    )
]
ENTRY_POINT_TASKS = [
    "arg spec 'register'",
    "arg spec 'schema_check'",
    # keystone's `register` looked for clouds.yaml (nova's `discover` still does, once).
    "vrstack.cloud.keystone : Look for the admin cloud on the first controller",
    "Note whether the schema stamp names these constraints",
]
# main's one read of the host (container, /etc/hosts, /dev/kvm): verify needs no probe after it.
HOST_READ = (
    "vrstack.cloud.libvirt : Read the host (container, this host's name in /etc/hosts, /dev/kvm)"
)


def play(playbook: str, *extra: str, timeout: float = 3600) -> str:
    cmd = [sys.executable, "tools/lab.py", "hold", "--",
           "ansible-playbook", "-i", security.INVENTORY, f"playbooks/{playbook}", *extra]  # fmt: skip
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    out = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, (
        f"{playbook} {' '.join(extra)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"
    )
    return out.stdout


def results(output: str) -> dict[str, list[str]]:
    """Task name -> the status words of its results ("ok", "skipping", ...), every header."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        header = re.match(r"TASK \[(.*)\] \*", line)
        if header:
            current = found.setdefault(header[1], [])
            continue
        status = re.match(r"(ok|changed|skipping|included|fatal|failed): \[", line)
        if status and current is not None:
            current.append(status[1])
    return found


def headers(output: str, task: str) -> int:
    return len(re.findall(rf"^TASK \[{re.escape(task)}\] \*", output, re.M))


def changed_hosts(output: str) -> dict[str, int]:
    recap = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)
    assert recap, f"no PLAY RECAP:\n{output[-2000:]}"
    return {host: int(n) for host, n in recap}


def test_noop_rerun_skips_the_checks_of_changes(lab: Lab) -> None:
    # The lab tests before this one change the lab on purpose (drift, revoked certificates,
    # rotated secrets): one run puts it right, the next is the no-op rerun measured here
    # (molecule's idempotence step checks the rerun of a fresh deploy).
    play("site.yml")
    out = play("site.yml")
    tasks = results(out)
    assert {h: n for h, n in changed_hosts(out).items() if n} == {}, (
        f"a no-op rerun changed something: {[t for t, r in tasks.items() if 'changed' in r]}"
    )
    assert tasks.get(SCRATCH_INCLUDE) and set(tasks[SCRATCH_INCLUDE]) == {"skipping"}, tasks.get(
        SCRATCH_INCLUDE
    )
    assert SCRATCH_CREATE not in tasks
    assert RETIRE_READ not in tasks
    assert "ok" in tasks.get(PROJECT_GET, []), tasks.get(PROJECT_GET)
    assert set(tasks.get(PROJECT_MODULE, ["missing"])) == {"skipping"}, tasks.get(PROJECT_MODULE)
    computes = len(lab.by_role("compute"))
    assert headers(out, OS_VIF) == 1 and tasks[OS_VIF].count("ok") == computes, tasks.get(OS_VIF)
    assert headers(out, HOST_READ) == 1 and tasks[HOST_READ].count("ok") == computes
    assert KVM not in tasks, "the /dev/kvm probe ran again in verify"
    # Keystone registration and schema stamps: one task each, no entry point included
    # (vrstack.cloud.keystone_register, vrstack.cloud.openstack_schema_stamp).
    for gone in ENTRY_POINT_TASKS:
        assert not any(gone in name for name in tasks), f"{gone} still runs"
    for task in REGISTRATIONS + STAMP_READS:
        assert tasks.get(task, []).count("ok") == 1, (task, tasks.get(task))


def test_verify_alone_runs_the_scratch_network(lab: Lab) -> None:
    out = play("verify.yml", "--tags", "openstack")
    tasks = results(out)
    assert tasks.get(SCRATCH_CREATE) == ["ok"], tasks.get(SCRATCH_CREATE)
    assert tasks.get(OS_VIF, []).count("ok") == len(lab.by_role("compute")), tasks.get(OS_VIF)


def test_changed_neutron_runs_the_scratch_network(lab: Lab) -> None:
    controller = lab.by_role("controller")[0]
    edit = on_node(
        lab, controller, "echo '# edited by test_openstack_rerun' >> /etc/neutron/gunicorn.conf.py"
    )
    assert edit.returncode == 0, edit.stderr
    out = play("site.yml", "--tags", "neutron,openstack")
    assert changed_hosts(out).get(controller.name, 0) >= 1, (
        "the role did not rewrite gunicorn.conf.py"
    )
    assert results(out).get(SCRATCH_CREATE) == ["ok"], (
        "the scratch network test did not run after a change"
    )
    again = play("site.yml", "--tags", "neutron,openstack")
    assert {h: n for h, n in changed_hosts(again).items() if n} == {}
    assert SCRATCH_CREATE not in results(again)
