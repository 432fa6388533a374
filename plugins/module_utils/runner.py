# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end of every vrstack module's main(): do the work, then exit with its result or
fail with a message that starts with what failed (the module's name, maybe the object).

A module keeps its own argument spec and the checks that need AnsibleModule; its logic
lives in module_utils and raises one error class, which this turns into fail_json.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def finish(
    module: AnsibleModule,
    label: str,
    work: Callable[[], dict[str, Any]],
    errors: type[Exception] | tuple[type[Exception], ...],
    *,
    fail_keys: Mapping[str, str] | None = None,
    read_only: bool = False,
) -> None:
    """Exit with `work()`'s result; on `errors`, fail with "LABEL: error".

    `fail_keys` maps result keys to attributes of the error copied into the failure
    (for example {"field": "field_name"}). A `read_only` module never reports a change.
    A result's `diff` is returned only in diff mode.
    """
    try:
        result = work()
    except errors as exc:
        extra = {key: getattr(exc, attr) for key, attr in (fail_keys or {}).items()}
        module.fail_json(msg=f"{label}: {exc}", **extra)
    if read_only:
        result = {**result, "changed": False}
    diff = result.pop("diff", None)
    if diff is not None and module._diff:
        result["diff"] = diff
    module.exit_json(**result)
