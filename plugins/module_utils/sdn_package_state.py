# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of vrstack.cloud.sdn_package_state: does a host already have this run's
vrstack wheel in a virtualenv, with nothing else for sdn_package's install steps to do?

One read instead of the ten tasks those steps cost when they all find their work done
(OS packages, wheel directory, wheel copy, older wheels, virtualenv, pip install): it asks
exactly what each of them checks, so `current` is true only when every one would report
ok or skip. Host access is passed in so the tests need no host."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from ansible_collections.vrstack.cloud.plugins.module_utils.packages import (
    PackagesError,
    Run,
    missing_packages,
)

WHEEL_GLOB = "vrstack-*.whl"


class SdnPackageStateError(Exception):
    """The package database could not be read."""


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _owned(path: str, mode: int) -> bool:
    """root's, group id 0 (root on Debian, wheel on FreeBSD), with this mode: what the
    role's file and copy tasks set."""
    st = os.stat(path)
    return st.st_uid == 0 and st.st_gid == 0 and (st.st_mode & 0o7777) == mode


def probe(
    *,
    venv: str,
    wheel_dir: str,
    filename: str,
    checksum: str,
    dist_info: str,
    packages: Sequence[str],
    manager: str,
    run: Run,
    exists: Callable[[str], bool] = os.path.exists,
    owned: Callable[[str, int], bool] = _owned,
) -> dict[str, Any]:
    """`current` and, when not, the `reasons` (what the install steps would change)."""
    reasons: list[str] = []
    try:
        missing = missing_packages(run, packages, manager, exists)["missing"]
    except PackagesError as exc:
        raise SdnPackageStateError(str(exc)) from exc
    if missing:
        reasons.append(f"OS packages missing: {', '.join(missing)}")
    wheel = os.path.join(wheel_dir, filename)
    if not os.path.isdir(wheel_dir):
        reasons.append(f"{wheel_dir} is not there")
    else:
        if not owned(wheel_dir, 0o755):
            reasons.append(f"{wheel_dir}: owner or mode differ")
        if not os.path.isfile(wheel):
            reasons.append(f"{wheel} is not there")
        elif sha256(wheel) != checksum:
            reasons.append(f"{wheel} differs from this run's wheel")
        elif not owned(wheel, 0o644):
            reasons.append(f"{wheel}: owner or mode differ")
        older = sorted(
            os.path.basename(p)
            for p in glob.glob(os.path.join(wheel_dir, WHEEL_GLOB))
            if os.path.basename(p) != filename
        )
        if older:
            reasons.append(f"wheels of older sources: {', '.join(older)}")
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        reasons.append(f"no virtualenv at {venv}")
    elif not glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", dist_info)):
        reasons.append(f"{dist_info} is not installed in {venv}")
    return {"current": not reasons, "reasons": reasons}
