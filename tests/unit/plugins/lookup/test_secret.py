"""The secret lookup: generated once, stored privately, the same on every call."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import lookup_loader

from ansible_collections.vrstack.cloud.plugins.lookup.secret import get_secrets


def lookup():
    return lookup_loader.get("vrstack.cloud.secret")


def test_generated_once_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "lab" / "secrets.yml"
    first = get_secrets(path, ["db_password", "token"], 32)
    assert len(first) == 2 and first[0] != first[1]
    assert all(len(v) == 32 and v.isalnum() for v in first)
    assert get_secrets(path, ["token", "db_password"], 32) == [first[1], first[0]]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert first[0] in path.read_text()


def test_a_new_name_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    (old,) = get_secrets(path, ["a"], 20)
    (new,) = get_secrets(path, ["b"], 40)
    assert len(old) == 20 and len(new) == 40
    assert get_secrets(path, ["a", "b"], 32) == [old, new]


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    get_secrets(path, ["a"], 32)
    os.chmod(path, 0o644)
    with pytest.raises(AnsibleLookupError, match=r"s\.yml: mode 0644 lets others read"):
        get_secrets(path, ["a"], 32)


@pytest.mark.parametrize(
    ("names", "length", "message"),
    [
        (["Bad-Name"], 32, "name 'Bad-Name' must match"),
        ([""], 32, "name '' must match"),
        (["ok"], 8, "length 8 must be between 16 and 256"),
    ],
)
def test_bad_requests(tmp_path: Path, names: list[str], length: int, message: str) -> None:
    with pytest.raises(AnsibleLookupError, match=message):
        get_secrets(tmp_path / "s.yml", names, length)
    assert not (tmp_path / "s.yml").exists()


def test_a_corrupt_file_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    path.write_text("- not\n- a mapping\n")
    os.chmod(path, 0o600)
    with pytest.raises(AnsibleLookupError, match="must be a mapping of secret names"):
        get_secrets(path, ["a"], 32)
    assert path.read_text() == "- not\n- a mapping\n"


def test_plugin_uses_the_cluster_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    plugin = lookup()
    (value,) = plugin.run(["x"], variables={"vrstack_fabric": {"name": "lab"}})
    stored = tmp_path / ".local/share/vrstack/lab/secrets.yml"
    assert value in stored.read_text()
    explicit = tmp_path / "other.yml"
    (other,) = plugin.run(["x"], variables={}, file=str(explicit))
    assert other != value and other in explicit.read_text()


def test_plugin_without_a_cluster_says_what_to_set() -> None:
    with pytest.raises(AnsibleLookupError, match="set vrstack_secrets_file"):
        lookup().run(["x"], variables={})


def test_a_default_is_returned_for_a_missing_name_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    assert lookup().run(["x_active"], variables={}, file=str(path), default="a") == ["a"]
    assert not path.exists()
    (value,) = get_secrets(path, ["x"], 32)
    before = path.read_bytes()
    got = lookup().run(["x", "x_active"], variables={}, file=str(path), default="a")
    assert got == [value, "a"] and path.read_bytes() == before
    with pytest.raises(AnsibleLookupError, match="must match"):
        lookup().run(["Bad-Name"], variables={}, file=str(path), default="a")
