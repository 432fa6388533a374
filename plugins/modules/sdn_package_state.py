#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: sdn_package_state
short_description: Tell whether a virtualenv already has this run's vrstack wheel, with nothing else to do
version_added: 0.1.0
description:
  - Asks, in one call, what each install step of vrstack.cloud.sdn_package checks - the OS
    packages the virtualenv needs, the wheel directory (root's, 0755), the wheel copy (same
    SHA-256 as O(checksum), root's, 0644), no wheels of older sources beside it, the
    virtualenv, the installed C(.dist-info) - and returns RV(current) true only when every
    step would find its work done. The role runs its install steps only when it is false.
  - With O(note), returns the fact C(__sdn_package_found) (O(note) plus this virtualenv)
    when current; the role reads it with its own note of the virtualenvs it installed into
    (a fact of its own, since a module's fact would not override a set_fact).
  - Never changes anything.
options:
  venv:
    description: The virtualenv.
    type: path
    required: true
  wheel_dir:
    description: Where the role copies the wheel on the host.
    type: path
    required: true
  filename:
    description: This run's wheel file name.
    type: str
    required: true
  checksum:
    description: SHA-256 of this run's wheel (vrstack.cloud.sdn_wheel returns it).
    type: str
    required: true
  dist_info:
    description: The C(.dist-info) directory the wheel installs.
    type: str
    required: true
  packages:
    description: OS packages the virtualenv needs.
    type: list
    elements: str
    default: []
  note:
    description: The virtualenvs found current earlier in the run; returned with this one added when current.
    type: list
    elements: dict
extends_documentation_fragment:
  - vrstack.cloud.read_only
attributes:
  platform:
    description: Debian (dpkg) and FreeBSD (pkg) hosts.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Check whether the virtualenv already has this run's package
  vrstack.cloud.sdn_package_state:
    venv: /opt/vrstack/venv
    wheel_dir: /opt/vrstack/wheels
    filename: "{{ wheel.filename }}"
    checksum: "{{ wheel.sha256 }}"
    dist_info: "{{ wheel.dist_info }}"
    packages: [python3-venv]
  register: state
"""

RETURN = r"""
current:
  description: Every install step would find its work done.
  returned: success
  type: bool
reasons:
  description: What the install steps would change, when not current.
  returned: success
  type: list
  elements: str
  sample: ["/opt/vrstack/wheels/vrstack-0.1.0+src1a2b3c4d5e6f-py3-none-any.whl is not there"]
"""

import os
import platform
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.packages import manager_for
from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_package_state import (
    SdnPackageStateError,
    probe,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "venv": {"type": "path", "required": True},
            "wheel_dir": {"type": "path", "required": True},
            "filename": {"type": "str", "required": True},
            "checksum": {"type": "str", "required": True},
            "dist_info": {"type": "str", "required": True},
            "packages": {"type": "list", "elements": "str", "default": []},
            "note": {"type": "list", "elements": "dict"},
        },
        supports_check_mode=True,
    )
    p = module.params

    def work() -> dict[str, Any]:
        result = probe(
            venv=p["venv"],
            wheel_dir=p["wheel_dir"],
            filename=p["filename"],
            checksum=p["checksum"],
            dist_info=p["dist_info"],
            packages=p["packages"],
            manager=manager_for(platform.system()),
            run=module.run_command,
            exists=os.path.exists,
        )
        if result["current"] and p["note"] is not None:
            key = os.path.join(p["wheel_dir"], p["filename"])
            note = [*p["note"], {"venv": p["venv"], "wheel": key}]
            result["ansible_facts"] = {"__sdn_package_found": note}
        return result

    finish(module, "sdn_package_state", work, SdnPackageStateError, read_only=True)


if __name__ == "__main__":
    main()
