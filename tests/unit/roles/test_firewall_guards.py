"""The firewall role's two guards (issue 11): no lock-out (the new rules must let the
deploy host reach ssh, checked before anything is written) and no drift (the rules in
force are reloaded when they differ from the record taken after the last load).

The decisions are plugins/filter/firewall.py's; the wiring is the role's own: the lab's
rules as the role renders them, the assert's condition taken from tasks/main.yml, and the
read command and the handler's record command run with /bin/sh against a stand-in nft."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.template import trust_as_template

from ansible_collections.vrstack.cloud.plugins.filter.firewall import (
    LIVE,
    LOADED,
    FilterModule,
    firewall_allows,
    firewall_client_address,
    firewall_state,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_infra_tls_render import ROOT, Render

ROLE = ROOT / "roles" / "firewall"

# ---- the lock-out decision ---------------------------------------------------------------

SSH = {
    "name": "ssh",
    "proto": "tcp",
    "ports": ["22"],
    "v4": ["198.18.0.1", "198.18.1.0/24"],
    "v6": ["2001:db8::/64"],
}
KEYSTONE_PUBLIC = {"name": "keystone", "proto": "tcp", "ports": ["5000"], "v4": "any", "v6": "any"}
WIDE = {"name": "mgmt", "proto": "tcp", "ports": ["1-1024"], "v4": ["203.0.113.0/24"], "v6": []}
UDP = {"name": "u", "proto": "udp", "ports": ["22"], "v4": "any", "v6": "any"}


@pytest.mark.parametrize(
    ("rules", "address", "port", "allowed"),
    [
        ([SSH], "198.18.0.1", 22, True),  # the deploy address itself
        ([SSH], "198.18.1.77", 22, True),  # inside an allowed network
        ([SSH], "198.18.2.77", 22, False),  # another rack, not listed
        ([SSH], "198.18.0.1", 2222, False),  # sshd elsewhere (ansible_port): nothing opens it
        ([SSH], "2001:db8::5", "22", True),
        ([SSH], "2001:db8:1::5", 22, False),
        ([SSH], "::ffff:198.18.0.1", 22, True),  # sshd on :: reports IPv4 clients mapped
        ([SSH], "fe80::1%eth0", 22, False),  # a zone is not part of the address
        ([KEYSTONE_PUBLIC], "198.51.100.9", 22, False),  # open to all, but another port
        ([WIDE], "203.0.113.4", 22, True),  # an extra rule's range covers 22
        ([UDP], "198.18.0.1", 22, False),  # udp/22 does not let ssh in
        ([{**SSH, "v4": "any"}], "192.0.2.200", 22, True),
        ([], "198.18.0.1", 22, False),
    ],
)
def test_allows(rules: list[dict[str, Any]], address: str, port: Any, allowed: bool) -> None:
    assert firewall_allows(rules, address, port) is allowed


def test_allows_refuses_what_is_not_an_address() -> None:
    with pytest.raises(AnsibleFilterError, match="not an address"):
        firewall_allows([SSH], "deploy.example", 22)


@pytest.mark.parametrize(
    ("ssh_connection", "expected"),
    [
        ("198.18.0.1 51234 198.18.1.21 22", "198.18.0.1"),
        ("::ffff:198.18.0.1 51234 ::ffff:198.18.1.21 22", "198.18.0.1"),
        ("2001:db8::9 40000 2001:db8::1 22", "2001:db8::9"),
        ("fe80::9%eth0 40000 fe80::1%eth0 22", "fe80::9"),
        ("garbage", "127.0.0.1"),  # unreadable: this machine's source address instead
    ],
)
def test_client_address_is_what_the_host_saw(ssh_connection: str, expected: str) -> None:
    # The host's view wins over this machine's routing (NAT, a jump host).
    assert firewall_client_address(ssh_connection, "127.0.0.1") == expected


def test_client_address_falls_back_to_this_machines_source_towards_the_host() -> None:
    # become through sudo resets the environment: no SSH_CONNECTION reaches the command.
    assert firewall_client_address("", "127.0.0.1") == "127.0.0.1"
    assert firewall_client_address("  ", "::1") in ("::1", "")  # "" without IPv6 here
    assert firewall_client_address("", "") == ""
    assert firewall_client_address("", "no-such-host.invalid") == ""


def test_filters_are_registered() -> None:
    assert set(FilterModule().filters()) == {
        "firewall_state",
        "firewall_allows",
        "firewall_client_address",
    }


# ---- the drift decision ------------------------------------------------------------------


def nft_listing(handle: int, packets: int, extra_rule: bool = False) -> str:
    """`nft -j list table inet vrstack` as nft 1.0.6 prints it (shortened): handles grow
    with every load, counters with every drop."""
    rules = [
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                "right": 22,
            }
        },
        {"accept": None},
    ]
    objects: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "vrstack", "handle": handle}},
        {"counter": {"family": "inet", "name": "input_dropped", "table": "vrstack", "handle": handle,
                     "packets": packets, "bytes": packets * 60}},
        {"chain": {"family": "inet", "table": "vrstack", "name": "input", "handle": 1,
                   "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
        {"rule": {"family": "inet", "table": "vrstack", "chain": "input", "handle": handle + 3,
                  "comment": "ssh", "expr": rules}},
    ]  # fmt: skip
    if extra_rule:
        objects.append(
            {"rule": {"family": "inet", "table": "vrstack", "chain": "input", "handle": 99,
                      "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp",
                               "field": "dport"}}, "right": 3306}}, {"accept": None}]}}
        )  # fmt: skip
    return json.dumps({"nftables": objects})


def read_output(live: str, loaded: str, deployed: bool = True, ssh: str = "") -> str:
    head = f"ssh {ssh}\n" + ("deployed\n" if deployed else "")
    return f"{head}{LIVE}\n{live}\n{LOADED}\n{loaded}\n"


RECORD = nft_listing(2, 0)
PF_RULES = (
    'anchor "vrstack" all\n'
    'block drop in all label "input_dropped"\n'
    'pass in quick inet proto tcp from any to any port = ssh flags S/SA keep state label "ssh"\n'
)


@pytest.mark.parametrize(
    ("live", "loaded", "deployed", "drift"),
    [
        (nft_listing(7, 1234), RECORD, True, False),  # reloaded since, and dropped packets
        (nft_listing(2, 0, extra_rule=True), RECORD, True, True),  # a rule added by hand
        ("", RECORD, True, True),  # nft flush ruleset: no table
        (nft_listing(2, 0), "", True, True),  # no record yet (loaded before this check)
        ("", "", False, False),  # first run: the file is written and loaded anyway
        (nft_listing(2, 0, extra_rule=True), RECORD, False, False),
        (PF_RULES, PF_RULES.replace("\n", "  \n"), True, False),  # pfctl: line by line
        (PF_RULES.split("\n", 1)[1], PF_RULES, True, True),  # pfctl -F all: the hook is gone
    ],
)
def test_drift(live: str, loaded: str, deployed: bool, drift: bool) -> None:
    assert firewall_state(read_output(live, loaded, deployed))["drift"] is drift


def protocol_listing(protocols: list[Any], gre: Any) -> str:
    """Two rules matching on protocols, as nft lists them with or without /etc/protocols."""

    def rule(comment: str, left: dict[str, Any], right: Any) -> dict[str, Any]:
        return {
            "rule": {
                "family": "inet",
                "table": "vrstack",
                "chain": "input",
                "comment": comment,
                "expr": [{"match": {"op": "==", "left": left, "right": right}}, {"accept": None}],
            }
        }

    return json.dumps({"nftables": [
        rule("icmp, icmpv6", {"meta": {"key": "l4proto"}}, {"set": protocols}),
        rule("gre", {"payload": {"protocol": "ip", "field": "protocol"}}, gre),
    ]})  # fmt: skip


@pytest.mark.parametrize(
    ("live", "drift"),
    [
        (protocol_listing(["icmp", "ipv6-icmp"], "gre"), False),  # /etc/protocols came later
        (protocol_listing([1, 58], 47), False),
        (protocol_listing(["icmp", "ipv6-icmp"], "udp"), True),  # another protocol is drift
        (protocol_listing(["icmp"], "gre"), True),
    ],
)
def test_protocol_names_and_numbers_are_the_same_rule(live: str, drift: bool) -> None:
    loaded = protocol_listing([1, 58], 47)
    assert firewall_state(read_output(live, loaded))["drift"] is drift


def test_state_without_markers_means_nothing_to_do() -> None:
    # What a check-mode stand-in or a failed read gives: neither reload nor an address.
    assert firewall_state("") == {"ssh": "", "deployed": False, "drift": False}
    with pytest.raises(AnsibleFilterError):
        firewall_state(None)  # type: ignore[arg-type]


def test_state_reports_the_ssh_connection() -> None:
    state = firewall_state(read_output("", "", ssh="198.18.0.1 4000 198.18.1.21 22"))
    assert state["ssh"] == "198.18.0.1 4000 198.18.1.21 22" and state["deployed"]


# ---- the role's wiring -------------------------------------------------------------------


def lab(host: str = "lab-cmp1", **extra: Any) -> Render:
    return Render(host, ["firewall"], **extra)


def check_task(render: Render, client: str, **extra: Any) -> tuple[Any, dict[str, Any]]:
    """The role's check before any rule is written (the first assert of tasks/main.yml)
    and a templar with its variables, for a host and a client address."""
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    task = next(t for t in tasks if "ansible.builtin.assert" in t)
    templar = render.templar
    variables = dict(templar.available_variables)
    variables |= {k: trust_as_template(v) for k, v in task["vars"].items()} | extra
    variables["__firewall_read"] = {
        "stdout": read_output("", "", ssh=f"{client} 50000 198.18.1.21 22")
    }
    templar.available_variables = variables
    return templar, task["ansible.builtin.assert"]


def lockout_condition(render: Render, client: str, **extra: Any) -> bool:
    """The role's own assert (tasks/main.yml) evaluated for a host and a client address."""
    templar, args = check_task(render, client, **extra)
    return bool(templar.template(trust_as_template("{{ " + args["that"] + " }}")))


def deploy_address(render: Render) -> str:
    return str(render.var("vrstack_fabric.spine.links.deploy.host_ip"))


def test_lab_deploy_host_may_reach_ssh_on_every_kind_of_host() -> None:
    for host in ("lab-ctl1", "lab-cmp1"):
        r = lab(host)
        assert lockout_condition(r, deploy_address(r)), host


def test_a_deploy_host_the_rules_do_not_name_stops_the_run() -> None:
    outsider = "198.19.200.7"  # outside the lab's fabric, not in any source list
    assert not lockout_condition(lab(), outsider)
    # The fix the message names: the address in firewall_admin_sources (or deploy).
    assert lockout_condition(lab(firewall_admin_sources=["198.19.200.0/24"]), outsider)
    assert lockout_condition(lab(firewall_deploy_sources=[outsider]), outsider)
    # Without firewall_deploy_sources the lab's own deploy host would be shut out.
    r = lab(firewall_deploy_sources=[])
    assert not lockout_condition(r, deploy_address(r))


def test_ssh_on_another_port_must_be_opened_too() -> None:
    r = lab()
    assert not lockout_condition(r, deploy_address(r), ansible_port=2222)
    extra = [{"name": "ssh-alt", "proto": "tcp", "port": 2222, "from": ["deploy"]}]
    r = lab(firewall_extra_rules=extra)
    assert lockout_condition(r, deploy_address(r), ansible_port=2222)


def test_unknown_client_address_does_not_block() -> None:
    # Neither SSH_CONNECTION nor a route to ansible_host: nothing to check against.
    r = lab()
    assert lockout_condition(r, "", ansible_host="")


FAKE_NFT = """#!/bin/sh
# Stand-in for nft: prints the listing in $FAKE_LISTING (nothing and rc 1 when it is empty).
test -s "$FAKE_LISTING" || { echo 'Error: No such file or directory' >&2; exit 1; }
cat "$FAKE_LISTING"
"""


def run_sh(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True
    )


def test_read_and_record_commands_on_a_debian_host(tmp_path: Path) -> None:
    nft = tmp_path / "nft"
    nft.write_text(FAKE_NFT)
    nft.chmod(0o755)
    listing = tmp_path / "listing.json"
    rules_file = tmp_path / "firewall.nft"
    r = lab(
        firewall_nft_binary=str(nft),
        firewall_nft_file=str(rules_file),
        firewall_reload_on_drift=True,
    )
    read_cmd = str(r.var("__firewall_read_cmd"))
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    record = next(h for h in handlers if h["name"] == "Record the rules in force")
    record_cmd = str(r.templar.template(trust_as_template(record["ansible.builtin.shell"]["cmd"])))
    env = {"PATH": os.environ["PATH"], "FAKE_LISTING": str(listing),
           "SSH_CONNECTION": "198.18.0.1 50000 198.18.1.21 22"}  # fmt: skip

    def state() -> dict[str, Any]:
        return firewall_state(run_sh(read_cmd, env).stdout)

    # A fresh host: no file, no table: nothing to reload, the client is known.
    listing.write_text("")
    assert state() == {"ssh": "198.18.0.1 50000 198.18.1.21 22", "deployed": False, "drift": False}
    # Loaded by the unit before this check existed: no record, so reload once.
    rules_file.write_text("table inet vrstack\n")
    listing.write_text(nft_listing(2, 0))
    assert state()["drift"] is True
    # The handler records what is in force, readable by root only.
    run_sh(record_cmd, env)
    record_file = Path(f"{rules_file}.loaded")
    assert json.loads(record_file.read_text()) == json.loads(nft_listing(2, 0))
    assert stat.S_IMODE(record_file.stat().st_mode) == 0o600
    # Reruns: the same rules, reloaded at boot and counting drops: no drift.
    listing.write_text(nft_listing(9, 4321))
    assert state()["drift"] is False
    # Someone flushed the ruleset, or added a rule: drift.
    listing.write_text("")
    assert state()["drift"] is True
    listing.write_text(nft_listing(2, 0, extra_rule=True))
    assert state()["drift"] is True
    # Switched off: the read still tells the client, never a drift.
    off = str(lab(firewall_nft_binary=str(nft), firewall_nft_file=str(rules_file),
                  firewall_reload_on_drift=False).var("__firewall_read_cmd"))  # fmt: skip
    got = firewall_state(run_sh(off, env).stdout)
    assert got["ssh"].startswith("198.18.0.1 ") and got["drift"] is False


def test_freebsd_reads_the_main_ruleset_and_the_anchor() -> None:
    r = lab(vrstack_os="freebsd14")
    assert str(r.var("__firewall_live_cmd")) == "pfctl -s rules; pfctl -a vrstack -s rules"
    assert str(r.var("__firewall_record_file")) == "/usr/local/etc/vrstack/pf.anchor.conf.loaded"
    # The reload after a drift must restore the main ruleset's hook as well.
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    pf = next(h for h in handlers if "freebsd" in str(h.get("when")))
    assert pf["ansible.builtin.command"]["cmd"] == "pfctl -f /etc/pf.conf"
