"""os-vif plugin `vrouter`: Nova's VIFGeneric ports -> the local vrouter agent's port API.

Nova turns a port bound with `vif_type='vrouter'` into `VIFGeneric(plugin="vrouter",
vif_name="tap" + port id[:11])` and libvirt creates that tap when the guest starts (an
`<interface type='ethernet'>`); the agent attaches the tap when it appears (and again
when it is made again), never creating it. Plug tells the agent about the port
(`POST /ports`: id, network, MAC, IPs, tap; the agent finds the network's routing
instance in the config its control nodes push) and keeps a record of it in `port_dir`,
one JSON file per port, which the agent reads at start (`vif_ports_dir`) and
`python -m vrstack.openstack.agentapi` replays; unplug removes both.

Options, in nova-compute's config:

    [os_vif_vrouter]
    agent_url = http://127.0.0.1:8085
    timeout = 10
    port_dir = /var/lib/vrstack/vif-ports
"""

from __future__ import annotations

from typing import Any

from os_vif import exception as osv_exception
from os_vif import objects as osv_objects
from os_vif import plugin
from oslo_config import cfg
from oslo_log import log as logging

from .agentapi import PortRecords, agent_call, error_text

LOG = logging.getLogger(__name__)
JSON = dict[str, Any]


class AgentError(osv_exception.ExceptionBase):  # type: ignore[misc]
    msg_fmt = "vrouter agent at %(url)s: port %(port)s: %(reason)s"


class VrouterPlugin(plugin.PluginBase):  # type: ignore[misc]
    CONFIG_OPTS = (
        cfg.StrOpt("agent_url", default="http://127.0.0.1:8085", help="The local agent's API"),
        cfg.FloatOpt("timeout", default=10.0, min=0.1, help="Seconds per agent request"),
        cfg.StrOpt(
            "port_dir",
            default="/var/lib/vrstack/vif-ports",
            help="Where plugged ports are recorded (the agent's vif_ports_dir)",
        ),
    )

    def describe(self) -> Any:
        return osv_objects.host_info.HostPluginInfo(
            plugin_name="vrouter",
            vif_info=[
                osv_objects.host_info.HostVIFInfo(
                    vif_object_name=osv_objects.vif.VIFGeneric.__name__,
                    min_version="1.0",
                    max_version="1.0",
                )
            ],
        )

    @property
    def records(self) -> PortRecords:
        return PortRecords(self.config.port_dir)

    @staticmethod
    def port_record(vif: Any) -> JSON:
        ips = []
        if vif.obj_attr_is_set("network") and vif.network.obj_attr_is_set("subnets"):
            for subnet in vif.network.subnets.objects:
                if subnet.obj_attr_is_set("ips"):
                    ips += [str(ip.address) for ip in subnet.ips.objects]
        return {
            "id": str(vif.id),
            "network": str(vif.network.id),
            "mac": str(vif.address).lower(),
            "ips": ips,
            "tap": str(vif.vif_name),
        }

    def plug(self, vif: Any, instance_info: Any) -> None:
        port = self.port_record(vif)
        # Recorded first: if the agent is down, its replay brings the port back, and Nova
        # waits for network-vif-plugged, which comes only once the agent has the port.
        records = self.records
        previous = records.get(port["id"])
        records.put(port)
        url = self.config.agent_url
        status, out = agent_call(url, "POST", "/ports", port, self.config.timeout)
        if status == 0:
            LOG.warning("vrouter agent at %s unreachable; port %s kept for replay", url, vif.id)
            return
        if status >= 400:
            # What the agent refused is not kept; what it had before stays as it was.
            if previous is None:
                records.delete(port["id"])
            else:
                records.put(previous)
            raise AgentError(url=url, port=vif.id, reason=error_text(out))
        LOG.info("port %s plugged into network %s as %s", vif.id, port["network"], port["tap"])

    def unplug(self, vif: Any, instance_info: Any) -> None:
        self.records.delete(str(vif.id))
        url = self.config.agent_url
        status, out = agent_call(url, "DELETE", f"/ports/{vif.id}", None, self.config.timeout)
        if status == 404:
            return  # already gone: unplug is idempotent
        if status == 0 or status >= 400:
            raise AgentError(url=url, port=vif.id, reason=error_text(out))
