#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: keystone_service
short_description: A project, a service's catalog entry and endpoints, and its user in Keystone
version_added: 0.1.0
description:
  - Makes Keystone hold what an OpenStack service needs, with one connection and only the
    requests that are needed. The project O(project); when O(service) is given, the service
    in the catalog and one endpoint per interface of O(endpoints) in O(region) (an endpoint
    whose URL differs is updated); when O(user) is given, the user in the default domain
    with O(roles) in O(project).
  - A user's password is checked by authenticating as the user, and set again only when
    that fails, so a rotated password in the secrets file is applied and an unchanged one
    reports no change.
  - Runs where C(openstacksdk) is installed (the OpenStack venv's python) and reads the
    admin credentials from O(cloud) in C(clouds.yaml).
options:
  cloud:
    description: The admin cloud's name in C(clouds.yaml).
    type: str
    required: true
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
    description: The domain of the project and the user.
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
  endpoints:
    description: The service's URL per interface (V(public), V(internal), V(admin)).
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
    description: Shows the catalog entries, endpoints and role assignments before and after.
  platform:
    description: A controller with the OpenStack venv.
    support: full
    platforms: posix
author:
  - vrstack developers (@vrstack)
requirements:
  - openstacksdk
notes:
  - The openstack.cloud collection 2.5.0 cannot run with openstacksdk 4.x, which the
    pinned OpenStack release needs; this module uses the SDK directly.
"""

EXAMPLES = r"""
- name: Register glance
  vrstack.cloud.keystone_service:
    cloud: vrstack-admin
    service: {name: glance, type: image, description: OpenStack Image}
    endpoints:
      public: https://198.18.1.16:9292
      internal: https://198.18.1.16:9292
      admin: https://198.18.1.16:9292
    user: glance
    password: "{{ lookup('vrstack.cloud.secret', 'glance_keystone_password') }}"
  vars:
    ansible_python_interpreter: /opt/openstack/venv/bin/python
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
  returned: when O(service) is given
  type: str
"""

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import openstack
    from keystoneauth1 import exceptions as ks_exceptions
    from openstack import exceptions as os_exceptions
except ImportError:
    SDK_ERROR: str | None = traceback.format_exc()
else:
    SDK_ERROR = None

INTERFACES = ("public", "internal", "admin")


def ensure_project(conn: Any, module: AnsibleModule, domain_id: str, actions: list[str]) -> Any:
    p = module.params
    project = conn.identity.find_project(p["project"], domain_id=domain_id)
    if project is None:
        actions.append(f"create project {p['project']}")
        if not module.check_mode:
            project = conn.identity.create_project(
                name=p["project"], domain_id=domain_id, description=p["project_description"]
            )
    return project


def ensure_service(
    conn: Any, module: AnsibleModule, actions: list[str], diff: dict[str, Any]
) -> str:
    p = module.params
    want = p["service"]
    found = [s for s in conn.identity.services() if s.name == want["name"]]
    if len(found) > 1:
        module.fail_json(
            msg=f"keystone has {len(found)} services named {want['name']}; remove the extra ones"
        )
    service = found[0] if found else None
    if service is not None and service.type != want["type"]:
        module.fail_json(
            msg=f"keystone service {want['name']} has type {service.type}, the role asks for {want['type']}"
        )
    if service is None:
        actions.append(f"create service {want['name']} ({want['type']})")
        if module.check_mode:
            return ""
        service = conn.identity.create_service(
            name=want["name"],
            type=want["type"],
            description=want.get("description") or want["name"],
        )
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for ep in conn.identity.endpoints(service_id=service.id):
        if ep.region_id != p["region"] or ep.interface not in p["endpoints"]:
            continue
        before[ep.interface] = ep.url
        url = p["endpoints"][ep.interface]
        after[ep.interface] = url
        if ep.url != url:
            actions.append(f"update endpoint {want['name']} {ep.interface} {ep.url} -> {url}")
            if not module.check_mode:
                conn.identity.update_endpoint(ep, url=url)
    for interface, url in p["endpoints"].items():
        if interface in after:
            continue
        after[interface] = url
        actions.append(f"create endpoint {want['name']} {interface} {url}")
        if not module.check_mode:
            conn.identity.create_endpoint(
                service_id=service.id, interface=interface, url=url, region_id=p["region"]
            )
    diff["before"]["endpoints"], diff["after"]["endpoints"] = before, after
    return str(service.id)


def password_works(conn: Any, module: AnsibleModule, domain_id: str) -> bool:
    p = module.params
    auth = conn.config.get_auth_args()
    try:
        check = openstack.connect(
            auth_url=auth["auth_url"],
            username=p["user"],
            password=p["password"],
            user_domain_id=domain_id,
            project_name=p["project"],
            project_domain_id=domain_id,
            region_name=p["region"],
            verify=conn.config.config.get("verify", True),
            # The admin cloud's CA (clouds.yaml's cacert): an https Keystone is checked with it.
            cacert=conn.config.config.get("cacert"),
            # Only these credentials: not merged with clouds.yaml's or OS_* settings.
            load_yaml_config=False,
            load_envvars=False,
        )
        check.authorize()
    except os_exceptions.SDKException as e:
        # The SDK wraps keystoneauth's 401 without a status code of its own.
        if isinstance(e.__context__, ks_exceptions.Unauthorized):
            return False
        raise
    return True


def ensure_user(
    conn: Any,
    module: AnsibleModule,
    domain_id: str,
    project: Any,
    actions: list[str],
    diff: dict[str, Any],
) -> None:
    p = module.params
    user = conn.identity.find_user(p["user"], domain_id=domain_id)
    if user is None:
        actions.append(f"create user {p['user']}")
        if module.check_mode:
            diff["after"]["roles"] = sorted(p["roles"])
            return
        user = conn.identity.create_user(
            name=p["user"],
            domain_id=domain_id,
            password=p["password"],
            default_project_id=project.id if project is not None else None,
        )
    elif project is not None and not password_works(conn, module, domain_id):
        actions.append(f"set password of user {p['user']}")
        if not module.check_mode:
            conn.identity.update_user(user, password=p["password"])
    have: set[str] = set()
    if project is not None:
        for a in conn.identity.role_assignments(
            user_id=user.id, scope_project_id=project.id, include_names=True
        ):
            have.add(a.role["name"])
    diff["before"]["roles"] = sorted(have)
    diff["after"]["roles"] = sorted(have | set(p["roles"]))
    for name in sorted(set(p["roles"]) - have):
        role = conn.identity.find_role(name)
        if role is None:
            module.fail_json(msg=f"keystone has no role {name} (field roles of user {p['user']})")
        actions.append(f"give user {p['user']} role {name} in project {p['project']}")
        if not module.check_mode:
            conn.identity.assign_project_role_to_user(project, user, role)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "cloud": {"type": "str", "required": True},
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
            "endpoints": {"type": "dict", "default": {}},
            "user": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "roles": {"type": "list", "elements": "str", "default": ["admin", "service"]},
        },
        required_by={"user": ("password",)},
        supports_check_mode=True,
    )
    if SDK_ERROR is not None:
        module.fail_json(msg=missing_required_lib("openstacksdk"), exception=SDK_ERROR)
    p = module.params
    bad = sorted(set(p["endpoints"]) - set(INTERFACES))
    if bad:
        module.fail_json(msg=f"endpoints: {', '.join(bad)} is not one of {', '.join(INTERFACES)}")
    if p["endpoints"] and not p["service"]:
        module.fail_json(msg="endpoints: needs service")
    actions: list[str] = []
    diff: dict[str, Any] = {"before": {}, "after": {}}
    result: dict[str, Any] = {}
    try:
        conn = openstack.connect(cloud=p["cloud"], region_name=p["region"])
        domain = conn.identity.find_domain(p["domain"], ignore_missing=False)
        project = ensure_project(conn, module, domain.id, actions)
        if p["service"]:
            result["service_id"] = ensure_service(conn, module, actions, diff)
        if p["user"]:
            ensure_user(conn, module, domain.id, project, actions, diff)
    except os_exceptions.SDKException as e:
        module.fail_json(msg=f"keystone (cloud {p['cloud']}): {e}", actions=actions)
    module.exit_json(changed=bool(actions), actions=actions, diff=diff, **result)


if __name__ == "__main__":
    main()
