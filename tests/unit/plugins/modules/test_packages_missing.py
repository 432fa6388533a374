"""packages_missing: which named packages are not installed, from dpkg-query (Debian)
or pkg info -e (FreeBSD), with the commands faked; and the module run as Ansible runs
it on this Debian machine (the real dpkg database), in and out of check mode."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.vrstack.cloud.plugins.module_utils import packages
from ansible_collections.vrstack.cloud.plugins.modules import packages_missing


class FakeRunner:
    """Answers argv by a table and records every call."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        return self.answer(argv)


def dpkg_db(db: dict[str, str]) -> FakeRunner:
    """dpkg-query -W as dpkg answers: a line per known name, exit 1 if any is unknown."""

    def answer(argv: list[str]) -> tuple[int, str, str]:
        names = argv[argv.index("--") + 1 :]
        known = [n for n in names if n.split(":")[0] in db]
        lines = [f"{n.split(':')[0]}\t{n}\t{db[n.split(':')[0]]}\n" for n in known]
        unknown = [n for n in names if n not in known]
        err = "".join(f"dpkg-query: no packages found matching {n}\n" for n in unknown)
        return (1 if unknown else 0), "".join(lines), err

    return FakeRunner(answer)


def pkg_db(installed: set[str], rc_other: int = 1) -> FakeRunner:
    def answer(argv: list[str]) -> tuple[int, str, str]:
        assert argv[:4] == [packages.PKG, "info", "-e", "--"]
        return (0, "", "") if argv[4] in installed else (rc_other, "", "")

    return FakeRunner(answer)


DEBIAN = {
    "python3-venv": "installed",
    "chrony": "installed",
    "etcd-server": "config-files",  # removed, its config kept: apt must install it
    "libvirt0": "half-installed",
    "libc6": "installed",
}


@pytest.mark.parametrize(
    ("names", "missing", "installed"),
    [
        (["python3-venv", "chrony"], [], ["python3-venv", "chrony"]),
        (["python3-venv", "no-such-package"], ["no-such-package"], ["python3-venv"]),
        (["etcd-server", "libvirt0", "chrony"], ["etcd-server", "libvirt0"], ["chrony"]),
        # Order kept, each name once.
        (
            ["zz-unknown", "chrony", "zz-unknown", "aa-unknown"],
            ["zz-unknown", "aa-unknown"],
            ["chrony"],
        ),
        # Asked with its architecture.
        (["libc6:amd64"], [], ["libc6:amd64"]),
    ],
)
def test_dpkg(names: list[str], missing: list[str], installed: list[str]) -> None:
    run = dpkg_db(DEBIAN)
    got = packages.missing_packages(run, names, "dpkg", lambda p: pytest.fail(f"looked for {p}"))
    assert got == {"missing": missing, "installed": installed, "manager": "dpkg"}
    # One query for every name, never more.
    assert len(run.calls) == 1
    assert run.calls[0][0] == packages.DPKG_QUERY
    assert run.calls[0][run.calls[0].index("--") + 1 :] == list(dict.fromkeys(names))


def test_dpkg_error_fails_with_what_dpkg_said() -> None:
    run = FakeRunner(lambda argv: (2, "", "dpkg-query: error: database is locked\n"))
    with pytest.raises(
        packages.PackagesError, match=r"exit 2: dpkg-query: error: database is locked$"
    ):
        packages.missing_packages(run, ["chrony"], "dpkg", os.path.exists)


@pytest.mark.parametrize(
    ("names", "missing", "installed"),
    [
        (["python311", "py311-sqlite3"], ["py311-sqlite3"], ["python311"]),
        (["py311-packaging"], ["py311-packaging"], []),
        (["python311", "python311"], [], ["python311"]),
    ],
)
def test_pkg(names: list[str], missing: list[str], installed: list[str]) -> None:
    run = pkg_db({"python311", "pkg"})
    got = packages.missing_packages(run, names, "pkg", lambda p: p == packages.PKG)
    assert got == {"missing": missing, "installed": installed, "manager": "pkg"}
    # pkg info -e answers for one name: one call per distinct name.
    assert [c[4] for c in run.calls] == list(dict.fromkeys(names))


def test_pkg_not_bootstrapped_means_nothing_installed_and_runs_nothing() -> None:
    run = pkg_db({"python311"})
    got = packages.missing_packages(run, ["python311", "sudo"], "pkg", lambda p: False)
    assert got == {"missing": ["python311", "sudo"], "installed": [], "manager": "pkg"}
    assert run.calls == []


def test_pkg_error_fails() -> None:
    run = pkg_db(set(), rc_other=70)
    with pytest.raises(packages.PackagesError, match=r"info -e sudo failed with exit 70"):
        packages.missing_packages(run, ["sudo"], "pkg", lambda p: True)


def test_refuses_bad_input_and_asks_nothing_for_no_names() -> None:
    run = dpkg_db(DEBIAN)
    assert packages.missing_packages(run, [], "dpkg", os.path.exists) == {
        "missing": [],
        "installed": [],
        "manager": "dpkg",
    }
    assert run.calls == []
    with pytest.raises(packages.PackagesError, match="names: package names"):
        packages.missing_packages(run, ["--admindir=/tmp"], "dpkg", os.path.exists)
    with pytest.raises(packages.PackagesError, match="manager: one of dpkg, pkg"):
        packages.missing_packages(run, ["chrony"], "rpm", os.path.exists)
    assert run.calls == []


@pytest.mark.parametrize(("system", "manager"), [("FreeBSD", "pkg"), ("Linux", "dpkg")])
def test_manager_for(system: str, manager: str) -> None:
    assert packages.manager_for(system) == manager


def run_module(
    capsys: pytest.CaptureFixture[str], args: dict[str, Any], check: bool
) -> tuple[int, dict[str, Any]]:
    """main() in this process, as Ansible would start it: its exit code and result."""
    flags = {"_ansible_check_mode": check, "_ansible_diff": True}
    with patch_module_args({**args, **flags}), pytest.raises(SystemExit) as stop:
        packages_missing.main()
    result = json.loads(capsys.readouterr().out)
    result.pop("invocation", None)
    return int(stop.value.code or 0), result


@pytest.mark.skipif(not Path(packages.DPKG_QUERY).exists(), reason="needs a Debian host")
@pytest.mark.parametrize("check", [True, False])
def test_module_on_this_debian_host(capsys: pytest.CaptureFixture[str], check: bool) -> None:
    # dpkg itself is always installed on Debian; the other name is not a package.
    args = {"names": ["dpkg", "vrstack-no-such-package"]}
    rc, got = run_module(capsys, args, check)
    assert (rc, got) == (
        0,
        {
            "changed": False,
            "missing": ["vrstack-no-such-package"],
            "installed": ["dpkg"],
            "manager": "dpkg",
        },
    )


def test_module_fails_with_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    rc, got = run_module(capsys, {"names": ["-x"], "manager": "dpkg"}, check=True)
    assert rc == 1 and got["failed"] is True
    assert got["msg"].startswith("packages_missing: names: package names")


def test_module_pkg_without_pkg_reports_all_missing(capsys: pytest.CaptureFixture[str]) -> None:
    if Path(packages.PKG).exists():
        pytest.skip("this host has pkg")
    rc, got = run_module(capsys, {"names": ["sudo"], "manager": "pkg"}, check=True)
    assert (rc, got) == (
        0,
        {"changed": False, "missing": ["sudo"], "installed": [], "manager": "pkg"},
    )
