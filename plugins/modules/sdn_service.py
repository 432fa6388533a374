#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: sdn_service
short_description: Run one vrstack daemon as a system service (systemd unit or rc.d script)
version_added: 0.1.0
description:
  - Writes the daemon's hardened systemd unit (Debian) or an rc.d script that runs it under
    daemon(8) with a pidfile (FreeBSD), reloads systemd when the unit changed, enables the
    service at boot and starts it. The unit text is rendered by this module only.
  - One task where vrstack.cloud.sdn_package's C(tasks_from=service) cost five; that entry
    point calls this module. Notify the service's restart handler from the task (it reports
    C(changed) when the unit or script changed).
  - A start that fails reports the service manager's status and the last log lines.
options:
  name:
    description: The console script in O(venv) and the service's name (vrstack-api, ...).
    type: str
    required: true
  description:
    description: One line describing it.
    type: str
    required: true
  config:
    description: Its config file.
    type: path
    required: true
  user:
    description: The user it runs as.
    type: str
    required: true
  group:
    description: Its group.
    type: str
    required: true
  venv:
    description: The virtualenv holding the console script.
    type: path
    default: /opt/vrstack/venv
  supplementary_groups:
    description: Further groups (for example the datapath's socket group).
    type: list
    elements: str
    default: []
  capabilities:
    description: Linux capabilities it keeps (for example CAP_NET_BIND_SERVICE).
    type: list
    elements: str
    default: []
  read_write_paths:
    description: Paths it may write (everything else is read-only to it); a leading C(-) marks one that may be missing (systemd).
    type: list
    elements: str
    default: []
  netlink:
    description: Allow AF_NETLINK sockets (the kernel datapath).
    type: bool
    default: false
  after:
    description: Units it starts after.
    type: list
    elements: str
    default: []
  part_of:
    description: Units whose restart restarts it too.
    type: list
    elements: str
    default: []
  wants:
    description: Units it pulls in.
    type: list
    elements: str
    default: []
  rc_require:
    description: rc.d services it starts after (FreeBSD).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description:
      - Reports the unit it would write and whether it would enable or start the service.
      - A unit it would write is neither enabled nor started; the fact
        C(__sdn_service_new_<name with _ for ->) marks it so that the service roles'
        restart handlers skip it.
  diff_mode:
    support: full
    description: The unit or rc.d script before and after.
  platform:
    description: Debian (systemd) and FreeBSD (rc.d, sysrc) hosts.
    support: full
    platforms: posix
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Run the services
  vrstack.cloud.sdn_service:
    name: "{{ item }}"
    description: vrstack SDN config API
    config: /etc/vrstack/api.yaml
    user: vrstack
    group: vrstack
    read_write_paths: [/var/lib/vrstack]
  loop: [vrstack-api]
  notify: "{{ item }} changed"
"""

RETURN = r"""
path:
  description: The unit or rc.d script written.
  returned: success
  type: str
  sample: /etc/systemd/system/vrstack-api.service
unit_changed:
  description: The unit or script was (or in check mode would be) written.
  returned: success
  type: bool
enabled_changed:
  description: The service was (or would be) enabled at boot.
  returned: success
  type: bool
started:
  description: The service was not running and was (or would be) started.
  returned: success
  type: bool
"""

import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_service import (
    SdnServiceError,
    ensure,
)

LISTS = (
    "supplementary_groups",
    "capabilities",
    "read_write_paths",
    "after",
    "part_of",
    "wants",
    "rc_require",
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "description": {"type": "str", "required": True},
            "config": {"type": "path", "required": True},
            "user": {"type": "str", "required": True},
            "group": {"type": "str", "required": True},
            "venv": {"type": "path", "default": "/opt/vrstack/venv"},
            "netlink": {"type": "bool", "default": False},
            **{key: {"type": "list", "elements": "str", "default": []} for key in LISTS},
        },
        supports_check_mode=True,
    )
    p = module.params

    def run(cmd: list[str]) -> tuple[int, str, str]:
        return module.run_command([module.get_bin_path(cmd[0], required=True), *cmd[1:]])

    finish(
        module,
        f"sdn_service {p['name']}",
        lambda: ensure(
            p,
            venv=p["venv"],
            freebsd=platform.system() == "FreeBSD",
            check_mode=module.check_mode,
            run=run,
        ),
        SdnServiceError,
    )


if __name__ == "__main__":
    main()
