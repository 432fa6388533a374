#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: sdn_status
short_description: Report every vrstack service on a node and its datapath, like contrail-status
version_added: 0.1.0
description:
  - Lists the vrstack services installed on the node (C(vrstack-api), C(vrstack-schema),
    C(vrstack-control), C(vrstack-collector), C(vrouterd), C(vrouter-vhost0),
    C(vrstack-agent)) with their state, and whether the datapath is the kernel module or
    the userspace C(vrouterd).
  - A service is V(active) when its unit runs and its C(/health) answers ok, V(backup)
    when its C(/health) says it stands by, V(initializing) with a reason when it runs but
    is not healthy yet, V(inactive) with a reason when its unit is not running.
  - Runs C(vrstack-status --json) from the node's vrstack package, the same code that
    prints the status for a person; fails when it is not installed.
  - Never changes anything and does not fail because a service is down (see RV(ok)).
options:
  command:
    description: The C(vrstack-status) program on the node.
    type: path
    default: /opt/vrstack/venv/bin/vrstack-status
  timeout:
    description: Seconds to wait for each service's C(/health).
    type: int
    default: 3
extends_documentation_fragment:
  - vrstack.cloud.read_only
attributes:
  platform:
    description: Debian (systemd) and FreeBSD (rc.d) nodes with the vrstack package.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Read the node's SDN services
  vrstack.cloud.sdn_status:
  register: sdn

- name: Every service is active
  ansible.builtin.assert:
    that: sdn.ok
    fail_msg: "{{ inventory_hostname }}: not active: {{ sdn.not_active | join(', ') }}"
"""

RETURN = r"""
node:
  description: The node's host name.
  returned: always
  type: str
  sample: lab-cmp1
ok:
  description: Every installed service is active or backup.
  returned: always
  type: bool
not_active:
  description: The services that are neither active nor backup.
  returned: always
  type: list
  elements: str
  sample: [vrstack-agent]
datapath:
  description: V(kernel) (module loaded), V(user) (vrouterd) or V(none), with a detail.
  returned: always
  type: dict
  sample: {"mode": "user", "detail": "userspace vrouterd running"}
services:
  description: One per installed service.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The service.
      type: str
      sample: vrstack-agent
    role:
      description: The inventory role that runs it.
      type: str
      sample: compute
    state:
      description: V(active), V(backup), V(initializing) or V(inactive).
      type: str
    reason:
      description: Why it is not active.
      type: str
      sample: no control node session up
    health:
      description: The /health URL asked.
      type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_status import (
    DEFAULT_COMMAND,
    StatusError,
    node_status,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "command": {"type": "path", "default": DEFAULT_COMMAND},
            "timeout": {"type": "int", "default": 3},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p["timeout"] <= 60:
        module.fail_json(msg="sdn_status: timeout: between 1 and 60 seconds")
    finish(
        module,
        "sdn_status",
        lambda: node_status(module.run_command, p["command"], p["timeout"], os.path.exists),
        StatusError,
        read_only=True,
    )


if __name__ == "__main__":
    main()
