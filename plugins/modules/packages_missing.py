#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: packages_missing
short_description: Tell which of the named OS packages are not installed
version_added: 0.1.0
description:
  - Asks the host's package database about the named packages only
    (C(dpkg-query) on Debian, C(pkg info -e) on FreeBSD) and returns those that are
    not installed, so a role installs only what is missing and needs no package
    source when nothing is.
  - Unlike M(ansible.builtin.package_facts) it sets no facts; register its result.
    A name the database does not know (a typo, a virtual package) counts as missing.
  - On FreeBSD before C(pkg) itself is installed, every package is missing (the
    bootstrap stub is not run).
  - Never changes anything.
options:
  names:
    description: The package names (Debian or FreeBSD package names, without versions).
    type: list
    elements: str
    required: true
  manager:
    description:
      - The package database to ask. V(auto) picks V(pkg) on FreeBSD and V(dpkg) elsewhere.
    type: str
    choices: [auto, dpkg, pkg]
    default: auto
extends_documentation_fragment:
  - vrstack.cloud.read_only
attributes:
  platform:
    description: Debian (dpkg) and FreeBSD (pkg) hosts.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Find the packages that are not installed
  vrstack.cloud.packages_missing:
    names: [python3-venv, python3-packaging]
  register: venv_packages

- name: Install the missing packages
  ansible.builtin.apt:
    name: "{{ venv_packages.missing }}"
    state: present
    update_cache: true
  when: venv_packages.missing | length > 0
"""

RETURN = r"""
missing:
  description: The names that are not installed, in the order given, each once.
  returned: always
  type: list
  elements: str
  sample: [python3-venv]
installed:
  description: The names that are installed, in the order given, each once.
  returned: always
  type: list
  elements: str
  sample: [python3-packaging]
manager:
  description: The package database asked, V(dpkg) or V(pkg).
  returned: always
  type: str
  sample: dpkg
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.packages import (
    PackagesError,
    manager_for,
    missing_packages,
)
from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "names": {"type": "list", "elements": "str", "required": True},
            "manager": {"type": "str", "choices": ["auto", "dpkg", "pkg"], "default": "auto"},
        },
        supports_check_mode=True,
    )
    p = module.params
    manager = manager_for(platform.system()) if p["manager"] == "auto" else p["manager"]
    finish(
        module,
        "packages_missing",
        lambda: missing_packages(module.run_command, p["names"], manager, os.path.exists),
        PackagesError,
        read_only=True,
    )


if __name__ == "__main__":
    main()
