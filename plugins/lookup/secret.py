# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place deployment secrets come from: generated the first time they are
asked for and kept in a file on the deploy host that only its owner can read."""

from __future__ import annotations

DOCUMENTATION = r"""
name: secret
author: vrstack developers (@vrstack)
short_description: A deployment secret, generated once and kept on the deploy host
description:
  - Returns the secret stored under each name in the deploy host's secrets file.
  - A name that is not there yet gets a random value of letters and digits, which is
    written to the file (atomically, under a lock) before it is returned, so every
    later run and every other role sees the same value.
  - The file and its directory must be readable by their owner only (0600 and 0700);
    a file that others can read is refused rather than used.
  - The file lives on the deploy host, so the lookup writes it in check mode too.
  - Pass every value it returns through tasks with C(no_log=true).
options:
  _terms:
    description: Names of the secrets, lower case letters, digits and underscores.
    required: true
    type: list
    elements: str
  length:
    description: Length of a newly generated secret.
    type: int
    default: 32
  file:
    description:
      - The secrets file.
      - Defaults to C(vrstack_secrets_file), else
        C(~/.local/share/vrstack/<cluster name>/secrets.yml) with the cluster name of
        the fabric model (C(vrstack_fabric)).
    type: path
"""

EXAMPLES = r"""
- name: Configure MariaDB's root password
  ansible.builtin.template:
    src: my.cnf.j2
    dest: /root/.my.cnf
    mode: "0600"
  vars:
    mariadb_root_password: "{{ lookup('vrstack.cloud.secret', 'mariadb_root_password') }}"
  no_log: true

- name: An Erlang cookie of 20 characters
  ansible.builtin.set_fact:
    rabbitmq_cookie: "{{ lookup('vrstack.cloud.secret', 'rabbitmq_erlang_cookie', length=20) }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: The secrets, in the order of the names.
  type: list
  elements: str
"""

import fcntl
import os
import re
import secrets
import stat
import string
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ALPHABET = string.ascii_letters + string.digits


def default_path(variables: Mapping[str, Any]) -> Path:
    model = variables.get("vrstack_fabric")
    cluster = model.get("name") if isinstance(model, Mapping) else None
    if not cluster:
        raise AnsibleLookupError(
            "secret: no secrets file: set vrstack_secrets_file or use a fabric inventory "
            "(vrstack_fabric names the cluster)"
        )
    return Path.home() / ".local" / "share" / "vrstack" / str(cluster) / "secrets.yml"


def _check_private(path: Path, mode: int) -> None:
    if stat.S_IMODE(mode) & 0o077:
        raise AnsibleLookupError(
            f"{path}: mode {stat.S_IMODE(mode):04o} lets others read the secrets; "
            f"run 'chmod go= {path}' after checking who read it"
        )


def _read(path: Path) -> dict[str, str]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    _check_private(path, st.st_mode)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AnsibleLookupError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise AnsibleLookupError(f"{path}: must be a mapping of secret names to strings")
    return data


def _write(path: Path, data: Mapping[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("# vrstack deployment secrets: keep this file private and backed up.\n")
            yaml.safe_dump(dict(sorted(data.items())), out, default_flow_style=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get_secrets(path: Path, names: list[str], length: int) -> list[str]:
    """The secrets `names` from `path`, generating and storing the missing ones."""
    for name in names:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise AnsibleLookupError(
                f"secret: name {name!r} must match {NAME_RE.pattern} (lower case, digits, _)"
            )
    if not 16 <= length <= 256:
        raise AnsibleLookupError(f"secret: length {length} must be between 16 and 256")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(path.parent, path.parent.stat().st_mode)
    lock = path.with_name(path.name + ".lock")
    with open(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600), "w", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        stored = _read(path)
        missing = [n for n in names if n not in stored]
        if missing:
            for name in missing:
                stored[name] = "".join(secrets.choice(ALPHABET) for _char in range(length))
            _write(path, stored)
    return [stored[n] for n in names]


class LookupModule(LookupBase):
    def run(
        self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[str]:
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        path = self.get_option("file")
        if not path and variables.get("vrstack_secrets_file"):
            path = self._templar.template(variables["vrstack_secrets_file"])
        target = Path(os.path.expanduser(str(path))) if path else default_path(variables)
        # str(): names templated from variables arrive as tagged str subclasses,
        # which the YAML dumper cannot write.
        names = [str(t) if isinstance(t, str) else t for t in terms]
        return get_secrets(target, names, int(self.get_option("length")))
