"""The gunicorn APIs can reload instead of restarting (playbooks/rotate-secrets.yml):
each unit and rc.d script, as the roles render them for the lab's controller, has a
reload that sends SIGHUP to gunicorn, and each role's handler reloads only when
`<role>_api_reload` (from `vrstack_api_reload`) says so, restarting otherwise."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.template import trust_as_template

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as infra  # noqa: E402

# role -> (its gunicorn unit template, rc.d template, handler name, service)
APIS = {
    "keystone": ("keystone-api.service.j2", "keystone_api.rc.j2", "Restart keystone-api"),
    "glance": ("glance-api.service.j2", "glance_api.rc.j2", "Restart glance-api"),
    "placement": ("placement-api.service.j2", "placement_api.rc.j2", "Restart placement-api"),
    "neutron_server": ("neutron-api.service.j2", "neutron_api.rc.j2", "Restart neutron-api"),
    "nova_controller": ("nova.service.j2", "nova.rc.j2", "Restart the nova controller services"),
}
NOVA_API = {"name": "nova-api", "description": "api", "exec": "/opt/openstack/venv/bin/gunicorn"}
NOVA_CONDUCTOR = {"name": "nova-conductor", "description": "conductor", "exec": "/bin/true"}


def render(role: str, template: str, **extra: Any) -> str:
    return infra.Render("lab-ctl1", [role], pki_service_cert=infra.CERT_STAT, **extra).template(
        role, template
    )


@pytest.mark.parametrize("role", sorted(APIS))
def test_units_reload_gunicorn_with_sighup(role: str) -> None:
    unit = render(role, APIS[role][0], item=NOVA_API)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M), unit


def test_only_nova_api_of_the_nova_services_reloads() -> None:
    conductor = render("nova_controller", "nova.service.j2", item=NOVA_CONDUCTOR)
    assert "ExecReload" not in conductor
    rc = render("nova_controller", "nova.rc.j2", item=NOVA_CONDUCTOR)
    assert "reload" not in rc


@pytest.mark.parametrize("role", sorted(APIS))
def test_rc_scripts_send_sighup_to_daemons_child(role: str) -> None:
    rc = render(role, APIS[role][1], item=NOVA_API)
    name = re.search(r"^name=(\S+)$", rc, re.M)
    assert name, rc
    fn = name.group(1)
    assert 'extra_commands="reload"' in rc.splitlines()
    assert f'reload_cmd="{fn}_reload"' in rc.splitlines()
    # daemon(8)'s pidfile holds the supervisor; gunicorn is its child.
    body = re.search(rf"^{fn}_reload\(\)\n\{{\n(.*?)\n\}}$", rc, re.M | re.S)
    assert body and body.group(1).strip() == '/bin/pkill -HUP -P "$(cat ${pidfile})"', rc
    assert rc.rstrip().endswith('run_rc_command "$1"')


def handler_state(role: str, item: str = "nova-api", **extra: Any) -> str:
    handlers = yaml.safe_load((ROOT / "roles" / role / "handlers" / "main.yml").read_text())
    (task,) = [h for h in handlers if h["name"] == APIS[role][2]]
    state = task["ansible.builtin.service"]["state"]
    r = infra.Render("lab-ctl1", [role], item=item, **extra)
    return str(r.templar.template(trust_as_template(state)))


@pytest.mark.parametrize("role", sorted(APIS))
def test_handlers_restart_unless_asked_to_reload(role: str) -> None:
    assert handler_state(role) == "restarted"
    assert handler_state(role, vrstack_api_reload=True) == "reloaded"
    assert handler_state(role, vrstack_api_reload=False) == "restarted"


def test_nova_restarts_its_services_that_answer_no_api() -> None:
    for item in ("nova-conductor", "nova-scheduler", "nova-novncproxy"):
        assert handler_state("nova_controller", item, vrstack_api_reload=True) == "restarted"


def test_neutron_periodic_workers_still_restart() -> None:
    handlers = yaml.safe_load((ROOT / "roles/neutron_server/handlers/main.yml").read_text())
    (task,) = [h for h in handlers if h["name"] == "Restart neutron-periodic-workers"]
    assert task["ansible.builtin.service"]["state"] == "restarted"
