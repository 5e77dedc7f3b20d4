"""The watched config file: targets come and go without a restart, clients are told,
and an invalid edit changes nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import anyio
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from tests.support.gateway import free_config, run_gateway

CLOCK = {"name": "clock", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.clock"]}}
NOTES = {"name": "notes", "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.notes"]}}


def _write(path: Path, config: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config))
    tmp.replace(path)  # atomic, like editors and ConfigMap updates


async def test_targets_follow_the_file(tmp_path: Path) -> None:
    base = {"prefix": "always", "targets": [CLOCK]}
    with run_gateway(base, tmp_path) as gw:
        config = free_config(json.loads(gw.config_path.read_text()))
        changed: list[str] = []
        got_change = anyio.Event()

        async def on_message(message: object) -> None:
            method = getattr(getattr(message, "root", message), "method", None)
            if method == "notifications/tools/list_changed":
                changed.append(method)
                got_change.set()

        async with streamable_http_client(gw.mcp_url) as (read, write), ClientSession(
            read, write, message_handler=on_message
        ) as s:
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
            assert "clock_now" in names and not any(n.startswith("notes_") for n in names)
            await asyncio.sleep(0.3)  # let the client's GET stream open

            # 1. The file gains a target: clients are told, the tools appear.
            _write(gw.config_path, {**config, "targets": [CLOCK, NOTES]})
            with anyio.fail_after(10):
                await got_change.wait()
            gw.wait_target("notes")
            names = {t.name for t in (await s.list_tools()).tools}
            assert "notes_add_note" in names
            res = await s.call_tool("notes_add_note", {"title": "t", "body": "b"})
            assert not res.is_error

            # 2. An invalid edit changes nothing and says why (field and line).
            got_change = anyio.Event()
            gw.config_path.write_text("prefix: always\ntargets:\n  - name: Bad_Name\n    stdio: {command: x}\n")
            status: dict = {}
            with anyio.fail_after(10):
                while status.get("valid", True):
                    await asyncio.sleep(0.05)
                    status = httpx.get(f"{gw.admin_url}/api/config/status").json()
            assert any("name" in e and "line 3" in e for e in status["errors"]), status
            names = {t.name for t in (await s.list_tools()).tools}
            assert {"clock_now", "notes_add_note"} <= names
            assert (await s.call_tool("clock_add", {"a": 1, "b": 2})).structured_content == {"sum": 3}

            # 3. The target leaves the file: clients are told, its tools disappear.
            _write(gw.config_path, {**config, "targets": [CLOCK]})
            with anyio.fail_after(10):
                await got_change.wait()
            names = {t.name for t in (await s.list_tools()).tools}
            assert "clock_now" in names and not any(n.startswith("notes_") for n in names)
            assert "notes" not in gw.targets()
            assert httpx.get(f"{gw.admin_url}/api/config/status").json()["valid"] is True
