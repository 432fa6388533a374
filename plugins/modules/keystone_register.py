#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: keystone_register
short_description: Register a service in Keystone (catalog entry, endpoints, user, roles) in one call
version_added: 0.1.0
description:
  - What vrstack.cloud.keystone's C(register) entry point did in three tasks, as one task
    that each OpenStack role calls. It makes the project O(project); when O(service) is given, the
    service in the catalog and one endpoint per interface in O(region) (an endpoint whose
    URL differs is updated); when O(user) is given, the user in O(domain) with O(roles) in
    O(project).
  - Talks to Keystone's v3 API with plain HTTP from the host's own Python (no openstacksdk,
    no virtualenv needed), with the admin credentials of O(cloud) in O(clouds_yaml), which
    vrstack.cloud.keystone writes. The deployment CA named there (C(cacert)) checks an https
    Keystone.
  - A user's password is checked by logging in as the user, and set again only when that
    fails, so a rotated password in the secrets file is applied and an unchanged one reports
    no change.
  - When O(clouds_yaml) does not exist (check mode before keystone was deployed) the task is
    skipped, as the entry point's C(stat) did.
options:
  cloud:
    description: The admin cloud's name in O(clouds_yaml).
    type: str
    default: vrstack-admin
  clouds_yaml:
    description: The clouds.yaml with the admin credentials.
    type: path
    default: /etc/openstack/clouds.yaml
  region:
    description: The region of the endpoints.
    type: str
    default: RegionOne
  project:
    description: The project of the service users (created when missing).
    type: str
    default: service
  project_description:
    description: The project's description when it is created.
    type: str
    default: Service users of the OpenStack services
  domain:
    description: The domain (id or name) of the project and the user.
    type: str
    default: default
  service:
    description: The catalog entry; omit to manage only the project (and the user).
    type: dict
    suboptions:
      name:
        description: The service's name, for example V(glance).
        type: str
        required: true
      type:
        description: The service's type, for example V(image).
        type: str
        required: true
      description:
        description: A description shown in the catalog.
        type: str
  url:
    description: The URL of every interface (V(public), V(internal), V(admin)) not in O(endpoints).
    type: str
  endpoints:
    description: The service's URL per interface, over O(url).
    type: dict
    default: {}
  user:
    description: The service user's name; omit for a service without a user.
    type: str
  password:
    description: The service user's password (required with O(user)).
    type: str
  roles:
    description: The roles the user has in O(project).
    type: list
    elements: str
    default: [admin, service]
attributes:
  check_mode:
    support: full
    description: Reads Keystone and reports what would be created or changed.
  diff_mode:
    support: full
    description: Shows the endpoints and role assignments before and after.
  platform:
    description: A controller that reaches Keystone and holds the admin clouds.yaml.
    support: full
    platforms: posix
author:
  - vrstack developers (@vrstack)
notes:
  - Run it once (C(run_once)) on the first controller, with C(no_log) since it carries the
    user's password.
"""

EXAMPLES = r"""
- name: Register the image service and its user in keystone
  vrstack.cloud.keystone_register:
    service: {name: glance, type: image, description: OpenStack Image}
    url: https://198.18.1.16:9292
    user: glance
    password: "{{ lookup('vrstack.cloud.secret', 'glance_keystone_password') }}"
  delegate_to: "{{ groups['controller'][0] }}"
  run_once: true
  no_log: true
"""

RETURN = r"""
actions:
  description: What was created or changed, one line each (no secrets).
  returned: always
  type: list
  elements: str
  sample: ["create service glance (image)", "create endpoint glance public https://198.18.1.16:9292"]
service_id:
  description: The catalog entry's id (empty in check mode when it would be created).
  returned: when O(service) is given and O(clouds_yaml) exists
  type: str
  sample: 3f1e0a9b2c4d4e5f8a7b6c5d4e3f2a1b
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.keystone_api import (
    INTERFACES,
    Keystone,
    KeystoneError,
    cloud_settings,
    register,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "cloud": {"type": "str", "default": "vrstack-admin"},
            "clouds_yaml": {"type": "path", "default": "/etc/openstack/clouds.yaml"},
            "region": {"type": "str", "default": "RegionOne"},
            "project": {"type": "str", "default": "service"},
            "project_description": {
                "type": "str",
                "default": "Service users of the OpenStack services",
            },
            "domain": {"type": "str", "default": "default"},
            "service": {
                "type": "dict",
                "options": {
                    "name": {"type": "str", "required": True},
                    "type": {"type": "str", "required": True},
                    "description": {"type": "str"},
                },
            },
            "url": {"type": "str"},
            "endpoints": {"type": "dict", "default": {}},
            "user": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "roles": {"type": "list", "elements": "str", "default": ["admin", "service"]},
        },
        required_by={"user": ("password",), "url": ("service",)},
        supports_check_mode=True,
    )
    p: dict[str, Any] = dict(module.params)
    bad = sorted(set(p["endpoints"]) - set(INTERFACES))
    if bad:
        module.fail_json(msg=f"endpoints: {', '.join(bad)} is not one of {', '.join(INTERFACES)}")
    if p["endpoints"] and not p["service"]:
        module.fail_json(msg="endpoints: needs service")
    if p["url"]:
        p["endpoints"] = {**dict.fromkeys(INTERFACES, p["url"]), **p["endpoints"]}
    if not os.path.exists(p["clouds_yaml"]):
        module.exit_json(
            changed=False,
            skipped=True,
            actions=[],
            msg=f"{p['clouds_yaml']} does not exist yet (keystone not deployed): nothing to ask",
        )
    actions: list[str] = []
    result: dict[str, Any] = {}
    try:
        with open(p["clouds_yaml"], encoding="utf-8") as f:
            try:
                settings = cloud_settings(f.read(), p["cloud"])
            except KeystoneError as exc:
                raise KeystoneError(f"{p['clouds_yaml']}: {exc}") from None
        result = register(Keystone(settings), p, module.check_mode, actions)
    except (KeystoneError, OSError) as exc:
        module.fail_json(msg=f"keystone (cloud {p['cloud']}): {exc}", actions=actions)
    module.exit_json(changed=bool(result["actions"]), **result)


if __name__ == "__main__":
    main()
