"""Tool curation per target after a config reload (issue 16).

The gateway fronts the demo ``notes`` and ``clock`` stdio servers. An edit adds a
``tools:`` section to ``notes``; connected clients are told, the Python SDK client
and the Inspector CLI see the curated list, a renamed tool runs under its new name,
a hidden one is refused like an unknown one, ``/api/targets`` says what was hidden
or renamed and why, and the target is not reconnected for it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.support.gateway import free_config, run_gateway
from tests.support.inspector import inspector
from tests.support.mcp_http import RawClient

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

CLOCK = {"name": "clock", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.clock"]}}
NOTES = {"name": "notes", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.notes"]}}
CURATION = {
    "exclude": ["add_*"],
    "rename": {"list_notes": "titles"},
    "override": {"get_note": {"description": "Read one note.", "annotations": {"idempotentHint": True}}},
}


async def test_curation_applies_on_reload_and_is_explained(tmp_path: Path) -> None:
    with run_gateway({"prefix": "always", "targets": [CLOCK, NOTES]}, tmp_path) as gw:
        config = free_config(json.loads(gw.config_path.read_text()))
        pid = gw.targets()["notes"]["pid"]
        assert gw.targets()["notes"]["curation"] is None
        async with RawClient(gw.mcp_url) as raw:
            await raw.initialize()
            assert "notes_add_note" in await raw.tool_names()
            opened = asyncio.Event()
            changed = asyncio.ensure_future(raw.listen(
                lambda m: m.get("method") == "notifications/tools/list_changed", opened=opened))
            await asyncio.wait_for(opened.wait(), 20)
            curated = {**config, "targets": [CLOCK, {**NOTES, "tools": CURATION}]}
            tmp = gw.config_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(curated))
            tmp.replace(gw.config_path)
            await changed

        async with streamable_http_client(gw.mcp_url) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert {n for n in tools if n.startswith("notes_")} == {"notes_titles", "notes_get_note"}
            assert tools["notes_get_note"].description == "Read one note."
            assert tools["notes_get_note"].annotations is not None
            assert tools["notes_get_note"].annotations.idempotent_hint is True
            assert tools["notes_get_note"].annotations.read_only_hint is True  # the server's, kept
            titles = await s.call_tool("notes_titles", {})
            assert not titles.is_error and titles.structured_content == {"titles": []}
            with pytest.raises(MCPError, match="unknown tool: notes_add_note"):
                await s.call_tool("notes_add_note", {"title": "a", "body": "b"})
            with pytest.raises(MCPError, match="unknown tool: notes_list_notes"):
                await s.call_tool("notes_list_notes", {})

        listed = inspector(gw.mcp_url, "--method", "tools/list")
        assert {t["name"] for t in listed["tools"] if t["name"].startswith("notes_")} == {
            "notes_titles", "notes_get_note"}

        status = gw.targets()["notes"]
        assert status["pid"] == pid, "curation must not reconnect the target"
        report = status["curation"]
        assert report["hidden"] == [{"tool": "add_note", "reason": "excluded by 'add_*'"}]
        assert report["renamed"] == [{"tool": "list_notes", "as": "titles", "reason": "rename"}]
        assert report["overridden"] == [{"tool": "get_note", "fields": ["description", "annotations"]}]
        one = httpx.get(f"{gw.admin_url}/api/targets/notes", timeout=5).json()
        assert one["curation"] == report
