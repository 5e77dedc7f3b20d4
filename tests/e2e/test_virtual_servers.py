"""Virtual servers (issue 16): ``/mcp/{name}`` and ``/sse/{name}`` each show a subset.

The gateway fronts the demo ``clock`` and ``notes`` stdio servers. Clients: the
official Python SDK (streamable HTTP and legacy SSE), the MCP Inspector CLI, and raw
HTTP for statuses, sessions across endpoints and 2026 stateless requests. A call
outside a server's subset must be refused exactly like an unknown name; the
authorization rules apply on top; an edit of ``servers:`` applies live.
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
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.support.gateway import Gateway, free_config, run_gateway
from tests.support.inspector import inspector
from tests.support.mcp_http import RawClient

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

CLOCK = {"name": "clock", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.clock"]}}
NOTES = {"name": "notes", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.notes"]}}
SERVERS = [
    {"name": "ops", "tools": ["clock_*", "notes_get_note"], "resources": ["notes+notes://*"]},
    {"name": "all", "tools": ["*"], "prompts": ["*"], "resources": ["*"]},
]
CONFIG: dict[str, Any] = {
    "prefix": "always",
    "targets": [CLOCK, NOTES],
    "servers": SERVERS,
    # On top of the subsets: nobody may call clock's `add` (prompts and resources pass).
    "authorization": {"rules": ['!has(mcp.tool) || mcp.tool.name != "add"']},
}
V2026 = "2026-07-28"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(CONFIG, tmp_path_factory.mktemp("virtual-servers")) as g:
        yield g


@contextlib.asynccontextmanager
async def sdk(url: str, **kwargs: Any) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write, **kwargs) as s:
        await s.initialize()
        yield s


async def refusal(session: ClientSession, name: str) -> str:
    with pytest.raises(MCPError) as err:
        await session.call_tool(name, {})
    return str(err.value)


def modern(url: str, method: str, params: dict[str, Any]) -> httpx.Response:
    meta = {
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": V2026, "Mcp-Method": method}
    if "name" in params:
        headers["Mcp-Name"] = params["name"]
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    return httpx.post(url, json=body, headers=headers, timeout=20)


async def test_each_endpoint_shows_its_subset_and_refuses_the_rest(gw: Gateway) -> None:
    ops_url = f"{gw.mcp_url}/ops"
    async with sdk(ops_url) as ops, sdk(f"{gw.mcp_url}/all") as everything, sdk(gw.mcp_url) as plain:
        names = sorted(t.name for t in (await ops.list_tools()).tools)
        # clock_add is in the subset, but the rule hides it everywhere.
        assert names == ["clock_now", "clock_sleep", "notes_get_note"]
        assert (await ops.list_prompts()).prompts == []
        assert [str(r.uri) for r in (await ops.list_resources()).resources] == ["notes+notes://all"]
        assert [t.uri_template for t in (await ops.list_resource_templates()).resource_templates] == [
            "notes+notes://note/{title}"]

        all_names = {t.name for t in (await everything.list_tools()).tools}
        assert {"clock_now", "notes_add_note", "notes_list_notes"} <= all_names
        assert "clock_add" not in all_names
        assert {t.name for t in (await plain.list_tools()).tools} == all_names

        # In the subset and allowed: it runs.
        now = await ops.call_tool("clock_now", {"timezone": "UTC"})
        assert not now.is_error
        # Outside the subset: exactly what an unknown tool gets.
        assert await refusal(ops, "notes_add_note") == (await refusal(ops, "notes_nope")).replace(
            "notes_nope", "notes_add_note")
        assert "unknown tool: notes_add_note" in await refusal(ops, "notes_add_note")
        # The rule applies on top of the subset, with the same answer.
        assert "unknown tool: clock_add" in await refusal(ops, "clock_add")
        with pytest.raises(MCPError, match="unknown prompt: notes_summarize"):
            await ops.get_prompt("notes_summarize", {"title": "x"})
        with pytest.raises(MCPError, match="unknown resource"):
            await ops.read_resource("clock+clock://zones")  # type: ignore[arg-type]
        zones = await everything.read_resource("clock+clock://zones")  # type: ignore[arg-type]
        assert zones.contents
        # The same call outside on the plain endpoint works: the subset made the difference.
        added = await plain.call_tool("notes_add_note", {"title": "t", "body": "b"})
        assert not added.is_error
        body = await ops.call_tool("notes_get_note", {"title": "t"})
        assert body.content[0].text == "b"  # type: ignore[union-attr]


async def test_legacy_sse_endpoint_shows_the_same_subset(gw: Gateway) -> None:
    base = gw.mcp_url.rsplit("/mcp", 1)[0]
    async with sse_client(f"{base}/sse/ops") as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        names = sorted(t.name for t in (await s.list_tools()).tools)
        assert names == ["clock_now", "clock_sleep", "notes_get_note"]
        assert "unknown tool: notes_add_note" in await refusal(s, "notes_add_note")


async def test_sessions_belong_to_their_endpoint_and_unknown_servers_are_404(gw: Gateway) -> None:
    async with RawClient(f"{gw.mcp_url}/ops") as raw:
        await raw.initialize()
        assert (await raw.rpc("tools/list"))["result"]["tools"]
        for other in (f"{gw.mcp_url}/all", gw.mcp_url):
            resp = await raw.http.post(other, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
                                       headers=raw.headers())
            assert resp.status_code == 404, (other, resp.text)
            assert "unknown or expired session" in resp.text
    async with RawClient(gw.mcp_url) as raw:
        await raw.initialize()
        resp = await raw.http.post(f"{gw.mcp_url}/ops", json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
                                   headers=raw.headers())
        assert resp.status_code == 404, resp.text
    missing = httpx.post(f"{gw.mcp_url}/nope", json={}, timeout=10)
    assert missing.status_code == 404
    assert "unknown virtual server 'nope'" in missing.json()["error"]
    base = gw.mcp_url.rsplit("/mcp", 1)[0]
    assert httpx.get(f"{base}/sse/nope", timeout=10).status_code == 404


def test_2026_stateless_requests_get_the_subset(gw: Gateway) -> None:
    listed = modern(f"{gw.mcp_url}/ops", "tools/list", {}).json()["result"]
    assert sorted(t["name"] for t in listed["tools"]) == ["clock_now", "clock_sleep", "notes_get_note"]
    refused = modern(f"{gw.mcp_url}/ops", "tools/call", {"name": "notes_add_note", "arguments": {}}).json()
    unknown = modern(f"{gw.mcp_url}/ops", "tools/call", {"name": "notes_nope", "arguments": {}}).json()
    assert refused["error"]["code"] == unknown["error"]["code"]
    assert refused["error"]["message"] == "unknown tool: notes_add_note"
    ran = modern(f"{gw.mcp_url}/ops", "tools/call", {"name": "clock_now", "arguments": {}}).json()
    assert "result" in ran and not ran["result"].get("isError"), ran


def test_inspector_cli_sees_only_the_subset(gw: Gateway) -> None:
    listed = inspector(f"{gw.mcp_url}/ops", "--method", "tools/list")
    assert sorted(t["name"] for t in listed["tools"]) == ["clock_now", "clock_sleep", "notes_get_note"]


async def test_servers_reload_with_the_config(tmp_path: Path) -> None:
    with run_gateway(CONFIG, tmp_path) as gw:
        config = free_config(json.loads(gw.config_path.read_text()))
        async with RawClient(f"{gw.mcp_url}/ops") as raw:
            await raw.initialize()
            assert "notes_list_notes" not in await raw.tool_names()
            opened = asyncio.Event()
            changed = asyncio.ensure_future(raw.listen(
                lambda m: m.get("method") == "notifications/tools/list_changed", opened=opened))
            await asyncio.wait_for(opened.wait(), 20)
            servers = [{"name": "ops", "tools": ["notes_*"]}]
            tmp = gw.config_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**config, "servers": servers}))
            tmp.replace(gw.config_path)
            await changed
            assert sorted(await raw.tool_names()) == ["notes_add_note", "notes_get_note", "notes_list_notes"]
            assert "unknown tool: clock_now" in (await raw.call("clock_now"))["error"]["message"]
            # A server removed from the file is gone: its endpoint answers 404.
            opened = asyncio.Event()
            changed = asyncio.ensure_future(raw.listen(
                lambda m: m.get("method") == "notifications/tools/list_changed", opened=opened))
            await asyncio.wait_for(opened.wait(), 20)
            tmp.write_text(json.dumps({**config, "servers": []}))
            tmp.replace(gw.config_path)
            await changed
            gone = await raw.http.post(f"{gw.mcp_url}/ops", json={}, headers=raw.headers())
            assert gone.status_code == 404 and "unknown virtual server" in gone.text
