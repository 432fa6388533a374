"""Scale-out on the running multirack lab (make test-multirack deploys it).

A copy of inventories/multirack-lab gains one compute; `tools/lab.py up` starts only
that host (same cluster, so the same lab), `playbooks/add-compute.yml` deploys it and
registers its virtual-router, and `playbooks/verify.yml` on it sees its agent with
sessions to two control nodes. Every other host must report changed=0 except the
first controller (the registration). Then `playbooks/remove-compute.yml` takes it out
again: refused (nothing removed) while a port is bound to it, done once the port is
gone. The container stays until the lab is destroyed (its state file records it).
Run: VRSTACK_MULTIRACK=1 pytest tests/lab/test_multirack_lifecycle.py (in file order).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from multirack import INVENTORY, REPO, api, needs_lab, playbook, recap, run

pytestmark = needs_lab
NEW = "mr-cmp13"


def grown_inventory(tmp_path: Path) -> Path:
    """inventories/multirack-lab plus the new compute, in tmp_path."""
    fabric = yaml.safe_load((INVENTORY / "fabric.yml").read_text())
    fabric["hosts"][NEW] = {"rack": "r1", "roles": ["compute"]}
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "fabric.yml").write_text(yaml.safe_dump(fabric, sort_keys=False))
    return inv


def test_add_one_compute(tmp_path: Path) -> None:
    inv = grown_inventory(tmp_path)
    up = run(sys.executable, "tools/lab.py", "up", "--inventory", str(inv), timeout=600)
    assert up.returncode == 0, up.stderr[-2000:]

    start = time.monotonic()
    add = playbook(inv, "add-compute.yml", "-e", f"vrstack_new_compute={NEW}")
    took = time.monotonic() - start
    assert add.returncode == 0, add.stdout[-4000:]
    changed = recap(add.stdout)
    first_controller = "mr-ctl1"
    assert changed[NEW] > 0
    others = {h: n for h, n in changed.items() if h not in (NEW, first_controller, "localhost")}
    assert others and all(n == 0 for n in others.values()), f"other hosts changed: {others}"
    print(f"add-compute: {took:.0f}s for {NEW}")

    check = playbook(inv, "verify.yml", "--limit", NEW)
    assert check.returncode == 0, check.stdout[-4000:]

    again = playbook(inv, "add-compute.yml", "-e", f"vrstack_new_compute={NEW}")
    assert again.returncode == 0 and set(recap(again.stdout).values()) == {0}, again.stdout[-3000:]


def remove(inv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return playbook(inv, "remove-compute.yml", "-e", f"vrstack_removed_compute={NEW}", *extra)


def test_remove_one_compute(tmp_path: Path) -> None:
    inv = grown_inventory(tmp_path)
    found = api("GET", f"/virtual-routers?name={NEW}")["items"]
    assert found, f"{NEW} is not registered: run test_add_one_compute first"
    vrouter = found[0]["uuid"]

    # A port bound there: the removal waits, then stops without removing anything.
    tag = f"rm-{os.getpid()}"
    project = api("POST", "/projects", {"name": tag})
    subnet = {"cidr": "198.19.221.0/24"}  # inside the network's VRF only
    net = api(
        "POST", "/virtual-networks",
        {"name": tag, "parent_uuid": project["uuid"], "subnets": [subnet]},
    )  # fmt: skip
    port = api(
        "POST", "/virtual-machine-interfaces",
        {"name": tag, "parent_uuid": project["uuid"], "virtual_network": net["uuid"],
         "virtual_router": vrouter},
    )  # fmt: skip
    try:
        refused = remove(inv, "-e", "sdn_config_remove_wait=5")
        assert refused.returncode != 0, refused.stdout[-3000:]
        assert tag in refused.stdout, refused.stdout[-3000:]
        assert api("GET", f"/virtual-routers/{vrouter}") is not None
    finally:
        api("DELETE", f"/virtual-machine-interfaces/{port['uuid']}")
        api("DELETE", f"/virtual-networks/{net['uuid']}")
        api("DELETE", f"/projects/{project['uuid']}")

    done = remove(inv)
    assert done.returncode == 0, done.stdout[-4000:]
    changed = recap(done.stdout)
    assert changed[NEW] > 0 and changed["mr-ctl1"] > 0, changed
    others = {h: n for h, n in changed.items() if h not in (NEW, "mr-ctl1", "localhost")}
    assert all(n == 0 for n in others.values()), f"other hosts changed: {others}"
    assert api("GET", f"/virtual-routers/{vrouter}") is None
    agent = run(
        "ansible", "-i", str(inv), NEW, "-m", "ansible.builtin.command",
        "-a", "systemctl is-active vrstack-agent.service",
    )  # fmt: skip
    assert "inactive" in agent.stdout, agent.stdout

    again = remove(inv)
    assert again.returncode == 0 and set(recap(again.stdout).values()) == {0}, again.stdout[-3000:]


def main_pids(unit: str) -> dict[str, str]:
    """Compute -> MainPID of a systemd unit, read through Ansible."""
    out = run(
        "ansible", "-i", str(INVENTORY), "compute", "-o", "-m", "ansible.builtin.command",
        "-a", f"systemctl show --property=MainPID --value {unit}",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:]
    return dict(re.findall(r"^(\S+) \| CHANGED \| rc=0 \| \(stdout\) (\d+)", out.stdout, re.M))


def test_rolling_upgrade(tmp_path: Path) -> None:
    """The next version is this source plus one module: every SDN service restarts, one
    node (or batch) at a time, while vrouterd, whose source did not change, keeps running."""
    src = tmp_path / "sdn-src"
    shutil.copytree(REPO / "files" / "sdn-src", src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "vrstack" / "upgrade_marker.py").write_text(f'"""Upgrade test {os.getpid()}."""\n')
    datapath = main_pids("vrouterd.service")
    agents = main_pids("vrstack-agent.service")
    assert datapath and all(pid != "0" for pid in datapath.values()), datapath

    start = time.monotonic()
    up = playbook(INVENTORY, "upgrade.yml", "-e", f"sdn_package_src={src}")
    took = time.monotonic() - start
    assert up.returncode == 0, up.stdout[-4000:]
    print(f"rolling upgrade: {took:.0f}s")
    assert main_pids("vrouterd.service") == datapath
    restarted = main_pids("vrstack-agent.service")
    assert all(restarted[h] != agents[h] for h in agents), (agents, restarted)

    again = playbook(INVENTORY, "upgrade.yml", "-e", f"sdn_package_src={src}")
    assert again.returncode == 0 and set(recap(again.stdout).values()) == {0}, again.stdout[-3000:]
