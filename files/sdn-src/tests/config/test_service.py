"""The shared daemon plumbing: settings files, JSON logs, health, background tasks."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from vrstack.service.daemon import add_background, add_health
from vrstack.service.jsonlog import JsonFormatter
from vrstack.service.settings import ConfigError, Settings


def test_yaml_and_ini_read_the_same_fields(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("listen: {port: 80, debug: true}\nstore: {eps: [a, b]}\n")
    (tmp_path / "a.ini").write_text("[listen]\nport = 80\ndebug = yes\n[store]\neps = a, b\n")
    for name in ("a.yaml", "a.ini"):
        s = Settings.load(tmp_path / name)
        assert s.get_int("listen.port", low=1, high=65535) == 80
        assert s.get_bool("listen.debug") is True
        assert s.get_list("store.eps") == ["a", "b"]
        assert s.get_str("listen.host", "127.0.0.1") == "127.0.0.1"
        assert s.get_choice("store.kind", ("x", "y"), "x") == "x"


@pytest.mark.parametrize(
    ("text", "call", "field", "words"),
    [
        ("a: {b: x}\n", lambda s: s.get_int("a.b"), "a.b", "integer"),
        ("a: {b: 70000}\n", lambda s: s.get_int("a.b", high=65535), "a.b", "between"),
        ("a: {}\n", lambda s: s.get_str("a.b"), "a.b", "required"),
        ("a: 5\n", lambda s: s.get_str("a.b"), "a.b", "mapping"),
        ("a: {b: maybe}\n", lambda s: s.get_bool("a.b"), "a.b", "true or false"),
        ("a: {b: z}\n", lambda s: s.get_choice("a.b", ("x", "y")), "a.b", "one of"),
        ("- 1\n", lambda s: None, "", "mapping"),
    ],
)
def test_errors_name_file_and_field(
    tmp_path: Path, text: str, call: Any, field: str, words: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        call(Settings.load(path))
    assert info.value.field == field and str(path) in str(info.value)
    assert words in str(info.value)


def test_json_log_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.uuid = "abc"
    line = json.loads(JsonFormatter("svc").format(record))
    assert line["msg"] == "hello you" and line["service"] == "svc" and line["uuid"] == "abc"
    assert line["level"] == "info" and line["ts"].endswith("Z")


@pytest.mark.asyncio
async def test_health_and_background_task_lifecycle() -> None:
    app = web.Application()
    state: dict[str, Any] = {"ok": True, "ran": False, "stopped": False}

    async def check() -> dict[str, Any]:
        if not state["ok"]:
            raise RuntimeError("store gone")
        return {"status": "ok"}

    async def run(stop: asyncio.Event) -> None:
        state["ran"] = True
        await stop.wait()
        state["stopped"] = True

    add_health(app, check)
    add_background(app, "t", run)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200
        state["ok"] = False
        async with s.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 503 and "store gone" in (await resp.json())["error"]
    await asyncio.sleep(0)
    assert state["ran"] and not state["stopped"]
    await runner.cleanup()
    assert state["stopped"]
