# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only Ansible action (installed by tests/freebsd/harness.py as
vrstack_test.freebsd.sysrc): what community.general.sysrc does to rc.conf, done to the
copy of /etc/rc.conf under a host's test root (sysrc(8) itself exists only on
FreeBSD). States: present (name="value"), absent, value_present / value_absent (one
word of a space-separated list such as kld_list). Check mode reports, writes nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        path = Path(args["path"])
        name, state = str(args["name"]), args.get("state", "present")
        value = str(args.get("value", ""))
        lines = path.read_text().splitlines() if path.exists() else []
        pattern = re.compile(r"^" + re.escape(name) + r'="?([^"]*)"?$')
        found = [i for i, line in enumerate(lines) if pattern.match(line)]
        current = pattern.match(lines[found[-1]]).group(1) if found else None  # type: ignore[union-attr]
        if state == "present":
            wanted: str | None = value
        elif state == "absent":
            wanted = None
        else:
            words = (current or "").split()
            if state == "value_present" and value not in words:
                words.append(value)
            if state == "value_absent":
                words = [w for w in words if w != value]
            wanted = " ".join(words)
        if wanted == current:
            return {**result, "changed": False, "value": current}
        new = [line for i, line in enumerate(lines) if i not in found]
        if wanted is not None:
            new.append(f'{name}="{wanted}"')
        if not self._task.check_mode:
            path.write_text("\n".join(new) + "\n")
        return {**result, "changed": True, "value": wanted}
