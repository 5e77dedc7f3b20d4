"""Tool search endpoints (``search: true``, issue 16) through real clients.

Targets: ``@modelcontextprotocol/server-everything`` (stdio) and the demo ``clock``
and ``notes`` servers. Clients: the official Python SDK, the MCP Inspector CLI and
raw 2026 stateless requests. The endpoint lists only ``search_tools`` and
``call_tool``; search finds tools by what they do, ``call_tool`` runs any tool of the
subset with the same authorization as a direct call, and the index follows a
catalog change (a rename applied by a config reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.support.conformance import server_everything_cmd
from tests.support.gateway import Gateway, free_config, run_gateway
from tests.support.inspector import inspector
from tests.support.mcp_http import RawClient

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

EVERYTHING = server_everything_cmd("stdio")
TARGETS = [
    {"name": "everything", "stdio": {"command": EVERYTHING[0], "args": EVERYTHING[1:]}},
    {"name": "clock", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.clock"]}},
    {"name": "notes", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.notes"]}},
]
CONFIG: dict[str, Any] = {
    "targets": TARGETS,
    "servers": [
        {"name": "all", "tools": ["*"], "search": True},
        {"name": "notes-only", "tools": ["notes_*"], "search": True},
    ],
    "authorization": {"rules": ['!has(mcp.tool) || mcp.tool.name != "add"']},  # clock_add: nobody
}
V2026 = "2026-07-28"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(CONFIG, tmp_path_factory.mktemp("tool-search")) as g:
        yield g


@contextlib.asynccontextmanager
async def sdk(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        yield s


async def search(s: ClientSession, query: str, limit: int = 5) -> list[dict[str, Any]]:
    res = await s.call_tool("search_tools", {"query": query, "limit": limit})
    assert not res.is_error, res
    assert res.structured_content is not None
    found: list[dict[str, Any]] = res.structured_content["tools"]
    assert json.loads(res.content[0].text) == {"tools": found}  # type: ignore[union-attr]
    return found


async def test_search_endpoint_lists_two_tools_finds_and_runs(gw: Gateway) -> None:
    async with sdk(f"{gw.mcp_url}/all") as s:
        assert sorted(t.name for t in (await s.list_tools()).tools) == ["call_tool", "search_tools"]
        found = await search(s, "save a note with a title and a body")
        assert found[0]["name"] == "notes_add_note"
        assert found[0]["inputSchema"]["required"] == ["title", "body"]  # the full definition
        names = [t["name"] for t in await search(s, "add two numbers together", 10)]
        assert "everything_get-sum" in names
        assert "clock_add" not in names  # the rule hides it from search too
        assert (await search(s, "what time is it now"))[0]["name"] == "clock_now"
        assert len(await search(s, "tool", 2)) <= 2

        echoed = await s.call_tool("call_tool", {"name": "everything_echo", "arguments": {"message": "hi"}})
        assert not echoed.is_error and echoed.content[0].text == "Echo: hi"  # type: ignore[union-attr]
        with pytest.raises(MCPError, match="unknown tool: clock_add"):
            await s.call_tool("call_tool", {"name": "clock_add", "arguments": {"a": 1, "b": 2}})
        with pytest.raises(MCPError, match="unknown tool: nothing_here"):
            await s.call_tool("call_tool", {"name": "nothing_here"})
        with pytest.raises(MCPError, match="query"):
            await s.call_tool("search_tools", {})


async def test_search_and_call_stay_inside_the_subset(gw: Gateway) -> None:
    async with sdk(f"{gw.mcp_url}/notes-only") as s:
        assert await search(s, "current time in a timezone", 10) == []  # clock is not in it
        found = await search(s, "read one note", 10)
        assert found and all(t["name"].startswith("notes_") for t in found)
        with pytest.raises(MCPError, match="unknown tool: clock_now"):
            await s.call_tool("call_tool", {"name": "clock_now", "arguments": {}})
        ok = await s.call_tool("call_tool", {"name": "notes_list_notes", "arguments": {}})
        assert not ok.is_error


def modern(url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": V2026,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": V2026, "Mcp-Method": "tools/call", "Mcp-Name": name}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta}}
    resp = httpx.post(url, json=body, headers=headers, timeout=20)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def test_2026_stateless_search_gets_the_same_answer(gw: Gateway) -> None:
    query = {"query": "echo a message back", "limit": 3}
    stateless = modern(f"{gw.mcp_url}/all", "search_tools", query)["result"]["structuredContent"]
    async with sdk(f"{gw.mcp_url}/all") as s:
        assert stateless == {"tools": await search(s, query["query"], 3)}
    assert stateless["tools"][0]["name"] == "everything_echo"
    ran = modern(f"{gw.mcp_url}/all", "call_tool", {"name": "everything_echo", "arguments": {"message": "x"}})
    assert ran["result"]["content"][0]["text"] == "Echo: x"


def test_inspector_cli_searches_and_calls(gw: Gateway) -> None:
    url = f"{gw.mcp_url}/all"
    found = inspector(url, "--method", "tools/call", "--tool-name", "search_tools",
                      "--tool-arg", "query=list the titles of my notes")
    assert found["structuredContent"]["tools"][0]["name"] == "notes_list_notes", found


async def test_the_index_follows_a_catalog_change(tmp_path: Path) -> None:
    config = {"targets": TARGETS[1:], "servers": [{"name": "all", "tools": ["*"], "search": True}]}
    with run_gateway(config, tmp_path) as g:
        written = free_config(json.loads(g.config_path.read_text()))
        async with sdk(f"{g.mcp_url}/all") as s:
            assert "notes_remember_memo" not in [t["name"] for t in await search(s, "remember a memo")]
        async with RawClient(f"{g.mcp_url}/all") as raw:
            await raw.initialize()
            opened = asyncio.Event()
            changed = asyncio.ensure_future(raw.listen(
                lambda m: m.get("method") == "notifications/tools/list_changed", opened=opened))
            await asyncio.wait_for(opened.wait(), 20)
            renamed = [TARGETS[1], {**TARGETS[2], "tools": {"rename": {"add_note": "remember_memo"}}}]
            tmp = g.config_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**written, "targets": renamed}))
            tmp.replace(g.config_path)
            await changed
        async with sdk(f"{g.mcp_url}/all") as s:
            found = await search(s, "remember a memo")
            assert found[0]["name"] == "notes_remember_memo"
            ran = await s.call_tool("call_tool", {"name": "notes_remember_memo",
                                                  "arguments": {"title": "t", "body": "b"}})
            assert not ran.is_error
