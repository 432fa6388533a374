# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only Ansible action (installed by tests/freebsd/harness.py into a throw-away
collection as vrstack_test.freebsd.standin): it stands in for a module that only a
FreeBSD host can run (pkg, sysrc, service, pw, kldload, ...). It appends the module
name and its arguments, as Ansible templated them, to the host's record file and
answers as a fresh host whose commands succeed silently would. It runs in the
controller process: the hosts are played on this machine anyway."""

from __future__ import annotations

import json
from typing import Any

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        if self._task.check_mode and args.get("skip_in_check"):
            return {**result, "skipped": True, "changed": False, "msg": "skipped in check mode"}
        entry = json.dumps(
            {"module": args["module"], "args": args.get("args")}, sort_keys=True, default=str
        )
        with open(args["record"], "a", encoding="utf-8") as out:
            out.write(entry + "\n")
        # A fresh host has none of the packages a role asks about (a read-only module).
        if args["module"] in ("vrstack.cloud.packages_missing", "packages_missing"):
            names = list(dict.fromkeys((args.get("args") or {}).get("names") or []))
            return {**result, "changed": False, "missing": names, "installed": [], "manager": "pkg"}
        # A fresh host has no vrstack wheel or virtualenv (a read-only module).
        if args["module"] in ("vrstack.cloud.sdn_package_state", "sdn_package_state"):
            return {**result, "changed": False, "current": False, "reasons": ["a fresh host"]}
        # A command asked for JSON (openstack ... -f json) answers an empty list.
        stdout = "[]" if "json" in json.dumps(args.get("args"), default=str) else ""
        return {
            **result,
            "changed": True,
            "rc": 0,
            "stdout": stdout,
            "stderr": "",
            "stdout_lines": [],
            "stderr_lines": [],
            "status": 200,
            "json": {},
        }
