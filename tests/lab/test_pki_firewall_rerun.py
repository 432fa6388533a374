"""pki, firewall and the verify plays on a no-op rerun (issue 7, H8).

- `site.yml --tags firewall,pki` after a deploy: changed=0; the firewall play runs at most
  16 task headers (22 before, flush_handlers printing one a host: one assert now checks the
  settings and the lock-out, one include loads or removes the rules), the
  verify playbook is 4 plays (11 before) and does not read the firewall rules again (the
  role checked them in this run: its include is skipped on every host).
- `verify.yml --tags firewall,pki` alone reads the rules in force on every host and checks
  the certificates with one command and one assert per host (the files' owners and modes
  are read by the same command, H23).
- pki's main reads openssl, its group, the members and its directory in one task and
  skips the include that fixes them; the firewall's read also reads what its Debian part
  makes and skips that part's include (H23).
- A node key's mode changed by hand: verify fails naming it (one assert); a pki run fixes it.

Run by the lead on a deployed lab (`make lab`), never by hand on a shared machine:

    ./scripts/run-pytest.sh -rA tests/lab/test_pki_firewall_rerun.py
"""

from __future__ import annotations

import test_security as security
from test_common_rerun import failing, play_headers
from test_openstack_rerun import changed_hosts, headers, play, results
from test_security import Lab, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory)

FIREWALL_PLAY = "Load the host firewall from the fabric model"
VERIFY_FIREWALL = "Check the firewall rules in force"
READ_RULES = "vrstack.cloud.firewall : Read the table in force"
PKI_CHECK = "vrstack.cloud.pki : Check the PKI files, their expiry, chain and key"
PKI_READ = (
    "vrstack.cloud.pki : Read the PKI files' owners and modes, when the certificates expire, "
    "and check node.crt against the CA and its key"
)
FIREWALL_OS_PART = "vrstack.cloud.firewall : Load the host firewall (OS-specific part)"
PKI_HOST_INCLUDE = (
    "vrstack.cloud.pki : Install openssl, create the key group, add its members or create the "
    "PKI directory (when one is needed), vrstack /etc/vrstack/pki"
)


def test_site_rerun_of_firewall_and_pki(lab: Lab) -> None:
    out = play("site.yml", "--tags", "firewall,pki")
    assert {h: n for h, n in changed_hosts(out).items() if n} == {}, (
        "a no-op rerun changed something"
    )
    assert play_headers(out, FIREWALL_PLAY) <= 16, play_headers(out, FIREWALL_PLAY)
    assert out.count("PLAY [Verify ") == 4, out.count("PLAY [Verify ")
    tasks = results(out)
    assert set(tasks[VERIFY_FIREWALL]) == {"skipping"}, tasks[VERIFY_FIREWALL]
    # The role's own check ran once per host (rules read once, after its flush).
    assert headers(out, READ_RULES) == 1 and tasks[READ_RULES].count("ok") == len(lab.nodes)
    assert tasks[PKI_CHECK].count("ok") == len(lab.nodes)
    # The firewall's Debian part is in place (package, rules, unit, running): the role's
    # one read found it so, and its include is skipped (H23).
    assert set(tasks[FIREWALL_OS_PART]) == {"skipping"}, tasks[FIREWALL_OS_PART]
    assert "vrstack.cloud.firewall : Install nftables" not in tasks
    # pki's group, members and directory are in place: one read, one skipped include (H23).
    assert set(tasks[PKI_HOST_INCLUDE]) == {"skipping"}, tasks[PKI_HOST_INCLUDE]
    assert "vrstack.cloud.pki : Read the user database" not in tasks


def test_verify_alone_checks_the_rules_and_a_wrong_key_mode(lab: Lab) -> None:
    out = play("verify.yml", "--tags", "firewall,pki")
    tasks = results(out)
    assert tasks[READ_RULES].count("ok") == len(lab.nodes)
    assert headers(out, PKI_READ) == 1 and headers(out, PKI_CHECK) == 1
    node = lab.nodes[0]
    on_node(lab, node, "chmod 0644 /etc/vrstack/pki/node.key")
    try:
        failed = failing("verify.yml", "--tags", "pki", "--limit", node.name)
        assert "node.key is root:vrstack 0644, not root:vrstack 0640" in failed, failed[-3000:]
    finally:
        play("site.yml", "--tags", "pki", "--limit", node.name)
    play("verify.yml", "--tags", "pki", "--limit", node.name)
