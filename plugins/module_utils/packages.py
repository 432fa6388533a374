# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which of some OS packages are not installed (logic of packages_missing).

Asks the package database for the named packages only (dpkg-query on Debian, pkg on
FreeBSD), so a role learns what to install without listing every package of the host
into its facts (package_facts), which Ansible copies for every later task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# argv -> (rc, stdout, stderr), as AnsibleModule.run_command
Run = Callable[[list[str]], tuple[int, str, str]]

DPKG_QUERY = "/usr/bin/dpkg-query"
# FreeBSD's /usr/sbin/pkg is only the bootstrap stub: until pkg itself is installed
# under /usr/local, no package is (and the stub must not be run: it would offer to
# bootstrap).
PKG = "/usr/local/sbin/pkg"
MANAGERS = ("dpkg", "pkg")


class PackagesError(Exception):
    """The package database could not be read."""


def manager_for(system: str) -> str:
    """The package database of an OS, by platform.system()."""
    return "pkg" if system == "FreeBSD" else "dpkg"


def _dpkg_installed(run: Run, names: list[str]) -> set[str]:
    # One call for all names. Exit 1 only means some name is unknown to dpkg (never
    # installed, or a virtual package): those print nothing on stdout.
    fmt = "--showformat=${Package}\\t${binary:Package}\\t${db:Status-Status}\\n"
    rc, out, err = run([DPKG_QUERY, "-W", fmt, "--", *names])
    if rc not in (0, 1):
        raise PackagesError(f"{DPKG_QUERY} failed with exit {rc}: {err.strip() or out.strip()}")
    installed: set[str] = set()
    for line in out.splitlines():
        fields = line.split("\t")
        # config-files, half-installed, not-installed, ...: apt has something to do.
        if len(fields) == 3 and fields[2].strip() == "installed":
            # Asked as "name" or as "name:arch" (binary:Package of a Multi-Arch: same one).
            installed.update({fields[0].strip(), fields[1].strip()})
    return installed


def _pkg_installed(run: Run, names: list[str], exists: Callable[[str], bool]) -> set[str]:
    if not exists(PKG):
        return set()
    installed: set[str] = set()
    for name in names:
        # pkg info -e answers for one name: 0 installed, 1 not.
        rc, stdout, err = run([PKG, "info", "-e", "--", name])
        if rc == 0:
            installed.add(name)
        elif rc != 1:
            raise PackagesError(
                f"{PKG} info -e {name} failed with exit {rc}: {err.strip() or stdout.strip()}"
            )
    return installed


def missing_packages(
    run: Run, names: Sequence[str], manager: str, exists: Callable[[str], bool]
) -> dict[str, Any]:
    """The names (in the given order, once each) that are not installed, and those that are."""
    if manager not in MANAGERS:
        raise PackagesError(f"manager: one of {', '.join(MANAGERS)}, not {manager!r}")
    wanted = list(dict.fromkeys(n.strip() for n in names))
    if any(not n or n.startswith("-") for n in wanted):
        raise PackagesError(f"names: package names, not {wanted!r}")
    if not wanted:
        return {"missing": [], "installed": [], "manager": manager}
    if manager == "dpkg":
        installed = _dpkg_installed(run, wanted)
    else:
        installed = _pkg_installed(run, wanted, exists)
    return {
        "missing": [n for n in wanted if n not in installed],
        "installed": [n for n in wanted if n in installed],
        "manager": manager,
    }
