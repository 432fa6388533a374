"""`auth.backend: keystone` in the config API's config file: what is read, and a bad
value is an error naming the file and the field, before the daemon starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from vrstack.analytics import access
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


# ---- static tokens and Keystone at once -------------------------------------------------

ADMIN_TOKEN, READER_TOKEN, AGENT_TOKEN = "a" * 32, "r" * 32, "g" * 32


def both(tmp_path: Path, **keystone: Any) -> dict[str, Any]:
    """`static` with an `auth.keystone` section: what the roles deploy with OpenStack."""
    data = config(tmp_path, **keystone)
    data["auth"].update(
        backend="static",
        admin_token=ADMIN_TOKEN,
        reader_token=READER_TOKEN,
        agent_token=AGENT_TOKEN,
    )
    return data


def request(token: str | None) -> web.Request:
    return make_mocked_request(
        "GET", "/projects", headers={"X-Auth-Token": token} if token is not None else {}
    )


def test_static_with_a_keystone_section_accepts_both(tmp_path: Path) -> None:
    a = auth.from_settings(load(tmp_path, both(tmp_path, cache_ttl=5)))
    assert isinstance(a, auth.StaticThenKeystone)
    assert a.keystone.ks.cache_ttl == 5 and a.static.admin_tokens == (ADMIN_TOKEN,)
    assert auth.uses_keystone(load(tmp_path, both(tmp_path)))
    plain = both(tmp_path)
    del plain["auth"]["keystone"]
    assert isinstance(auth.from_settings(load(tmp_path, plain)), auth.StaticTokens)
    assert not auth.uses_keystone(load(tmp_path, plain))
    # The static tokens are still checked as without Keystone.
    short = both(tmp_path)
    short["auth"]["admin_token"] = "short"
    with pytest.raises(ConfigError, match=r"auth\.admin_token: must be at least 16"):
        auth.from_settings(load(tmp_path, short))
    # And so is the Keystone section.
    with pytest.raises(ConfigError, match=r"auth\.keystone\.url: must be an http"):
        auth.from_settings(load(tmp_path, both(tmp_path, url="keystone:5000")))


@pytest.mark.asyncio
async def test_static_tokens_work_while_keystone_is_down(tmp_path: Path) -> None:
    """Nothing listens on port 9: the services' static tokens are not held up by it, any
    other token gets 503 with the reason (never 401 or a pass), no token None (401)."""
    data = both(tmp_path, url="http://127.0.0.1:9", timeout=2, cache_ttl=0)
    a = auth.from_settings(load(tmp_path, data))
    try:
        admin = await a.authenticate(request(ADMIN_TOKEN))
        assert admin is not None and admin.can_write and not admin.scoped
        reader = await a.authenticate(request(READER_TOKEN))
        assert reader is not None and not reader.can_write and not reader.scoped
        agent = await a.authenticate(request(AGENT_TOKEN))
        assert agent is not None and agent.may_write("/port-states/x")
        assert not agent.may_write("/projects")
        assert await a.authenticate(request(None)) is None
        with pytest.raises(web.HTTPServiceUnavailable, match="cannot check the token"):
            await a.authenticate(request("a-keystone-token-0001"))
    finally:
        await a.close()


def test_collector_needs_config_api_with_a_keystone_section(tmp_path: Path) -> None:
    data = both(tmp_path)
    with pytest.raises(ConfigError, match=r"config_api\.url: is required with Keystone"):
        access.from_settings(load(tmp_path, data))
    del data["auth"]["keystone"]
    assert access.from_settings(load(tmp_path, data)) is None
