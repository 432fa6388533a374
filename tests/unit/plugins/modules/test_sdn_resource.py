"""sdn_resource's logic (module_utils/sdn_api.py) against a real vrstack-api on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils import sdn_api

SDN_SRC = Path(__file__).resolve().parents[4] / "files" / "sdn-src"
sys.path.insert(0, str(SDN_SRC))
from vrstack_apis import config_api  # noqa: E402

from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN  # noqa: E402


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with config_api(tmp_path_factory.mktemp("api")) as daemon:
        yield daemon.url


def api(url: str, token: str = ADMIN_TOKEN) -> sdn_api.Api:
    return sdn_api.Api(sdn_api.open_url_sender(url, token, timeout=5))


def ensure(url: str, rtype: str, name: str, **kw: Any) -> sdn_api.Outcome:
    return api(url).ensure(sdn_api.Request(rtype=rtype, name=name, **kw))


GLOBAL = {"asn": 64512, "encapsulation_priority": ["MPLSoUDP", "MPLSoGRE", "VXLAN"]}


def test_create_then_no_change_then_update_only_what_differs(api_url: str) -> None:
    first = ensure(api_url, "global-config", "default", fields=GLOBAL)
    assert (first.changed, first.action) == (True, "create")
    assert first.object is not None and first.object["asn"] == 64512 and first.uuid

    again = ensure(api_url, "global-config", "default", fields=GLOBAL)
    assert (again.changed, again.action, again.changed_fields) == (False, "none", [])
    assert again.uuid == first.uuid

    moved = ensure(api_url, "global-config", "default", fields={**GLOBAL, "asn": 64513})
    assert (moved.changed, moved.action, moved.changed_fields) == (True, "update", ["asn"])
    assert moved.before == {"asn": 64512} and moved.after == {"asn": 64513}
    stored = api(api_url).find("global-config", "default", None)
    assert stored is not None and stored["asn"] == 64513
    # Fields not given are kept by the update (PUT sends the whole object).
    assert stored["encapsulation_priority"] == GLOBAL["encapsulation_priority"]
    assert stored["version"] > first.object["version"]


def test_check_mode_reports_and_writes_nothing(api_url: str) -> None:
    fields = {"fabric_address": "198.18.1.17", "datapath": "user"}
    planned = ensure(api_url, "virtual-router", "cmp-check", fields=fields, check_mode=True)
    assert (planned.changed, planned.action) == (True, "create")
    assert api(api_url).find("virtual-router", "cmp-check", None) is None

    ensure(api_url, "virtual-router", "cmp-check", fields=fields)
    moved = {**fields, "fabric_address": "198.18.2.17"}
    planned = ensure(api_url, "virtual-router", "cmp-check", fields=moved, check_mode=True)
    assert (planned.action, planned.changed_fields) == ("update", ["fabric_address"])
    stored = api(api_url).find("virtual-router", "cmp-check", None)
    assert stored is not None and stored["fabric_address"] == "198.18.1.17"

    planned = ensure(api_url, "virtual-router", "cmp-check", state="absent", check_mode=True)
    assert (planned.changed, planned.action) == (True, "delete")
    assert api(api_url).find("virtual-router", "cmp-check", None) is not None


def test_delete_and_delete_again(api_url: str) -> None:
    fields = {"address": "198.18.1.16", "asn": 64512, "role": "control-node"}
    ensure(api_url, "bgp-router", "ctl-gone", fields=fields)
    gone = ensure(api_url, "bgp-router", "ctl-gone", state="absent")
    assert (gone.changed, gone.action) == (True, "delete")
    assert api(api_url).find("bgp-router", "ctl-gone", None) is None
    assert ensure(api_url, "bgp-router", "ctl-gone", state="absent").changed is False


@pytest.mark.parametrize(
    ("rtype", "fields", "status", "field"),
    [
        ("bgp-router", {"address": "198.18.1.16", "asn": 64512, "role": "spine"}, 400, "role"),
        ("bgp-router", {"address": "not-an-ip", "asn": 64512, "role": "gateway"}, 400, "address"),
        ("virtual-router", {"fabric_address": "198.18.1.1", "colour": "red"}, 400, "colour"),
    ],
)
def test_refused_objects_name_the_field(
    api_url: str, rtype: str, fields: dict[str, Any], status: int, field: str
) -> None:
    with pytest.raises(sdn_api.ApiError) as err:
        ensure(api_url, rtype, "bad", fields=fields)
    assert err.value.status == status and err.value.field_name == field, str(err.value)
    assert api(api_url).find(rtype, "bad", None) is None


def test_a_value_the_api_normalises_is_reported(api_url: str) -> None:
    fields = {"address": "2001:db8:0:0::1", "asn": 64512, "role": "gateway"}
    with pytest.raises(sdn_api.ApiError) as err:
        ensure(api_url, "bgp-router", "gw6", fields=fields)
    assert '"2001:db8::1"' in str(err.value) and err.value.field_name == "fields.address"


def test_read_only_token_and_bad_token(api_url: str) -> None:
    with pytest.raises(sdn_api.ApiError) as err:
        api(api_url, READER_TOKEN).ensure(sdn_api.Request("project", "ro", {}))
    assert err.value.status == 403
    with pytest.raises(sdn_api.ApiError) as err:
        api(api_url, "wrong-token-0000000000").ensure(sdn_api.Request("project", "ro", {}))
    assert err.value.status == 401


def test_unreachable_api_is_a_clear_error() -> None:
    # Port 1 on loopback: nothing listens there.
    with pytest.raises(
        sdn_api.ApiError, match=r"cannot reach the config API at http://127\.0\.0\.1:1"
    ):
        api("http://127.0.0.1:1").ensure(sdn_api.Request("project", "x", {}))


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"uuid": "x"}, "uuid"), ({"version": 3, "name": "y"}, "name, version")],
)
def test_fields_the_api_owns_are_refused_before_any_request(
    fields: dict[str, Any], message: str
) -> None:
    def send(*_a: Any) -> tuple[int, dict, Any]:
        raise AssertionError("no request expected")

    with pytest.raises(sdn_api.ApiError, match=message):
        sdn_api.Api(send).ensure(sdn_api.Request("project", "p", fields))


def test_a_concurrent_write_is_read_again_and_retried() -> None:
    """The API answers 412 to the first PUT (someone wrote in between)."""
    obj = {"uuid": "u1", "type": "project", "name": "p", "version": 4, "description": "a"}
    calls: list[tuple[str, str, Any]] = []

    def send(method: str, path: str, body: Any, headers: dict) -> tuple[int, dict, Any]:
        calls.append((method, path, headers.get("If-Match")))
        if method == "GET":
            return 200, {}, {"items": [obj], "next": None, "revision": obj["version"]}
        if len([c for c in calls if c[0] == "PUT"]) == 1:
            obj["version"] = 5  # the other writer's version
            return 412, {}, {"error": "version mismatch", "field": "If-Match"}
        return 200, {}, {**obj, **body, "version": 6}

    out = sdn_api.Api(send).ensure(sdn_api.Request("project", "p", {"description": "b"}))
    assert out.action == "update" and out.object is not None and out.object["version"] == 6
    puts = [c for c in calls if c[0] == "PUT"]
    assert [c[2] for c in puts] == ['"4"', '"5"']


@pytest.mark.parametrize(
    ("current", "wanted", "expected"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, ["a"]),
        ({}, {"a": None}, []),
        ({"l": [1, 2]}, {"l": [2, 1]}, ["l"]),  # order matters (priorities)
        ({"d": {"x": 1, "y": 2}}, {"d": {"y": 2, "x": 1}}, []),
        ({"a": 1, "b": 2}, {"b": 3, "c": 4}, ["b", "c"]),
    ],
)
def test_differing(current: dict[str, Any], wanted: dict[str, Any], expected: list[str]) -> None:
    assert sdn_api.differing(current, wanted) == expected
