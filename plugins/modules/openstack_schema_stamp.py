#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: openstack_schema_stamp
short_description: Read or write the stamp that says a service's database schema is current
version_added: 0.1.0
description:
  - A service's own schema check starts all of its code (5-20 s on a small host). Once a
    schema was brought up to date with the release's constraints, a stamp file
    (O(dir)/O(service)) names them, and a rerun with the same constraints may skip the check.
  - What vrstack.cloud.openstack_venv's C(schema_check) and C(schema_record) entry points did
    in several tasks, as one task each. The stamp's content is the SHA-1 of the constraints
    file (O(constraints), read on the deploy host by the action plugin of the same name)
    and O(inputs), so stamps written by those entry points stay valid.
  - O(state=read) sets the fact C(openstack_venv_schema_current) (true when the stamp names
    these constraints and inputs) and returns it as RV(current); O(state=present) writes the
    stamp (mode 0644, root's user and group, in a directory of mode 0755) when it differs.
options:
  service:
    description: The stamp's name, the service whose schema it records.
    type: str
    required: true
  state:
    description: V(read) tells whether the stamp is current; V(present) records it.
    type: str
    choices: [read, present]
    default: read
  inputs:
    description: What else the calling role's schema set-up depends on (for example a cell name).
    type: str
    default: ""
  constraints:
    description:
      - The release's constraints on the deploy host; the collection's
        C(requirements/openstack/constraints.txt) by default.
    type: path
  dir:
    description: The stamps' directory on the host.
    type: path
    default: /var/lib/vrstack/schema
  id:
    description:
      - The stamp's content. Set by the action plugin from O(constraints) and O(inputs); give it
        only to compare with another value.
    type: str
attributes:
  action:
    support: full
    description: The action plugin reads the constraints on the deploy host.
  check_mode:
    support: full
    description: O(state=read) reads in check mode too; O(state=present) reports what it would write.
  diff_mode:
    support: full
    description: Shows the stamp's content before and after.
  platform:
    description: Debian and FreeBSD hosts (the group of root is gid 0 on both).
    support: full
    platforms: posix
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Look for the glance schema stamp
  vrstack.cloud.openstack_schema_stamp:
    service: glance

- name: Record that the glance schema is current
  vrstack.cloud.openstack_schema_stamp:
    service: glance
    state: present
  when: not (openstack_venv_schema_current | default(false) | bool)
"""

RETURN = r"""
current:
  description: Whether the stamp named these constraints and inputs before the task.
  returned: always
  type: bool
  sample: true
path:
  description: The stamp file.
  returned: always
  type: str
  sample: /var/lib/vrstack/schema/glance
"""

import os
import stat
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

FACT = "openstack_venv_schema_current"


def read_stamp(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def root_owned(path: str, mode: int) -> bool:
    st = os.stat(path)
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, mode)


def fix_dir(path: str, check: bool) -> bool:
    """The directory as the entry point's file task made it: root-owned, 0755."""
    if os.path.isdir(path) and root_owned(path, 0o755):
        return False
    if not check:
        os.makedirs(path, mode=0o755, exist_ok=True)
        os.chown(path, 0, 0)
        os.chmod(path, 0o755)
    return True


def write_stamp(path: str, content: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".stamp.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8"))
        os.chown(tmp, 0, 0)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "service": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["read", "present"], "default": "read"},
            "inputs": {"type": "str", "default": ""},
            "constraints": {"type": "path"},
            "dir": {"type": "path", "default": "/var/lib/vrstack/schema"},
            "id": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["id"] is None:
        module.fail_json(msg="id: missing (the action plugin computes it from the constraints)")
    if not p["service"] or "/" in p["service"] or p["service"] in (".", ".."):
        module.fail_json(msg=f"service: {p['service']!r} is not a file name")
    path = os.path.join(p["dir"], p["service"])
    before = read_stamp(path)
    current = before == p["id"]
    result: dict[str, Any] = {"current": current, "path": path, "changed": False}
    if p["state"] == "read":
        module.exit_json(ansible_facts={FACT: current}, **result)
    try:
        changed = fix_dir(p["dir"], module.check_mode)
        if before != p["id"] or not root_owned(path, 0o644):
            changed = True
            if not module.check_mode:
                write_stamp(path, p["id"])
    except OSError as exc:
        module.fail_json(msg=f"{path}: {exc}", **result)
    result["changed"] = changed
    if module._diff:
        result["diff"] = {
            "before": before or "",
            "after": p["id"],
            "before_header": path,
            "after_header": path,
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
