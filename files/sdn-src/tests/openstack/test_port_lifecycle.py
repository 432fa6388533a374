"""A Nova server's port, end to end on the SDN side: Neutron's real ML2 plugin (its test
base, in-memory SQLite) with the `vrstack` driver binds the port on compute1 and leaves
it DOWN behind a provisioning block; the `vrouter` os-vif plugin plugs it into a real
agent over a userspace vrouterd (tests/agent/computelab.py: every SDN daemon in a
namespace this test makes); the tap appears after the plug (`ip tuntap add`, as libvirt
does); the agent reports the port up in the config API; the driver's watch completes
the block and Neutron makes the port ACTIVE. The agent refuses the same port in another
network; unplug removes the port and its state.

Root only (namespaces, taps); skipped with a message otherwise. The test's thread enters
the namespace, so the plugin, the driver and the test reach the daemons on its loopback.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import os_vif
import pytest
from neutron.db import provisioning_blocks
from neutron.tests.unit.plugins.ml2 import test_plugin
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import resources
from os_vif import exception as osv_exception
from os_vif import objects as osv_objects
from oslo_config import cfg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))
from computelab import AGENT, API, NAME, TOKEN, ComputeLab
from netns import entered, wait_for

from vrstack.openstack import ml2
from vrstack.openstack.configapi import SyncConfigClient
from vrstack.openstack.portstate import PortStateWatcher

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and taps")


def vif_of(port: dict[str, Any], network_id: str | None = None) -> Any:
    """What Nova's os_vif_util builds for a port bound with vif_type='vrouter'."""
    ips = osv_objects.fixed_ip.FixedIPList(
        objects=[osv_objects.fixed_ip.FixedIP(address=f["ip_address"]) for f in port["fixed_ips"]]
    )
    subnet = osv_objects.subnet.Subnet(cidr="198.18.71.0/24", ips=ips)
    network = osv_objects.network.Network(
        id=network_id or port["network_id"],
        subnets=osv_objects.subnet.SubnetList(objects=[subnet]),
    )
    return osv_objects.vif.VIFGeneric(
        id=port["id"],
        address=port["mac_address"],
        network=network,
        plugin="vrouter",
        vif_name=("tap" + port["id"])[:14],
    )


def instance(port: dict[str, Any]) -> Any:
    return osv_objects.instance_info.InstanceInfo(
        uuid=port["device_id"], name="vm1", project_id=port["project_id"]
    )


class TestPortLifecycle(test_plugin.Ml2PluginV2TestCase):
    _mechanism_drivers: ClassVar[list[str]] = ["vrstack"]
    lab: ComputeLab

    @pytest.fixture(autouse=True)
    def _lab(self, tmp_path: Path) -> Iterator[None]:
        self.lab = ComputeLab(tmp_path)
        try:
            self.lab.start()
            yield
        except Exception:
            print(self.lab.logs())
            raise
        finally:
            self.lab.stop()

    def preSetUp(self) -> None:
        cfg.CONF.set_override("api_url", f"http://127.0.0.1:{API}", ml2.GROUP)
        cfg.CONF.set_override("api_token", TOKEN, ml2.GROUP)
        cfg.CONF.set_override("timeout", 5.0, ml2.GROUP)
        cfg.CONF.set_override("resync_interval", 0, ml2.GROUP)

    def test_plug_tap_up_active_unplug(self) -> None:
        os_vif.initialize()
        group = "os_vif_vrouter"
        cfg.CONF.set_override("agent_url", f"http://127.0.0.1:{AGENT}", group)
        cfg.CONF.set_override("port_dir", str(self.lab.port_dir), group)
        self.addCleanup(cfg.CONF.clear_override, "agent_url", group)
        self.addCleanup(cfg.CONF.clear_override, "port_dir", group)
        mech = self.driver.mechanism_manager.mech_drivers["vrstack"].obj
        ctx = n_context.get_admin_context()
        lab = self.lab
        with (
            entered(lab.ns),
            self.subnet(cidr="198.18.71.0/24") as sub,
            self.port(
                subnet=sub,
                is_admin=True,
                device_owner="compute:nova",
                device_id=str(uuid.uuid4()),
                arg_list=(portbindings.HOST_ID,),
                **{portbindings.HOST_ID: NAME},
            ) as made,
        ):
            port = made["port"]
            pid, tap = port["id"], ("tap" + port["id"])[:14]
            assert port[portbindings.VIF_TYPE] == "vrouter" and port["status"] == "DOWN"
            assert provisioning_blocks.is_object_blocked(ctx, pid, resources.PORT)
            watcher = PortStateWatcher(
                SyncConfigClient(mech.backend.api.url, TOKEN, 5.0), mech.port_state, poll=1.0
            )
            watcher.step()  # the listing; from here on, the watch

            # Nova's plug, before libvirt makes the tap: the agent has the port, down.
            os_vif.plug(vif_of(port), instance(port))
            assert (lab.port_dir / f"{pid}.json").exists()
            wait_for(
                lambda: (lab.interface(pid) or {}).get("detail") == f"waiting for {tap}",
                20,
                "the port in its network's VRF (pushed by the control node), waiting for its tap",
            )
            assert lab.ifindex(tap) == 0
            watcher.step()
            assert self._show("ports", pid)["port"]["status"] == "DOWN"

            # libvirt starts the guest: the tap, the agent's report, Neutron's ACTIVE.
            lab.add_tap(tap)

            def active() -> bool:
                watcher.step()
                return bool(self._show("ports", pid)["port"]["status"] == "ACTIVE")

            wait_for(active, 20, "the port ACTIVE in Neutron")
            assert lab.port_state(pid)["status"] == "up"  # type: ignore[index]
            assert not provisioning_blocks.is_object_blocked(ctx, pid, resources.PORT)
            assert watcher.errors == 0

            # The same port into another network: the agent refuses and says why.
            with pytest.raises(osv_exception.PlugException, match="delete it first"):
                os_vif.plug(vif_of(port, str(uuid.uuid4())), instance(port))

            # Unplug: the port leaves the agent, its state the config API, the record goes.
            os_vif.unplug(vif_of(port), instance(port))
            wait_for(lambda: lab.port_state(pid) is None, 10, "the port state deleted")
            assert lab.interface(pid) is None
            assert not (lab.port_dir / f"{pid}.json").exists()
            lab.del_tap(tap)
