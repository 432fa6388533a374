# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy-host half of vrstack.cloud.openstack_schema_stamp: the stamp names the
release's constraints, which live in the collection on the deploy host, so their digest
is made here and the module on the node only compares or writes it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# The collection's copy, as openstack_venv_constraints_src names it by default.
CONSTRAINTS = Path(__file__).resolve().parents[2] / "requirements" / "openstack" / "constraints.txt"


def stamp_id(constraints_text: str, inputs: str) -> str:
    """What openstack_venv's entry points wrote: sha1 of the constraints as
    lookup('file') returns them (trailing whitespace stripped), a space, the inputs."""
    digest = hashlib.sha1(constraints_text.rstrip().encode("utf-8")).hexdigest()
    return f"{digest} {inputs}"


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        source = Path(str(args.get("constraints") or CONSTRAINTS)).expanduser()
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise AnsibleActionFail(f"constraints: cannot read {source}: {exc}") from None
        inputs = args.get("inputs")
        args["id"] = stamp_id(text, "" if inputs is None else str(inputs))
        args["constraints"] = str(source)
        result.update(
            self._execute_module(
                module_name="vrstack.cloud.openstack_schema_stamp",
                module_args=args,
                task_vars=task_vars,
            )
        )
        return result
