#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: openstack_info
short_description: Read what the verify and discover steps ask of the OpenStack APIs, in one call
version_added: 0.1.0
description:
  - Lists, with one connection and the admin cloud O(cloud) of C(clouds.yaml), the OpenStack
    objects named in O(gather), as plain dictionaries with the fields the checks use.
  - Fails naming the API that did not answer.
  - Runs where C(openstacksdk) is installed (the OpenStack venv's python).
  - With O(transport=http) (the default), C(compute_services), C(hypervisors) and
    C(resource_providers) are read over plain HTTP (one Keystone token request, whose answer
    carries the catalog, and one GET a list) without importing openstacksdk; a O(gather) with
    anything else uses openstacksdk.
options:
  cloud:
    description: The admin cloud's name in C(clouds.yaml).
    type: str
    required: true
  region:
    description: The region to ask.
    type: str
    default: RegionOne
  gather:
    description: What to list.
    type: list
    elements: str
    required: true
    choices: [compute_services, hypervisors, images, resource_providers, networks]
  transport:
    description:
      - V(http) reads C(compute_services), C(hypervisors) and C(resource_providers) over plain HTTP;
        V(sdk) reads everything with openstacksdk.
    type: str
    choices: [http, sdk]
    default: http
  clouds_yaml:
    description:
      - The C(clouds.yaml) of O(cloud) for O(transport=http); by default the first of
        C($OS_CLIENT_CONFIG_FILE), C(./clouds.yaml), C(~/.config/openstack/clouds.yaml) and
        C(/etc/openstack/clouds.yaml), as openstacksdk looks.
    type: path
extends_documentation_fragment:
  - vrstack.cloud.read_only
attributes:
  platform:
    description: A controller with the OpenStack venv.
author:
  - vrstack developers (@vrstack)
requirements:
  - openstacksdk
"""

EXAMPLES = r"""
- name: Read the compute services and hypervisors
  vrstack.cloud.openstack_info:
    cloud: vrstack-admin
    gather: [compute_services, hypervisors]
  vars:
    ansible_python_interpreter: /opt/openstack/venv/bin/python
  register: nova_state
"""

RETURN = r"""
compute_services:
  description: Nova's services.
  returned: when asked
  type: list
  elements: dict
  sample: [{binary: nova-compute, host: lab-cmp1, state: up, status: enabled}]
hypervisors:
  description: Nova's hypervisors.
  returned: when asked
  type: list
  elements: dict
  sample: [{name: lab-cmp1, state: up, status: enabled, type: QEMU}]
images:
  description: Glance's images the admin sees.
  returned: when asked
  type: list
  elements: dict
  sample: [{id: 0d2c..., name: vrstack-guest, status: active}]
resource_providers:
  description: Placement's resource providers.
  returned: when asked
  type: list
  elements: dict
  sample: [{id: 5f1e..., name: lab-cmp1}]
networks:
  description: Neutron's networks the admin sees.
  returned: when asked
  type: list
  elements: dict
  sample: [{id: 7a9b..., name: smoke-red, status: ACTIVE}]
"""

import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vrstack.cloud.plugins.module_utils import openstack_read

# What to list and which fields to keep, per entry of `gather`.
READERS: dict[str, tuple[str, Callable[[Any], Any], dict[str, str]]] = {
    "compute_services": (
        "compute",
        lambda c: c.compute.services(),
        {"binary": "binary", "host": "host", "state": "state", "status": "status"},
    ),
    "hypervisors": (
        "compute",
        lambda c: c.compute.hypervisors(details=True),
        {"name": "name", "state": "state", "status": "status", "type": "hypervisor_type"},
    ),
    "images": (
        "image",
        lambda c: c.image.images(),
        {"id": "id", "name": "name", "status": "status"},
    ),
    "resource_providers": (
        "placement",
        lambda c: c.placement.resource_providers(),
        {"id": "id", "name": "name"},
    ),
    "networks": (
        "network",
        lambda c: c.network.networks(),
        {"id": "id", "name": "name", "status": "status"},
    ),
}


def read_sdk(module: AnsibleModule) -> dict[str, Any]:
    # Imported only here: the import alone takes about 0.8 s.
    try:
        import openstack
        from openstack import exceptions as os_exceptions
    except ImportError:
        module.fail_json(msg=missing_required_lib("openstacksdk"), exception=traceback.format_exc())
    p = module.params
    result: dict[str, Any] = {}
    service = ""
    try:
        conn = openstack.connect(cloud=p["cloud"], region_name=p["region"])
        for what in p["gather"]:
            service, read, fields = READERS[what]
            result[what] = [
                {k: getattr(obj, attr) for k, attr in fields.items()} for obj in read(conn)
            ]
    except (os_exceptions.SDKException, OSError) as e:
        where = f"the {service} API" if service else "keystone"
        module.fail_json(msg=f"{where} (cloud {p['cloud']}): {e}", **result)
    return result


def read_http(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    try:
        path = openstack_read.clouds_yaml_path(p["clouds_yaml"])
        with open(path, encoding="utf-8") as clouds:
            text = clouds.read()
        return openstack_read.read(text, p["cloud"], p["region"], p["gather"])
    except openstack_read.ReadError as e:
        module.fail_json(msg=f"{e.where} (cloud {p['cloud']}): {e}")
    except OSError as e:
        module.fail_json(msg=f"keystone (cloud {p['cloud']}): {e}")
    return {}  # not reached: fail_json exits


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "cloud": {"type": "str", "required": True},
            "region": {"type": "str", "default": "RegionOne"},
            "gather": {
                "type": "list",
                "elements": "str",
                "required": True,
                "choices": list(READERS),
            },
            "transport": {"type": "str", "choices": ["http", "sdk"], "default": "http"},
            "clouds_yaml": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    http = p["transport"] == "http" and set(p["gather"]) <= set(openstack_read.READERS)
    result = read_http(module) if http else read_sdk(module)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
