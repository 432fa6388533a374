# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build, load and unload the vrouter kernel module (logic of the vrouter_kmod module).

Everything that touches the host goes through a `Host` object, so the decisions
(what to build, when to reload, what to report) are unit-testable with a fake one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Protocol

STAMP_DIR = "/var/lib/vrstack"
SOURCE_DIRS = ("linux", "dp-core", "include")
DKMS_VERSION = "1.0"


class KmodError(Exception):
    """A failure to report with fail_json."""


class Host(Protocol):
    def run(self, argv: list[str], cwd: str | None = None) -> tuple[int, str, str]: ...
    def exists(self, path: str) -> bool: ...
    def read(self, path: str) -> str | None: ...
    def write(self, path: str, text: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def remove(self, path: str) -> None: ...
    def copy_tree(self, src: str, dst: str) -> None: ...
    def which(self, name: str) -> str | None: ...


class LocalHost:
    """The real host."""

    def run(self, argv: list[str], cwd: str | None = None) -> tuple[int, str, str]:
        import subprocess

        res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
        return res.returncode, res.stdout, res.stderr

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError:
            return None

    def write(self, path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def copy_tree(self, src: str, dst: str) -> None:
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        for sub in SOURCE_DIRS:
            shutil.copytree(
                os.path.join(src, sub),
                os.path.join(dst, sub),
                ignore=shutil.ignore_patterns("*.o", "*.ko", ".*.cmd", "*.mod*", "build"),
            )

    def which(self, name: str) -> str | None:
        return shutil.which(name)


def source_digest(src: str) -> str:
    """SHA-256 over the module's sources (paths and contents), build products excluded."""
    h = hashlib.sha256()
    for sub in SOURCE_DIRS:
        top = os.path.join(src, sub)
        if not os.path.isdir(top):
            raise KmodError(f"{src}: no {sub}/ directory: not the vrouter source tree")
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".c", ".h")) or name in ("Kbuild", "Makefile"):
                    path = os.path.join(root, name)
                    h.update(os.path.relpath(path, src).encode() + b"\0")
                    with open(path, "rb") as f:
                        h.update(f.read() + b"\0")
    return h.hexdigest()


def format_params(params: dict[str, Any]) -> dict[str, str]:
    """Module parameters as the kernel shows them in /sys/module/NAME/parameters."""
    out = {}
    for key, value in sorted(params.items()):
        if not key.replace("_", "").isalnum():
            raise KmodError(f"params: {key!r} is not a module parameter name")
        if isinstance(value, bool):
            value = "Y" if value else "N"
        out[key] = str(value)
    return out


@dataclass
class Request:
    name: str
    state: str
    src: str | None
    kernel: str
    params: dict[str, str]
    build: str  # auto, dkms, kbuild
    check_mode: bool
    boot: bool = False  # write modules-load.d and modprobe.d so it loads at boot


@dataclass
class Result:
    changed: bool = False
    built: bool = False
    loaded: bool = False
    unloaded: bool = False
    method: str | None = None
    kernel: str = ""
    digest: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    diff: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "built": self.built,
            "loaded": self.loaded,
            "unloaded": self.unloaded,
            "method": self.method,
            "kernel": self.kernel,
            "digest": self.digest,
            "params": self.params,
            "actions": self.actions,
            "diff": self.diff,
        }


class Kmod:
    def __init__(self, host: Host, req: Request) -> None:
        self.host = host
        self.req = req
        self.stamp_path = f"{STAMP_DIR}/{req.name}-kmod.json"

    # ---------------- what is there

    def headers(self) -> str:
        return f"/lib/modules/{self.req.kernel}/build"

    def stamp(self) -> dict[str, Any]:
        text = self.host.read(self.stamp_path)
        if not text:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def loaded_params(self) -> dict[str, str] | None:
        """The parameters of the loaded module, or None if it is not loaded."""
        base = f"/sys/module/{self.req.name}"
        if not self.host.exists(f"{base}/initstate"):
            return None
        out = {}
        for key in self.req.params:
            value = self.host.read(f"{base}/parameters/{key}")
            out[key] = value.strip() if value is not None else ""
        return out

    def loaded_srcversion(self) -> str | None:
        text = self.host.read(f"/sys/module/{self.req.name}/srcversion")
        return text.strip() if text else None

    def installed_srcversion(self) -> str | None:
        rc, out, _err = self.host.run(
            ["modinfo", "-k", self.req.kernel, "-F", "srcversion", self.req.name]
        )
        return (out.strip() or None) if rc == 0 else None

    def method(self) -> str:
        if self.req.build == "auto":
            return "dkms" if self.host.which("dkms") else "kbuild"
        return self.req.build

    # ---------------- doing

    def must(self, argv: list[str], cwd: str | None = None) -> str:
        rc, out, err = self.host.run(argv, cwd)
        if rc != 0:
            tail = (err or out).strip().splitlines()[-15:]
            raise KmodError(f"{' '.join(argv)} failed (exit {rc}):\n" + "\n".join(tail))
        return out

    def build(self, digest: str, method: str) -> None:
        src = self.req.src
        if src is None:
            raise KmodError("src is required to build the module")
        kver = self.req.kernel
        name = self.req.name
        if method == "dkms":
            tree = f"/usr/src/{name}-{DKMS_VERSION}"
            self.host.run(["dkms", "remove", f"{name}/{DKMS_VERSION}", "--all"])
            self.host.copy_tree(src, tree)
            self.host.write(f"{tree}/dkms.conf", dkms_conf(name))
            self.must(["dkms", "add", f"{name}/{DKMS_VERSION}"])
            self.must(["dkms", "build", f"{name}/{DKMS_VERSION}", "-k", kver])
            self.must(["dkms", "install", f"{name}/{DKMS_VERSION}", "-k", kver, "--force"])
        else:
            tree = f"{STAMP_DIR}/{name}-build"
            self.host.copy_tree(src, tree)
            jobs = f"-j{os.cpu_count() or 1}"
            self.must(["make", jobs, "-C", self.headers(), f"M={tree}/linux", "modules"])
            dest = f"/lib/modules/{kver}/updates"
            self.must(
                ["install", "-D", "-m", "0644", f"{tree}/linux/{name}.ko", f"{dest}/{name}.ko"]
            )
            self.must(["depmod", "-a", kver])
        self.host.write(
            self.stamp_path,
            json.dumps({"digest": digest, "kernel": kver, "method": method}, sort_keys=True) + "\n",
        )

    def boot_files(self) -> dict[str, str | None]:
        """What modules-load.d and modprobe.d should hold (None: no file)."""
        name = self.req.name
        want = self.req.state == "present" and self.req.boot
        opts = " ".join(f"{k}={v}" for k, v in self.req.params.items())
        head = "# Written by vrstack.cloud.vrouter_kmod\n"
        return {
            f"/etc/modules-load.d/{name}.conf": f"{head}{name}\n" if want else None,
            f"/etc/modprobe.d/{name}.conf": f"{head}options {name} {opts}\n"
            if want and opts
            else None,
        }

    def sync_boot(self, res: Result) -> None:
        if not self.req.boot and self.req.state == "present":
            return
        for path, text in self.boot_files().items():
            if self.host.read(path) == text:
                continue
            if text is None and not self.host.exists(path):
                continue
            res.changed = True
            res.actions.append(f"{'write' if text else 'remove'} {path}")
            if not self.req.check_mode:
                if text is None:
                    self.host.remove(path)
                else:
                    self.host.write(path, text)

    def apply(self) -> Result:
        req = self.req
        res = Result(kernel=req.kernel, params=req.params)
        current = self.loaded_params()
        if req.state == "absent":
            res.diff = {"before": {"loaded": current is not None}, "after": {"loaded": False}}
            if current is not None:
                res.changed = res.unloaded = True
                res.actions.append(f"unload {req.name}")
                if not req.check_mode:
                    self.must(["modprobe", "-r", req.name])
            self.sync_boot(res)
            return res

        if req.src is None:
            raise KmodError("src is required when state=present")
        if not self.host.exists(f"{self.headers()}/Makefile"):
            raise KmodError(
                f"kernel headers for {req.kernel} not found in {self.headers()}: "
                f"install the package linux-headers-{req.kernel}"
            )
        digest = source_digest(req.src)
        method = self.method()
        stamp = self.stamp()
        res.digest = digest
        res.method = method
        need_build = (
            stamp.get("digest") != digest
            or stamp.get("kernel") != req.kernel
            or stamp.get("method") != method
            or self.installed_srcversion() is None
        )
        reload_reason = None
        if current is None:
            reload_reason = "load"
        elif current != req.params:
            reload_reason = "reload (parameters changed)"
        elif need_build:
            reload_reason = "reload (module rebuilt)"
        elif self.loaded_srcversion() != self.installed_srcversion():
            reload_reason = "reload (installed module differs from the loaded one)"
        res.diff = {
            "before": {
                "digest": stamp.get("digest"),
                "loaded": current is not None,
                "params": current or {},
            },
            "after": {"digest": digest, "loaded": True, "params": req.params},
        }
        if need_build:
            res.changed = res.built = True
            res.actions.append(f"build {req.name} for {req.kernel} with {method}")
            if not req.check_mode:
                self.build(digest, method)
        if reload_reason:
            res.changed = res.loaded = True
            res.actions.append(f"{reload_reason} {req.name}")
            if not req.check_mode:
                if current is not None:
                    self.must(["modprobe", "-r", req.name])
                args = [f"{k}={v}" for k, v in req.params.items()]
                self.must(["modprobe", req.name, *args])
        self.sync_boot(res)
        return res


def dkms_conf(name: str) -> str:
    return (
        f'PACKAGE_NAME="{name}"\n'
        f'PACKAGE_VERSION="{DKMS_VERSION}"\n'
        f'BUILT_MODULE_NAME[0]="{name}"\n'
        'BUILT_MODULE_LOCATION[0]="linux/"\n'
        'DEST_MODULE_LOCATION[0]="/updates/dkms"\n'
        'MAKE[0]="make -C linux KVER=${kernelver}"\n'
        'CLEAN="make -C linux clean KVER=${kernelver}"\n'
        'AUTOINSTALL="yes"\n'
    )
