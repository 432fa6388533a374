#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: sdn_wheel
short_description: Build the vrstack Python package's wheel once per source content
version_added: 0.1.0
description:
  - Computes a SHA-256 digest of a pure-Python project (its C(pyproject.toml) and the
    C(.py) files of its package) and builds a wheel with C(pip wheel --no-deps) into
    O(dest) when no wheel for that digest is there yet.
  - The wheel's version is the project's version with the digest as its local part
    (C(0.1.0+src1a2b3c4d5e6f)), so hosts install a new version exactly when the source
    changed.
  - Builds from a copy of the source, so nothing is written next to it.
  - Meant to run on the deploy host (C(delegate_to=localhost), C(run_once=true)).
options:
  src:
    description: The project directory (holding C(pyproject.toml)).
    type: path
    required: true
  dest:
    description: The directory that caches the built wheels.
    type: path
    required: true
  python:
    description: The Python whose pip builds the wheel; the module's own when omitted.
    type: path
  fact:
    description:
      - Also return the result as this fact, so that one task both builds the wheel and
        keeps it for the later plays (with C(delegate_facts=true) on the deploy host).
    type: str
attributes:
  check_mode:
    support: full
    description: Reports whether a wheel would be built, without building it.
  diff_mode:
    support: none
    description: Nothing to show; the result names the wheel.
  platform:
    description: Any POSIX deploy host.
    support: full
    platforms: posix
requirements:
  - pip, and access to an index that has the project's build backend (build isolation).
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Build the vrstack wheel on the deploy host
  vrstack.cloud.sdn_wheel:
    src: "{{ playbook_dir }}/../files/sdn-src"
    dest: ~/.cache/vrstack/wheels
  delegate_to: localhost
  run_once: true
  register: sdn_wheel
"""

RETURN = r"""
path:
  description: The wheel's path in O(dest).
  returned: success
  type: str
  sample: /root/.cache/vrstack/wheels/vrstack-0.1.0+src1a2b3c4d5e6f-py3-none-any.whl
filename:
  description: The wheel's file name.
  returned: success
  type: str
version:
  description: The wheel's version, with the source digest as its local part.
  returned: success
  type: str
  sample: 0.1.0+src1a2b3c4d5e6f
digest:
  description: SHA-256 of the source files.
  returned: success
  type: str
requires:
  description: The project's runtime dependencies, as in C(pyproject.toml).
  returned: success
  type: list
  elements: str
  sample: ["aiohttp>=3.9,<4", "PyYAML>=6"]
dist_info:
  description: The C(.dist-info) directory name the installed wheel creates.
  returned: success
  type: str
  sample: vrstack-0.1.0+src1a2b3c4d5e6f.dist-info
sha256:
  description: SHA-256 of the wheel file (what a host's copy is compared with).
  returned: when the wheel exists (not when check mode only reports a build)
  type: str
"""

import hashlib
import os
import sys
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_wheel import WheelError, build


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "python": {"type": "path"},
            "fact": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params

    def work() -> dict[str, Any]:
        result = build(
            p["src"], p["dest"], p["python"] or sys.executable, dry_run=module.check_mode
        ).as_dict()
        if os.path.isfile(str(result["path"])):
            with open(str(result["path"]), "rb") as f:
                result["sha256"] = hashlib.sha256(f.read()).hexdigest()
        if p["fact"]:
            result["ansible_facts"] = {
                p["fact"]: {k: v for k, v in result.items() if k != "changed"}
            }
        return result

    finish(module, "sdn_wheel", work, WheelError)


if __name__ == "__main__":
    main()
