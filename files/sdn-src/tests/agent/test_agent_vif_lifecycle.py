"""A Nova port's life on one compute, with real processes in a namespace (computelab):
the port arrives without a routing instance (as the os-vif plugin sends it) and the
agent finds it in what the control node pushes; nothing makes the tap until "libvirt"
(`ip tuntap add`) does; the agent attaches it and reports the port up in the config
API; the tap deleted and made again (a hard reboot) is detached and attached again to
the new interface; the agent restarted without its own port file takes the port back
from the os-vif records; unplug removes the port state and leaves the tap alone.

Root only (namespaces, taps); skipped with a message otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from computelab import AGENT, ComputeLab
from netns import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and taps")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[ComputeLab]:
    lab = ComputeLab(tmp_path)
    try:
        lab.start()
        yield lab
    except Exception:
        print(lab.logs())
        raise
    finally:
        lab.stop()


def test_a_port_from_plug_to_unplug(lab: ComputeLab) -> None:
    net, vmi = lab.network_and_port()
    pid = vmi["uuid"]
    tap = ("tap" + pid)[:14]
    record = {
        "id": pid,
        "network": net["uuid"],
        "mac": vmi["mac_address"],
        "ips": [vmi["fixed_ips"][0]["ip_address"]],
        "tap": tap,
    }
    # The os-vif plugin's plug: its record, then the port API, no routing instance.
    lab.port_dir.mkdir()
    (lab.port_dir / f"{pid}.json").write_text(json.dumps(record))
    status, body = lab.call(AGENT, "POST", "/ports", record)
    assert status == 201, body

    # The instance comes from the control node's push; the tap is not there yet.
    def waiting() -> bool:
        iface = lab.interface(pid)
        return bool(iface and iface["vrf"] and iface["detail"] == f"waiting for {tap}")

    wait_for(waiting, 15, "the port placed in its network's VRF, waiting for its tap")
    iface = lab.interface(pid)
    assert iface is not None and iface["instance"].endswith(":blue:blue")
    state = wait_for(lambda: lab.port_state(pid), 10, "the port state in the config API")
    assert state["status"] == "down" and state["virtual_router"] == "compute1"
    assert lab.ifindex(tap) == 0, "nothing but libvirt may make the tap"
    vif = lab.vif(pid)
    assert vif is not None and "VIF_NAME" not in vif

    # libvirt starts the guest: the tap appears, the agent attaches it, the port is up.
    first = lab.add_tap(tap)
    wait_for(lambda: lab.port_state(pid)["status"] == "up", 10, "port state up")  # type: ignore[index]
    vif = lab.vif(pid)
    assert vif is not None and vif["VIF_NAME"] == tap and vif["VIF_OS_IDX"] == first
    assert lab.interface(pid)["status"] == "up"  # type: ignore[index]

    # A hard reboot: the tap goes (the port is down, the vif detached) and comes back
    # as a new interface, which is attached in its turn.
    lab.del_tap(tap)
    wait_for(lambda: lab.port_state(pid)["status"] == "down", 10, "port state down")  # type: ignore[index]
    assert "VIF_NAME" not in (lab.vif(pid) or {})
    assert lab.ifindex(tap) == 0, "the datapath must not hold or remake the tap"
    second = lab.add_tap(tap)
    assert second != first
    wait_for(lambda: (lab.vif(pid) or {}).get("VIF_OS_IDX") == second, 10, "the new tap attached")
    wait_for(lambda: lab.port_state(pid)["status"] == "up", 10, "port state up again")  # type: ignore[index]

    # The agent restarts without its own port file: the os-vif record brings the port back.
    lab.stop_agent()
    (lab.dir / "ports.json").unlink()
    lab.start_agent()
    wait_for(
        lambda: (lab.interface(pid) or {}).get("status") == "up", 15, "port back after restart"
    )
    assert (lab.vif(pid) or {}).get("VIF_OS_IDX") == second

    # Unplug: the record and the port go; so does its state; the tap is libvirt's to delete.
    (lab.port_dir / f"{pid}.json").unlink()
    status, _ = lab.call(AGENT, "DELETE", f"/ports/{pid}")
    assert status == 200
    wait_for(lambda: lab.port_state(pid) is None, 10, "the port state deleted")
    assert lab.interface(pid) is None
    lab.del_tap(tap)
    assert lab.ifindex(tap) == 0
