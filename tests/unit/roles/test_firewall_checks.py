"""The firewall role's one check before any rule is written (issue 7: one task on a rerun
instead of four): bad settings and a lock-out are all reported, each with the host and the
field named, and good settings pass. The task's own condition and message are evaluated
with the lab's variables, as Ansible would."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.template import trust_as_template

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_firewall_guards import check_task
from test_infra_tls_render import Render


def evaluate(client: str = "198.18.0.1", **extra: Any) -> tuple[bool, str]:
    """(the assert's condition, its fail_msg) for lab-cmp1 with these inventory values."""
    templar, args = check_task(Render("lab-cmp1", ["firewall"], **extra), client, **extra)
    ok = bool(templar.template(trust_as_template("{{ " + args["that"] + " }}")))
    return ok, str(templar.template(trust_as_template(args["fail_msg"])))


def deploy_address() -> str:
    return str(Render("lab-cmp1", ["firewall"]).var("vrstack_fabric.spine.links.deploy.host_ip"))


def test_the_lab_passes() -> None:
    ok, _msg = evaluate(deploy_address())
    assert ok


def test_every_bad_setting_is_named_and_the_lock_out_waits_for_good_settings() -> None:
    bad_rule = {"name": "bad name", "proto": "tcp", "port": 8443, "from": ["admins"]}
    good_rule = {
        "name": "metrics",
        "proto": "tcp",
        "port": "9100-9101",
        "from": ["198.51.100.0/24"],
    }
    no_from = {"name": "x", "proto": "sctp", "port": 1}
    ok, msg = evaluate(
        "203.0.113.9",  # not allowed by the lab's rules: a lock-out, once settings are good
        firewall_extra_rules=[bad_rule, good_rule, no_from],
        firewall_admin_sources="10.0.0.0/8",
    )
    assert not ok
    assert "lab-cmp1: firewall_extra_rules[0] (" in msg
    assert "firewall_extra_rules[1]" not in msg
    assert "lab-cmp1: firewall_extra_rules[2] (" in msg
    assert "lab-cmp1: firewall_admin_sources in the inventory" in msg
    assert "must be a list of IPv4/IPv6 addresses or CIDRs, not 10.0.0.0/8" in msg
    assert "each entry needs name (letters, digits, . _ -)" in msg
    assert "lock Ansible out" not in msg


def test_a_lock_out_alone_is_reported_with_the_address() -> None:
    ok, msg = evaluate("203.0.113.9")
    assert not ok
    assert msg.startswith("lab-cmp1: the new firewall rules would lock Ansible out")
    assert "from 203.0.113.9 (the SSH client address the host sees)" in msg


def test_no_lock_out_check_when_turned_off_or_local() -> None:
    assert evaluate("203.0.113.9", firewall_lockout_check=False)[0]
    assert evaluate("203.0.113.9", ansible_connection="local")[0]
    assert evaluate("203.0.113.9", firewall_enabled=False)[0]
    # ...but bad settings are still refused with the firewall off.
    assert not evaluate(firewall_enabled=False, firewall_public_sources=["not-an-address"])[0]
