"""The setkey(8) file of a FreeBSD control node's BGP TCP MD5 keys (roles/sdn_control).

The role's own template task (read from tasks/freebsd_md5.yml, its destination moved
into a temporary directory) is played for a control node with three peers: another
control node (the mesh password), a gateway with its own password, and a third
control node whose own password is empty (no MD5 with it). Played twice: the second
run changes nothing and does not reload the keys again.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "sdn_control"
TASK = "Write the TCP MD5 security associations (they hold the BGP passwords)"
ME, MESH_PEER, QUIET_PEER, GATEWAY = "198.18.40.1", "198.18.40.2", "198.18.40.3", "198.18.41.1"
MESH_PASSWORD, GATEWAY_PASSWORD = "mesh-pw-0001", "gateway-pw 0002"


def role_task(name: str) -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks" / "freebsd_md5.yml").read_text())
    [task] = [t for t in tasks if t["name"] == name]
    return task


def run(tmp_path: Path, task: dict[str, Any], gateway_password: str) -> list[Any]:
    """ctl1's play with the role's defaults and vars, then `task`; the playbook command."""
    inventory = {
        "control": {
            "hosts": {
                "ctl1": {"vrstack_fabric_ip": ME},
                "ctl2": {"vrstack_fabric_ip": MESH_PEER},
                "ctl3": {"vrstack_fabric_ip": QUIET_PEER},
            }
        }
    }
    facts = {
        "sdn_control_bgp_address": ME,
        "sdn_control_setkey_file": str(tmp_path / "bgp-md5.setkey"),
        "sdn_control_bgp_password": MESH_PASSWORD,
        "sdn_control_bgp_peer_passwords": {GATEWAY: gateway_password, QUIET_PEER: ""},
    }
    plays = [
        {
            "hosts": "ctl1",
            "connection": "local",
            "gather_facts": False,
            "vars": {"__sdn_control_etc": {"changed": False}},  # main.yml's directory task
            "tasks": [
                {"ansible.builtin.include_vars": str(ROLE / "defaults" / "main.yml")},
                {"ansible.builtin.include_vars": str(ROLE / "vars" / "main.yml")},
                # From a file: an error's excerpt of the play must not show them.
                {"ansible.builtin.include_vars": str(tmp_path / "facts.yml")},
                task,
            ],
            "handlers": [
                {"name": "Load the BGP MD5 keys", "ansible.builtin.debug": {"msg": "keys reloaded"}}
            ],
        }
    ]
    (tmp_path / "facts.yml").write_text(yaml.safe_dump(facts))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    cmd = ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")]
    cmd += ["-e", "ansible_python_interpreter=/usr/bin/python3", "--diff"]
    return [cmd, env]


def play(tmp_path: Path) -> tuple[Path, list[str]]:
    """The role's template task played twice for ctl1; the file and each run's output."""
    task = role_task(TASK)
    task["ansible.builtin.template"]["src"] = str(ROLE / "templates" / "bgp-md5.setkey.j2")
    # This machine has no wheel group; the owner and group are the role's, checked below.
    task["ansible.builtin.template"].pop("group")
    task["ansible.builtin.template"].pop("owner")
    cmd, env = run(tmp_path, task, GATEWAY_PASSWORD)
    outputs = []
    for _attempt in range(2):
        res = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        outputs.append(res.stdout)
    assert "keys reloaded" in outputs[0]
    return tmp_path / "bgp-md5.setkey", outputs


def test_password_setkey_cannot_hold_is_refused(tmp_path: Path) -> None:
    bad = 'has"quote'
    cmd, env = run(tmp_path, role_task("Check the BGP passwords can be written for setkey"), bad)
    res = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode != 0
    # Names the host, the peer and the variables, never the password.
    assert re.search(rf"ctl1: the TCP MD5 password for peer\(s\) {GATEWAY}\b", res.stdout)
    assert "sdn_control_bgp_peer_passwords" in res.stdout
    assert MESH_PEER not in res.stdout.split("password for peer(s)")[1].split("(")[0]
    assert bad not in res.stdout + res.stderr


def test_setkey_file_for_a_control_node_with_three_peers(tmp_path: Path) -> None:
    dest, outputs = play(tmp_path)
    second = outputs[1]
    lines = [ln for ln in dest.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "flush tcp;"  # only TCP-MD5 SAs are replaced, not other IPsec SAs
    sas = [
        re.fullmatch(r'add (\S+) (\S+) tcp (0x[0-9a-f]+) -A tcp-md5 "(.*)";', ln)
        for ln in lines[1:]
    ]
    assert all(sas), lines
    got = {(m.group(1), m.group(2)): m.group(4) for m in sas if m}
    # Both directions for each peer with a password, each with that peer's own key.
    assert got == {
        (ME, MESH_PEER): MESH_PASSWORD,
        (MESH_PEER, ME): MESH_PASSWORD,
        (ME, GATEWAY): GATEWAY_PASSWORD,
        (GATEWAY, ME): GATEWAY_PASSWORD,
    }
    assert QUIET_PEER not in dest.read_text()
    spis = [m.group(3) for m in sas if m]
    assert len(set(spis)) == len(spis)  # one SPI per SA: FreeBSD refuses a duplicate
    assert all(int(s, 16) >= 0x100 for s in spis)  # SPIs below 256 are reserved
    # Secrets: mode 0600 root:wheel, never in the output or the diff.
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    task = role_task(TASK)
    assert task["no_log"] is True
    assert (
        task["ansible.builtin.template"]["owner"],
        task["ansible.builtin.template"]["group"],
    ) == ("root", "wheel")
    assert not any(pw in out for pw in (MESH_PASSWORD, GATEWAY_PASSWORD) for out in outputs)
    # The second run: nothing changed, the keys are not reloaded.
    assert re.search(r"ctl1\s*:\s*ok=\d+\s+changed=0", second), second[-1500:]
    assert "keys reloaded" not in second
