"""The firewall comes back when someone removed it (issue 11, `firewall_reload_on_drift`):
on a compute of the deployed lab the table `inet vrstack` is deleted by hand (what
`nft flush ruleset` does to it, without touching the other tables a compute may hold), a
port the rules drop from the deploy host then answers; `site.yml --tags firewall --check`
says it would change the compute and loads nothing; the real run loads the table again
(the port is dropped again, the input chain's policy is drop), and a second run reports
changed=0.

Run by the lead on a deployed lab (`make lab`), never by hand on a shared machine:

    ./scripts/run-pytest.sh -rA tests/lab/test_firewall_drift.py

Whatever happens, the compute's unit reloads the rules at the end.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import test_security as security
from labcloud import REPO
from test_security import Lab, Node, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory)

INVENTORY = security.INVENTORY
# Nothing on a compute listens here and the rules open it to nobody; the test's own
# listener answers only while the table is gone.
PROBE_PORT = 3999


def run_site(node: Node, *extra: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "tools/lab.py", "hold", "--",
           "ansible-playbook", "-i", INVENTORY, "playbooks/site.yml", "--tags", "firewall",
           "--limit", node.name, "-e", "firewall_reload_on_drift=true", *extra]  # fmt: skip
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    out = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, (
        f"{' '.join(extra) or 'run'} failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"
    )
    return out


def changed(output: str, host: str) -> int:
    """The host's changed=N in the PLAY RECAP."""
    found = re.search(rf"^{re.escape(host)}\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)
    assert found, f"no recap line for {host}:\n{output[-2000:]}"
    return int(found[1])


def answers(ip: str, port: int, timeout: float = 3.0) -> bool:
    """A TCP connection from the deploy host gets through (a dropped SYN times out)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def table(lab: Lab, node: Node) -> dict | None:
    out = on_node(lab, node, "nft -j list table inet vrstack")
    return json.loads(out.stdout) if out.returncode == 0 else None


@pytest.fixture(scope="module")
def compute(lab: Lab) -> Iterator[Node]:
    """The first compute, with a listener on PROBE_PORT; its firewall is reloaded after."""
    node = lab.by_role("compute")[0]
    listener = (
        f"nohup timeout 1800 python3 -m http.server {PROBE_PORT} --bind {node.ip} "
        ">/dev/null 2>&1 </dev/null & echo $!"
    )
    out = on_node(lab, node, listener)
    assert out.returncode == 0, f"{node.name}: cannot start the listener: {out.stderr}"
    pid = int(out.stdout.split()[-1])
    time.sleep(1)
    try:
        yield node
    finally:
        on_node(lab, node, f"systemctl reload vrstack-firewall; kill {pid}")


def test_a_deleted_table_is_loaded_again_and_the_rerun_is_clean(lab: Lab, compute: Node) -> None:
    node = compute
    assert table(lab, node) is not None, f"{node.name}: no table inet vrstack before the test"
    assert not answers(node.ip, PROBE_PORT), (
        f"{node.name}: {PROBE_PORT} answers through the firewall"
    )

    out = on_node(lab, node, "nft delete table inet vrstack")
    assert out.returncode == 0, f"{node.name}: nft delete table: {out.stderr}"
    assert table(lab, node) is None
    assert answers(node.ip, PROBE_PORT), f"{node.name}: {PROBE_PORT} still closed without the table"

    # Check mode tells it would reload, and loads nothing.
    check = run_site(node, "--check")
    assert changed(check.stdout, node.name) >= 1, check.stdout[-3000:]
    assert "Compare the rules in force with those last loaded" in check.stdout
    assert table(lab, node) is None, f"{node.name}: --check loaded the rules"

    first = run_site(node)
    assert changed(first.stdout, node.name) >= 1, first.stdout[-3000:]
    loaded = table(lab, node)
    assert loaded is not None, f"{node.name}: the run did not load the table again"
    chains = [o["chain"] for o in loaded["nftables"] if "chain" in o]
    assert any(c["name"] == "input" and c.get("policy") == "drop" for c in chains), chains
    assert not answers(node.ip, PROBE_PORT), f"{node.name}: {PROBE_PORT} answers after the reload"

    again = run_site(node)
    assert changed(again.stdout, node.name) == 0, again.stdout[-3000:]


def test_a_rule_added_by_hand_is_taken_out(lab: Lab, compute: Node) -> None:
    node = compute
    rule = f"nft insert rule inet vrstack input tcp dport {PROBE_PORT} accept"
    out = on_node(lab, node, rule)
    assert out.returncode == 0, f"{node.name}: {rule}: {out.stderr}"
    assert answers(node.ip, PROBE_PORT), (
        f"{node.name}: the hand-made rule did not open {PROBE_PORT}"
    )

    first = run_site(node)
    assert changed(first.stdout, node.name) >= 1, first.stdout[-3000:]
    assert not answers(node.ip, PROBE_PORT), f"{node.name}: the hand-made rule survived the run"
    again = run_site(node)
    assert changed(again.stdout, node.name) == 0, again.stdout[-3000:]
