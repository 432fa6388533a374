# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Look-ups in the fabric model (`vrstack_fabric`). They never compute an
address: the inventory plugin's model already holds every one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _host(model: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    try:
        return model["hosts"][name]
    except (KeyError, TypeError):
        raise AnsibleFilterError(f"host {name!r} is not in the fabric model") from None


def fabric_host(model: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The model's entry for one host (rack, roles, os, fabric_ip, loopback_ip, ...)."""
    return dict(_host(model, name))


def fabric_role_hosts(model: Mapping[str, Any], role: str) -> list[str]:
    """Names of the hosts that have `role`, in fabric-file order."""
    return [name for name, host in model["hosts"].items() if role in host["roles"]]


def fabric_hosts_entries(model: Mapping[str, Any]) -> list[str]:
    """/etc/hosts lines (`address name`) for every host's fabric address."""
    return [f"{host['fabric_ip']} {name}" for name, host in model["hosts"].items()]


def fabric_rack_routes(model: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    """Routes a host needs to reach the rest of the fabric through its rack gateway:
    the other racks' subnets (when both racks are uplinked to the spine) and the
    loopback pool."""
    host = _host(model, name)
    own = model["racks"][host["rack"]]
    routes = []
    if model.get("spine") and own["uplink"]:
        for rack_name, rack in model["racks"].items():
            if rack_name != host["rack"] and rack["uplink"]:
                routes.append({"dest": rack["subnet"], "via": host["gateway"]})
    if model.get("loopback_pool"):
        routes.append({"dest": model["loopback_pool"], "via": host["gateway"]})
    return routes


def fabric_control_addresses(model: Mapping[str, Any], name: str) -> list[str]:
    """Fabric addresses of the control nodes a compute connects to, primary first."""
    return [_host(model, ctl)["fabric_ip"] for ctl in _host(model, name)["control_nodes"]]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "fabric_host": fabric_host,
            "fabric_role_hosts": fabric_role_hosts,
            "fabric_hosts_entries": fabric_hosts_entries,
            "fabric_rack_routes": fabric_rack_routes,
            "fabric_control_addresses": fabric_control_addresses,
        }
