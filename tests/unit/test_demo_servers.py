"""The bundled demo servers, driven as real subprocesses by the official MCP SDK client.

Using the SDK (not our own client) proves the hand-rolled servers are wire-compatible.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client, types
from mcp.shared.exceptions import MCPDeprecationWarning

# Lets the subprocesses import mcpmux from this checkout even without an editable install.
SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
if importlib.util.find_spec("mcpmux") is None:
    sys.path.insert(0, SRC)


@asynccontextmanager
async def connect(name: str, **kwargs: Any) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", f"mcpmux.demo.{name}"], env=ENV
    )
    with anyio.fail_after(10):
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write, read_timeout_seconds=5, **kwargs) as session,
        ):
            yield session


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def test_demo_config_launches_bundled_servers_with_same_python() -> None:
    from mcpmux.demo import demo_config

    cfg = demo_config()
    assert cfg["listen"] == {"host": "127.0.0.1", "port": 8080}
    assert cfg["admin"] == {"host": "127.0.0.1", "port": 19000}
    assert cfg["prefix"] == "conditional"
    assert [t["name"] for t in cfg["targets"]] == ["clock", "notes"]
    for target in cfg["targets"]:
        assert target["stdio"] == {
            "command": sys.executable,
            "args": ["-m", f"mcpmux.demo.{target['name']}"],
        }
    assert demo_config() is not cfg  # callers may mutate their copy


async def test_clock_tools_and_resource() -> None:
    async with connect("clock") as s:
        init = await s.initialize()
        assert init.protocol_version == "2025-11-25"
        assert init.server_info.name == "mcpmux-demo-clock"
        assert init.capabilities.tools is not None
        assert init.capabilities.resources is not None
        assert init.capabilities.prompts is None  # derived from what is registered
        await s.send_ping()

        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert set(tools) == {"now", "add", "sleep"}
        assert tools["now"].output_schema is not None

        utc = await s.call_tool("now", {})
        assert not utc.is_error
        assert utc.structured_content is not None
        assert utc.structured_content["timezone"] == "UTC"
        assert datetime.fromisoformat(text_of(utc)).utcoffset() == timedelta(0)

        tokyo = await s.call_tool("now", {"timezone": "Asia/Tokyo"})
        assert tokyo.structured_content is not None
        iso = tokyo.structured_content["iso"]
        assert datetime.fromisoformat(iso).utcoffset() == timedelta(hours=9)

        bad_zone = await s.call_tool("now", {"timezone": "Mars/Olympus"})
        assert bad_zone.is_error and "Mars/Olympus" in text_of(bad_zone)

        total = await s.call_tool("add", {"a": 2, "b": 3.5})
        assert total.structured_content == {"sum": 5.5}
        assert text_of(total) == "5.5"
        assert (await s.call_tool("add", {"a": "2", "b": 1})).is_error
        assert (await s.call_tool("add", {"a": 1})).is_error  # missing required argument

        assert (await s.call_tool("sleep", {"seconds": 31})).is_error
        assert text_of(await s.call_tool("sleep", {"seconds": 0})) == "slept 0 s"

        with pytest.raises(MCPError) as unknown:
            await s.call_tool("no_such_tool", {})
        assert unknown.value.code == -32602

        resources = (await s.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["clock://zones"]
        zones = (await s.read_resource("clock://zones")).contents[0]
        assert isinstance(zones, types.TextResourceContents)
        assert zones.mime_type == "text/plain" and "Europe/Paris" in zones.text.splitlines()
        with pytest.raises(MCPError) as missing:
            await s.read_resource("clock://nope")
        assert missing.value.code == -32002


async def test_clock_sleep_reports_progress_each_second() -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with connect("clock") as s:
        await s.initialize()
        result = await s.call_tool("sleep", {"seconds": 1.2}, progress_callback=on_progress)
    assert text_of(result) == "slept 1.2 s"
    assert [(p, t) for p, t, _ in updates] == [(1, 1.2), (1.2, 1.2)]


async def test_notes_tools_resources_prompt_and_list_changed() -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceListChangedNotification):
            changed.set()

    async with connect("notes", message_handler=on_message) as s:
        init = await s.initialize()
        assert init.server_info.name == "mcpmux-demo-notes"
        assert init.capabilities.resources is not None
        assert init.capabilities.resources.list_changed is True
        assert init.capabilities.prompts is not None

        names = {t.name for t in (await s.list_tools()).tools}
        assert names == {"add_note", "list_notes", "get_note"}
        assert text_of(await s.call_tool("list_notes", {})) == "(no notes)"

        added = await s.call_tool("add_note", {"title": "Big Plan", "body": "world domination"})
        assert not added.is_error
        with anyio.fail_after(2):
            await changed.wait()

        listed = await s.call_tool("list_notes", {})
        assert listed.structured_content == {"titles": ["Big Plan"]}
        assert text_of(await s.call_tool("get_note", {"title": "Big Plan"})) == "world domination"
        missing = await s.call_tool("get_note", {"title": "nope"})
        assert missing.is_error and "nope" in text_of(missing)

        uris = {str(r.uri) for r in (await s.list_resources()).resources}
        assert uris == {"notes://all", "notes://note/Big%20Plan"}
        templates = (await s.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["notes://note/{title}"]

        everything = (await s.read_resource("notes://all")).contents[0]
        assert isinstance(everything, types.TextResourceContents)
        assert everything.mime_type == "application/json"
        assert json.loads(everything.text) == {"Big Plan": "world domination"}
        one = (await s.read_resource("notes://note/Big%20Plan")).contents[0]
        assert isinstance(one, types.TextResourceContents) and one.text == "world domination"
        with pytest.raises(MCPError):
            await s.read_resource("notes://note/unknown")

        prompts = (await s.list_prompts()).prompts
        assert [(p.name, [(a.name, a.required) for a in p.arguments or []]) for p in prompts] == [
            ("summarize", [("title", True)])
        ]
        prompt = await s.get_prompt("summarize", {"title": "Big Plan"})
        message = prompt.messages[0]
        assert message.role == "user"
        assert isinstance(message.content, types.TextContent)
        assert "world domination" in message.content.text
        for bad_args in ({"title": "nope"}, {}):
            with pytest.raises(MCPError) as bad:
                await s.get_prompt("summarize", bad_args)
            assert bad.value.code == -32602


async def test_notes_logging_respects_set_level() -> None:
    logs: list[types.LoggingMessageNotificationParams] = []
    got_log = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)
        got_log.set()

    async with connect("notes", logging_callback=on_log) as s:
        await s.initialize()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await s.set_logging_level("error")
            await s.call_tool("add_note", {"title": "quiet", "body": "x"})  # info < error
            await s.set_logging_level("debug")
        await s.call_tool("add_note", {"title": "loud", "body": "y"})
        with anyio.fail_after(2):
            await got_log.wait()
    assert [(log.level, log.data) for log in logs] == [("info", "saved note 'loud'")]


class RawServer:
    """A demo server on bare pipes, for wire details the SDK client never produces."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, payload: bytes | dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        line = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.proc.stdin.write(line + b"\n")
        await self.proc.stdin.drain()

    async def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(5):
            return json.loads(await self.proc.stdout.readline())


@asynccontextmanager
async def raw_server(name: str) -> AsyncIterator[RawServer]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"mcpmux.demo.{name}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **ENV},
    )
    try:
        yield RawServer(proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # EOF is the MCP stdio shutdown signal
        async with asyncio.timeout(5):
            assert await proc.wait() == 0


def init_request(msg_id: int, version: str) -> dict[str, Any]:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t"}}
    return {"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": params}


async def test_raw_wire_errors_and_version_negotiation() -> None:
    async with raw_server("notes") as srv:
        await srv.send(b"{this is not json")
        reply = await srv.recv()
        assert reply["id"] is None and reply["error"]["code"] == -32700

        await srv.send(init_request(1, "2024-11-05"))
        assert (await srv.recv())["result"]["protocolVersion"] == "2024-11-05"
        await srv.send(init_request(2, "1999-01-01"))
        assert (await srv.recv())["result"]["protocolVersion"] == "2025-11-25"

        await srv.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await srv.send({"jsonrpc": "2.0", "id": 3, "method": "bogus/method"})
        assert (await srv.recv()) == {
            "jsonrpc": "2.0",
            "id": 3,
            "error": {"code": -32601, "message": "method not found: bogus/method"},
        }
        await srv.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": [1]})
        assert (await srv.recv())["error"]["code"] == -32602
        await srv.send({"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {}})
        assert (await srv.recv())["error"]["code"] == -32602
        bad_level = {"level": "loud"}
        await srv.send(
            {"jsonrpc": "2.0", "id": 6, "method": "logging/setLevel", "params": bad_level}
        )
        assert (await srv.recv())["error"]["code"] == -32602


async def test_raw_cancelled_request_gets_no_response() -> None:
    def sleep_call(msg_id: int, seconds: float) -> dict[str, Any]:
        params = {"name": "sleep", "arguments": {"seconds": seconds}}
        return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}

    async with raw_server("clock") as srv:
        await srv.send(sleep_call(1, 0.4))
        await srv.send(sleep_call(2, 0.6))
        cancel = {"requestId": 1, "reason": "test"}
        await srv.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        await srv.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        # ping is answered while sleeps run; the cancelled sleep never answers, the other does
        assert (await srv.recv()) == {"jsonrpc": "2.0", "id": 3, "result": {}}
        assert (await srv.recv())["id"] == 2
