"""The SDN's static tokens rotated without a gap (playbooks/rotate-secrets.yml): the
config API's and the collector's configs list the extra tokens a rotation gives them
(and keep the one-token form otherwise, so a deploy writes the same file as before),
every SDN unit and rc.d script reloads with SIGHUP, and the SDN roles' handlers reload
only when `vrstack_sdn_reload` says so and the package did not change in the run."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.template import trust_as_template

from ansible_collections.vrstack.cloud.plugins.module_utils import sdn_service

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as infra  # noqa: E402

SERVICE = {
    "name": "vrstack-api",
    "description": "vrstack SDN config API",
    "config": "/etc/vrstack/api.yaml",
    "user": "sdn-config",
    "group": "sdn-config",
}


def render(host: str, role: str, template: str, **extra: Any) -> Any:
    text = infra.Render(host, [role], **extra).template(role, template)
    return yaml.safe_load(text)


# ---- the servers' token lists ------------------------------------------------------------


def test_the_api_keeps_one_token_per_role_without_a_rotation() -> None:
    conf = render("lab-ctl1", "sdn_config", "api.yaml.j2", __sdn_config_cert=infra.CERT_STAT)
    assert {k: v for k, v in conf["auth"].items() if k.endswith(("_token", "_tokens"))} == {
        "admin_token": "secret-sdn_api_admin_token",
        "reader_token": "secret-sdn_api_reader_token",
        "agent_token": "secret-sdn_api_agent_token",
    }


def test_the_api_lists_the_extra_tokens_of_a_rotation() -> None:
    conf = render(
        "lab-ctl1",
        "sdn_config",
        "api.yaml.j2",
        __sdn_config_cert=infra.CERT_STAT,
        sdn_config_admin_tokens_extra=["previous-admin"],
        sdn_config_agent_tokens_extra=["previous-agent", "secret-sdn_api_agent_token"],
    )
    auth = conf["auth"]
    assert auth["admin_tokens"] == ["secret-sdn_api_admin_token", "previous-admin"]
    assert auth["reader_token"] == "secret-sdn_api_reader_token"
    # The same value twice is listed once.
    assert auth["agent_tokens"] == ["secret-sdn_api_agent_token", "previous-agent"]
    assert "admin_token" not in auth and "agent_token" not in auth


def test_the_collector_lists_the_extra_tokens_of_a_rotation() -> None:
    plain = render("lab-ctl1", "sdn_analytics", "collector.yaml.j2")["auth"]
    assert plain["admin_token"] == "secret-sdn_analytics_admin_token"
    assert plain["reader_token"] == "secret-sdn_analytics_reader_token"
    both = render(
        "lab-ctl1",
        "sdn_analytics",
        "collector.yaml.j2",
        sdn_analytics_reader_tokens_extra=["previous-reader"],
    )["auth"]
    assert both["reader_tokens"] == ["secret-sdn_analytics_reader_token", "previous-reader"]
    assert both["admin_token"] == "secret-sdn_analytics_admin_token"


# ---- reload: units, rc.d scripts, handlers ------------------------------------------------


# The units and rc.d scripts come from vrstack.cloud.sdn_service (it renders them).
def test_every_sdn_unit_reloads_with_sighup() -> None:
    unit = sdn_service.render_unit(SERVICE, "/opt/vrstack/venv")
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M), unit


def test_every_sdn_rc_script_sends_sighup_to_the_daemon_not_its_supervisor() -> None:
    rc = sdn_service.render_rc(SERVICE, "/opt/vrstack/venv")
    lines = rc.splitlines()
    assert 'extra_commands="reload"' in lines and 'reload_cmd="vrstack_api_reload"' in lines
    body = re.search(r"^vrstack_api_reload\(\)\n\{\n(.*?)\n\}$", rc, re.M | re.S)
    # daemon(8) -p writes the child's pid there (the command_args above).
    assert (
        body and body.group(1).strip() == '/bin/kill -HUP "$(cat /var/run/vrstack_api.child.pid)"'
    )
    assert "-p /var/run/vrstack_api.child.pid" in rc
    assert rc.rstrip().endswith('run_rc_command "$1"')


# role -> (host that has it, its handlers' names)
HANDLERS = {
    "sdn_config": ("lab-ctl1", ["Restart vrstack-api", "Restart vrstack-schema"]),
    "sdn_analytics": ("lab-ctl1", ["Restart vrstack-collector"]),
    "sdn_control": ("lab-ctl1", ["Restart vrstack-control"]),
    "vrouter": ("lab-cmp1", ["Restart vrstack-agent"]),
}


def handler_states(role: str, **extra: Any) -> set[str]:
    host, names = HANDLERS[role]
    handlers = yaml.safe_load((ROOT / "roles" / role / "handlers" / "main.yml").read_text())
    tasks = [h for h in handlers if h["name"] in names]
    assert len(tasks) == len(names)
    r = infra.Render(host, [role], ansible_facts={"system": "Linux"}, **extra)
    return {
        str(r.templar.template(trust_as_template(t["ansible.builtin.service"]["state"])))
        for t in tasks
    }


@pytest.mark.parametrize("role", sorted(HANDLERS))
def test_sdn_handlers_reload_only_when_asked_and_the_package_is_unchanged(role: str) -> None:
    assert handler_states(role) == {"restarted"}
    assert handler_states(role, vrstack_sdn_reload=True) == {"reloaded"}
    assert handler_states(role, vrstack_sdn_reload=False) == {"restarted"}
    # New code installed in this run: the old process would not reload, so it restarts.
    installed = {"changed": True}
    assert handler_states(role, vrstack_sdn_reload=True, __sdn_package_install=installed) == {
        "restarted"
    }
    assert handler_states(role, vrstack_sdn_reload=True, sdn_package_restarted_in=["sdn"]) == {
        "restarted"
    }
    # vrstack_api_reload (the gunicorn APIs') does not reload the SDN daemons.
    assert handler_states(role, vrstack_api_reload=True) == {"restarted"}


# ---- Nova's metadata port ----------------------------------------------------------------


def metadata_rule(**extra: Any) -> dict[str, Any] | None:
    rules = infra.Render("lab-ctl1", ["firewall"], **extra).var("__firewall_rules")
    found = [rule for rule in rules if rule["name"] == "nova-metadata"]
    return found[0] if found else None


def test_the_metadata_port_is_closed_unless_the_inventory_opens_it() -> None:
    """vrstack runs no metadata API and nothing proxies 169.254.169.254 to one."""
    assert metadata_rule() is None
    assert metadata_rule(nova_metadata_api=False) is None
    opened = metadata_rule(nova_metadata_api=True)
    assert opened is not None and opened["ports"] == ["8775"]
    compute = str(infra.Render("lab-cmp1", ["firewall"]).var("vrstack_fabric_ip"))
    assert compute in opened["v4"]
