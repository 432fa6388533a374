"""The SDN's Keystone user, two used in turn (playbooks/rotate-secrets.yml,
rotate=sdn_keystone): the config API's and the collector's configs name the user the
deploy host's secrets file says is in use, with its password, so a deploy after a
rotation writes the same files (changed=0); `sdn_keystone_users_alternate: false` keeps
the single user; the playbook's slot override wins over the file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "plugins" / "modules"))
from test_sdn_roles_render import (  # noqa: E402
    ANALYTICS_TOKENS,
    LAB,
    TOKENS,
    auth,
    node_pki,
    render,
    render_vars,
    settings,
)

from ansible_collections.vrstack.cloud.plugins.module_utils import secret_store  # noqa: E402

KS = "sdn_keystone_password"
ROLES = [("sdn_config", "api.yaml.j2"), ("sdn_analytics", "collector.yaml.j2")]


def user_of(tmp_path: Path, role: str, template: str, **extra: Any) -> tuple[str, str]:
    pki = node_pki(tmp_path)
    t = render_vars(
        LAB,
        "lab-ctl1",
        ["sdn_package", role],
        **{f"{role}_pki_dir": str(pki)},
        **TOKENS,
        **ANALYTICS_TOKENS,
        **extra,
    )
    checker = auth.from_settings(settings(tmp_path, "x.yaml", render(t, role, template)))
    assert isinstance(checker, auth.StaticThenKeystone)
    return checker.keystone.ks.username, checker.keystone.ks.password


@pytest.mark.parametrize(("role", "template"), ROLES)
def test_the_configs_follow_the_user_in_use(tmp_path: Path, role: str, template: str) -> None:
    store = tmp_path / "store" / "secrets.yml"
    (pw_a,) = secret_store.get_secrets(store, [KS], 32)
    files = {"vrstack_secrets_file": str(store)}
    assert user_of(tmp_path, role, template, **files) == ("vrstack-sdn", pw_a)
    assert "sdn_keystone_password_active" not in store.read_text()  # reading writes nothing
    secret_store.stage_standby(store, [KS], 32)
    pw_b = secret_store.read(store)[KS + "_b"]
    # B has its password but is not in use yet: the deploy keeps A.
    assert user_of(tmp_path, role, template, **files) == ("vrstack-sdn", pw_a)
    # What the rotation's switch passes before it records the switch.
    slot = {f"{role}_keystone_slot": "b"}
    assert user_of(tmp_path, role, template, **files, **slot) == ("vrstack-sdn-b", pw_b)
    secret_store.activate(store, {KS: "b"})
    assert user_of(tmp_path, role, template, **files) == ("vrstack-sdn-b", pw_b)
    # One user only: A whatever the file says.
    single = {"sdn_keystone_users_alternate": False}
    assert user_of(tmp_path, role, template, **files, **single) == ("vrstack-sdn", pw_a)
