# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the `vrstack` wheel once per source content (logic of the sdn_wheel module).

The wheel's version gets a local part made of the source digest
(`0.1.0+src1a2b3c4d5e6f`), so a changed source is a new version that pip
installs, and an unchanged one is found in the cache and not rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# What goes into the digest (and into the wheel): the project file and the package.
PROJECT_FILE = "pyproject.toml"
SKIP_DIRS = {"__pycache__", "build", "dist", ".pytest_cache"}
_VERSION_LINE = re.compile(r'^version\s*=\s*"([^"]+)"\s*$', re.MULTILINE)
_NAME_LINE = re.compile(r'^name\s*=\s*"([^"]+)"\s*$', re.MULTILINE)
_DEPS = re.compile(r"^dependencies\s*=\s*\[(.*?)\]", re.MULTILINE | re.DOTALL)


class WheelError(Exception):
    """A failure to report with fail_json."""


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    requires: list[str]


def read_project(src: str) -> Project:
    """Name, version and dependencies from the [project] table of pyproject.toml."""
    path = os.path.join(src, PROJECT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise WheelError(f"{path}: cannot read: {exc.strerror}") from None
    # Only the [project] table; tomllib is not available on every Python Ansible runs on.
    start = text.find("[project]")
    if start < 0:
        raise WheelError(f"{path}: no [project] table")
    end = text.find("\n[", start + 1)
    table = text[start : end if end > 0 else len(text)]
    name, version = _NAME_LINE.search(table), _VERSION_LINE.search(table)
    if not name or not version:
        raise WheelError(f"{path}: project.name and project.version must be literal strings")
    deps = _DEPS.search(table)
    requires = re.findall(r'"([^"]+)"', deps.group(1)) if deps else []
    return Project(name.group(1), version.group(1), requires)


def source_files(src: str, package: str) -> list[str]:
    """Relative paths of the files the wheel is built from, sorted."""
    out = [PROJECT_FILE]
    root = os.path.join(src, package)
    if not os.path.isdir(root):
        raise WheelError(f"{root}: the package directory is missing")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            if name.endswith(".py"):
                out.append(os.path.relpath(os.path.join(dirpath, name), src))
    return sorted(out)


def digest(src: str, files: list[str]) -> str:
    """SHA-256 over each file's path and content."""
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(src, rel), "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()


def local_version(version: str, sha: str) -> str:
    base = version.split("+", 1)[0]
    # One alphanumeric segment: an all-digit one would be normalised (leading zeros dropped).
    return f"{base}+src{sha[:12]}"


def wheel_name(name: str, version: str) -> str:
    """The file name pip gives a pure-Python wheel (PEP 427 escaping)."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    return f"{dist}-{version}-py3-none-any.whl"


@dataclass
class Result:
    changed: bool
    path: str
    filename: str
    version: str
    digest: str
    requires: list[str]
    dist_info: str

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def build(src: str, dest: str, python: str = sys.executable, *, dry_run: bool = False) -> Result:
    """The cached wheel for `src`'s current content, built into `dest` when missing."""
    project = read_project(src)
    package = re.sub(r"[-.]+", "_", project.name).lower()
    files = source_files(src, package)
    sha = digest(src, files)
    version = local_version(project.version, sha)
    filename = wheel_name(project.name, version)
    path = os.path.join(dest, filename)
    result = Result(
        changed=not os.path.exists(path),
        path=path,
        filename=filename,
        version=version,
        digest=sha,
        requires=project.requires,
        dist_info=f"{package}-{version}.dist-info",
    )
    if not result.changed or dry_run:
        return result
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdn-wheel-", dir=dest) as tmp:
        # Build from a copy: pip writes build/ and *.egg-info next to the source.
        tree = os.path.join(tmp, "src")
        for rel in files:
            os.makedirs(os.path.dirname(os.path.join(tree, rel)), exist_ok=True)
            shutil.copyfile(os.path.join(src, rel), os.path.join(tree, rel))
        pyproject = os.path.join(tree, PROJECT_FILE)
        with open(pyproject, encoding="utf-8") as f:
            text = f.read()
        text = _VERSION_LINE.sub(f'version = "{version}"', text, count=1)
        with open(pyproject, "w", encoding="utf-8") as f:
            f.write(text)
        out = os.path.join(tmp, "out")
        cmd = [python, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, tree]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
        if res.returncode != 0:
            raise WheelError(
                f"pip wheel failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-2000:]}"
            )
        built = os.path.join(out, filename)
        if not os.path.exists(built):
            raise WheelError(f"pip wheel did not produce {filename}: {sorted(os.listdir(out))}")
        os.replace(built, path)  # same file system: the cache never holds half a wheel
    return result
