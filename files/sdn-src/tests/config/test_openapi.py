"""The served OpenAPI document matches the server: same routes, and real requests and
responses validate against its schemas; what the document refuses, the server refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vrstack.config.auth import StaticTokens
from vrstack.config.client import ApiError, ConfigClient
from vrstack.config.fields import Ref
from vrstack.config.model import RESOURCES, Resource
from vrstack.config.objects import ConfigDB
from vrstack.config.server import make_app
from vrstack.config.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN

JSON = dict[str, Any]


class Doc:
    def __init__(self, doc: JSON) -> None:
        self.doc = doc

    def validator(self, schema: JSON) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator({**schema, "components": self.doc["components"]})

    def check(self, schema: JSON, value: Any) -> None:
        self.validator(schema).validate(value)

    def response(self, path: str, method: str, status: int, value: Any) -> None:
        responses = self.doc["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method} {path} answered {status}, not documented"
        content = responses[str(status)].get("content")
        if content:
            self.check(content["application/json"]["schema"], value)

    def request_schema(self, path: str, method: str) -> JSON:
        schema: JSON = self.doc["paths"][path][method]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        return schema


async def call(
    c: ConfigClient, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    try:
        return 200, await c.request(method, path, body, **kw)
    except ApiError as exc:
        return exc.status, exc.body


def test_routes_match_the_document(tmp_path: Path) -> None:
    app = make_app(
        ConfigDB(SQLiteStore(str(tmp_path / "x.db"))), StaticTokens("a" * 16, None), "sqlite"
    )
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    from vrstack.config.openapi import document

    doc = document()
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    assert served == documented
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)  # raises, naming the bad part


async def _referenced_objects(admin: ConfigClient) -> dict[str, str]:
    """A project, a network and a port that other resources' references can point at."""
    ctx = {"project": (await admin.create("project", {"name": "ctx"}))["uuid"]}
    ctx["virtual-network"] = (
        await admin.create(
            "virtual-network",
            {
                "name": "ctx",
                "parent_uuid": ctx["project"],
                "external": True,
                "subnets": [{"cidr": "198.19.0.0/24"}],
            },
        )
    )["uuid"]
    ctx["virtual-machine-interface"] = (
        await admin.create(
            "virtual-machine-interface",
            {
                "name": "ctx",
                "parent_uuid": ctx["project"],
                "virtual_network": ctx["virtual-network"],
            },
        )
    )["uuid"]
    return ctx


def _filled(res: Resource, ctx: dict[str, str], suffix: str = "") -> JSON:
    body = dict(res.example)
    if res.name != "global-config":
        body["name"] = body["name"] + suffix
    if res.parent:
        body["parent_uuid"] = ctx[res.parent]
    for key, spec in res.fields.items():
        if isinstance(spec, Ref) and spec.required:
            body[key] = ctx[spec.target]
    return body


@pytest.mark.asyncio
async def test_every_resource_round_trips_through_the_document(admin: ConfigClient) -> None:
    doc = Doc(await admin.request("GET", "/openapi.json"))
    start = (await admin.request("GET", "/health"))["revision"]
    ctx = await _referenced_objects(admin)

    for res in RESOURCES.values():
        coll, item = f"/{res.plural}", f"/{res.plural}/{{uuid}}"
        body = _filled(res, ctx, "-doc")
        doc.check(doc.request_schema(coll, "post"), body)
        status, created = await call(admin, "POST", coll, body)
        assert status == 200, (res.name, created)
        doc.response(coll, "post", 201, created)

        status, got = await call(admin, "GET", f"{coll}/{created['uuid']}")
        doc.response(item, "get", 200, got)
        assert got == created

        status, page = await call(admin, "GET", coll, params={"limit": 5})
        doc.response(coll, "get", 200, page)

        # A client may PUT back what it read; the document says so too.
        doc.check(doc.request_schema(item, "put"), got)
        status, updated = await call(
            admin, "PUT", f"{coll}/{got['uuid']}", got, headers={"If-Match": f'"{got["version"]}"'}
        )
        assert status == 200, (res.name, updated)
        doc.response(item, "put", 200, updated)

        status, err = await call(
            admin, "PUT", f"{coll}/{got['uuid']}", got, headers={"If-Match": f'"{got["version"]}"'}
        )
        assert status == 412
        doc.response(item, "put", 412, err)
        status, err = await call(admin, "POST", coll, body)
        assert status == 409, (res.name, err)
        doc.response(coll, "post", 409, err)
        status, err = await call(admin, "GET", f"{coll}/00000000-0000-4000-8000-00000000ffff")
        doc.response(item, "get", 404, err)

    status, watched = await call(admin, "GET", "/watch", params={"since": start, "timeout": 0})
    doc.response("/watch", "get", 200, watched)
    assert watched["events"]
    status, err = await call(admin, "GET", "/watch", params={"since": "x"})
    doc.response("/watch", "get", 400, err)
    status, health = await call(admin, "GET", "/health")
    doc.response("/health", "get", 200, health)


WRONG = {"string": 12345, "integer": "12", "boolean": "yes", "array": "x", "object": [1]}


def _kind(schema: JSON) -> str:
    for s in schema.get("anyOf", [schema]):
        if s.get("type") and s["type"] != "null":
            return str(s["type"])
    return "string"


@pytest.mark.asyncio
async def test_document_and_server_refuse_the_same_bodies(admin: ConfigClient) -> None:
    """For every field of every resource: a value of the wrong type and an unknown field
    are refused both by the document's schema and by the server, which names the field."""
    doc = Doc(await admin.request("GET", "/openapi.json"))
    ctx = await _referenced_objects(admin)
    checked = 0
    for res in RESOURCES.values():
        coll = f"/{res.plural}"
        schema = doc.request_schema(coll, "post")
        props = doc.doc["components"]["schemas"][res.ident + "Create"]["properties"]
        for key in [*res.fields, "bogus_field"]:
            body = _filled(res, ctx, "-neg")
            body[key] = WRONG[_kind(props[key])] if key in props else 1
            assert not doc.validator(schema).is_valid(body), (res.name, key)
            status, err = await call(admin, "POST", coll, body)
            assert status == 400 and err["field"].split("[")[0].split(".")[0] == key, (
                res.name,
                key,
                err,
            )
            doc.response(coll, "post", 400, err)
            checked += 1
    assert checked == sum(len(r.fields) + 1 for r in RESOURCES.values())


@pytest.mark.asyncio
async def test_auth_errors_are_documented(api_url: str) -> None:
    doc = Doc(await ConfigClient(api_url, "").request("GET", "/openapi.json"))
    async with ConfigClient(api_url, "nope" * 5) as anon, ConfigClient(api_url, READER_TOKEN) as ro:
        status, err = await call(anon, "GET", "/projects")
        assert status == 401
        doc.response("/projects", "get", 401, err)
        status, err = await call(ro, "POST", "/projects", {"name": "x"})
        assert status == 403
        doc.response("/projects", "post", 403, err)
    assert ADMIN_TOKEN != READER_TOKEN
