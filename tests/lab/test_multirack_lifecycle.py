"""Scale-out on the running multirack lab (make test-multirack deploys it).

A copy of inventories/multirack-lab gains one compute; `tools/lab.py up` starts only
that host (same cluster, so the same lab), `playbooks/add-compute.yml` deploys it and
registers its virtual-router, and `playbooks/verify.yml` on it sees its agent with
sessions to two control nodes. Every other host must report changed=0 except the
first controller (the registration). The host stays until the lab is destroyed
(its state file records it). Run: VRSTACK_MULTIRACK=1 pytest tests/lab/test_multirack_lifecycle.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "multirack-lab"
NEW = "mr-cmp13"
SKIP_TAGS = os.environ.get("VRSTACK_LAB_SKIP_TAGS", "openstack")

pytestmark = pytest.mark.skipif(
    os.environ.get("VRSTACK_MULTIRACK") != "1",
    reason="needs the deployed multirack lab (VRSTACK_MULTIRACK=1, make test-multirack)",
)


def run(*cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        list(cmd), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def recap(output: str) -> dict[str, int]:
    """Host -> changed count from ansible-playbook's PLAY RECAP."""
    found = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    return {host: int(changed) for host, changed in found}


def test_add_one_compute(tmp_path: Path) -> None:
    fabric = yaml.safe_load((INVENTORY / "fabric.yml").read_text())
    fabric["hosts"][NEW] = {"rack": "r1", "roles": ["compute"]}
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "fabric.yml").write_text(yaml.safe_dump(fabric, sort_keys=False))

    up = run(sys.executable, "tools/lab.py", "up", "--inventory", str(inv), timeout=600)
    assert up.returncode == 0, up.stderr[-2000:]

    start = time.monotonic()
    add = run(
        "ansible-playbook", "-i", str(inv), "playbooks/add-compute.yml",
        "-e", f"vrstack_new_compute={NEW}", f"--skip-tags={SKIP_TAGS}",
    )  # fmt: skip
    took = time.monotonic() - start
    assert add.returncode == 0, add.stdout[-4000:]
    changed = recap(add.stdout)
    first_controller = "mr-ctl1"
    assert changed[NEW] > 0
    others = {h: n for h, n in changed.items() if h not in (NEW, first_controller, "localhost")}
    assert others and all(n == 0 for n in others.values()), f"other hosts changed: {others}"
    print(f"add-compute: {took:.0f}s for {NEW}")

    check = run(
        "ansible-playbook", "-i", str(inv), "playbooks/verify.yml", "--limit", NEW,
        f"--skip-tags={SKIP_TAGS}",
    )  # fmt: skip
    assert check.returncode == 0, check.stdout[-4000:]

    again = run(
        "ansible-playbook", "-i", str(inv), "playbooks/add-compute.yml",
        "-e", f"vrstack_new_compute={NEW}", f"--skip-tags={SKIP_TAGS}",
    )  # fmt: skip
    assert again.returncode == 0 and set(recap(again.stdout).values()) == {0}, again.stdout[-3000:]
