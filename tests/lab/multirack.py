"""What the multirack lab's tests share: Ansible runs, the config API, ssh to a host."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "multirack-lab"
STATE = Path.home() / ".local/share/vrstack/multirack"
SKIP_TAGS = os.environ.get("VRSTACK_LAB_SKIP_TAGS", "openstack")

sys.path.insert(0, str(REPO / "tools"))
import lab as labtool  # noqa: E402  (tools/ is not a package)
from labcloud import sdn_open  # noqa: E402

needs_lab = pytest.mark.skipif(
    os.environ.get("VRSTACK_MULTIRACK") != "1",
    reason="needs the deployed multirack lab (VRSTACK_MULTIRACK=1, make test-multirack)",
)


def run(*cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    # molecule exports ANSIBLE_FORCE_COLOR, which wins over NOCOLOR: the recap is parsed.
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    return subprocess.run(
        list(cmd), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def playbook(inventory: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook playbooks/NAME on an inventory, with the scenario's skipped tags."""
    return run(
        "ansible-playbook", "-i", str(inventory), f"playbooks/{name}",
        f"--skip-tags={SKIP_TAGS}", *extra,
    )  # fmt: skip


def recap(output: str) -> dict[str, int]:
    """Host -> changed count from ansible-playbook's PLAY RECAP."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    found = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", plain, re.MULTILINE)
    return {host: int(changed) for host, changed in found}


@cache
def model() -> labtool.Lab:
    return labtool.load_inventory(str(INVENTORY))


def address(host: str) -> str:
    return next(h.ip for h in model().hosts if h.name == host)


def api(method: str, path: str, body: dict[str, Any] | None = None, base: str = "") -> Any:
    """One admin request to the config API where its clients reach it (the fabric model's
    URL: https on the VIP, or `base`), checked with the deployment CA; None for a 404."""
    token = yaml.safe_load((STATE / "secrets.yml").read_text())["sdn_api_admin_token"]
    url = f"{base or model().endpoints['api_url']}{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("X-Auth-Token", token)
    req.add_header("Content-Type", "application/json")
    try:
        with sdn_open(req, timeout=10, state=STATE) as resp:
            text = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None
    return json.loads(text) if text else None


def ssh(host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", model().ssh_key, "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
         "-o", "BatchMode=yes", f"root@{address(host)}", command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def agent_sessions(compute: str) -> dict[str, str]:
    """Control node's address -> session state, from the compute's agent introspect."""
    read = (
        "python3 -c 'import json, urllib.request; "
        'print(json.dumps(json.load(urllib.request.urlopen("http://127.0.0.1:8085/introspect", '
        'timeout=5))["sessions"]))\''
    )
    out = ssh(compute, read, timeout=30)
    assert out.returncode == 0, f"{compute}: {out.stderr}"
    return {s["address"].rsplit(":", 1)[0]: s["state"] for s in json.loads(out.stdout)}
