#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: sdn_resource
short_description: Create, update or delete one object in the vrstack config API
version_added: 0.1.0
description:
  - Finds the object of O(type) named O(name) (under O(parent_uuid) when given) in the
    vrstack config API (C(vrstack-api)) and makes it match O(fields).
  - Creates it when missing; when present, compares only the fields given and updates
    the object only when one of them differs, with C(If-Match) on its version (read
    again and retried when another client wrote in between); O(state=absent) deletes it.
  - Fails, naming the field, when the API refuses the object (4xx), and when the API
    stores a value in another form than the one given (which would otherwise report a
    change on every run).
options:
  url:
    description: The config API's base URL.
    type: str
    required: true
  token:
    description: An admin token of the config API.
    type: str
    required: true
  type:
    description: The resource type, for example V(global-config), V(bgp-router), V(virtual-router).
    type: str
    required: true
  name:
    description: The object's name (unique per type and parent).
    type: str
    required: true
  parent_uuid:
    description: The parent object's UUID, for types that have a parent (V(virtual-network) under a V(project)).
    type: str
  fields:
    description: The object's fields to manage; fields not given are left as they are.
    type: dict
    default: {}
  state:
    description: Whether the object should exist.
    type: str
    choices: [present, absent]
    default: present
  timeout:
    description: Seconds to wait for each HTTP request.
    type: int
    default: 10
extends_documentation_fragment:
  - vrstack.cloud.api_tls
attributes:
  check_mode:
    support: full
    description: Reads the object and reports what would be created, updated or deleted.
  diff_mode:
    support: full
    description: Shows the managed fields before and after.
  platform:
    description: Any host that reaches the API.
    support: full
    platforms: posix
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Set the global config from the fabric
  vrstack.cloud.sdn_resource:
    url: https://198.18.1.16:8082
    ca_path: /etc/vrstack/pki/ca.crt
    token: "{{ lookup('vrstack.cloud.secret', 'sdn_api_admin_token') }}"
    type: global-config
    name: default
    fields:
      asn: 64512
      encapsulation_priority: [MPLSoUDP, MPLSoGRE, VXLAN]
  no_log: true

- name: Register a compute
  vrstack.cloud.sdn_resource:
    url: https://198.18.1.16:8082
    ca_path: /etc/vrstack/pki/ca.crt
    token: "{{ sdn_token }}"
    type: virtual-router
    name: lab-cmp1
    fields:
      fabric_address: 198.18.1.17
      datapath: user

- name: Forget a control node
  vrstack.cloud.sdn_resource:
    url: https://198.18.1.16:8082
    ca_path: /etc/vrstack/pki/ca.crt
    token: "{{ sdn_token }}"
    type: bgp-router
    name: lab-ctl3
    state: absent
"""

RETURN = r"""
action:
  description: What was done (or would be in check mode).
  returned: always
  type: str
  choices: [none, create, update, delete]
  sample: update
uuid:
  description: The object's UUID; null when it does not exist (yet).
  returned: always
  type: str
object:
  description: The object as the API returned it after the change (or as found).
  returned: when the object exists
  type: dict
changed_fields:
  description: The fields that differed from O(fields).
  returned: always
  type: list
  elements: str
  sample: [asn]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_api import (
    Api,
    ApiError,
    Request,
    open_url_sender,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "token": {"type": "str", "required": True, "no_log": True},
            "type": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "parent_uuid": {"type": "str"},
            "fields": {"type": "dict", "default": {}},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "timeout": {"type": "int", "default": 10},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    api = Api(
        open_url_sender(p["url"], p["token"], p["timeout"], p["validate_certs"], p["ca_path"])
    )
    req = Request(
        rtype=p["type"],
        name=p["name"],
        fields=p["fields"],
        state=p["state"],
        parent_uuid=p["parent_uuid"],
        check_mode=module.check_mode,
    )
    finish(
        module,
        f"sdn_resource: {p['type']} {p['name']}",
        lambda: api.ensure(req).as_dict(),
        ApiError,
        fail_keys={"field": "field_name"},
    )


if __name__ == "__main__":
    main()
