#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: secret_rotate
short_description: Give deployment secrets new values in the deploy host's secrets file
version_added: 0.1.0
description:
  - Replaces the values of the named secrets, and of every stored secret whose name fully
    matches one of O(patterns), with new random values of letters and digits (each differs
    from the value it replaces). Every other secret keeps its value.
  - The file is the one the lookup C(vrstack.cloud.secret) reads (same format, lock and
    permission checks, in C(module_utils/secret_store.py)). It is replaced in one rename
    with the old file's owner and mode, so readers see the old or the new file, and no copy
    of the old values is left behind.
  - Only changes the file. The services still hold the old values until the roles that
    read them run again; C(playbooks/rotate-secrets.yml) does both, in order.
  - Never returns a value, only names. Meant to run on the deploy host
    (C(delegate_to=localhost), C(run_once=true), C(become=false)).
options:
  names:
    description:
      - Secrets to rotate. Each must already be in the file (a misspelt name fails
        rather than creating a secret nothing reads).
    type: list
    elements: str
    default: []
  patterns:
    description:
      - Python regular expressions; every stored secret whose whole name matches one is
        rotated. A pattern that matches nothing is not an error.
    type: list
    elements: str
    default: []
  length:
    description: Length of the new values.
    type: int
    default: 32
  file:
    description:
      - The secrets file. When omitted, C(~/.local/share/vrstack/<cluster>/secrets.yml),
        as the lookup does.
    type: path
  cluster:
    description: The cluster's name (C(vrstack_fabric.name)), used when O(file) is omitted.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports which secrets would get new values; the file is not touched.
  diff_mode:
    support: none
    description: Values are never shown; RV(rotated) names the secrets.
  platform:
    description: The deploy host.
    support: full
    platforms: posix
requirements:
  - PyYAML
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Rotate glance's passwords and every RabbitMQ user's
  vrstack.cloud.secret_rotate:
    names: [glance_db_password, glance_keystone_password]
    patterns: ["rabbitmq_[a-z0-9_]+_password"]
    cluster: "{{ vrstack_fabric.name }}"
    file: "{{ vrstack_secrets_file | default(omit) }}"
  delegate_to: localhost
  run_once: true
  become: false
  register: rotated
"""

RETURN = r"""
rotated:
  description: The secrets that got (in check mode, would get) new values, sorted.
  returned: success
  type: list
  elements: str
  sample: [glance_db_password, rabbitmq_nova_password]
file:
  description: The secrets file.
  returned: success
  type: str
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils import secret_store
from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "names": {"type": "list", "elements": "str", "default": []},
            "patterns": {"type": "list", "elements": "str", "default": []},
            "length": {"type": "int", "default": 32},
            "file": {"type": "path"},
            "cluster": {"type": "str"},
        },
        required_one_of=[("file", "cluster")],
        supports_check_mode=True,
    )
    p = module.params
    # type=path has expanded ~ already.
    path = Path(p["file"]) if p["file"] else secret_store.cluster_path(p["cluster"])

    def work() -> dict[str, object]:
        rotated = secret_store.rotate_secrets(
            path, p["names"], p["patterns"], p["length"], apply=not module.check_mode
        )
        return {"changed": bool(rotated), "rotated": rotated, "file": str(path)}

    finish(module, "secret_rotate", work, secret_store.SecretStoreError)


if __name__ == "__main__":
    main()
