#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: mariadb_database
short_description: A MariaDB database and a user with all privileges on it, in one call
version_added: 0.1.0
description:
  - Runs on a database node (the callers use C(delegate_to) the first one and C(run_once);
    Galera replicates the result) as root over the unix socket, which authenticates root by
    its Unix identity, so no root password is passed.
  - Creates the database and the user C(USER@HOST) with the password, resets a different
    password, makes the user REQUIRE SSL (O(tls)) or REQUIRE NONE, and grants ALL PRIVILEGES
    on the database. One SQL block reads first and changes only what differs.
  - One task where vrstack.cloud.mariadb's C(tasks_from=database) cost four; that entry point
    calls this module.
options:
  name:
    description: The database name; must match C(^[a-z][a-z0-9_]{0,63}$).
    type: str
    required: true
  user:
    description: The user name; must match C(^[a-z][a-z0-9_]{0,63}$).
    type: str
    required: true
  password:
    description: The user's password (never logged).
    type: str
    required: true
  host:
    description: The host part of the user (V(%) is any address).
    type: str
    default: "%"
  tls:
    description: The user must log in over TLS (REQUIRE SSL); V(false) sets REQUIRE NONE.
    type: bool
    required: true
  socket:
    description:
      - The server's socket, looked for in check mode only (before a first install there is
        no server to ask). The default is the OS's - V(/run/mysqld/mysqld.sock) on Debian,
        V(/var/run/mysql/mysql.sock) on FreeBSD.
    type: path
attributes:
  check_mode:
    support: full
    description: Runs the SQL's reads only and reports what it would do; without a server yet, reports all of it.
  diff_mode:
    support: none
    description: The password must not be shown; RV(what) names what changed.
  platform:
    description: Debian and FreeBSD database nodes with the C(mysql) client.
    support: full
    platforms: posix
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Create keystone's database and its user
  vrstack.cloud.mariadb_database:
    name: keystone
    user: keystone
    password: "{{ lookup('vrstack.cloud.secret', 'keystone_db_password') }}"
    tls: true
  delegate_to: "{{ groups['database'] | first }}"
  run_once: true
  no_log: true
"""

RETURN = r"""
what:
  description: What was (or in check mode would be) done - some of database, user, password, tls, privileges.
  returned: always
  type: list
  elements: str
  sample: [user, privileges]
msg:
  description: The database's name and C(ok) or what changed.
  returned: always
  type: str
  sample: "keystone: changed: user privileges"
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.mariadb_database import (
    MariadbDatabaseError,
    ensure,
    socket_for,
)
from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "user": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "host": {"type": "str", "default": "%"},
            "tls": {"type": "bool", "required": True},
            "socket": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params

    def run(cmd: list[str], sql: str) -> tuple[int, str, str]:
        argv = [module.get_bin_path(cmd[0], required=True), *cmd[1:]]
        return module.run_command(argv, data=sql)

    finish(
        module,
        "mariadb_database",
        lambda: ensure(
            name=p["name"],
            user=p["user"],
            password=p["password"],
            host=p["host"],
            tls=p["tls"],
            check_mode=module.check_mode,
            socket_exists=os.path.exists(p["socket"] or socket_for(platform.system())),
            run=run,
        ),
        MariadbDatabaseError,
    )


if __name__ == "__main__":
    main()
