"""The gateway role's BIRD config, rendered by Ansible for the multirack lab's
gateway (host vars from the fabric inventory plugin) and parsed by BIRD itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "gateway"


def render(tmp_path: Path, password: str) -> str:
    out = tmp_path / "bird.conf"
    play = tmp_path / "render.yml"
    play.write_text(
        f"""
- hosts: mr-edge1
  connection: local
  gather_facts: false
  vars:
    gateway_bgp_password: "{password}"
    ansible_facts: {{default_ipv4: {{gateway: 198.19.200.6}}}}
  tasks:
    - ansible.builtin.include_vars: {ROLE}/defaults/main.yml
    - ansible.builtin.include_vars: {ROLE}/vars/main.yml
    - ansible.builtin.set_fact:
        gateway_bgp_password: "{password}"
    - ansible.builtin.template:
        src: {ROLE}/templates/bird.conf.j2
        dest: {out}
        mode: "0600"
"""
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    res = subprocess.run(
        ["ansible-playbook", "-i", str(ROOT / "inventories" / "multirack-lab"), str(play),
         "-e", "ansible_python_interpreter=/usr/bin/python3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    return out.read_text()


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed (bird2)")
def test_bird_config_from_the_fabric_parses(tmp_path: Path) -> None:
    conf = render(tmp_path, "gw-secret-1")
    # One session per control node of gateway.peers, from the gateway's own address.
    assert "neighbor 198.19.201.16 as 64512;" in conf
    assert "neighbor 198.19.202.16 as 64512;" in conf
    assert conf.count("local 198.19.205.1 as 64700;") == 2
    assert 'password "gw-secret-1";' in conf
    # Only routes with the gateway's target come in; its network goes out with it.
    assert "(rt, 64512, 9000) ~ bgp_ext_community" in conf
    assert "route 64700:9000 198.19.206.0/24 via 198.19.200.6%eth0 onlink mpls 16" in conf
    parsed = subprocess.run(
        ["bird", "-p", "-c", str(tmp_path / "bird.conf")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert parsed.returncode == 0, parsed.stderr


def test_no_password_means_no_md5(tmp_path: Path) -> None:
    assert "password" not in render(tmp_path, "")
