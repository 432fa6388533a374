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
  - Values change only through the module C(vrstack.cloud.secret_rotate)
    (C(playbooks/rotate-secrets.yml)); the file's format, lock and permission checks live in
    C(plugins/module_utils/secret_store.py), which both use.
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
  default:
    description:
      - Returned for a name that is not in the file, which is then left as it is (nothing
        generated, nothing written). For a record kept beside the secrets, such as which of
        two users is in use (C(sdn_keystone_password_active), written by
        C(vrstack.cloud.secret_rotate)).
    type: str
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

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.vrstack.cloud.plugins.module_utils import secret_store
from ansible_collections.vrstack.cloud.plugins.module_utils.secret_store import (
    ALPHABET,
    NAME_RE,
    SecretStoreError,
)

__all__ = ["ALPHABET", "NAME_RE", "default_path", "get_or_default", "get_secrets"]


def default_path(variables: Mapping[str, Any]) -> Path:
    model = variables.get("vrstack_fabric")
    cluster = model.get("name") if isinstance(model, Mapping) else None
    if not cluster:
        raise AnsibleLookupError(
            "secret: no secrets file: set vrstack_secrets_file or use a fabric inventory "
            "(vrstack_fabric names the cluster)"
        )
    return secret_store.cluster_path(str(cluster))


def get_secrets(path: Path, names: list[str], length: int) -> list[str]:
    """The secrets `names` from `path`, generating and storing the missing ones."""
    try:
        return secret_store.get_secrets(path, names, length)
    except SecretStoreError as exc:
        raise AnsibleLookupError(str(exc)) from None


def get_or_default(path: Path, names: list[str], default: str) -> list[str]:
    """The stored values of `names`, `default` for those not stored; writes nothing."""
    try:
        stored = secret_store.read(path)
        return [stored.get(secret_store.check_name(n), default) for n in names]
    except SecretStoreError as exc:
        raise AnsibleLookupError(str(exc)) from None


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
        default = self.get_option("default")
        if default is not None:
            return get_or_default(target, names, str(default))
        return get_secrets(target, names, int(self.get_option("length")))
