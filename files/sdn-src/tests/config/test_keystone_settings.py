"""`auth.backend: keystone` in the config API's config file: what is read, and a bad
value is an error naming the file and the field, before the daemon starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vrstack.config import auth
from vrstack.config.main import main
from vrstack.service.settings import ConfigError, Settings


def config(tmp_path: Path, **keystone: Any) -> dict[str, Any]:
    return {
        "store": {"backend": "sqlite", "path": str(tmp_path / "config.db")},
        "listen": {"host": "127.0.0.1", "port": 0},
        "auth": {
            "backend": "keystone",
            "keystone": {
                "url": "http://198.18.1.10:5000",
                "username": "vrstack-api",
                "password": "pw",
                **keystone,
            },
        },
    }


def load(tmp_path: Path, data: dict[str, Any], name: str = "api.yaml") -> Settings:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return Settings.load(path)


def test_keystone_settings_defaults_and_role_lists(tmp_path: Path) -> None:
    a = auth.from_settings(load(tmp_path, config(tmp_path)))
    assert isinstance(a, auth.KeystoneTokens)
    ks = a.ks
    assert ks.v3 == "http://198.18.1.10:5000/v3"
    assert (ks.user_domain, ks.project, ks.project_domain) == ("Default", "service", "Default")
    assert ks.admin_roles == ("admin",) and ks.reader_roles == ("reader", "member")
    assert (ks.cache_ttl, ks.cache_size, ks.timeout, ks.tls_files) == (60.0, 10000, 5.0, None)
    custom = config(
        tmp_path,
        url="https://keystone.example:5000/v3/",
        admin_roles=["cloud-admin"],
        reader_roles="reader, auditor",
        cache_ttl=0,
    )
    ks = auth.from_settings(load(tmp_path, custom)).ks  # type: ignore[attr-defined]
    assert ks.v3 == "https://keystone.example:5000/v3"
    assert ks.admin_roles == ("cloud-admin",) and ks.reader_roles == ("reader", "auditor")
    assert ks.cache_ttl == 0


def test_keystone_settings_from_an_ini_file(tmp_path: Path) -> None:
    path = tmp_path / "api.ini"
    path.write_text(
        "[auth]\nbackend = keystone\n"
        "[auth.keystone]\nurl = http://198.18.1.10:5000\nusername = u\npassword = p\n"
        "reader_roles = reader, member, auditor\ncache_ttl = 30\n"
    )
    ks = auth.from_settings(Settings.load(path)).ks  # type: ignore[attr-defined]
    assert (ks.username, ks.cache_ttl) == ("u", 30.0)
    assert ks.reader_roles == ("reader", "member", "auditor")
    path.write_text("[auth.keystone]\nurl = x\n[auth]\nkeystone = y\n")
    with pytest.raises(ConfigError, match=r"auth\.keystone: is both a value and a section"):
        Settings.load(path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "keystone:5000"}, "auth.keystone.url"),
        ({"url": None}, "auth.keystone.url"),
        ({"username": None}, "auth.keystone.username"),
        ({"password": None}, "auth.keystone.password"),
        ({"admin_roles": []}, "auth.keystone.admin_roles"),
        ({"admin_roles": [1]}, "auth.keystone.admin_roles"),
        ({"reader_roles": ["admin"]}, "auth.keystone.reader_roles"),
        ({"cache_ttl": -1}, "auth.keystone.cache_ttl"),
        ({"cache_ttl": "soon"}, "auth.keystone.cache_ttl"),
        ({"cache_size": 0}, "auth.keystone.cache_size"),
        ({"timeout": 0}, "auth.keystone.timeout"),
        ({"tls": {"ca": "/nonexistent/ca.pem"}, "url": "https://k:5000"}, "auth.keystone.tls.ca"),
        ({"tls": {"enabled": True}}, "auth.keystone.tls"),
    ],
)
def test_bad_keystone_settings_name_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], field: str
) -> None:
    data = config(tmp_path)
    for key, value in change.items():
        if value is None:
            del data["auth"]["keystone"][key]
        else:
            data["auth"]["keystone"][key] = value
    path = tmp_path / "api.yaml"
    path.write_text(json.dumps(data))
    assert main(["--config", str(path)]) == 2  # before listening or opening the store
    assert f"vrstack-api: config error: {path}: {field}: " in capsys.readouterr().err


def test_unknown_backend_names_the_field(tmp_path: Path) -> None:
    data = config(tmp_path)
    data["auth"]["backend"] = "ldap"
    with pytest.raises(ConfigError, match=r"api\.yaml: auth\.backend: must be one of static"):
        auth.from_settings(load(tmp_path, data))
