# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run `vrstack-status --json` on the node and check its answer (logic of sdn_status).

The status logic itself lives once, in the vrstack package the nodes run
(files/sdn-src/vrstack/status/node.py), which `vrstack-status` prints for a person;
the module asks that same code for JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# argv -> (rc, stdout, stderr), as AnsibleModule.run_command
Run = Callable[[list[str]], tuple[int, str, str]]

DEFAULT_COMMAND = "/opt/vrstack/venv/bin/vrstack-status"


class StatusError(Exception):
    """vrstack-status is missing or did not answer."""


def node_status(
    run: Run, command: str, timeout: float, exists: Callable[[str], bool]
) -> dict[str, Any]:
    if not exists(command):
        raise StatusError(
            f"{command} is not installed: the vrstack.cloud.sdn_package role installs it "
            "with the SDN services (is this an SDN node, and was site.yml applied?)"
        )
    rc, out, err = run([command, "--json", "--timeout", str(timeout)])
    # 0: every service active, 1: some are not (the result says which); else an error.
    if rc not in (0, 1):
        raise StatusError(f"{command} --json failed with exit {rc}: {err.strip() or out.strip()}")
    try:
        result = json.loads(out)
    except ValueError:
        raise StatusError(f"{command} --json did not print JSON: {out[:200]!r}") from None
    if not isinstance(result, dict) or not {"services", "datapath", "ok"} <= set(result):
        raise StatusError(f"{command} --json printed an unexpected document: {out[:200]!r}")
    return result
