"""The served OpenAPI document covers every route, and real requests and answers fit it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from collectorkit import Client, flow, running_collector, status

from vrstack.analytics.query import AGGREGATES


def validator(doc: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(root)


@pytest.mark.asyncio
async def test_document_matches_the_server(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "o.db") as run, Client(run.url) as c:
        code, doc = await c.call("GET", "/openapi.json")
        assert code == 200 and doc["openapi"].startswith("3.1")
        routes = {
            (r.resource.canonical, r.method.lower())  # type: ignore[union-attr]
            for r in run.app.router.routes()
            if r.method != "HEAD"
        }
        documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
        assert routes == documented

        records = [flow(1), status("s1", state="down"), flow(2, src_ip="2001:db8::1")]
        records.append(
            {"kind": "log", "id": "l", "ts": 1.8e9, "level": "info", "service": "s", "msg": "m"}
        )
        batch = validator(doc, "Batch")
        batch.validate({"records": records})
        assert (await c.ingest("c1", records))[0] == 200
        # What the server refuses, the schema refuses too.
        for bad in (flow(3, action="allow"), flow(3, colour=1), {"kind": "log"}):
            assert not batch.is_valid({"records": [bad]})
            assert (await c.ingest("c1", [bad]))[0] == 400

        query = validator(doc, "Query")
        example = doc["components"]["schemas"]["Query"]["example"]
        query.validate(example)
        page = await c.query(**example)
        validator(doc, "Page").validate(page)
        assert set(page["items"][0]) == {"src_ip", "dst_ip", "sum(bytes)", "count()"}
        assert not query.is_valid({"table": "flowz"})
        series = {
            "table": "flows",
            "select": ["bucket(end,60)", "sum(bytes)"],
            "group_by": ["bucket(end,60)"],
        }
        query.validate(series)
        assert (await c.call("POST", "/query", series))[0] == 200
        code, alarms = await c.call("GET", "/alarms")
        assert len(alarms["items"]) == 1
        for item in alarms["items"]:
            validator(doc, "Alarm").validate(item)
        assert all(a + "(field)" in json.dumps(doc) for a in AGGREGATES)
