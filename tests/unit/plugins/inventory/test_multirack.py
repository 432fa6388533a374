"""The example multi-rack inventory: what the model makes of it, the prechecks played on
it, and multi-rack mistakes that stop ansible-playbook before any host is contacted.

The prechecks run for real on this Debian machine (local connection, check mode). Each
host's modules run in their own UTS namespace named after the host (a per-host Python
wrapper), so the host-name check reads a real hostname rather than being skipped."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_fabric_inventory import ROOT, _plain, run_inventory

MULTIRACK = ROOT / "inventories" / "example-multirack" / "fabric.yml"
PYTHON = "/usr/bin/python3"


def ansible_playbook(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    exe = shutil.which("ansible-playbook")
    assert exe, "ansible-playbook is not on PATH (run make bootstrap)"
    return subprocess.run(
        [exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_example_multirack_model() -> None:
    res = run_inventory(MULTIRACK, ROOT)
    assert res.returncode == 0, res.stderr
    inv = _plain(json.loads(res.stdout))
    hv = inv["_meta"]["hostvars"]
    assert sorted(inv["controller"]["hosts"]) == ["ctl1", "ctl2", "ctl3"]
    assert {hv[c]["vrstack_rack"] for c in inv["control"]["hosts"]} == {"r1", "r2"}
    for rack in ("r1", "r2", "r3"):
        computes = [h for h in inv[f"rack_{rack}"]["hosts"] if h in inv["compute"]["hosts"]]
        assert len(computes) == 2, rack
    for cmp in inv["compute"]["hosts"]:
        pair = hv[cmp]["vrstack_control_nodes"]
        assert len({hv[c]["vrstack_rack"] for c in pair}) == 2, f"{cmp}: {pair}"
    assert hv["ctl1"]["vrstack_endpoints"]["api"] == "198.19.1.10"
    peers = hv["ctl1"]["vrstack_gateway_peers"]
    assert [(p["name"], p["asn"], p["route_target"]) for p in peers] == [
        ("edge1", 64700, "target:64512:9000")
    ]
    assert hv["ctl3"]["vrstack_gateway_peers"] == []


def _uts_pythons(tmp_path: Path, hosts: list[str]) -> Path:
    """One interpreter per host: Python in a new UTS namespace whose hostname is the host's."""
    bindir = tmp_path / "uts"
    bindir.mkdir()
    for host in hosts:
        wrapper = bindir / f"python-{host}"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'exec unshare --uts /bin/sh -c \'hostname "$0" && exec {PYTHON} "$@"\' '
            f'{host} "$@"\n'
        )
        wrapper.chmod(0o755)
    return bindir


@pytest.mark.skipif(os.geteuid() != 0, reason="a UTS namespace per host needs root")
def test_prechecks_pass_on_the_example_multirack_inventory(tmp_path: Path) -> None:
    hosts = list(yaml.safe_load(MULTIRACK.read_text())["hosts"])
    bindir = _uts_pythons(tmp_path, hosts)
    res = ansible_playbook(
        "-i", str(MULTIRACK.parent), "--check", "playbooks/prechecks.yml",
        "-e", "ansible_connection=local",
        "-e", f"ansible_python_interpreter={bindir}/python-{{{{ inventory_hostname }}}}",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    for host in hosts:
        assert re.search(
            rf"^{host}\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", res.stdout, re.M
        )
    name_check = res.stdout.split("host name, name resolution and ports", 1)[1]
    name_check = name_check.split("TASK [", 1)[0]
    assert sorted(re.findall(r"^ok: \[(\S+)\]", name_check, re.M)) == sorted(hosts)


def _edit(path: str, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value

    return change


# One mistake of each multi-rack kind; the model's unit tests have the full list.
MISTAKES: list[tuple[str, Callable[[dict], None], str]] = [
    (
        "control nodes in one rack",
        _edit("hosts.ctl2.rack", "r1"),
        "host 'ctl2', field 'rack': control nodes ctl1, ctl2 are all in rack 'r1'",
    ),
    (
        "rack without uplink",
        _edit("racks.r3.uplink", False),
        "rack 'r3', field 'uplink': is false: the rack has no route to spine 'spine1'",
    ),
    (
        "ASN collision",
        _edit("gateway.asn", 64603),
        "rack 'r3', field 'tor_asn': 64603 is already the ASN of gateway 'edge1'",
    ),
    (
        "duplicate loopback",
        lambda d: (
            _edit("hosts.cmp11.loopback", "198.19.255.200")(d),
            _edit("hosts.cmp21.loopback", "198.19.255.200")(d),
        ),
        "host 'cmp21', field 'loopback': 198.19.255.200 is already the loopback of host 'cmp11'",
    ),
    (
        "VIP on a host address",
        _edit("cluster.vips.internal", "198.19.3.40"),
        "host 'cmp32', field 'address': 198.19.3.40 is already VIP 'internal'",
    ),
]


@pytest.mark.parametrize(("what", "change", "message"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_multirack_mistake_stops_prechecks_before_any_host(
    tmp_path: Path, what: str, change: Callable[[dict], None], message: str
) -> None:
    data = yaml.safe_load(MULTIRACK.read_text())
    change(data)
    site = tmp_path / "site"
    site.mkdir()
    (site / "fabric.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    res = ansible_playbook(
        "-i", str(site), "--check", str(ROOT / "playbooks" / "prechecks.yml"),
        "-e", "ansible_connection=local", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode != 0, f"{what}: {res.stdout[-2000:]}"
    output = res.stdout + res.stderr
    assert f"site/fabric.yml: {message}" in output, f"{what}: {output[-3000:]}"
    assert "PLAY [" not in output, f"{what}: a play started:\n{output[-3000:]}"
