# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: fabric
short_description: Inventory of a vrstack site from one fabric file
version_added: 0.1.0
description:
  - Reads one YAML file that describes the fabric of a vrstack site (cluster settings,
    an optional spine, racks with their subnet, gateway and ToR ASN, and hosts with their
    rack and roles), validates it, and computes every address and pairing.
  - Yields a group per role (C(controller), C(database), C(messaging), C(control),
    C(analytics), C(compute)), per rack (C(rack_<name>)), per OS (C(os_debian12),
    C(os_freebsd14)) and C(vrstack) for all hosts.
  - Sets host vars prefixed C(vrstack_) (fabric address, gateway, loopback, ASNs, the two
    control nodes of each compute, route-target, MPLS-label and VNI ranges) and
    C(vrstack_fabric), the whole computed model, which the C(vrstack.cloud.fabric_*) filters use.
  - An optional C(gateway) section describes the edge router the control nodes peer with
    (address, ASN, peers, route target, routed networks); its peers get it in
    C(vrstack_gateway_peers).
  - Multi-rack rules (every rack uplinked to a spine, control nodes in more than one rack,
    distinct ASNs, unique loopbacks, VIPs on a controller rack) are checked with the rest.
  - A file that fails validation stops the run with every problem listed, each naming the
    file, the rack or host, and the field.
  - The file is read as plain YAML; it holds no secrets and does not support vault.
options:
  plugin:
    description: Marks the file as a fabric file for this plugin.
    required: true
    type: str
    choices: [vrstack.cloud.fabric]
requirements:
  - netaddr (on the deploy host)
notes:
  - The file name must end in C(fabric.yml) or C(fabric.yaml).
  - Addresses that are not pinned with C(address) are handed out in file order from each
    rack's subnet after its C(reserved) addresses, so append new hosts at the end of their rack
    (or pin them) to keep existing addresses stable.
"""

EXAMPLES = r"""
# inventories/site/fabric.yml
plugin: vrstack.cloud.fabric
cluster:
  name: site1
  asn: 64512
  ha: true
  loopback_pool: 198.18.255.0/24
  vips: {internal: 198.18.1.10}
spine: {name: spine, asn: 64600, link_pool: 198.18.0.0/24}
gateway: {name: edge1, address: 198.18.254.1, asn: 64700, peers: [ctl1, ctl2], route_target: 9000}
racks:
  rack1: {subnet: 198.18.1.0/24, gateway: 198.18.1.1, tor_asn: 64601, reserved: 15}
  rack2: {subnet: 198.18.2.0/24, gateway: 198.18.2.1, tor_asn: 64602, reserved: 15}
hosts:
  ctl1: {rack: rack1, roles: [controller, database, messaging, control, analytics]}
  ctl2: {rack: rack2, roles: [control]}
  cmp1: {rack: rack1, roles: [compute]}
  cmp2: {rack: rack2, roles: [compute], address: 198.18.2.40}
vars:
  ansible_user: root
"""

import os

import yaml
from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

from ansible_collections.vrstack.cloud.plugins.plugin_utils.fabric import (
    FabricError,
    build_model,
    gateway_host_vars,
    groups,
    host_vars,
)


def _display_path(path: str) -> str:
    """The path relative to the working directory when it is below it, else as given."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class InventoryModule(BaseInventoryPlugin):
    NAME = "vrstack.cloud.fabric"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("fabric.yml", "fabric.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError) as exc:
            raise AnsibleParserError(f"{path}: cannot read the fabric file: {exc}") from exc
        if not isinstance(data, dict) or data.get("plugin") != self.NAME:
            raise AnsibleParserError(f"{path}: field 'plugin' must be {self.NAME}")
        try:
            model = build_model(data, source=_display_path(path))
        except FabricError as exc:
            raise AnsibleParserError(f"fabric file is not valid:\n{exc}") from exc

        for group, members in groups(model).items():
            self.inventory.add_group(group)
            for host in members:
                self.inventory.add_host(host, group=group)
        for host in model["hosts"]:
            for key, value in host_vars(model, host).items():
                self.inventory.set_variable(host, key, value)
        for host in groups(model)["gateway"]:
            for key, value in gateway_host_vars(model).items():
                self.inventory.set_variable(host, key, value)
        self.inventory.set_variable("all", "vrstack_fabric", model)
        for key, value in (data.get("vars") or {}).items():
            self.inventory.set_variable("all", key, value)
