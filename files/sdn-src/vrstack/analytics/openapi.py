"""The collector's OpenAPI 3.1 document, generated from the record definitions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import __version__
from .query import AGGREGATES, BUCKETS, DEFAULT_LIMIT, MAX_LIMIT, OPS, columns
from .records import KINDS, TABLES

if TYPE_CHECKING:
    from .server import Limits

JSON = dict[str, Any]


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: JSON) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> JSON:
    return _json(description, _ref("Error"))


def _record_schema(name: str) -> JSON:
    kind = KINDS[name]
    props: JSON = {"kind": {"const": name}}
    props.update({c.name: c.schema() for c in kind.columns})
    return {
        "type": "object",
        "description": kind.doc,
        "properties": props,
        "required": ["kind", *(c.name for c in kind.columns if c.required)],
        "additionalProperties": False,
    }


def _query_schema() -> JSON:
    fields = sorted({name for k in TABLES.values() for name in columns(k)})
    time = {
        "oneOf": [{"type": "number"}, {"type": "string"}],
        "description": "Seconds since the epoch, RFC 3339 with a zone, 'now' or '-15m' (s/m/h/d)",
    }
    return {
        "type": "object",
        "properties": {
            "table": {"type": "string", "enum": list(TABLES)},
            "select": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Fields and aggregates: "
                + ", ".join(f"{a}(field)" for a in AGGREGATES)
                + ", count(), and the group_by time buckets. Default: every field, or group_by + count()",
            },
            "where": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string", "enum": fields},
                        "op": {"type": "string", "enum": list(OPS), "default": "="},
                        "value": {
                            "description": "'in' takes a CIDR; 'prefix' and 'contains' a string"
                        },
                    },
                    "required": ["field", "value"],
                    "additionalProperties": False,
                },
            },
            "since": time,
            "until": time,
            "group_by": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "string", "enum": fields},
                        {"type": "string", "pattern": r"^bucket\(\s*[a-z_]+\s*,\s*\d+\s*\)$"},
                    ]
                },
                "description": "Fields, or time buckets bucket(field,seconds) with seconds one "
                f"of {', '.join(BUCKETS.values())}",
            },
            "sort": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "order": {"type": "string", "enum": ["asc", "desc"]},
                            },
                            "required": ["field"],
                        },
                    ]
                },
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
            "cursor": {"type": "string", "description": "`next` of the previous page"},
        },
        "required": ["table"],
        "additionalProperties": False,
        "example": {
            "table": "flows",
            "select": ["src_ip", "dst_ip", "sum(bytes)", "count()"],
            "where": [{"field": "src_ip", "op": "in", "value": "198.18.10.0/24"}],
            "since": "-1h",
            "group_by": ["src_ip", "dst_ip"],
            "sort": [{"field": "sum(bytes)", "order": "desc"}],
            "limit": 10,
        },
    }


def document(limits: Limits) -> JSON:
    status_item = {
        "type": "object",
        "properties": {
            "source": {"type": "string"},
            "service": {"type": "string"},
            "ts": {"type": "number"},
            "state": {"type": "string"},
            "late": {"type": "boolean", "description": "No report for the missed intervals"},
            "interval": {"type": "number"},
            "connections": {"type": "array", "items": {"type": "object"}},
            "datapath": {"type": "string"},
            "detail": {"type": "string"},
        },
    }
    alarm = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {
                "type": "string",
                "enum": ["service-down", "control-lost", "datapath-missing"],
            },
            "source": {"type": "string"},
            "service": {"type": "string"},
            "since": {"type": "number"},
            "reason": {"type": "string"},
        },
        "required": ["id", "type", "source", "service", "since", "reason"],
    }
    schemas: JSON = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "field": {"type": "string", "description": "The bad part of the request"},
                "limit": {"type": "string", "description": "413/429: the limit that was hit"},
                "retry_after": {"type": "number", "description": "429: seconds to wait"},
            },
            "required": ["error"],
        },
        "Record": {"oneOf": [_ref(k.title() + "Record") for k in KINDS]},
        "Batch": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {
                        "records": {"type": "array", "items": _ref("Record")},
                    },
                    "required": ["records"],
                },
                {"type": "array", "items": _ref("Record")},
            ]
        },
        "Query": _query_schema(),
        "Page": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"type": "object"}},
                "next": {"type": ["string", "null"]},
                "took_ms": {"type": "number"},
            },
            "required": ["items", "next"],
        },
        "Alarm": alarm,
        "Status": status_item,
    }
    for k in KINDS:
        schemas[k.title() + "Record"] = _record_schema(k)
    limits_doc = (
        f"At most {limits.max_batch_bytes} bytes and {limits.max_batch_records} records per "
        f"batch, {limits.max_record_bytes} bytes per record (413 names the limit); "
        f"{limits.source_rate:g} records/s and {limits.source_inflight} batches at once per "
        f"source, {limits.max_pending} records pending overall (429 with Retry-After)."
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "vrstack analytics collector", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
            },
        },
        "security": [{"token": []}],
        "paths": {
            "/ingest/{source}": {
                "post": {
                    "summary": "Store a batch of records from one source (node)",
                    "description": "Answered after the batch is committed. " + limits_doc,
                    "parameters": [
                        {
                            "name": "source",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("Batch")},
                            "application/x-ndjson": {"schema": _ref("Record")},
                        },
                    },
                    "responses": {
                        "200": _json(
                            "Committed",
                            {
                                "type": "object",
                                "properties": {
                                    "accepted": {"type": "integer"},
                                    "duplicates": {"type": "integer"},
                                },
                            },
                        ),
                        "400": _error("A bad record; `field` names it, nothing was stored"),
                        "401": _error("No or unknown token"),
                        "403": _error("Read-only token"),
                        "413": _error("Over a size limit; `limit` names it"),
                        "429": _error("Over a rate limit; `limit` names it, see Retry-After"),
                        "503": _error("The store failed; resend later"),
                    },
                }
            },
            "/query": {
                "post": {
                    "summary": "Select, filter, group and page through flows, logs, status, counters",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Query")}},
                    },
                    "responses": {
                        "200": _json("A page", _ref("Page")),
                        "400": _error("Bad query; `field` names the bad part"),
                        "401": _error("No or unknown token"),
                    },
                }
            },
            "/status": {
                "get": {
                    "summary": "The latest status of every service",
                    "responses": {
                        "200": _json(
                            "Statuses",
                            {
                                "type": "object",
                                "properties": {"items": {"type": "array", "items": _ref("Status")}},
                            },
                        )
                    },
                }
            },
            "/status/{source}/{service}": {
                "delete": {
                    "summary": "Forget a decommissioned service (and its alarms)",
                    "parameters": [
                        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                        for n in ("source", "service")
                    ],
                    "responses": {"204": {"description": "Forgotten"}, "404": _error("Unknown")},
                }
            },
            "/alarms": {
                "get": {
                    "summary": "Active alarms, oldest first",
                    "responses": {
                        "200": _json(
                            "Alarms",
                            {
                                "type": "object",
                                "properties": {"items": {"type": "array", "items": _ref("Alarm")}},
                            },
                        )
                    },
                }
            },
            "/overview": {
                "get": {
                    "summary": "What the operator's page shows: racks and nodes with their "
                    "services, control sessions, VMs and route counts per network, top flows "
                    "and alarms",
                    "responses": {
                        "200": _json("Overview", {"type": "object"}),
                        "401": _error("No or unknown token"),
                    },
                }
            },
            **{
                path: {
                    "get": {
                        "summary": f"The operator's page ({path.rsplit('/', 1)[-1]}); "
                        "its script sends the token with its data requests",
                        "security": [],
                        "responses": {"200": {"description": "The file"}},
                    }
                }
                for path in ("/ui", "/ui/page.css", "/ui/page.js")
            },
            "/health": {
                "get": {
                    "summary": "Service health",
                    "security": [],
                    "responses": {
                        "200": _json("Healthy", {"type": "object"}),
                        "503": _json("Unhealthy", {"type": "object"}),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json("OpenAPI", {"type": "object"})},
                }
            },
        },
    }
