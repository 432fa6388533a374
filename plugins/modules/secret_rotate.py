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
  overlap:
    description:
      - For tokens that many clients send, which cannot change in one step. The new value
        is kept as C(<name>_next) while C(<name>) keeps the value every client sends; once
        the servers accept both, O(promote) makes it current and keeps the old one as
        C(<name>_previous) until the clients have switched and O(forget_previous) removes
        it (C(playbooks/rotate-secrets.yml) runs the three steps).
      - A secret already in such a rotation (with a C(_next) or C(_previous) value) keeps
        its values, so the rotation that stopped half-way is finished, not started again.
        RV(staged) and RV(previous) name those in each state.
    type: bool
    default: false
  promote:
    description:
      - Secrets whose C(<name>_next) value becomes current (the current one is kept as
        C(<name>_previous)). Runs after any rotation asked in the same call; a name
        without one is not an error.
    type: list
    elements: str
    default: []
  forget_previous:
    description:
      - Secrets whose C(<name>_previous) value is removed (after the rotation's last step).
        Runs last; a name without one is not an error.
    type: list
    elements: str
    default: []
  alternate:
    description:
      - Secrets that are passwords of two users used in turn (the SDN's Keystone user).
        The user the services do not use (its standby slot) gets a new password, kept as
        C(<name>) for slot C(a) and C(<name>_b) for slot C(b), created when missing;
        C(<name>_active) (C(a) when absent) says which one is in use and keeps its value.
        RV(standby) names each one's standby slot. The caller sets the password in the
        backend, switches the services, then records the switch with O(activate).
      - Runs after O(promote) and before O(forget_previous).
    type: list
    elements: str
    default: []
  activate:
    description:
      - A mapping of secret names to the slot (C(a) or C(b)) whose user the services use
        now, written as C(<name>_active). Runs before O(alternate) in the same call, so
        that the user the services left gets a new password (its old one stops working).
      - In check mode with both, RV(standby) is computed from the file as it is.
    type: dict
    default: {}
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
staged:
  description:
    - With O(overlap), the secrets asked whose new value waits as C(<name>_next) (staged
      now, or by a rotation that stopped half-way; in check mode, also those that would be).
  returned: when O(overlap) is true
  type: list
  elements: str
  sample: [sdn_api_admin_token]
previous:
  description: With O(overlap), the secrets asked whose old value is kept as C(<name>_previous).
  returned: when O(overlap) is true
  type: list
  elements: str
promoted:
  description: The secrets whose C(<name>_next) value was (would be) made current.
  returned: when O(promote) is given
  type: list
  elements: str
forgotten:
  description: The secrets whose C(<name>_previous) value was (would be) removed.
  returned: when O(forget_previous) is given
  type: list
  elements: str
standby:
  description: With O(alternate), each name's slot (C(a) or C(b)) that got (would get) a new password.
  returned: when O(alternate) is given
  type: dict
  sample: {sdn_keystone_password: b}
activated:
  description: The names whose active slot was (would be) changed by O(activate).
  returned: when O(activate) is given
  type: list
  elements: str
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
            "overlap": {"type": "bool", "default": False},
            "promote": {"type": "list", "elements": "str", "default": []},
            "forget_previous": {"type": "list", "elements": "str", "default": []},
            "alternate": {"type": "list", "elements": "str", "default": []},
            "activate": {"type": "dict", "default": {}},
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
        apply = not module.check_mode
        names, patterns, length = p["names"], p["patterns"], p["length"]
        if p["overlap"]:
            rotated = secret_store.stage_secrets(path, names, patterns, length, apply)
        else:
            rotated = secret_store.rotate_secrets(path, names, patterns, length, apply)
        result: dict[str, object] = {"rotated": rotated, "file": str(path)}
        changed = bool(rotated)
        if p["overlap"]:
            state = secret_store.in_rotation(path, names, patterns)
            # In check mode the new ones are not staged yet: they would be.
            result["staged"] = sorted(set(state["staged"]) | set(rotated))
            result["previous"] = state["previous"]
        if p["promote"]:
            result["promoted"] = secret_store.promote(path, p["promote"], apply)
            changed = changed or bool(result["promoted"])
        # The switch first: then `alternate` gives the user left behind a new password.
        if p["activate"]:
            slots = {str(k): str(v) for k, v in p["activate"].items()}
            result["activated"] = secret_store.activate(path, slots, apply)
            changed = changed or bool(result["activated"])
        if p["alternate"]:
            result["standby"] = secret_store.stage_standby(path, p["alternate"], length, apply)
            changed = changed or bool(result["standby"])
        if p["forget_previous"]:
            result["forgotten"] = secret_store.forget_previous(path, p["forget_previous"], apply)
            changed = changed or bool(result["forgotten"])
        return {"changed": changed, **result}

    finish(module, "secret_rotate", work, secret_store.SecretStoreError)


if __name__ == "__main__":
    main()
