#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: vrouter_kmod
short_description: Build, load and unload the vrouter kernel module
version_added: 0.1.0
description:
  - Builds the vrouter datapath module from its source tree against a kernel's headers,
    with DKMS when it is installed (so kernel upgrades rebuild it) or plain Kbuild, and
    loads it with the given parameters.
  - Rebuilds only when the sources (a digest of C{linux/}, C{dp-core/} and C{include/}),
    the kernel or the build method changed; reloads only when the module is not loaded,
    its parameters differ from O(params), or the module was rebuilt.
  - Fails before building, naming the package to install, when the kernel's headers are
    missing.
  - With O(boot), writes C(/etc/modules-load.d/NAME.conf) and C(/etc/modprobe.d/NAME.conf)
    (the parameters) so the module loads at boot; O(state=absent) removes them.
options:
  name:
    description: The kernel module's name.
    type: str
    default: vrouter
  state:
    description:
      - V(present) builds if needed and makes sure the module is loaded with O(params).
      - V(absent) unloads it (the built module stays installed).
    type: str
    choices: [present, absent]
    default: present
  src:
    description: The vrouter source tree on the host (holding C(linux/), C(dp-core/), C(include/)).
    type: path
  kernel:
    description: The kernel release to build for; the running kernel when omitted.
    type: str
  params:
    description: Module parameters, for example C(flows), C(vifs), C(nexthops), C(vrfs), C(labels).
    type: dict
    default: {}
  boot:
    description: Load the module at boot with O(params) (C(modules-load.d), C(modprobe.d)).
    type: bool
    default: true
  build:
    description: How to build; V(auto) uses DKMS when the C(dkms) command exists.
    type: str
    choices: [auto, dkms, kbuild]
    default: auto
attributes:
  check_mode:
    support: full
    description: Reports what would be built, loaded or unloaded without doing it.
  diff_mode:
    support: full
    description: Shows the source digest, loaded state and parameters before and after.
  platform:
    description: Target operating systems.
    support: full
    platforms: debian
requirements:
  - make, a C compiler and the kernel's headers on the host; dkms for V(build=dkms).
notes:
  - Unloading the datapath cuts the traffic through it, including C(vhost0); the vrouter
    role moves the host's fabric address back and forth around it.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Build and load the datapath with a larger flow table
  vrstack.cloud.vrouter_kmod:
    src: /usr/local/src/vrouter
    params:
      flows: 262144
      vifs: 512

- name: Build for a kernel that is installed but not running yet, with Kbuild
  vrstack.cloud.vrouter_kmod:
    src: /usr/local/src/vrouter
    kernel: 6.1.0-50-amd64
    build: kbuild

- name: Unload the module
  vrstack.cloud.vrouter_kmod:
    state: absent
"""

RETURN = r"""
built:
  description: Whether the module was (or in check mode would be) built and installed.
  returned: always
  type: bool
loaded:
  description: Whether the module was (or would be) loaded or reloaded.
  returned: always
  type: bool
unloaded:
  description: Whether the module was (or would be) unloaded.
  returned: always
  type: bool
method:
  description: The build method used, V(dkms) or V(kbuild); null for O(state=absent).
  returned: always
  type: str
  sample: dkms
kernel:
  description: The kernel release the module was built for.
  returned: always
  type: str
  sample: 6.1.0-50-amd64
digest:
  description: SHA-256 of the module's sources; null for O(state=absent).
  returned: always
  type: str
params:
  description: The parameters the module is loaded with, as the kernel shows them.
  returned: always
  type: dict
  sample: {flows: "262144", vifs: "512"}
actions:
  description: What was done (or would be), in order.
  returned: always
  type: list
  elements: str
  sample: [build vrouter for 6.1.0-50-amd64 with dkms, load vrouter, write /etc/modules-load.d/vrouter.conf]
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.vrouter_kmod import (
    Kmod,
    KmodError,
    LocalHost,
    Request,
    format_params,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "vrouter"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "src": {"type": "path"},
            "kernel": {"type": "str"},
            "params": {"type": "dict", "default": {}},
            "build": {"type": "str", "choices": ["auto", "dkms", "kbuild"], "default": "auto"},
            "boot": {"type": "bool", "default": True},
        },
        required_if=[("state", "present", ["src"])],
        supports_check_mode=True,
    )
    p = module.params

    def apply() -> dict[str, Any]:
        req = Request(
            name=p["name"],
            state=p["state"],
            src=p["src"],
            kernel=p["kernel"] or os.uname().release,
            params=format_params(p["params"]),
            build=p["build"],
            check_mode=module.check_mode,
            boot=p["boot"],
        )
        return Kmod(LocalHost(), req).apply().as_dict()

    finish(module, "vrouter_kmod", apply, KmodError)


if __name__ == "__main__":
    main()
