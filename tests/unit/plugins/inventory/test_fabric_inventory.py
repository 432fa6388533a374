"""The inventory plugin through Ansible itself: groups and host vars from the lab
file, and a bad file that stops ansible-inventory with the model's message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
LAB = ROOT / "inventories" / "lab" / "fabric.yml"


def _plain(value: Any) -> Any:
    """ansible-inventory marks strings from plugins as unsafe: unwrap them."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def run_inventory(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    exe = shutil.which("ansible-inventory")
    assert exe, "ansible-inventory is not on PATH (run make bootstrap)"
    return subprocess.run(
        [exe, "-i", str(path), "--list", "--export"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_lab_inventory_groups_and_hostvars() -> None:
    res = run_inventory(LAB, ROOT)
    assert res.returncode == 0, res.stderr
    inv = _plain(json.loads(res.stdout))
    assert inv["compute"]["hosts"] == ["lab-cmp1", "lab-cmp2"]
    assert sorted(inv["control"]["hosts"]) == ["lab-ctl1", "lab-ctl2"]
    assert inv["rack_rack2"]["hosts"] == ["lab-ctl2", "lab-cmp2"]
    hv = inv["_meta"]["hostvars"]["lab-cmp2"]
    assert hv["ansible_host"] == hv["vrstack_fabric_ip"]
    assert hv["vrstack_fabric_ip"].startswith("198.18.2.")
    assert hv["vrstack_control_nodes"] == ["lab-ctl2", "lab-ctl1"]
    model = inv["all"]["vars"]["vrstack_fabric"]
    assert model["hosts"]["lab-cmp2"]["fabric_ip"] == hv["vrstack_fabric_ip"]
    assert inv["all"]["vars"]["ansible_user"] == "root"


def test_bad_fabric_file_fails_with_the_models_message(tmp_path: Path) -> None:
    data = yaml.safe_load(LAB.read_text())
    data["hosts"]["lab-cmp1"]["roles"] = ["compute", "storage"]
    bad = tmp_path / "fabric.yml"
    bad.write_text(yaml.safe_dump(data))
    res = run_inventory(bad, tmp_path)
    assert res.returncode != 0
    assert (
        "fabric.yml: host 'lab-cmp1', field 'roles': unknown role 'storage'; known roles: "
        "controller, database, messaging, control, analytics, compute"
    ) in res.stderr


@pytest.mark.parametrize("name", ["hosts.yml", "fabric.json"])
def test_plugin_ignores_files_not_named_fabric(tmp_path: Path, name: str) -> None:
    from ansible_collections.vrstack.cloud.plugins.inventory.fabric import InventoryModule

    path = tmp_path / name
    path.write_text("plugin: vrstack.cloud.fabric\n")
    assert not InventoryModule().verify_file(str(path))


@pytest.mark.parametrize(
    "fabric", sorted((ROOT / "inventories").glob("*/fabric.yml")), ids=lambda p: p.parent.name
)
def test_every_shipped_inventory_is_valid(fabric: Path) -> None:
    res = run_inventory(fabric, ROOT)
    assert res.returncode == 0, res.stderr
    inv = _plain(json.loads(res.stdout))
    assert inv["vrstack"]["hosts"], f"{fabric} yields no hosts"
