"""vrouter_kmod's decisions (build? reload? what to report?) against a fake host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils import vrouter_kmod as km

KVER = "6.1.0-50-amd64"
MUTATING = ("dkms", "make", "install", "depmod", "modprobe")
LOAD_D = "/etc/modules-load.d/vrouter.conf"
PROBE_D = "/etc/modprobe.d/vrouter.conf"


class FakeHost:
    """The host's files and commands; records every command run."""

    def __init__(
        self,
        *,
        headers: bool = True,
        dkms: bool = True,
        loaded: dict[str, str] | None = None,
        stamp: dict[str, Any] | None = None,
        installed: str | None = "ABC",
        running: str | None = "ABC",
        fail: str | None = None,
    ) -> None:
        self.files: dict[str, str] = {}
        self.commands: list[list[str]] = []
        self.dkms = dkms
        self.installed = installed
        self.fail = fail
        if headers:
            self.files[f"/lib/modules/{KVER}/build/Makefile"] = ""
        if loaded is not None:
            self.files["/sys/module/vrouter/initstate"] = "live\n"
            for k, v in loaded.items():
                self.files[f"/sys/module/vrouter/parameters/{k}"] = v + "\n"
            if running:
                self.files["/sys/module/vrouter/srcversion"] = running + "\n"
        if stamp is not None:
            self.files[f"{km.STAMP_DIR}/vrouter-kmod.json"] = json.dumps(stamp)

    def run(self, argv: list[str], cwd: str | None = None) -> tuple[int, str, str]:
        self.commands.append(argv)
        if self.fail and argv[0] == self.fail:
            return 2, "", "line 1\nerror: it broke\n"
        if argv[0] == "modinfo":
            return (0, self.installed + "\n", "") if self.installed else (1, "", "not found")
        if argv[:2] == ["modprobe", "-r"]:
            self.files = {k: v for k, v in self.files.items() if not k.startswith("/sys/")}
        return 0, "", ""

    def exists(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def write(self, path: str, text: str) -> None:
        self.files[path] = text

    def listdir(self, path: str) -> list[str]:
        return []

    def remove(self, path: str) -> None:
        self.commands.append(["rm", path])
        del self.files[path]

    def copy_tree(self, src: str, dst: str) -> None:
        self.commands.append(["copy", src, dst])

    def which(self, name: str) -> str | None:
        return "/usr/sbin/dkms" if name == "dkms" and self.dkms else None

    def mutations(self) -> list[list[str]]:
        return [c for c in self.commands if c[0] in (*MUTATING, "copy")]


@pytest.fixture
def src(tmp_path: Path) -> str:
    for sub, name in (("linux", "vr_linux.c"), ("dp-core", "vr_fwd.c"), ("include", "vr_msg.h")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_text(f"/* {name} */\n")
    (tmp_path / "linux" / "vr_linux.o").write_text("build product, not source")
    return str(tmp_path)


def request(src: str | None, **kw: Any) -> km.Request:
    base: dict[str, Any] = {
        "name": "vrouter",
        "state": "present",
        "src": src,
        "kernel": KVER,
        "params": {"flows": "4096"},
        "build": "auto",
        "check_mode": False,
    }
    base.update(kw)
    return km.Request(**base)


def stamp_for(src: str, method: str = "dkms") -> dict[str, Any]:
    return {"digest": km.source_digest(src), "kernel": KVER, "method": method}


CASES = [
    # (id, host kwargs (stamp filled in when "current"), request kwargs, changed, built, loaded, first commands)
    ("fresh dkms", {}, {}, True, True, True, ["dkms", "copy", "dkms", "dkms", "dkms", "modprobe"]),
    ("fresh kbuild", {"dkms": False}, {}, True, True, True, ["copy", "make", "install", "depmod", "modprobe"]),
    ("forced kbuild", {}, {"build": "kbuild"}, True, True, True, ["copy", "make", "install", "depmod", "modprobe"]),
    ("up to date", {"current": True, "loaded": {"flows": "4096"}}, {}, False, False, False, []),
    ("params changed", {"current": True, "loaded": {"flows": "1024"}}, {}, True, False, True, ["modprobe", "modprobe"]),
    ("source changed", {"stamp": {"digest": "old", "kernel": KVER, "method": "dkms"}, "loaded": {"flows": "4096"}}, {},
     True, True, True, ["dkms", "copy", "dkms", "dkms", "dkms", "modprobe", "modprobe"]),
    ("new kernel", {"stamp": {"digest": "x", "kernel": "5.10.0-1-amd64", "method": "dkms"}}, {}, True, True, True,
     ["dkms", "copy", "dkms", "dkms", "dkms", "modprobe"]),
    ("installed module vanished", {"current": True, "loaded": {"flows": "4096"}, "installed": None}, {}, True, True, True,
     ["dkms", "copy", "dkms", "dkms", "dkms", "modprobe", "modprobe"]),
    ("stale loaded module", {"current": True, "loaded": {"flows": "4096"}, "running": "OLD"}, {}, True, False, True,
     ["modprobe", "modprobe"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("host_kw", "req_kw", "changed", "built", "loaded", "commands"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_present(
    src: str,
    host_kw: dict[str, Any],
    req_kw: dict[str, Any],
    changed: bool,
    built: bool,
    loaded: bool,
    commands: list[str],
) -> None:
    host_kw = dict(host_kw)
    if host_kw.pop("current", False):
        host_kw["stamp"] = stamp_for(src, "kbuild" if req_kw.get("build") == "kbuild" else "dkms")
    host = FakeHost(**host_kw)
    res = km.Kmod(host, request(src, **req_kw)).apply()
    assert (res.changed, res.built, res.loaded) == (changed, built, loaded)
    assert [c[0] for c in host.mutations()] == commands
    if loaded:
        assert host.mutations()[-1] == ["modprobe", "vrouter", "flows=4096"]
    if built:
        stamp = json.loads(host.files[f"{km.STAMP_DIR}/vrouter-kmod.json"])
        assert stamp["digest"] == km.source_digest(src)
    assert res.diff["after"]["params"] == {"flows": "4096"}


@pytest.mark.parametrize("case", [c for c in CASES if c[3]], ids=[c[0] for c in CASES if c[3]])
def test_check_mode_changes_nothing(src: str, case: tuple[Any, ...]) -> None:
    host_kw = dict(case[1])
    if host_kw.pop("current", False):
        host_kw["stamp"] = stamp_for(src)
    host = FakeHost(**host_kw)
    res = km.Kmod(host, request(src, check_mode=True, **case[2])).apply()
    assert res.changed
    assert host.mutations() == []
    assert res.actions


def test_dkms_conf_is_written(src: str) -> None:
    host = FakeHost()
    km.Kmod(host, request(src)).apply()
    conf = host.files["/usr/src/vrouter-1.0/dkms.conf"]
    assert 'BUILT_MODULE_LOCATION[0]="linux/"' in conf
    assert 'AUTOINSTALL="yes"' in conf


def test_missing_headers_name_the_package(src: str) -> None:
    with pytest.raises(km.KmodError, match=f"install the package linux-headers-{KVER}"):
        km.Kmod(FakeHost(headers=False), request(src)).apply()


def test_build_failure_reports_the_tail(src: str) -> None:
    with pytest.raises(km.KmodError, match="error: it broke"):
        km.Kmod(FakeHost(dkms=False, fail="make"), request(src)).apply()


def test_not_a_source_tree(tmp_path: Path) -> None:
    with pytest.raises(km.KmodError, match="no linux/ directory"):
        km.Kmod(FakeHost(), request(str(tmp_path))).apply()


def test_present_needs_src() -> None:
    with pytest.raises(km.KmodError, match="src is required"):
        km.Kmod(FakeHost(), request(None)).apply()


@pytest.mark.parametrize(
    ("loaded", "check", "changed", "commands"),
    [
        ({"flows": "4096"}, False, True, [["modprobe", "-r", "vrouter"]]),
        ({"flows": "4096"}, True, True, []),
        (None, False, False, []),
    ],
)
def test_absent(
    loaded: dict[str, str] | None, check: bool, changed: bool, commands: list[list[str]]
) -> None:
    host = FakeHost(loaded=loaded)
    res = km.Kmod(host, request(None, state="absent", check_mode=check)).apply()
    assert res.changed == res.unloaded == changed
    assert host.mutations() == commands


def test_digest_ignores_build_products_and_sees_edits(src: str) -> None:
    before = km.source_digest(src)
    Path(src, "linux", "vrouter.ko").write_text("binary")
    assert km.source_digest(src) == before
    Path(src, "dp-core", "vr_fwd.c").write_text("/* changed */\n")
    assert km.source_digest(src) != before


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"flows": 4096, "vifs": 64}, {"flows": "4096", "vifs": "64"}),
        ({"debug": True}, {"debug": "Y"}),
        ({}, {}),
    ],
)
def test_format_params(params: dict[str, Any], expected: dict[str, str]) -> None:
    assert km.format_params(params) == expected


def test_format_params_refuses_bad_names() -> None:
    with pytest.raises(km.KmodError, match="not a module parameter name"):
        km.format_params({"flows; rm -rf /": 1})


def test_boot_files_follow_the_parameters(src: str) -> None:
    host = FakeHost(dkms=False)
    res = km.Kmod(host, request(src, boot=True)).apply()
    assert host.files[LOAD_D].endswith("vrouter\n")
    assert host.files[PROBE_D].endswith("options vrouter flows=4096\n")
    assert f"write {PROBE_D}" in res.actions
    # Same again: nothing to do.
    host2 = FakeHost(dkms=False, loaded={"flows": "4096"}, stamp=stamp_for(src, "kbuild"))
    host2.files.update({LOAD_D: host.files[LOAD_D], PROBE_D: host.files[PROBE_D]})
    assert not km.Kmod(host2, request(src, boot=True)).apply().changed
    # New parameters: the boot options change with the reload.
    res = km.Kmod(host2, request(src, boot=True, params={"flows": "8192"})).apply()
    assert res.actions == ["reload (parameters changed) vrouter", f"write {PROBE_D}"]
    assert host2.files[PROBE_D].endswith("flows=8192\n")


def test_absent_removes_the_boot_files() -> None:
    host = FakeHost(loaded={"flows": "4096"})
    host.files.update({LOAD_D: "x", PROBE_D: "y"})
    res = km.Kmod(host, request(None, state="absent")).apply()
    assert res.changed and LOAD_D not in host.files and PROBE_D not in host.files
    assert ["rm", LOAD_D] in host.commands
