# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several checks in one task on the deploy host (issue 7): each costs a task header
and a forked worker per host as an assert; one action checking them all costs one."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def failed_messages(checks: Any) -> list[str]:
    """The msg of every check whose ok is false, in order.

    Raises ValueError naming the first malformed check: an ok that is not a bool is
    refused rather than taken as truthy, since a forgotten "{{ }}" would otherwise
    make a check always pass.
    """
    if not isinstance(checks, list) or not checks:
        raise ValueError("checks must be a non-empty list of {ok, msg}")
    failed: list[str] = []
    for index, check in enumerate(checks):
        if not isinstance(check, dict):
            raise ValueError(f"checks[{index}] must be a dict with ok and msg")
        unknown = sorted(set(check) - {"ok", "msg"})
        if unknown:
            raise ValueError(f"checks[{index}] has unknown keys: {', '.join(unknown)}")
        if "ok" not in check or "msg" not in check:
            raise ValueError(f"checks[{index}] needs both ok and msg")
        ok, msg = check["ok"], check["msg"]
        if not isinstance(ok, bool):
            raise ValueError(
                f"checks[{index}].ok must be a bool (a templated expression), "
                f"got {type(ok).__name__} {ok!r}"
            )
        if not isinstance(msg, str):
            raise ValueError(f"checks[{index}].msg must be a string")
        if not ok:
            failed.append(msg)
    return failed


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(("checks", "success_msg", "quiet"))
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        success_msg = args.get("success_msg", "All checks passed")
        if not isinstance(success_msg, str):
            raise AnsibleActionFail("success_msg must be a string")
        quiet = args.get("quiet", True)
        if not isinstance(quiet, bool):
            raise AnsibleActionFail("quiet must be a bool")
        if not quiet:
            # Shown without -v, like a debug note (assert's quiet: false).
            result["_ansible_verbose_always"] = True
        try:
            failed = failed_messages(args.get("checks"))
        except ValueError as exc:
            raise AnsibleActionFail(str(exc)) from exc
        result["changed"] = False
        result["failed_checks"] = failed
        if failed:
            result["failed"] = True
            result["msg"] = "\n".join(failed)
        else:
            result["msg"] = success_msg
        return result
