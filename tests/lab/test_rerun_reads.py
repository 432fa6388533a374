"""The cheap reads of a no-op rerun read the same facts as the slow ones they replace
(issue 7, helper D; docs/openstack.md "Reruns"), on the deployed lab:

- nova's host mappings: roles/nova_controller/files/host_mappings.py (one SQL query) names
  the hosts `nova-manage cell_v2 list_hosts` lists;
- the os-vif plugins: roles/nova_compute/files/osvif_plugins.py (entry points) names those
  os-vif loads (`os_vif.initialize()`), vrouter among them, on every compute;
- RabbitMQ's records: the copy in the node's database directory holds what
  `rabbitmqctl list_global_parameters` holds;
- a no-op `site.yml` rerun skips nova's schema and cell steps, mariadb's and rabbitmq's
  second probe in verify, and does not start rabbitmqctl to read the records.

Run by the lead on a deployed lab (`make lab`), never by hand on a shared machine:

    ./scripts/run-pytest.sh -rA tests/lab/test_rerun_reads.py
"""

from __future__ import annotations

import json
import re
import shlex

import test_openstack_rerun as rerun
import test_security as security
from labcloud import REPO
from test_security import Lab, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory)

VENV = "/opt/openstack/venv"
OSVIF_LOADED = "import json, os_vif; os_vif.initialize(); print(json.dumps(sorted(os_vif._EXT_MANAGER.names())))"


def test_host_mappings_as_nova_manage_lists_them(lab: Lab) -> None:
    ctl = lab.by_role("controller")[0]
    script = (REPO / "roles/nova_controller/files/host_mappings.py").read_text()
    fast = on_node(lab, ctl, f"{VENV}/bin/python -c {shlex.quote(script)} /etc/nova/nova.conf")
    assert fast.returncode == 0, f"{ctl.name}: host_mappings.py: {fast.stderr[-800:]}"
    manage = f"{VENV}/bin/nova-manage --config-file /etc/nova/nova.conf cell_v2 list_hosts"
    slow = on_node(lab, ctl, f"{manage} 2>/dev/null")
    assert slow.returncode == 0, f"{ctl.name}: nova-manage cell_v2 list_hosts failed"
    # The table's rows, without its header row (| Cell Name | Cell UUID | Hostname |).
    rows = re.findall(r"(?m)^\|[^|]*\|[^|]*\|\s*(\S+)\s*\|$", slow.stdout)
    listed = [host for host in rows if host != "Hostname"]
    assert json.loads(fast.stdout) == sorted(listed)
    assert {n.name for n in lab.by_role("compute")} <= set(listed)


def test_os_vif_plugins_as_os_vif_loads_them(lab: Lab) -> None:
    script = (REPO / "roles/nova_compute/files/osvif_plugins.py").read_text()
    for node in lab.by_role("compute"):
        fast = on_node(lab, node, f"{VENV}/bin/python -c {shlex.quote(script)}")
        assert fast.returncode == 0, f"{node.name}: osvif_plugins.py: {fast.stderr[-800:]}"
        slow = on_node(lab, node, f"{VENV}/bin/python -c {shlex.quote(OSVIF_LOADED)} 2>/dev/null")
        assert slow.returncode == 0, f"{node.name}: os_vif.initialize() failed"
        plugins = json.loads(fast.stdout)["plugins"]
        assert plugins == json.loads(slow.stdout.strip().splitlines()[-1]), node.name
        assert "vrouter" in plugins


def test_rabbitmq_record_copy_holds_rabbitmq_records(lab: Lab) -> None:
    node = lab.by_role("messaging")[0]
    copy = on_node(
        lab, node, f"cat /var/lib/rabbitmq/mnesia/rabbit@{node.name}/vrstack_records.json"
    )
    assert copy.returncode == 0, f"{node.name}: no copy of the records: {copy.stderr}"
    out = on_node(lab, node, "rabbitmqctl --quiet --formatter json list_global_parameters")
    assert out.returncode == 0, out.stderr[-800:]
    held = {p["name"]: p["value"] for p in json.loads(out.stdout)}
    copied = json.loads(copy.stdout)
    assert copied["vrstack_accounts"] == held["vrstack_accounts"]
    assert copied.get("vrstack_retired") == held.get("vrstack_retired")


def test_noop_rerun_skips_what_nothing_changed(lab: Lab) -> None:
    out = rerun.play("site.yml")
    assert {h: n for h, n in rerun.changed_hosts(out).items() if n} == {}
    tasks = rerun.results(out)
    skipped_once = [
        "vrstack.cloud.nova_controller : Set up the schemas and cells (first controller)",
        "vrstack.cloud.rabbitmq : Set the accounts unless they are as last set",
    ]
    if len(lab.by_role("database")) == 1:
        skipped_once.append(
            "vrstack.cloud.mariadb : Check MariaDB answers (and, with Galera, is a Synced member of a full cluster)"
        )
    if len(lab.by_role("messaging")) == 1:
        skipped_once.append(
            "vrstack.cloud.rabbitmq : Check RabbitMQ answers (and, with several nodes, runs them in one cluster)"
        )
    for name in skipped_once:
        assert set(tasks.get(name, ["missing"])) == {"skipping"}, (name, tasks.get(name))
    for name in (
        "vrstack.cloud.nova_controller : Read the schema versions",
        "vrstack.cloud.rabbitmq : Read the digest of the accounts last set in RabbitMQ",
    ):
        assert name not in tasks, name
    assert tasks.get("vrstack.cloud.rabbitmq : Read the digest of the accounts last set") == ["ok"]
