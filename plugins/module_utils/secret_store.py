# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment secrets file on the deploy host: the one place its format, its
permissions and its locking are written down. The lookup `vrstack.cloud.secret` reads
and fills it; the module `vrstack.cloud.secret_rotate` replaces values in it."""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import stat
import string
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

try:
    import yaml
except ImportError:  # the module reports it; the controller always has PyYAML
    yaml = None  # type: ignore[assignment]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ALPHABET = string.ascii_letters + string.digits
HEADER = "# vrstack deployment secrets: keep this file private and backed up.\n"


class SecretStoreError(Exception):
    """A secrets file or request that cannot be used; the message says what to do."""


def cluster_path(cluster: str) -> Path:
    """Where a cluster's secrets live when the inventory does not say."""
    return Path.home() / ".local" / "share" / "vrstack" / cluster / "secrets.yml"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SecretStoreError(
            f"secret: name {name!r} must match {NAME_RE.pattern} (lower case, digits, _)"
        )
    return name


def check_length(length: int) -> None:
    if not 16 <= length <= 256:
        raise SecretStoreError(f"secret: length {length} must be between 16 and 256")


def new_value(length: int, old: str | None = None) -> str:
    """A random value of letters and digits, never equal to `old`."""
    while True:
        value = "".join(secrets.choice(ALPHABET) for _char in range(length))
        if value != old:
            return value


def _check_private(path: Path, mode: int) -> None:
    if stat.S_IMODE(mode) & 0o077:
        raise SecretStoreError(
            f"{path}: mode {stat.S_IMODE(mode):04o} lets others read the secrets; "
            f"run 'chmod go= {path}' after checking who read it"
        )


def read(path: Path) -> dict[str, str]:
    """The stored secrets; {} when the file does not exist yet."""
    if yaml is None:
        raise SecretStoreError("secret: PyYAML is needed to read the secrets file")
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    _check_private(path, st.st_mode)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SecretStoreError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise SecretStoreError(f"{path}: must be a mapping of secret names to strings")
    return data


def replace_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename: readers see the old file or the new one,
    never a part. The new file keeps the old one's owner and mode (0600 for a new file,
    mkstemp's mode, from the first byte); the old inode goes with the rename, so no copy
    of the old content stays."""
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        if old is not None:
            if os.geteuid() == 0 and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                os.fchown(fd, old.st_uid, old.st_gid)
            os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o700)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(path: Path, data: Mapping[str, str]) -> None:
    """The secrets file, written whole (replace_private)."""
    if yaml is None:
        raise SecretStoreError("secret: PyYAML is needed to write the secrets file")
    text = HEADER + yaml.safe_dump(dict(sorted(data.items())), default_flow_style=False)
    replace_private(path, text.encode("utf-8"))


@contextmanager
def locked(path: Path) -> Iterator[dict[str, str]]:
    """The stored secrets, under the store's exclusive lock (Ansible's forks ask at once)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(path.parent, path.parent.stat().st_mode)
    lock = path.with_name(path.name + ".lock")
    with open(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600), "w", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield read(path)


def get_secrets(path: Path, names: list[str], length: int) -> list[str]:
    """The secrets `names` from `path`, generating and storing the missing ones."""
    for name in names:
        check_name(name)
    check_length(length)
    with locked(path) as stored:
        missing = [n for n in names if n not in stored]
        if missing:
            for name in missing:
                stored[name] = new_value(length)
            write(path, stored)
    return [stored[n] for n in names]


PREVIOUS = "_previous"
NEXT = "_next"
SLOTS = ("a", "b")
ACTIVE = "_active"  # which of two users is in use (stage_standby, activate)


def kept_name(name: str, suffix: str) -> str:
    """Where a rotation with an overlap (a token many clients send) keeps the new value
    before it is current (`_next`) and the old one after (`_previous`)."""
    return check_name(name + suffix)


def _is_kept(name: str) -> bool:
    return name.endswith((PREVIOUS, NEXT, ACTIVE))


def _chosen(stored: dict[str, str], names: list[str], patterns: list[re.Pattern[str]]) -> set[str]:
    # A kept value (_next, _previous) is never rotated itself: it is promoted or forgotten;
    # nor is the record of an active user (_active), which is not a secret.
    return set(names) | {
        n for n in stored if not _is_kept(n) and any(p.fullmatch(n) for p in patterns)
    }


def _compile(patterns: list[str]) -> list[re.Pattern[str]]:
    try:
        return [re.compile(p) for p in patterns]
    except re.error as exc:
        raise SecretStoreError(f"secret: bad pattern: {exc}") from None


def _check_known(path: Path, stored: dict[str, str], names: list[str]) -> None:
    unknown = sorted(set(names) - set(stored))
    if unknown:
        raise SecretStoreError(
            f"{path}: no secret named {', '.join(unknown)} to rotate (a deploy makes "
            "them; rotating one that was never used would change nothing that reads it)"
        )


@contextmanager
def _choosing(
    path: Path, names: list[str], patterns: list[str], length: int
) -> Iterator[tuple[dict[str, str], set[str]]]:
    """The stored secrets under the lock, and those `names` and `patterns` choose (every
    name must exist; a pattern must match a whole name)."""
    for name in names:
        check_name(name)
    check_length(length)
    compiled = _compile(patterns)
    with locked(path) as stored:
        _check_known(path, stored, names)
        yield stored, _chosen(stored, names, compiled)


def rotate_secrets(
    path: Path,
    names: list[str],
    patterns: list[str],
    length: int,
    apply: bool = True,
) -> list[str]:
    """Give new values to the stored secrets named in `names` (each must exist) and to
    every stored secret whose name fully matches one of `patterns`; other secrets keep
    theirs. Returns the names rotated, sorted; with `apply` false only says which."""
    with _choosing(path, names, patterns, length) as (stored, chosen):
        if chosen and apply:
            for name in chosen:
                stored[name] = new_value(length, stored[name])
            write(path, stored)
    return sorted(chosen)


def stage_secrets(
    path: Path,
    names: list[str],
    patterns: list[str],
    length: int,
    apply: bool = True,
) -> list[str]:
    """The first step of a rotation with an overlap: a new value for each chosen secret
    (as rotate_secrets chooses them) kept as `<name>_next`, while `<name>` keeps the value
    every client sends; `promote` makes it current. A secret already in a rotation (with
    a `_next` or a `_previous` value) is left as it is, so a rotation stopped half-way is
    finished rather than started again over clients that may hold either value.
    Returns the names staged now, sorted."""
    for name in names:
        kept_name(name, PREVIOUS)
    with _choosing(path, names, patterns, length) as (stored, found):
        chosen = {n for n in found if n + NEXT not in stored and n + PREVIOUS not in stored}
        for name in chosen:
            kept_name(name, PREVIOUS)
        if chosen and apply:
            for name in chosen:
                stored[name + NEXT] = new_value(length, stored[name])
            write(path, stored)
    return sorted(chosen)


def in_rotation(path: Path, names: list[str], patterns: list[str]) -> dict[str, list[str]]:
    """The secrets named or matched that are in a rotation with an overlap: `staged` (a
    `_next` value waits) and `previous` (the old value is still kept), each sorted."""
    stored = read(path)
    compiled = _compile(patterns)
    asked = _chosen(stored, [n for n in names if n in stored], compiled)
    return {
        "staged": sorted(n for n in asked if n + NEXT in stored),
        "previous": sorted(n for n in asked if n + PREVIOUS in stored),
    }


def promote(path: Path, names: list[str], apply: bool = True) -> list[str]:
    """The `_next` value of each of `names` becomes current, the current one `_previous`
    (every server accepts both by now). Returns the names promoted, sorted."""
    for name in names:
        check_name(name)
    with locked(path) as stored:
        chosen = sorted(n for n in set(names) if n + NEXT in stored)
        if chosen and apply:
            for name in chosen:
                stored[name + PREVIOUS] = stored[name]
                stored[name] = stored.pop(name + NEXT)
            write(path, stored)
    return chosen


def forget_previous(path: Path, names: list[str], apply: bool = True) -> list[str]:
    """Remove the `<name>_previous` values of `names` (every client has the new one);
    returns the names whose previous value was (or, with `apply` false, would be) removed."""
    for name in names:
        check_name(name)
    with locked(path) as stored:
        gone = sorted(n for n in set(names) if n + PREVIOUS in stored)
        if gone and apply:
            for name in gone:
                del stored[name + PREVIOUS]
            write(path, stored)
    return gone


# Two users used in turn (the SDN's Keystone user): slot "a" keeps its password under
# `<name>`, slot "b" under `<name>_b`, and `<name>_active` says which one the services
# use (a when absent: a deploy made before the second user existed). Not a secret, kept
# here so the deploy host has one place that says which credential is in force.
def slot_name(name: str, slot: str) -> str:
    """Where the password of `name`'s user in `slot` is kept."""
    if slot not in SLOTS:
        raise SecretStoreError(f"secret: slot of {name} must be a or b")
    return check_name(name if slot == "a" else name + "_b")


def active_slot(stored: Mapping[str, str], name: str) -> str:
    slot = stored.get(name + ACTIVE, "a")
    if slot not in SLOTS:
        raise SecretStoreError(f"secret: {name}{ACTIVE} must be a or b")
    return slot


def stage_standby(path: Path, names: list[str], length: int, apply: bool = True) -> dict[str, str]:
    """A new password for the user of each of `names` that the services do not use (its
    standby slot, created when missing); the active one keeps its value. Returns each
    name's standby slot. The caller then sets the password in the backend, switches the
    services to that user and records it with `activate`."""
    for name in names:
        kept_name(name, ACTIVE)
    check_length(length)
    with locked(path) as stored:
        _check_known(path, stored, names)
        standby = {n: SLOTS[1 - SLOTS.index(active_slot(stored, n))] for n in names}
        if standby and apply:
            for name, slot in standby.items():
                key = slot_name(name, slot)
                stored[key] = new_value(length, stored.get(key))
            write(path, stored)
    return standby


def activate(path: Path, slots: Mapping[str, str], apply: bool = True) -> list[str]:
    """Record which slot each name's services use now (after they switched). Returns the
    names whose active slot changed (would change), sorted; the password must exist."""
    with locked(path) as stored:
        for name, slot in slots.items():
            kept_name(name, ACTIVE)
            if slot_name(name, slot) not in stored:
                raise SecretStoreError(f"{path}: {name} has no password in slot {slot}")
            active_slot(stored, name)
        changed = sorted(n for n, slot in slots.items() if active_slot(stored, n) != slot)
        if changed and apply:
            for name in changed:
                stored[name + ACTIVE] = slots[name]
            write(path, stored)
    return changed
