# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only Ansible action (installed by tests/freebsd/harness.py as
vrstack_test.freebsd.sdn_service): what vrstack.cloud.sdn_service does on a FreeBSD host,
done under the host's test root with the module's own renderer. It writes the rc.d
script (so the goldens and the rc.d checks see it), sets `<name>_enable="YES"` in the
root's rc.conf as sysrc(8) would, and records the owner and the start as the role's
template and service tasks were recorded before. Check mode writes nothing and sets the
module's fact for a script it would write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_service import (
    RC_DIR,
    fact_name,
    rc_name,
    render_rc,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        root, record = Path(args.pop("root")), args.pop("record")
        args.setdefault("venv", "/opt/vrstack/venv")
        rc = rc_name(args["name"])
        path = Path(str(root) + RC_DIR) / rc
        text = render_rc(args, args["venv"])
        unit_changed = not path.exists() or path.read_text() != text
        if self._task.check_mode:
            facts = {fact_name(args["name"]): True} if unit_changed else {}
            return {**result, "changed": unit_changed, "path": str(path), "ansible_facts": facts}
        if unit_changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755)
        conf = root / "etc" / "rc.conf"
        line = f'{rc}_enable="YES"'
        lines = conf.read_text().splitlines() if conf.exists() else []
        enable = line not in lines
        if enable:
            kept = [x for x in lines if not x.startswith(f"{rc}_enable=")]
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text("\n".join([*kept, line]) + "\n")
        entries = [
            ("owner:template", {"group": "wheel", "owner": "root", "path": str(path)}),
            ("ansible.builtin.service", {"name": rc, "state": "started"}),
        ]
        with open(record, "a", encoding="utf-8") as out:
            for module, margs in entries:
                out.write(json.dumps({"module": module, "args": margs}, sort_keys=True) + "\n")
        return {**result, "changed": unit_changed or enable, "path": str(path)}
