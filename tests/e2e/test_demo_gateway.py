"""The embedded demo through the gateway, driven by the official Python SDK client."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from tests.support.gateway import children_of, run_gateway

from mcpmux.demo import demo_config


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    with run_gateway(demo_config(), tmp_path_factory.mktemp("demo")) as gw:
        yield gw


async def _session(url: str):
    return streamable_http_client(url)


async def test_lists_and_calls_across_targets(demo) -> None:
    async with streamable_http_client(demo.mcp_url) as (read, write), ClientSession(read, write) as s:
        init = await s.initialize()
        assert init.server_info.name == "mcpmux"
        tools = {t.name for t in (await s.list_tools()).tools}
        assert {"clock_now", "clock_add", "clock_sleep", "notes_add_note", "notes_get_note"} <= tools
        res = await s.call_tool("clock_add", {"a": 2, "b": 40})
        assert not res.is_error
        assert res.structured_content == {"sum": 42}
        await s.call_tool("notes_add_note", {"title": "hello", "body": "world"})
        got = await s.call_tool("notes_get_note", {"title": "hello"})
        assert "world" in got.content[0].text  # type: ignore[union-attr]
        prompts = {p.name for p in (await s.list_prompts()).prompts}
        assert "notes_summarize" in prompts
        prompt = await s.get_prompt("notes_summarize", {"title": "hello"})
        assert "world" in str(prompt.messages[0].content)
        resources = {str(r.uri) for r in (await s.list_resources()).resources}
        assert "clock+clock://zones" in resources
        read_res = await s.read_resource("clock+clock://zones")
        assert str(read_res.contents[0].uri) == "clock+clock://zones"
        templates = {t.uri_template for t in (await s.list_resource_templates()).resource_templates}
        assert "notes+notes://note/{title}" in templates
        note = await s.read_resource("notes+notes://note/hello")
        assert "world" in note.contents[0].text  # type: ignore[union-attr]


async def test_unknown_tool_is_an_error(demo) -> None:
    async with streamable_http_client(demo.mcp_url) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        with pytest.raises(Exception, match="unknown tool"):
            await s.call_tool("nope_nothing", {})


async def test_progress_reaches_the_client(demo) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with streamable_http_client(demo.mcp_url) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        res = await s.call_tool("clock_sleep", {"seconds": 1.1}, progress_callback=on_progress)
        assert not res.is_error
    assert seen, "no progress notification arrived"


def test_admin_reports_targets(demo) -> None:
    targets = demo.targets()
    assert targets["clock"]["state"] == "ready"
    assert targets["clock"]["counts"]["tools"] == 3
    assert targets["notes"]["kind"] == "stdio"
    assert httpx.get(f"{demo.admin_url}/healthz").status_code == 200
    assert httpx.get(f"{demo.admin_url}/readyz").json()["ready"] is True
    # Per stdio target: the catalog process and one per client capability set seen, however
    # many clients came and went (each runs under its reaper shim, which is the gateway's
    # child; the server is the shim's). /api/targets accounts for every one of them.
    servers = [p for p in children_of(demo.proc.pid) if "mcpmux.demo." in _cmdline(p) and "reaper" not in _cmdline(p)]
    reported = [t["pid"] for t in targets.values()]
    reported += [s["pid"] for t in targets.values() for s in t["capabilitySets"] if s["live"]]
    assert sorted(servers) == sorted(reported), (servers, targets)
    for t in targets.values():
        assert len(t["capabilitySets"]) <= 8, t  # bounded by the sets (variants.MAX_SETS)
    assert sys.executable


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
