"""The OpenAPI 3.1 document, generated from the model so it cannot drift from the server."""

from __future__ import annotations

from typing import Any

from .. import __version__
from .fields import Bool, Int, fields_schema
from .model import NAME, RESOURCES, Resource
from .objects import FILTERABLE, READ_ONLY

JSON = dict[str, Any]
# Derived ACLs of large policy sets are the biggest bodies: the server allows 16 MiB.
MAX_BODY = 16 * 2**20


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(description: str, schema: JSON, etag: bool = False) -> JSON:
    out: JSON = {"description": description, "content": {"application/json": {"schema": schema}}}
    if etag:
        out["headers"] = {
            "ETag": {"schema": {"type": "string"}, "description": "The object's version, quoted"}
        }
    return out


UUID = {"type": "string", "format": "uuid"}
META: JSON = {
    "uuid": UUID,
    "type": {"type": "string"},
    "name": NAME.schema(),
    "fq_name": {"type": "array", "items": {"type": "string"}},
    "parent_type": {"type": ["string", "null"]},
    "parent_uuid": {"anyOf": [UUID, {"type": "null"}]},
    "version": {"type": "integer", "minimum": 1},
    "created_at": {"type": "string"},
    "updated_at": {"type": "string"},
}


def _schemas(res: Resource) -> dict[str, JSON]:
    base = fields_schema(res.fields)
    props = base["properties"]
    # The server names the one global-config object `default`; other names are refused.
    name = {"type": "string", "enum": ["default"]} if res.name == "global-config" else NAME.schema()
    create = {**base, "properties": {**props, "name": name, "uuid": UUID}}
    create["required"] = ["name", *base.get("required", [])]
    if res.parent:
        create["properties"]["parent_uuid"] = UUID
        create["required"].append("parent_uuid")
    create["example"] = {
        **res.example,
        **({"parent_uuid": "<uuid of the " + res.parent + ">"} if res.parent else {}),
    }
    update = {
        **base,
        "properties": {
            **props,
            **{k: META[k] for k in READ_ONLY},
            "name": NAME.schema(),
            "parent_uuid": META["parent_uuid"],
        },
    }
    obj = {**base, "properties": {**props, **META}}
    obj["required"] = [*META, *base.get("required", [])]
    obj["description"] = res.doc
    listing = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref(res.ident)},
            "next": {"type": ["string", "null"], "description": "Cursor of the next page"},
            "revision": {"type": "integer", "description": "Store revision before the read"},
        },
        "required": ["items", "next", "revision"],
        "additionalProperties": False,
    }
    return {
        res.ident: obj,
        res.ident + "Create": create,
        res.ident + "Update": update,
        res.ident + "List": listing,
    }


def _param(
    name: str, schema: JSON, where: str = "query", required: bool = False, doc: str = ""
) -> JSON:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": doc}


IF_MATCH = _param(
    "If-Match",
    {"type": "string"},
    "header",
    doc="Only apply if the object is still at this version (its ETag); 412 if not",
)


def _paths(res: Resource) -> dict[str, JSON]:
    filters = [
        _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _param("cursor", {"type": "string"}, doc="`next` of the previous page"),
        _param("name", {"type": "string"}),
    ]
    if res.parent:
        filters.append(_param("parent_uuid", UUID))
    for name, spec in res.fields.items():
        if isinstance(spec, FILTERABLE):
            kind = (
                "boolean"
                if isinstance(spec, Bool)
                else "integer"
                if isinstance(spec, Int)
                else "string"
            )
            filters.append(_param(name, {"type": kind}, doc="Only objects with this value"))
    errors = {
        "400": _error("Bad request; `field` names the bad value"),
        "401": _error("No or unknown token"),
        "403": _error("Read-only token"),
    }
    one = {"400": errors["400"], "401": errors["401"], "404": _error("No such object")}
    # What a request body can get before it is read (docs/security.md).
    body_errors = {
        "408": _error("The body did not arrive within http.body_timeout"),
        "413": _error(f"The body is larger than {MAX_BODY // 2**20} MiB"),
    }
    return {
        f"/{res.plural}": {
            "get": {
                "summary": f"List {res.plural}",
                "tags": [res.name],
                "parameters": filters,
                "responses": {"200": _ok("A page", _ref(res.ident + "List")), **errors},
            },
            "post": {
                "summary": f"Create a {res.name}",
                "tags": [res.name],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(res.ident + "Create")}},
                },
                "responses": {
                    "201": _ok("Created", _ref(res.ident), etag=True),
                    **errors,
                    "409": _error("Name taken, missing reference or address in use"),
                    **body_errors,
                },
            },
        },
        f"/{res.plural}/{{uuid}}": {
            "parameters": [_param("uuid", UUID, "path", required=True)],
            "get": {
                "summary": f"Read a {res.name}",
                "tags": [res.name],
                "responses": {"200": _ok("The object", _ref(res.ident), etag=True), **one},
            },
            "put": {
                "summary": f"Replace a {res.name}'s fields",
                "tags": [res.name],
                "parameters": [IF_MATCH],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(res.ident + "Update")}},
                },
                "responses": {
                    "200": _ok("Updated", _ref(res.ident), etag=True),
                    **one,
                    "403": errors["403"],
                    "409": _error("Integrity conflict"),
                    "412": _error("Version mismatch"),
                    **body_errors,
                },
            },
            "delete": {
                "summary": f"Delete a {res.name}",
                "tags": [res.name],
                "parameters": [IF_MATCH],
                "responses": {
                    "204": {"description": "Deleted"},
                    **one,
                    "403": errors["403"],
                    "409": _error("Still referenced or has children"),
                    "412": _error("Version mismatch"),
                },
            },
        },
    }


EVENT: JSON = {
    "type": "object",
    "properties": {
        "revision": {"type": "integer"},
        "op": {"type": "string", "enum": ["put", "delete"]},
        "type": {"type": "string", "enum": list(RESOURCES)},
        "uuid": UUID,
        "object": {
            "type": ["object", "null"],
            "description": "The object after a put, before a delete",
        },
    },
    "required": ["revision", "op", "type", "uuid", "object"],
    "additionalProperties": False,
}


def document() -> JSON:
    schemas: dict[str, JSON] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "field": {"type": "string"},
                "compact_revision": {"type": "integer"},
            },
            "required": ["error"],
        },
        "Event": EVENT,
        "WatchResult": {
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": _ref("Event")},
                "revision": {"type": "integer", "description": "Pass as `since` to the next call"},
            },
            "required": ["events", "revision"],
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"type": "string"}},
            "required": ["status"],
        },
    }
    paths: dict[str, JSON] = {}
    for res in RESOURCES.values():
        schemas.update(_schemas(res))
        paths.update(_paths(res))
    paths["/watch"] = {
        "get": {
            "summary": "Changes after a revision (long poll)",
            "tags": ["watch"],
            "parameters": [
                _param(
                    "since",
                    {"type": "integer", "minimum": 0},
                    required=True,
                    doc="Return changes with a revision greater than this",
                ),
                _param(
                    "types",
                    {"type": "string"},
                    doc="Comma-separated types to report (default: all); other changes "
                    "advance the returned revision without ending the wait",
                ),
                _param(
                    "timeout",
                    {"type": "number", "minimum": 0, "maximum": 300},
                    doc="Seconds to wait for the first change (default 30)",
                ),
                _param(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 10000},
                    doc="At most this many revisions",
                ),
            ],
            "responses": {
                "200": _ok("Changes, possibly none", _ref("WatchResult")),
                "400": _error("Bad parameter"),
                "401": _error("No or unknown token"),
                "410": _error("History compacted: list everything again"),
            },
        }
    }
    paths["/health"] = {
        "get": {
            "summary": "Service health",
            "tags": ["health"],
            "security": [],
            "responses": {
                "200": _ok("Healthy", _ref("Health")),
                "503": _ok("Unhealthy", _ref("Health")),
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "tags": ["health"],
            "security": [],
            "responses": {"200": _ok("OpenAPI", {"type": "object"})},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "vrstack config API", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
            },
        },
        "security": [{"token": []}],
        "paths": paths,
    }
