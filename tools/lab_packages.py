"""Package caches for the lab's hosts, which have no route out.

Two directories on this machine, bind-mounted read-only into every host:

- a flat apt repository (`.deb` files, `Packages`, `Packages.gz`, `Release`) of
  exactly the packages of `requirements/lab-debs.txt` and their dependencies that
  the lab's root file system lacks: apt computes them inside a chroot of that
  tree (an overlay, so the tree itself stays untouched);
- a wheelhouse built with `pip wheel` from `requirements/lab-wheels.txt` and
  `requirements/openstack/*.txt` (files named `constraints*.txt` there are
  passed as constraints, not as requirements).

Each cache is rebuilt only when its key (a hash of its inputs) changes, under a
lock, and its files are replaced in place so running hosts see the new content.
`tools/lab.py up` calls `ensure_caches`; the inventory points apt and pip at the
mount points (see docs/lab.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
DEBS_LIST = REPO / "requirements" / "lab-debs.txt"
WHEELS_LIST = REPO / "requirements" / "lab-wheels.txt"
OPENSTACK_DIR = REPO / "requirements" / "openstack"

# Where the caches appear inside a host (the inventory's apt source and pip.conf name them).
DEBS_MOUNT = "/srv/vrstack/debs"
WHEELS_MOUNT = "/srv/vrstack/wheels"

# Bump when the way a cache is built changes, so existing caches are rebuilt.
DEBS_LAYOUT = 1
WHEELS_LAYOUT = 1

LOCK_WAIT_SECONDS = 1800.0
APT_TIMEOUT_SECONDS = 1200
PIP_TIMEOUT_SECONDS = 1800

# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two characters.
DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# A pinned requirement: name==version (PEP 508 names, PEP 440-ish versions).
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")


class PackagesError(Exception):
    """A failure the user can act on (lab.py prints it and exits non-zero)."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Lists and keys (pure)
# --------------------------------------------------------------------------


def list_entries(text: str) -> list[tuple[int, str]]:
    """(line number, entry) of a one-entry-per-line list; `#` starts a comment."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.append((number, entry))
    return entries


def parse_debs(text: str, source: str) -> list[str]:
    """Package names of lab-debs.txt, sorted and unique; a bad line names file and line."""
    names = set()
    for number, entry in list_entries(text):
        if not DEB_NAME.match(entry):
            raise PackagesError(
                f"{source}:{number}: '{entry}' is not a Debian package name "
                "(one name per line, lower case, no version)"
            )
        names.add(entry)
    return sorted(names)


def check_pinned(text: str, source: str) -> list[str]:
    """The requirements of a fully pinned list (name==version per line)."""
    pins = []
    for number, entry in list_entries(text):
        if not PINNED.match(entry):
            raise PackagesError(
                f"{source}:{number}: '{entry}' is not pinned; write it as name==version"
            )
        pins.append(entry)
    return pins


def cache_key(*parts: str | bytes) -> str:
    """A short hash of a cache's inputs; any change in any part changes it."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))  # "ab","c" differs from "a","bc"
        digest.update(data)
    return digest.hexdigest()[:16]


def debs_key(packages: Sequence[str], rootfs_key: str) -> str:
    return cache_key(f"debs-{DEBS_LAYOUT}", rootfs_key, "\n".join(sorted(packages)))


def wheels_key(files: Sequence[tuple[str, bytes]], python_tag: str) -> str:
    """Inputs are (name, content) of each requirements file, in a stable order."""
    parts: list[str | bytes] = [f"wheels-{WHEELS_LAYOUT}", python_tag]
    for name, content in sorted(files):
        parts += [name, content]
    return cache_key(*parts)


def wheel_inputs(
    wheels_list: Path = WHEELS_LIST, openstack_dir: Path = OPENSTACK_DIR
) -> list[tuple[str, Path, bool]]:
    """(name, path, is_constraints) of every file the wheelhouse is built from."""
    files = [(wheels_list.name, wheels_list, False)]
    if openstack_dir.is_dir():
        for path in sorted(openstack_dir.glob("*.txt")):
            files.append((f"openstack/{path.name}", path, path.name.startswith("constraints")))
    return files


# --------------------------------------------------------------------------
# The flat repository's index (pure, given each package's control fields)
# --------------------------------------------------------------------------


def packages_stanza(control: str, filename: str, data: bytes) -> str:
    """One `Packages` entry: the .deb's control fields plus where and what it is."""
    fields = control.strip("\n")
    return (
        f"{fields}\n"
        f"Filename: ./{filename}\n"
        f"Size: {len(data)}\n"
        f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
    )


def release_text(indexes: Sequence[tuple[str, bytes]], date: str) -> str:
    """A `Release` file listing the indexes' hashes (apt then accepts the repository
    without complaint when the source says [trusted=yes]; it is not signed)."""
    lines = [
        "Origin: vrstack",
        "Label: vrstack lab packages",
        "Suite: lab",
        "Codename: lab",
        f"Date: {date}",
        "SHA256:",
    ]
    lines += [f" {hashlib.sha256(d).hexdigest()} {len(d)} {name}" for name, d in indexes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def run(cmd: Sequence[str], what: str, timeout: float, **kw: object) -> str:
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        raise PackagesError(f"{what}: no result after {timeout:.0f}s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PackagesError(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return str(proc.stdout)


def wait_for_flock(fh: IO[str], path: Path, limit: float, holder: str) -> bool:
    """Take an exclusive lock on `fh` (the open `path`), waiting at most `limit` seconds
    and saying once that `holder` has it; False when it is still held then."""
    deadline = time.monotonic() + limit
    announced = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            if not announced:
                log(f"waiting for {path} ({holder} holds it)")
                announced = True
            time.sleep(0.5)


@contextlib.contextmanager
def cache_lock(cache: Path, limit: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """One builder at a time; a second caller waits (bounded), then finds the cache built."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "packages.lock"
    with open(path, "w") as fh:
        if not wait_for_flock(fh, path, limit, "another caller building the package caches"):
            raise PackagesError(f"{path} still held after {limit:.0f}s; see `fuser -v {path}`")
        yield


def publish(built: Path, dest: Path, last: Sequence[str] = ()) -> None:
    """Move the built files into `dest` in place (hosts bind-mount it), the names in
    `last` after the others, then drop what the new build does not have."""
    dest.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in built.iterdir() if p.is_file()}
    for name in sorted(names - set(last)) + [n for n in last if n in names]:
        os.replace(built / name, dest / name)
    for old in dest.iterdir():
        if old.is_file() and old.name not in names:
            old.unlink()


def stamp(cache: Path, name: str) -> Path:
    """The key a cache was built with, beside it (not inside what hosts see)."""
    return cache / f"{name}.key"


def is_current(cache: Path, name: str, key: str) -> bool:
    path = stamp(cache, name)
    return path.exists() and path.read_text().strip() == key and (cache / name).is_dir()


@contextlib.contextmanager
def rootfs_chroot(rootfs: Path, scratch: Path) -> Iterator[Path]:
    """A writable overlay over the root file system, ready to chroot into, with this
    machine's apt settings (proxy, authentication) and resolver."""
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "root"
    for d in (upper, work, merged):
        d.mkdir()
    mounts: list[Path] = []
    try:
        opts = f"lowerdir={rootfs},upperdir={upper},workdir={work}"
        run(["mount", "-t", "overlay", "vrs-packages", "-o", opts, str(merged)], "mount", 60)
        mounts.append(merged)
        for src, sub in (("/proc", "proc"), ("/dev", "dev")):
            target = merged / sub
            if src == "/proc":
                run(["mount", "-t", "proc", "proc", str(target)], "mount /proc", 60)
            else:
                run(["mount", "--bind", src, str(target)], f"mount {src}", 60)
            mounts.append(target)
        for conf in ("apt.conf.d", "auth.conf.d"):
            host_dir = Path("/etc/apt") / conf
            if host_dir.is_dir():
                shutil.copytree(host_dir, merged / "etc/apt" / conf, dirs_exist_ok=True)
        resolv = merged / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
        yield merged
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def build_debs(rootfs: Path, packages: Sequence[str], out: Path, source: str) -> int:
    """Download the missing packages into `out` and index them; returns how many."""
    scratch = Path(tempfile.mkdtemp(prefix="debs-build-", dir=out.parent))
    try:
        with rootfs_chroot(rootfs, scratch) as root:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
            chroot = ["chroot", str(root)]
            run([*chroot, "apt-get", "-q", "update"], "apt-get update (lab root fs)",
                APT_TIMEOUT_SECONDS, env=env)  # fmt: skip
            archives = root / "var/cache/apt/archives"
            for old in archives.glob("*.deb"):
                old.unlink()
            try:
                run([*chroot, "apt-get", "-q", "-y", "--download-only", "--no-install-recommends",
                     "install", *packages], "apt-get install --download-only",
                    APT_TIMEOUT_SECONDS, env=env)  # fmt: skip
            except PackagesError as exc:
                raise PackagesError(f"{source}: {exc}") from None
            debs = sorted(archives.glob("*.deb"))
            for deb in debs:
                shutil.move(str(deb), out / deb.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_index(out)
    return len(debs)


def write_index(repo: Path) -> None:
    """Packages, Packages.gz and Release of a flat repository directory."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = run(["dpkg-deb", "--field", str(deb)], f"reading {deb.name}", 60)
        stanzas.append(packages_stanza(control, deb.name, deb.read_bytes()))
    packages = "\n".join(stanzas).encode()
    packages_gz = gzip.compress(packages, mtime=0)
    (repo / "Packages").write_bytes(packages)
    (repo / "Packages.gz").write_bytes(packages_gz)
    release = release_text(
        [("Packages", packages), ("Packages.gz", packages_gz)], formatdate(usegmt=True)
    )
    (repo / "Release").write_text(release)


def build_wheels(inputs: Sequence[tuple[str, Path, bool]], out: Path) -> int:
    """`pip wheel` every requirement (and dependency) into `out`; returns how many."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(out)]
    for _name, path, constraints in inputs:
        cmd += ["-c" if constraints else "-r", str(path)]
    run(cmd, "pip wheel (lab wheelhouse)", PIP_TIMEOUT_SECONDS)
    return len(list(out.glob("*.whl")))


def python_tag() -> str:
    """The interpreter the wheels are built for; the lab's hosts must match it."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{os.uname().machine}"


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str


def ensure_caches(rootfs: Path, rootfs_key: str, cache: Path) -> list[Mount]:
    """Build whichever cache is missing or out of date; return the bind mounts."""
    debs_text = DEBS_LIST.read_text()
    packages = parse_debs(debs_text, str(DEBS_LIST.relative_to(REPO)))
    inputs = wheel_inputs()
    check_pinned(WHEELS_LIST.read_text(), str(WHEELS_LIST.relative_to(REPO)))
    keys = {
        "debs": debs_key(packages, rootfs_key),
        "wheels": wheels_key([(n, p.read_bytes()) for n, p, _ in inputs], python_tag()),
    }
    if not all(is_current(cache, name, key) for name, key in keys.items()):
        with cache_lock(cache):
            for name, key in keys.items():
                if is_current(cache, name, key):  # built meanwhile by another caller
                    continue
                start = time.monotonic()
                log(f"building the {name} cache {cache / name} (key {key})")
                built = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=cache))
                try:
                    if name == "debs":
                        count = build_debs(rootfs, packages, built, str(DEBS_LIST))
                        last: Sequence[str] = ("Packages", "Packages.gz", "Release")
                    else:
                        count = build_wheels(inputs, built)
                        last = ()
                    publish(built, cache / name, last)
                finally:
                    shutil.rmtree(built, ignore_errors=True)
                stamp(cache, name).write_text(f"{key}\n")
                log(f"{name} cache: {count} files in {time.monotonic() - start:.0f}s")
    return [Mount(cache / "debs", DEBS_MOUNT), Mount(cache / "wheels", WHEELS_MOUNT)]


def mounted_in(init_pid: int, mounts: Iterable[Mount]) -> bool:
    """Whether a running host sees the caches (hosts started before they existed do not)."""
    return all(Path(f"/proc/{init_pid}/root{m.target}").is_dir() for m in mounts)
