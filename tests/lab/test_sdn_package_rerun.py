"""sdn_package and the SDN services on a no-op rerun (issue 7): one read per host and
virtualenv instead of the install steps, one task per service, and drift still fixed.

- `site.yml --tags sdn` twice in a row: the second reports changed=0; sdn_package runs at
  most 13 task headers (the four SDN plays ran 61 before: 6 install steps a host and
  5 tasks a service); its read (vrstack.cloud.sdn_package_state) finds every host current
  and the install steps are one skipped include; each play's services are one
  vrstack.cloud.sdn_service task.
- A compute's wheel copy removed and an analytics node's collector stopped by hand: the
  next run includes the install steps on that compute only (the copy comes back, pip
  installs nothing, so no restart) and starts the collector; the run after is a no-op.

Run by the lead on a deployed lab (`make lab`), never by hand on a shared machine:

    ./scripts/run-pytest.sh -rA tests/lab/test_sdn_package_rerun.py
"""

from __future__ import annotations

import re

import test_security as security
from test_openstack_rerun import changed_hosts, play, results
from test_security import Lab, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory)

PKG = "vrstack.cloud.sdn_package : "
PROBE = (
    PKG
    + "Check that the virtualenv has this run's vrstack and nothing else to do, /opt/vrstack/venv"
)
APPLY = PKG + "Run the install steps (first install or new source) for /opt/vrstack/venv"
# Each service task, the role of the hosts it runs on, and its services per host (a loop
# gives one result per item: sdn_config runs vrstack-api and vrstack-schema).
SERVICES = {
    "vrstack.cloud.sdn_analytics : Run vrstack-collector": ("analytics", 1),
    "vrstack.cloud.sdn_config : Run the services": ("controller", 2),
    "vrstack.cloud.sdn_control : Run vrstack-control": ("control", 1),
    "vrstack.cloud.vrouter : Run vrstack-agent": ("compute", 1),
}
STEP = "vrstack.cloud.sdn_package : Copy the wheel"


def test_noop_rerun_reads_once_and_runs_one_task_a_service(lab: Lab) -> None:
    play("site.yml", "--tags", "sdn")
    out = play("site.yml", "--tags", "sdn")
    assert {h: n for h, n in changed_hosts(out).items() if n} == {}
    pkg_headers = re.findall(rf"^TASK \[{re.escape(PKG)}", out, re.M)
    assert len(pkg_headers) <= 13, len(pkg_headers)
    tasks = results(out)
    # Every host of the SDN plays read once (computes and controllers), all current.
    sdn_hosts = {
        n.name for r in ("analytics", "controller", "control", "compute") for n in lab.by_role(r)
    }
    assert tasks[PROBE] == ["ok"] * len(sdn_hosts)
    assert set(tasks[APPLY]) == {"skipping"}
    assert STEP not in tasks and PKG + "Create the virtualenv" not in tasks
    for task, (role, per_host) in SERVICES.items():
        assert set(tasks[task]) == {"ok"}, (task, tasks[task])
        assert len(tasks[task]) == per_host * len(lab.by_role(role)), task
    assert not any(
        name.startswith(PKG + "Validating arguments against arg spec 'service'") for name in tasks
    )


def test_drift_is_fixed_and_the_next_run_is_a_noop(lab: Lab) -> None:
    compute = lab.by_role("compute")[0]
    analytics = lab.by_role("analytics")[-1]
    gone = on_node(lab, compute, "rm -f /opt/vrstack/wheels/vrstack-*.whl")
    assert gone.returncode == 0, gone.stderr
    stopped = on_node(lab, analytics, "systemctl stop vrstack-collector")
    assert stopped.returncode == 0, stopped.stderr
    out = play("site.yml", "--tags", "sdn")
    tasks = results(out)
    assert "changed" in tasks[STEP], tasks.get(STEP)
    assert "changed" in tasks["vrstack.cloud.sdn_analytics : Run vrstack-collector"]
    # The compute's copy came back; the package itself was current: pip did nothing.
    pip = [
        s
        for name, states in tasks.items()
        if name.startswith(PKG + "Install vrstack with")
        for s in states
    ]
    assert "changed" not in pip
    active = on_node(lab, analytics, "systemctl is-active vrstack-collector")
    assert active.stdout.strip() == "active", active.stdout
    out = play("site.yml", "--tags", "sdn")
    assert {h: n for h, n in changed_hosts(out).items() if n} == {}
