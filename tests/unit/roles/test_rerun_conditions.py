"""The conditions that let a no-op rerun skip the OpenStack checks of a change (issue 7,
H10; docs/openstack.md "Reruns: checks that run only when something changed"): each
`when` is read from the role's task file and templated for the lab's hosts, so these
fail when a condition would skip a check that a change (or a run without `main`) needs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.template import trust_as_template

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as infra  # noqa: E402


def task(role: str, tasks_file: str, name: str) -> dict[str, Any]:
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / tasks_file).read_text())
    (found,) = [t for t in tasks if t.get("name") == name]
    return found


def runs(role: str, tasks_file: str, name: str, host: str = "lab-ctl1", **extra: Any) -> bool:
    """Whether the task's `when` (every entry) holds with these variables."""
    t = task(role, tasks_file, name)
    # Task vars are templates in a play; yaml.safe_load gives plain strings.
    task_vars = {k: trust_as_template(v) for k, v in t.get("vars", {}).items()}
    render = infra.Render(host, [role], **(task_vars | extra))
    conds = t["when"] if isinstance(t["when"], list) else [t["when"]]
    values = [render.var(f"({c})") for c in conds]
    assert all(isinstance(v, bool) for v in values), values
    return all(values)


# ---- neutron's scratch network --------------------------------------------------------

SCRATCH = (
    "neutron_server",
    "verify.yml",
    "Create and delete a network and a subnet through Neutron",
)


def scratch(host_facts: dict[str, Any], **extra: Any) -> bool:
    play = {"hostvars": {"lab-ctl1": host_facts}, "ansible_play_hosts_all": ["lab-ctl1"]}
    return runs(*SCRATCH, **(play | host_facts | extra))


def test_scratch_network_skipped_after_a_main_that_changed_nothing() -> None:
    assert scratch({"__neutron_server_started_now": []}) is False


@pytest.mark.parametrize(
    "facts",
    [
        {},  # verify.yml alone: main did not run
        {"__neutron_server_started_now": ["neutron-api"]},
        {"__neutron_server_started_now": [], "__neutron_server_changed_now": True},
        {"__neutron_server_started_now": [], "__neutron_server_db_upgrade": {"changed": True}},
    ],
)
def test_scratch_network_runs_after_a_change_or_without_main(facts: dict[str, Any]) -> None:
    assert scratch(facts) is True


def test_scratch_network_every_run_when_switched_off_never_in_check_mode() -> None:
    quiet = {"__neutron_server_started_now": []}
    assert scratch(quiet, neutron_server_verify_on_change=False) is True
    assert scratch(quiet, vrstack_rerun_shortcuts=False) is True
    assert scratch({}, ansible_check_mode=True) is False


def test_every_restart_notification_notes_the_change() -> None:
    handlers = yaml.safe_load((ROOT / "roles/neutron_server/handlers/main.yml").read_text())
    (note,) = [h for h in handlers if h["name"] == "Note that neutron changed in this run"]
    topics = {t for h in handlers if h is not note for t in h.get("listen", [])}
    topics |= {h["name"] for h in handlers if h is not note and h["name"].startswith("Restart")}
    notified = set()
    for path in (ROOT / "roles/neutron_server/tasks").glob("*.yml"):
        for t in yaml.safe_load(path.read_text()) or []:
            if "notify" in t:
                notified |= {t["notify"]} if isinstance(t["notify"], str) else set(t["notify"])
    assert notified <= set(note["listen"]), notified - set(note["listen"])
    assert {"Neutron configuration changed", "vrstack package changed"} <= set(note["listen"])
    assert topics <= set(note["listen"]) | {"Restart neutron-periodic-workers"}


# ---- rabbitmq's retire ----------------------------------------------------------------

RETIRE = ("rabbitmq", "retire.yml", "Delete the retired users unless RabbitMQ records them gone")


def parameters(retired: str | None) -> dict[str, Any]:
    params = [{"name": "vrstack_accounts", "value": '"x"'}]
    if retired is not None:
        params.append({"name": "vrstack_retired", "value": retired})
    return {"stdout": json.dumps(params)}


def recorded() -> str:
    return str(infra.Render("lab-ctl1", ["rabbitmq"]).var("__rabbitmq_retired_digest | to_json"))


def test_retire_skipped_when_the_record_names_the_same_users() -> None:
    assert runs(*RETIRE, __rabbitmq_parameters=parameters(recorded())) is False


def test_retire_reads_the_users_otherwise() -> None:
    assert runs(*RETIRE) is True  # main did not run
    assert runs(*RETIRE, __rabbitmq_parameters=parameters(None)) is True
    assert runs(*RETIRE, __rabbitmq_parameters=parameters('"other"')) is True
    # Another list of retired users is another record.
    assert (
        runs(*RETIRE, __rabbitmq_parameters=parameters(recorded()), rabbitmq_retired_users=["x"])
        is True
    )
    off = {"__rabbitmq_parameters": parameters(recorded()), "rabbitmq_retire_trust_record": False}
    assert runs(*RETIRE, **off) is True


# ---- keystone's service project -------------------------------------------------------

STAT = {"__keystone_manage": {"stat": {"exists": True}}}
GET = ("keystone", "clients.yml", "Look for the service project with the admin token")
MODULE = ("keystone", "clients.yml", "Create the service project")


def test_service_project_looked_up_with_the_token_only() -> None:
    token = {"__keystone_admin_token": {"status": 201, "x_subject_token": "t"}}
    assert runs(*GET, **STAT, **token) is True
    assert runs(*GET, **STAT, __keystone_admin_token={"status": 401}) is False
    assert runs(*GET, **STAT, **token, keystone_service_project_lookup=False) is False


@pytest.mark.parametrize(
    ("found", "module"),
    [
        ({"status": 200, "json": {"projects": [{"id": "p"}]}}, False),
        ({"status": 200, "json": {"projects": []}}, True),
        ({"status": 401}, True),
        ({"skipped": True}, True),
    ],
)
def test_service_project_module_runs_unless_found(found: dict[str, Any], module: bool) -> None:
    assert runs(*MODULE, **STAT, __keystone_service_project_found=found) is module


# ---- verify after main in the same run ------------------------------------------------


def test_os_vif_listing_once_per_run() -> None:
    name = ("nova_compute", "verify.yml", "Check the os-vif plugin and the libvirt driver load")
    assert runs(*name, host="lab-cmp1") is True
    assert runs(*name, host="lab-cmp1", __nova_compute_check={"skipped": True}) is True
    assert runs(*name, host="lab-cmp1", __nova_compute_check={"stdout": "{}", "rc": 0}) is False


def test_kvm_probe_once_per_run() -> None:
    name = ("libvirt", "verify.yml", "Pick the virtualisation type")
    assert runs(*name, host="lab-cmp1") is True
    assert runs(*name, host="lab-cmp1", __libvirt_kvm={"rc": 0}) is True  # main's set_fact missing
    done = {"__libvirt_kvm": {"rc": 0}, "libvirt_effective_virt_type": "kvm"}
    assert runs(*name, host="lab-cmp1", **done) is False


@pytest.mark.parametrize(
    ("role", "stat"),
    [
        ("keystone", "__keystone_manage"),
        ("glance", "__glance_manage"),
        ("placement", "__placement_manage"),
        ("nova_controller", "__nova_controller_manage_bin"),
        ("neutron_server", "__neutron_server_db_manage_bin"),
        ("nova_compute", "__nova_compute_bin"),
    ],
)
def test_fresh_check_is_check_mode_without_the_command(role: str, stat: str) -> None:
    host = "lab-cmp1" if role == "nova_compute" else "lab-ctl1"
    name = f"__{role}_fresh_check"
    for check_mode, exists, fresh in (
        (True, False, True),
        (True, True, False),
        (False, False, False),
    ):
        r = infra.Render(
            host, [role], ansible_check_mode=check_mode, **{stat: {"stat": {"exists": exists}}}
        )
        assert r.var(name) is fresh, (check_mode, exists)
