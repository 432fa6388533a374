"""Unit tests for the pure parts of tools/lab.py: inventory parsing and the wiring plan."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
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
    first = next(iter(data["_meta"]["hostvars"].values()))
    model = copy.deepcopy(first["vrstack_fabric"])
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
    # The lab's own prefixes only (link pool + rack1 collapse to a /23), not 198.18.0.0/15.
    own = ["198.18.0.0/23", "198.18.2.0/24", "198.18.255.0/24"]
    assert [(r.dst, r.via) for r in plan.routes if r.ns is None] == [
        (p, deploy["spine_ip"]) for p in own
    ]
    assert [a.dev for a in plan.addresses if a.ns is None] == ["vrs-deploy"]
    lines = lab.ip_batch(plan, None)
    assert lines == [
        "link set vrs-deploy up",
        f"address replace {deploy['host_ip']}/31 dev vrs-deploy",
        *(f"route replace {p} via {deploy['spine_ip']}" for p in own),
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
    assert lab.parse_inventory(wrapped, "inv") == lab.parse_inventory(inventory, "inv")


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
    monkeypatch.delenv(lab.HELD_ENV, raising=False)  # not inside someone's hold
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
    monkeypatch.delenv(lab.HELD_ENV, raising=False)
    probe = (
        "import fcntl, os, sys\n"
        f"fh = open({str(tmp_path / 'lock')!r}, 'w')\n"
        "try:\n    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(7 if os.environ.get('VRSTACK_LAB_LOCK_HELD') == 'lab' else 8)\n"
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


# --------------------------------------------------------------------------
# Named labs: several side by side, one per cluster.name
# --------------------------------------------------------------------------


def _named(inventory: dict[str, Any], cluster: str, second_octet: int = 19) -> dict[str, Any]:
    """The sample inventory renamed to another cluster and moved to 198.<n>.x.x,
    hosts renamed so the two labs share nothing but their shape."""
    data = copy.deepcopy(inventory)

    def move(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("198.18."):
            return f"198.{second_octet}." + value[len("198.18.") :]
        if isinstance(value, str) and value.startswith("lab-"):
            return f"{cluster}-" + value[len("lab-") :]
        if isinstance(value, dict):
            return {move(k): move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    data = move(data)
    _model(data)["name"] = cluster
    return data


def test_legacy_lab_keeps_its_names(plan: Any) -> None:
    assert lab.spine_netns("lab") == "vrs-spine"
    assert lab.deploy_dev("lab") == "vrs-deploy"
    assert lab.tor_netns("rack1", "lab") == "vrs-tor-rack1"
    assert lab.run_dir("lab") == lab.RUN_DIR
    assert lab.state_dir("lab") == lab.STATE_DIR
    assert lab.state_file("lab") == lab.RUN_DIR / "state.json"
    assert lab.pid_file("lab-cmp1", "lab") == lab.RUN_DIR / "lab-cmp1.pid"
    assert lab.host_dir("lab-cmp1", "lab") == lab.STATE_DIR / "lab-cmp1"


def test_named_lab_gets_its_own_names(inventory: dict[str, Any]) -> None:
    parsed = lab.parse_inventory(_named(inventory, "mr"), "inv")
    assert parsed.cluster == "mr"
    plan = lab.make_plan(parsed)
    assert set(plan.routers) == {"vrs-spine-mr", "vrs-tor-mr-rack1", "vrs-tor-mr-rack2"}
    assert "vrs-mr-cmp1" in plan.namespaces
    assert [v.name for v in plan.veths if v.ns is None] == ["vrs-d-mr"]
    assert lab.run_dir("mr") == lab.RUN_DIR / "mr"
    assert lab.pid_file("mr-cmp1", "mr") == lab.RUN_DIR / "mr" / "mr-cmp1.pid"
    assert lab.host_dir("mr-cmp1", "mr") == lab.STATE_DIR / "mr" / "mr-cmp1"
    assert [r.dst for r in plan.routes if r.ns is None] == [
        "198.19.0.0/23",
        "198.19.2.0/24",
        "198.19.255.0/24",
    ]
    # The two labs' plans share no namespace and no root-namespace device.
    legacy = lab.make_plan(lab.parse_inventory(inventory, "sample"))
    assert not set(plan.namespaces) & set(legacy.namespaces)
    assert lab.deploy_dev("mr") != lab.deploy_dev("lab")


@pytest.mark.parametrize("cluster", ["multirack", "a-rather-long-cluster-name", "x"])
def test_deploy_device_names_fit(cluster: str) -> None:
    name = lab.deploy_dev(cluster)
    assert len(name) <= 15 and name == lab.deploy_dev(cluster)
    assert name != lab.deploy_dev(cluster + "2")


def test_prefixes_add_vips_and_gateway_outside_the_racks(inventory: dict[str, Any]) -> None:
    model = _model(inventory)
    model["vips"] = {"internal": "198.18.1.10", "public": "198.18.9.10"}
    model["gateway"] = {"name": "edge1", "address": "198.18.254.1"}
    parsed = lab.parse_inventory(inventory, "inv")
    assert "198.18.9.10/32" in parsed.prefixes
    assert "198.18.254.1/32" in parsed.prefixes
    assert "198.18.1.10/32" not in parsed.prefixes  # inside rack1's subnet already


def _up(parsed: Any, inventory: str = "inventories/other") -> Any:
    return lab.UpLab(
        cluster=parsed.cluster,
        inventory=inventory,
        prefixes=parsed.prefixes,
        hosts=tuple(h.name for h in parsed.hosts),
        namespaces=tuple(lab.make_plan(parsed).namespaces),
    )


def test_overlap_with_a_lab_that_is_up_names_both(inventory: dict[str, Any]) -> None:
    legacy = lab.parse_inventory(inventory, "inventories/lab")
    clash = _named(inventory, "mr", second_octet=18)  # same addresses, other names
    parsed = lab.parse_inventory(clash, "inventories/mr")
    with pytest.raises(lab.LabError) as err:
        lab.check_overlap(parsed, "inventories/mr", [_up(legacy, "inventories/lab")])
    text = str(err.value)
    assert "inventories/mr (lab 'mr')" in text and "inventories/lab" in text
    assert "198.18.0.0/23 overlaps 198.18.0.0/23" in text


def test_disjoint_labs_are_accepted(inventory: dict[str, Any]) -> None:
    legacy = lab.parse_inventory(inventory, "inventories/lab")
    other = lab.parse_inventory(_named(inventory, "mr"), "inventories/mr")
    lab.check_overlap(other, "inventories/mr", [_up(legacy)])
    lab.check_overlap(legacy, "inventories/lab", [_up(other)])
    lab.check_overlap(legacy, "inventories/lab", [_up(legacy)])  # itself: a repair


def test_host_name_shared_with_a_lab_that_is_up(inventory: dict[str, Any]) -> None:
    legacy = lab.parse_inventory(inventory, "inventories/lab")
    other = _named(inventory, "mr")
    hv = other["_meta"]["hostvars"]
    hv["lab-cmp1"] = hv.pop("mr-cmp1")  # a host named like one of the lab's
    other["vrstack"]["hosts"] = [
        h if h != "mr-cmp1" else "lab-cmp1" for h in other["vrstack"]["hosts"]
    ]
    parsed = lab.parse_inventory(other, "inventories/mr")
    with pytest.raises(lab.LabError, match="lab-cmp1 already belongs to lab 'lab'"):
        lab.check_overlap(parsed, "inventories/mr", [_up(legacy)])


def test_up_labs_reads_old_and_new_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "RUN_DIR", tmp_path)
    assert lab.up_labs() == []
    # What an older lab.py wrote: no cluster, no prefixes (it routed all of 198.18.0.0/15).
    (tmp_path / "state.json").write_text(
        json.dumps({"namespaces": ["vrs-spine"], "hosts": ["lab-ctl1"]})
    )
    (tmp_path / "mr").mkdir()
    (tmp_path / "mr" / "state.json").write_text(
        json.dumps(
            {
                "cluster": "mr",
                "inventory": "/x/inventories/mr",
                "prefixes": ["198.19.0.0/23"],
                "namespaces": ["vrs-spine-mr"],
                "hosts": ["mr-ctl1"],
            }
        )
    )
    old, new = lab.up_labs()
    assert (old.cluster, old.prefixes, old.hosts) == ("lab", ("198.18.0.0/15",), ("lab-ctl1",))
    assert (new.cluster, new.inventory, new.prefixes) == (
        "mr",
        "/x/inventories/mr",
        ("198.19.0.0/23",),
    )


def test_old_lab_blocks_any_other_lab_until_it_is_rewired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inventory: dict[str, Any]
) -> None:
    monkeypatch.setattr(lab, "RUN_DIR", tmp_path)
    (tmp_path / "state.json").write_text(json.dumps({"namespaces": [], "hosts": []}))
    parsed = lab.parse_inventory(_named(inventory, "mr"), "inventories/mr")
    with pytest.raises(lab.LabError, match=r"overlaps 198\.18\.0\.0/15 of lab 'lab'"):
        lab.check_overlap(parsed, "inventories/mr", lab.up_labs())


def test_record_state_keeps_what_down_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inventory: dict[str, Any]
) -> None:
    monkeypatch.setattr(lab, "RUN_DIR", tmp_path)
    parsed = lab.parse_inventory(_named(inventory, "mr"), "inventories/mr")
    lab.record_state(lab.make_plan(parsed), parsed)
    data = json.loads((tmp_path / "mr" / "state.json").read_text())
    assert data["cluster"] == "mr" and data["prefixes"] == list(parsed.prefixes)
    assert "vrs-spine-mr" in data["namespaces"] and "mr-ctl1" in data["hosts"]
    assert lab.read_state("mr")["hosts"] == data["hosts"]
    assert lab.read_state("lab") == {"namespaces": [], "hosts": []}


def test_stale_routes_on_the_deploy_link() -> None:
    planned = {lab.ipaddress.ip_network(p) for p in ("198.18.0.0/23", "198.18.255.0/24")}
    routes = [
        {"dst": "198.18.0.0/15", "gateway": "198.18.0.4", "dev": "vrs-deploy"},
        {"dst": "198.18.0.4/31", "dev": "vrs-deploy", "protocol": "kernel"},
        {"dst": "198.18.0.0/23", "gateway": "198.18.0.4", "dev": "vrs-deploy"},
        {"dst": "198.18.255.0/24", "gateway": "198.18.0.4", "dev": "vrs-deploy"},
    ]
    assert lab.stale_routes(routes, planned) == ["198.18.0.0/15"]


def test_held_labs_reads_old_and_new_values() -> None:
    assert lab.held_labs("1") == {"lab"}
    assert lab.held_labs("lab,mr") == {"lab", "mr"}
    assert lab.held_labs(None) == set()


def test_lock_is_per_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "RUN_DIR", tmp_path)
    monkeypatch.delenv(lab.HELD_ENV, raising=False)
    with open(tmp_path / "lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # the `lab` lab is held by someone
        with lab.locked(limit=1.0, cluster="mr"):  # another lab is not blocked
            assert (tmp_path / "mr" / "lock").exists()
        monkeypatch.setenv(lab.HELD_ENV, "mr")  # holding mr does not let `lab` through
        with pytest.raises(lab.LabError, match="still held"), lab.locked(limit=1.0):
            pass


def test_hold_names_the_lab_it_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab, "RUN_DIR", tmp_path)
    monkeypatch.delenv(lab.HELD_ENV, raising=False)
    probe = "import os, sys; sys.exit(0 if os.environ['VRSTACK_LAB_LOCK_HELD'] == 'mr' else 3)"
    assert lab.main(["hold", "--lab", "mr", "--", sys.executable, "-c", probe]) == 0
    assert (tmp_path / "mr" / "lock").exists()


def test_cluster_name_read_from_a_broken_inventory(tmp_path: Path) -> None:
    (tmp_path / "fabric.yml").write_text(
        "plugin: vrstack.cloud.fabric\ncluster: {name: mr, asn: nope}\nhosts: {}\n"
    )
    assert lab.cluster_name(str(tmp_path)) == "mr"
    assert lab.cluster_name(str(tmp_path / "missing")) == "lab"


def test_foreign_routes_into_the_lab_are_found(inventory: dict[str, Any]) -> None:
    parsed = lab.parse_inventory(inventory, "inv")
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel"},
        {"dst": "198.18.0.0/15", "gateway": "198.18.0.4", "dev": "vrs-deploy"},
        {"dst": "198.19.153.0/29", "dev": "vrsb1", "protocol": "kernel"},  # outside this lab
        {"dst": "198.18.2.16/29", "dev": "test-veth", "protocol": "kernel"},
    ]
    assert lab.foreign_routes(parsed, routes) == ["198.18.2.16/29 on test-veth"]


def test_managed_gateway_hangs_off_the_spine(inventory: dict[str, Any]) -> None:
    model = _model(inventory)
    model["gateway"] = {"name": "edge1", "address": "198.18.254.1"}
    inventory["gateway"] = {"hosts": ["edge1"]}
    parsed = lab.parse_inventory(inventory, "inv")
    assert parsed.gateway is not None and parsed.gateway.ip == "198.18.254.1"
    assert [h.name for h in parsed.all_hosts][-1] == "edge1"
    plan = lab.make_plan(parsed)
    spine_ip = parsed.deploy_spine_ip
    # The spine reaches it over its own link, which borrows the spine's deploy address.
    assert lab.Route("vrs-spine", "198.18.254.1/32", "", "g-edge1") in plan.routes
    assert lab.Address("vrs-spine", "g-edge1", f"{spine_ip}/32") in plan.addresses
    assert lab.ip_batch(plan, "vrs-edge1")[-3:] == [
        "address replace 198.18.254.1/32 dev eth0",
        f"route replace {spine_ip}/32 dev eth0",
        f"route replace default via {spine_ip} dev eth0",
    ]
    assert "198.18.254.1/32" in parsed.prefixes


def test_unmanaged_gateway_is_not_built(inventory: dict[str, Any]) -> None:
    _model(inventory)["gateway"] = {"name": "edge1", "address": "198.18.254.1"}
    assert lab.parse_inventory(inventory, "inv").gateway is None  # no group `gateway`


def test_inotify_limit_is_raised_never_lowered(tmp_path: Path) -> None:
    knob = tmp_path / "max_user_instances"
    knob.write_text("128\n")
    lab.raise_inotify_limit(knob, 1024)
    assert knob.read_text() == "1024\n"
    knob.write_text("4096\n")
    lab.raise_inotify_limit(knob, 1024)
    assert knob.read_text() == "4096\n"


def test_stable_mac_is_the_same_for_a_device_and_differs_between_devices(plan: Any) -> None:
    macs = [lab.stable_mac(v.ns, v.name) for v in plan.veths]
    macs += [lab.stable_mac(v.peer_ns, v.peer_name) for v in plan.veths]
    macs += [lab.stable_mac(ns, lab.BRIDGE) for ns in plan.bridges]
    assert len(set(macs)) == len(macs)
    assert macs[0] == lab.stable_mac(plan.veths[0].ns, plan.veths[0].name)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        # locally administered (bit 1 set), unicast (bit 0 clear), six octets
        assert first & 0x02 and not first & 0x01 and len(mac.split(":")) == 6


def test_a_held_command_dies_with_hold(tmp_path: Path) -> None:
    """A test's timeout kills `hold`: its command must not go on without the lock."""
    pidfile = tmp_path / "pid"
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    env = dict(os.environ)
    env.pop(lab.HELD_ENV, None)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import lab; from pathlib import Path; "
        "lab.RUN_DIR = Path(sys.argv[2]); sys.exit(lab.main(['hold', '--', sys.executable, '-c', sys.argv[3]]))"
    )
    hold = subprocess.Popen(
        [sys.executable, "-c", code, str(REPO / "tools"), str(tmp_path), child], env=env
    )
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    hold.kill()
    hold.wait(timeout=10)
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the held command outlived hold")
