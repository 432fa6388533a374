"""Unit tests for the pure parts of tools/lab.py: inventory parsing and the wiring plan."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lab
import pytest

REPO = Path(__file__).resolve().parents[3]
SAMPLE = Path(__file__).with_name("lab_inventory_sample.json")


@pytest.fixture
def inventory() -> dict[str, Any]:
    """Real `ansible-inventory -i inventories/lab --list` output, unsafe wrappers removed."""
    return lab.unwrap(json.loads(SAMPLE.read_text()))


@pytest.fixture
def plan(inventory: dict[str, Any]) -> Any:
    return lab.make_plan(lab.parse_inventory(inventory, "sample"))


def _model(data: dict[str, Any]) -> dict[str, Any]:
    """The shared vrstack_fabric model (the same object for every host after a copy)."""
    model = copy.deepcopy(data["_meta"]["hostvars"]["lab-cmp1"]["vrstack_fabric"])
    for hv in data["_meta"]["hostvars"].values():
        hv["vrstack_fabric"] = model
    return model


def test_parse_reads_hosts_racks_and_links(inventory: dict[str, Any]) -> None:
    parsed = lab.parse_inventory(inventory, "sample")
    hv = inventory["_meta"]["hostvars"]
    assert [h.name for h in parsed.hosts] == sorted(inventory["vrstack"]["hosts"])
    for host in parsed.hosts:
        assert host.ip == hv[host.name]["vrstack_fabric_ip"]
        assert host.loopback == hv[host.name]["vrstack_loopback_ip"]
        assert host.gateway == hv[host.name]["vrstack_fabric_gateway"]
        assert host.prefixlen == hv[host.name]["vrstack_fabric_prefixlen"]
    model = hv["lab-ctl1"]["vrstack_fabric"]
    rack2 = next(r for r in parsed.racks if r.name == "rack2")
    links = model["spine"]["links"]
    assert (rack2.spine_ip, rack2.tor_ip) == (
        links["rack2"]["spine_ip"],
        links["rack2"]["tor_ip"],
    )
    assert parsed.deploy_local_ip == links["deploy"]["host_ip"]
    assert parsed.ssh_key == hv["lab-ctl1"]["ansible_ssh_private_key_file"]


def test_plan_namespaces_and_forwarding(plan: Any, inventory: dict[str, Any]) -> None:
    hosts = inventory["vrstack"]["hosts"]
    assert set(plan.namespaces) == {
        "vrs-spine",
        "vrs-tor-rack1",
        "vrs-tor-rack2",
        *(f"vrs-{h}" for h in hosts),
    }
    # Forwarding only in the routers the lab made, never in hosts or the root namespace.
    assert set(plan.routers) == {"vrs-spine", "vrs-tor-rack1", "vrs-tor-rack2"}


def test_plan_host_addressing(plan: Any, inventory: dict[str, Any]) -> None:
    hv = inventory["_meta"]["hostvars"]["lab-cmp2"]
    ns = "vrs-lab-cmp2"
    addrs = {(a.dev, a.cidr) for a in plan.addresses if a.ns == ns}
    assert addrs == {
        ("eth0", f"{hv['vrstack_fabric_ip']}/{hv['vrstack_fabric_prefixlen']}"),
        ("lo", f"{hv['vrstack_loopback_ip']}/32"),
    }
    routes = [(r.dst, r.via) for r in plan.routes if r.ns == ns]
    assert routes == [("default", hv["vrstack_fabric_gateway"])]
    veth = next(v for v in plan.veths if v.peer_ns == ns)
    assert (veth.ns, veth.peer_name) == ("vrs-tor-rack2", "eth0")
    assert veth.name in plan.bridges["vrs-tor-rack2"]
    assert veth.name not in plan.bridges["vrs-tor-rack1"]


def test_plan_tor_and_spine_routes(plan: Any, inventory: dict[str, Any]) -> None:
    model = inventory["_meta"]["hostvars"]["lab-ctl1"]["vrstack_fabric"]
    links = model["spine"]["links"]
    spine_routes = {(r.dst, r.via) for r in plan.routes if r.ns == "vrs-spine"}
    for rack, data in model["racks"].items():
        assert (data["subnet"], links[rack]["tor_ip"]) in spine_routes
        tor = f"vrs-tor-{rack}"
        assert ("default", links[rack]["spine_ip"]) in {
            (r.dst, r.via) for r in plan.routes if r.ns == tor
        }
        assert lab.Address(tor, "br0", f"{data['gateway']}/24") in plan.addresses
    for name, hv in inventory["_meta"]["hostvars"].items():
        loop = f"{hv['vrstack_loopback_ip']}/32"
        tor_ip = links[hv["vrstack_rack"]]["tor_ip"]
        assert (loop, tor_ip) in spine_routes, name
        tor = f"vrs-tor-{hv['vrstack_rack']}"
        assert lab.Route(tor, loop, hv["vrstack_fabric_ip"]) in plan.routes


def test_plan_root_namespace_only_gets_deploy_link(plan: Any, inventory: dict[str, Any]) -> None:
    deploy = inventory["_meta"]["hostvars"]["lab-ctl1"]["vrstack_fabric"]["spine"]["links"][
        "deploy"
    ]
    assert [(r.dst, r.via) for r in plan.routes if r.ns is None] == [
        ("198.18.0.0/15", deploy["spine_ip"])
    ]
    assert [a.dev for a in plan.addresses if a.ns is None] == ["vrs-deploy"]
    lines = lab.ip_batch(plan, None)
    assert lines == [
        "link set vrs-deploy up",
        f"address replace {deploy['host_ip']}/31 dev vrs-deploy",
        f"route replace 198.18.0.0/15 via {deploy['spine_ip']}",
    ]


def test_ip_batch_enslaves_before_addressing(plan: Any) -> None:
    lines = lab.ip_batch(plan, "vrs-tor-rack1")
    assert lines[0] == "link set lo up"
    master = [i for i, line in enumerate(lines) if " master br0" in line]
    first_addr = next(i for i, line in enumerate(lines) if line.startswith("address"))
    assert len(master) == 2 and max(master) < first_addr
    assert "link set br0 up" in lines


def test_missing_host_var_names_host_and_field(inventory: dict[str, Any]) -> None:
    del inventory["_meta"]["hostvars"]["lab-cmp2"]["vrstack_loopback_ip"]
    with pytest.raises(lab.LabError, match=r"host lab-cmp2: missing field 'vrstack_loopback_ip'"):
        lab.parse_inventory(inventory, "inv")


def test_missing_deploy_link_is_an_error(inventory: dict[str, Any]) -> None:
    del _model(inventory)["spine"]["links"]["deploy"]
    with pytest.raises(lab.LabError, match=r"vrstack_fabric.spine.links: missing field 'deploy'"):
        lab.parse_inventory(inventory, "inv")


def test_no_spine_is_an_error(inventory: dict[str, Any]) -> None:
    _model(inventory)["spine"] = None
    with pytest.raises(lab.LabError, match="needs a spine"):
        lab.parse_inventory(inventory, "inv")


def test_address_outside_lab_range_is_refused(inventory: dict[str, Any]) -> None:
    inventory["_meta"]["hostvars"]["lab-ctl2"]["vrstack_fabric_ip"] = "192.0.2.50"
    with pytest.raises(
        lab.LabError, match=r"host lab-ctl2 vrstack_fabric_ip 192.0.2.50 is outside"
    ):
        lab.parse_inventory(inventory, "inv")


def test_wrapped_json_is_read(inventory: dict[str, Any]) -> None:
    wrapped = json.loads(SAMPLE.read_text())
    assert lab.parse_inventory(wrapped, "raw") == lab.parse_inventory(inventory, "clean")


def test_not_a_fabric_inventory(inventory: dict[str, Any]) -> None:
    del inventory["vrstack"]
    with pytest.raises(lab.LabError, match="no hosts in group 'vrstack'"):
        lab.parse_inventory(inventory, "inv")


@pytest.mark.parametrize(
    ("host", "expected"),
    [("lab-cmp1", "h-lab-cmp1"), ("a-very-long-compute-name-7", None)],
)
def test_interface_names_fit_and_are_stable(host: str, expected: str | None) -> None:
    name = lab.host_veth(host)
    assert len(name) <= 15
    assert name == lab.host_veth(host)
    if expected:
        assert name == expected
    else:
        assert name != lab.host_veth(host[:-1] + "8")


def test_host_named_like_a_tor_namespace_is_refused(inventory: dict[str, Any]) -> None:
    hv = inventory["_meta"]["hostvars"]
    hv["tor-rack1"] = dict(hv["lab-cmp1"], vrstack_fabric_ip="198.18.1.30")
    inventory["vrstack"]["hosts"].append("tor-rack1")  # its netns would be rack1's ToR
    with pytest.raises(lab.LabError, match="collides with lab namespace"):
        lab.parse_inventory(inventory, "inv")


def test_rootfs_key_follows_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    before = lab.rootfs_key()
    assert before == lab.rootfs_key()
    monkeypatch.setattr(lab, "ROOTFS_PACKAGES", (*lab.ROOTFS_PACKAGES, "less"))
    assert lab.rootfs_key() != before


def test_apt_mirror_reads_deb822_uris(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
    )
    assert lab.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_apt_mirror_missing_is_clear(tmp_path: Path) -> None:
    with pytest.raises(lab.LabError, match="no Debian mirror found"):
        lab.apt_mirror(tmp_path)


def test_not_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(lab.LabError, match="must run as root"):
        lab.require_root_and_tools(["ip"])


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(lab.LabError, match="missing tools: no-such-tool-vrs"):
        lab.require_root_and_tools(["ip", "no-such-tool-vrs"])


def test_lock_wait_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "RUN_DIR", tmp_path)
    with open(tmp_path / "lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(lab.LabError, match="still held after 1s"), lab.locked(limit=1.0):
            pass
    with lab.locked(limit=1.0):  # free again: taken at once
        pass


def test_hold_runs_the_command_with_the_lock_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab, "RUN_DIR", tmp_path)
    probe = (
        "import fcntl, os, sys\n"
        f"fh = open({str(tmp_path / 'lock')!r}, 'w')\n"
        "try:\n    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(7 if os.environ.get('VRSTACK_LAB_LOCK_HELD') == '1' else 8)\n"
    )
    assert lab.main(["hold", "--", sys.executable, "-c", probe]) == 7  # held, and it knows
    assert lab.main(["hold", sys.executable, "-c", probe]) == 7
    assert lab.main(["hold"]) == 1


def test_cli_reports_missing_inventory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "lab.py"), "summary", "--inventory",
         str(tmp_path / "nope")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr


@pytest.mark.skipif(
    not (REPO / "plugins" / "inventory" / "fabric.py").exists(),
    reason="the fabric inventory plugin is not in this checkout yet",
)
def test_real_lab_inventory_parses() -> None:
    """The contract with the fabric plugin: the lab inventory yields a wireable lab."""
    parsed = lab.load_inventory(str(REPO / "inventories" / "lab"))
    assert len(parsed.hosts) == 4
    assert {r.name for r in parsed.racks} == {"rack1", "rack2"}
    plan = lab.make_plan(parsed)
    assert len(plan.namespaces) == 4 + 2 + 1
