"""Rotating secrets in the store (module_utils/secret_store.py): new values for what was
asked and nothing else, the file replaced in one rename with its owner and mode, nothing
written when only asked what would change."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from ansible_collections.vrstack.cloud.plugins.lookup.secret import get_secrets
from ansible_collections.vrstack.cloud.plugins.module_utils import secret_store
from ansible_collections.vrstack.cloud.plugins.module_utils.secret_store import (
    SecretStoreError,
    rotate_secrets,
)

NAMES = [
    "glance_keystone_password",
    "glance_db_password",
    "rabbitmq_nova_password",
    "rabbitmq_neutron_password",
    "rabbitmq_erlang_cookie",
    "keystone_admin_password",
]
RABBIT = "rabbitmq_[a-z0-9_]+_password"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "lab" / "secrets.yml"
    values = get_secrets(path, NAMES, 32)
    return path, dict(zip(NAMES, values, strict=True))


def stored(path: Path) -> dict[str, str]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_named_secrets_get_new_values_and_the_others_keep_theirs(
    store: tuple[Path, dict[str, str]],
) -> None:
    path, before = store
    rotated = rotate_secrets(path, ["glance_keystone_password"], [], 32)
    assert rotated == ["glance_keystone_password"]
    after = stored(path)
    new = after["glance_keystone_password"]
    assert new != before["glance_keystone_password"]
    assert len(new) == 32 and new.isalnum()
    assert {k: v for k, v in after.items() if k != "glance_keystone_password"} == {
        k: v for k, v in before.items() if k != "glance_keystone_password"
    }
    # What every role reads from now on.
    assert get_secrets(path, ["glance_keystone_password"], 32) == [new]


def test_patterns_match_whole_names_of_stored_secrets_only(
    store: tuple[Path, dict[str, str]],
) -> None:
    path, before = store
    rotated = rotate_secrets(path, [], [RABBIT, "nova_controller_db_password"], 32)
    # The cookie does not end in _password; a pattern that matches nothing creates nothing.
    assert rotated == ["rabbitmq_neutron_password", "rabbitmq_nova_password"]
    after = stored(path)
    assert set(after) == set(before)
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == rotated
    # Partial matches do not count: "glance" alone matches no whole name.
    assert rotate_secrets(path, [], ["glance"], 32) == []
    assert stored(path) == after


def test_two_rotations_give_two_different_values(store: tuple[Path, dict[str, str]]) -> None:
    path, before = store
    seen = {before["glance_db_password"]}
    for _round in range(3):
        rotate_secrets(path, ["glance_db_password"], [], 32)
        seen.add(stored(path)["glance_db_password"])
    assert len(seen) == 4


def test_the_file_keeps_its_mode_and_is_replaced_by_a_rename(
    store: tuple[Path, dict[str, str]],
) -> None:
    path, before = store
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    old_inode = path.stat().st_ino
    with path.open(encoding="utf-8") as reader:  # opened before: sees the whole old file
        rotate_secrets(path, ["glance_db_password"], [], 32)
        old_text = reader.read()
    assert yaml.safe_load(old_text)["glance_db_password"] == before["glance_db_password"]
    st = path.stat()
    assert st.st_ino != old_inode, "the file should be replaced, not rewritten in place"
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    # No temporary file or copy of the old values stays beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.yml", "secrets.yml.lock"]
    # A stricter mode the operator chose is kept too.
    os.chmod(path, 0o400)
    rotate_secrets(path, ["glance_db_password"], [], 32)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400


def test_a_failed_write_leaves_the_old_file_whole(
    store: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _before = store
    text = path.read_text()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    # The new file is written and about to be renamed when the disk fails.
    monkeypatch.setattr(secret_store.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        rotate_secrets(path, ["glance_db_password"], [], 32)
    assert path.read_text() == text
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.yml", "secrets.yml.lock"]


def test_asking_only_what_would_change_writes_nothing(
    store: tuple[Path, dict[str, str]],
) -> None:
    path, _before = store
    text, inode = path.read_text(), path.stat().st_ino
    assert rotate_secrets(path, ["glance_db_password"], [RABBIT], 32, apply=False) == [
        "glance_db_password",
        "rabbitmq_neutron_password",
        "rabbitmq_nova_password",
    ]
    assert (path.read_text(), path.stat().st_ino) == (text, inode)


def test_nothing_asked_rotates_nothing(store: tuple[Path, dict[str, str]]) -> None:
    path, _before = store
    inode = path.stat().st_ino
    assert rotate_secrets(path, [], [], 32) == []
    assert path.stat().st_ino == inode


@pytest.mark.parametrize(
    ("names", "patterns", "message"),
    [
        (["glance_keystone_pasword"], [], "no secret named glance_keystone_pasword to rotate"),
        (["Bad-Name"], [], "name 'Bad-Name' must match"),
        ([], ["rabbitmq_(["], "bad pattern"),
    ],
)
def test_bad_requests_change_nothing(
    store: tuple[Path, dict[str, str]], names: list[str], patterns: list[str], message: str
) -> None:
    path, _before = store
    text = path.read_text()
    with pytest.raises(SecretStoreError, match=message):
        rotate_secrets(path, names, patterns, 32)
    assert path.read_text() == text


def test_a_file_others_can_read_is_refused(store: tuple[Path, dict[str, str]]) -> None:
    path, _before = store
    os.chmod(path, 0o640)
    with pytest.raises(SecretStoreError, match="mode 0640 lets others read"):
        rotate_secrets(path, ["glance_db_password"], [], 32)


# ---- rotations with an overlap (tokens many clients send) --------------------------------

TOKENS = ["sdn_api_admin_token", "sdn_api_reader_token", "sdn_analytics_admin_token"]
API_TOKENS = ["sdn_api_[a-z]+_token"]


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "lab" / "secrets.yml"
    values = get_secrets(path, TOKENS, 32)
    return path, dict(zip(TOKENS, values, strict=True))


def test_the_three_steps_keep_a_value_every_server_accepts_under_the_name(
    tokens: tuple[Path, dict[str, str]],
) -> None:
    """Whoever reads `<name>` from the file at any moment gets a value the servers accept:
    the old one until they accept both (promote), then the new one."""
    path, before = tokens
    name = "sdn_api_admin_token"
    assert secret_store.stage_secrets(path, [name], [], 32) == [name]
    staged = stored(path)
    assert staged[name] == before[name]  # clients keep sending the old value
    new = staged[name + "_next"]
    assert new != before[name] and len(new) == 32 and new.isalnum()
    assert secret_store.in_rotation(path, [], API_TOKENS) == {"staged": [name], "previous": []}
    assert secret_store.promote(path, [name, "sdn_api_reader_token"]) == [name]
    promoted = stored(path)
    assert (promoted[name], promoted[name + "_previous"]) == (new, before[name])
    assert name + "_next" not in promoted
    assert secret_store.in_rotation(path, [name], []) == {"staged": [], "previous": [name]}
    assert secret_store.forget_previous(path, [*TOKENS]) == [name]
    after = stored(path)
    assert after == {**before, name: new}  # nothing else changed, nothing left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_rotation_stopped_half_way_is_not_started_again(
    tokens: tuple[Path, dict[str, str]],
) -> None:
    """Clients may hold either value: a new one would cut off those on the oldest."""
    path, _before = tokens
    secret_store.stage_secrets(path, ["sdn_api_admin_token"], [], 32)
    first = stored(path)
    again = secret_store.stage_secrets(path, [], API_TOKENS, 32)
    assert again == ["sdn_api_reader_token"]  # the admin token goes on with its values
    second = stored(path)
    assert {k: second[k] for k in first} == first
    secret_store.promote(path, ["sdn_api_admin_token"])
    promoted = stored(path)
    assert secret_store.stage_secrets(path, ["sdn_api_admin_token"], [], 32) == []
    assert stored(path) == promoted


def test_patterns_never_rotate_a_kept_value(tokens: tuple[Path, dict[str, str]]) -> None:
    path, _before = tokens
    secret_store.stage_secrets(path, ["sdn_api_admin_token"], [], 32)
    kept = stored(path)["sdn_api_admin_token_next"]
    rotated = rotate_secrets(path, [], ["sdn_api_.+"], 32)
    assert rotated == ["sdn_api_admin_token", "sdn_api_reader_token"]
    assert stored(path)["sdn_api_admin_token_next"] == kept


def test_asking_only_what_would_change_in_each_step_writes_nothing(
    tokens: tuple[Path, dict[str, str]],
) -> None:
    path, _before = tokens
    name = "sdn_api_admin_token"
    untouched = path.read_bytes()
    assert secret_store.stage_secrets(path, [name], [], 32, apply=False) == [name]
    assert path.read_bytes() == untouched
    secret_store.stage_secrets(path, [name], [], 32)
    staged = path.read_bytes()
    assert secret_store.promote(path, [name], apply=False) == [name]
    assert path.read_bytes() == staged
    secret_store.promote(path, [name])
    promoted = path.read_bytes()
    assert secret_store.forget_previous(path, [name], apply=False) == [name]
    assert path.read_bytes() == promoted
    assert secret_store.promote(path, [name]) == []  # nothing staged: no write
    assert path.read_bytes() == promoted


def test_a_name_too_long_for_its_kept_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lab" / "secrets.yml"
    name = "a" * 60
    get_secrets(path, [name], 32)
    before = path.read_bytes()
    with pytest.raises(SecretStoreError, match="must match"):
        secret_store.stage_secrets(path, [name], [], 32)
    assert path.read_bytes() == before


# ---- two users in turn (the SDN's Keystone user) -----------------------------------------

KS = "sdn_keystone_password"


@pytest.fixture
def ks_store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "lab" / "secrets.yml"
    values = get_secrets(path, [KS, "other_password"], 32)
    return path, dict(zip([KS, "other_password"], values, strict=True))


def test_each_rotation_gives_the_unused_user_a_new_password_and_switches(
    ks_store: tuple[Path, dict[str, str]],
) -> None:
    path, before = ks_store
    # (active before, standby it stages, the key of the standby's password)
    for active, standby, key in [("a", "b", KS + "_b"), ("b", "a", KS), ("a", "b", KS + "_b")]:
        was = stored(path)
        assert secret_store.active_slot(was, KS) == active
        assert secret_store.stage_standby(path, [KS], 32) == {KS: standby}
        now = stored(path)
        assert now[key] != was.get(key) and len(now[key]) == 32
        in_use = secret_store.slot_name(KS, active)
        assert now[in_use] == was[in_use]  # the services' password never changes here
        assert secret_store.activate(path, {KS: standby}) == [KS]
        assert secret_store.active_slot(stored(path), KS) == standby
    assert stored(path)["other_password"] == before["other_password"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_active_record_is_never_rotated_as_a_secret(
    ks_store: tuple[Path, dict[str, str]],
) -> None:
    path, _before = ks_store
    secret_store.stage_standby(path, [KS], 32)
    secret_store.activate(path, {KS: "b"})
    assert rotate_secrets(path, [], ["sdn_keystone_.+"], 32) == [KS, KS + "_b"]
    assert stored(path)[KS + "_active"] == "b"


BAD_ALTERNATES = [
    # (call, message)
    (lambda p: secret_store.stage_standby(p, ["never_made"], 32), "no secret named never_made"),
    (lambda p: secret_store.activate(p, {KS: "b"}), "has no password in slot b"),
    (lambda p: secret_store.activate(p, {KS: "x"}), "must be a or b"),
    (lambda p: secret_store.stage_standby(p, ["a" * 60], 32), "must match"),
]


@pytest.mark.parametrize(("call", "message"), BAD_ALTERNATES)
def test_bad_alternate_requests_change_nothing(
    ks_store: tuple[Path, dict[str, str]], call: object, message: str
) -> None:
    path, _before = ks_store
    untouched = path.read_bytes()
    with pytest.raises(SecretStoreError, match=message):
        call(path)  # type: ignore[operator]
    assert path.read_bytes() == untouched


def test_a_corrupt_active_record_is_refused(ks_store: tuple[Path, dict[str, str]]) -> None:
    path, before = ks_store
    secret_store.write(path, {**before, KS + "_active": "c"})
    with pytest.raises(SecretStoreError, match="_active must be a or b"):
        secret_store.stage_standby(path, [KS], 32)


def test_asking_what_would_change_writes_nothing(ks_store: tuple[Path, dict[str, str]]) -> None:
    path, _before = ks_store
    untouched = path.read_bytes()
    assert secret_store.stage_standby(path, [KS], 32, apply=False) == {KS: "b"}
    assert path.read_bytes() == untouched
    secret_store.stage_standby(path, [KS], 32)
    staged = path.read_bytes()
    assert secret_store.activate(path, {KS: "b"}, apply=False) == [KS]
    assert path.read_bytes() == staged
    assert secret_store.activate(path, {KS: "a"}) == []  # already a: no write
    assert path.read_bytes() == staged
