#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: pki_service
short_description: Let a server's user read the node key and return node.crt's checksum
version_added: 0.1.0
description:
  - For a server that presents the node certificate vrstack.cloud.pki installed (MariaDB,
    RabbitMQ, the OpenStack APIs) - one call instead of vrstack.cloud.pki's
    C(tasks_from=service).
  - Reads the sha256 checksum of O(dir)/node.crt. The caller writes it into the service's
    configuration, so a renewed certificate changes the configuration and restarts the
    service.
  - Adds O(user) to O(group) (node.key is 0640 root:O(group)) when the host has both and the
    user is not a member yet (its primary group counts). A running service sees the group at
    its next start.
  - Fails when node.crt or the group is missing, except in check mode (on a fresh host
    vrstack.cloud.pki only said it would install them).
options:
  user:
    description: The server's Unix user (for example mysql or rabbitmq). A user the host does not have is not created.
    type: str
    required: true
  group:
    description: The group that may read node.key (vrstack.cloud.pki's pki_group).
    type: str
    required: true
  dir:
    description: The directory with node.crt (vrstack.cloud.pki's pki_dir), absolute.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Reports the user it would add; does not fail on a missing certificate or group.
  diff_mode:
    support: full
    description: The group's members before and after.
  platform:
    description: Debian (usermod) and FreeBSD (pw) hosts.
    support: full
    platforms: posix
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Let MariaDB read the node certificate and key
  vrstack.cloud.pki_service:
    user: mysql
    group: vrstack
    dir: /etc/vrstack/pki
  register: pki_service_cert

- name: Name the certificate's checksum in the config (a new certificate restarts the server)
  ansible.builtin.template:
    src: server.cnf.j2
    dest: /etc/mysql/conf.d/vrstack.cnf
    mode: "0644"
"""

RETURN = r"""
stat:
  description: node.crt as ansible.builtin.stat names it (exists, path, checksum when it exists, sha256).
  returned: always
  type: dict
  sample: {exists: true, path: /etc/vrstack/pki/node.crt, checksum: 3f1c...}
group_exists:
  description: Whether the host has O(group).
  returned: always
  type: bool
user_exists:
  description: Whether the host has O(user).
  returned: always
  type: bool
members:
  description: The group's members after the call (sorted; in check mode as they would be).
  returned: always
  type: list
  elements: str
  sample: [mysql, vrstack-agent]
"""

import grp
import platform
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.pki_service import (
    PkiServiceError,
    ensure,
)
from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish


def get_group(name: str) -> tuple[int, list[str]] | None:
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        return None
    return entry.gr_gid, list(entry.gr_mem)


def get_user(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_gid
    except KeyError:
        return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "user": {"type": "str", "required": True},
            "group": {"type": "str", "required": True},
            "dir": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params

    def run(cmd: list[str]) -> tuple[int, str, str]:
        return module.run_command([module.get_bin_path(cmd[0], required=True), *cmd[1:]])

    finish(
        module,
        "pki_service",
        lambda: ensure(
            user=p["user"],
            group=p["group"],
            pki_dir=p["dir"],
            system=platform.system(),
            check_mode=module.check_mode,
            get_group=get_group,
            get_user=get_user,
            run=run,
        ),
        PkiServiceError,
    )


if __name__ == "__main__":
    main()
