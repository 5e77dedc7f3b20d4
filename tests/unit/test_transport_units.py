"""Unit tests for issue 3's pieces that need no peers: ``url:`` targets in the config,
the stdio front's line splitting and message handling, ``mcpmux bridge``'s config."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mcpmux.cli import _target_name, bridge_config
from mcpmux.config import ConfigError, GatewayConfig, UrlSpec, parse_config
from mcpmux.dispatch import Dispatcher
from mcpmux.gateway import Gateway
from mcpmux.listener.stdio import StdioFront, _lines


def only_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml", {})
    assert len(info.value.errors) == 1, info.value.errors
    return info.value.errors[0]


# ------------------------------------------------------------------ url: targets


def test_url_target_is_its_own_kind_with_headers() -> None:
    cfg = parse_config(
        "targets:\n  - name: far\n    url: https://h.example/mcp\n    headers: {X-Key: k}\n", env={}
    )
    (target,) = cfg.targets
    assert target.kind == "url"
    assert target.spec == UrlSpec(url="https://h.example/mcp", headers={"X-Key": "k"})


def test_url_target_errors() -> None:
    both = only_error(
        "targets:\n  - name: b\n    url: http://h/mcp\n    http: {url: 'http://h/mcp'}\n"
    )
    assert "set exactly one of stdio, http, sse, openapi, url (found: http, url)" in both
    stray = only_error(
        "targets:\n  - name: s\n    sse: {url: 'http://h/sse'}\n    headers: {A: b}\n"
    )
    assert "top-level 'headers' go with 'url'" in stray and "inside 'sse:'" in stray
    bad = only_error("targets:\n  - name: u\n    url: ftp://h/x\n")
    assert bad.startswith("targets[0].url: must be an http:// or https:// URL"), bad
    header = only_error("targets:\n  - name: u\n    url: http://h/\n    headers: {'A B': c}\n")
    assert "invalid header name" in header


# ----------------------------------------------------------------------- bridge


def test_bridge_config_is_one_stdio_target_without_prefix() -> None:
    cfg = bridge_config(["node", "dist/server.js", "--flag"], "0.0.0.0", 8080, None, None, 30)
    assert cfg.prefix == "never"
    assert (cfg.listen.host, cfg.listen.port) == ("0.0.0.0", 8080)
    assert not cfg.admin.enabled
    (target,) = cfg.targets
    assert target.name == "node" and target.timeout == 30
    assert target.stdio is not None
    assert (target.stdio.command, target.stdio.args) == ("node", ["dist/server.js", "--flag"])
    with_admin = bridge_config(["x"], "127.0.0.1", 0, "named", 19001, 5)
    assert with_admin.admin.enabled and with_admin.admin.port == 19001
    assert with_admin.targets[0].name == "named"
    with pytest.raises(ConfigError):
        bridge_config(["x"], "127.0.0.1", 0, "Not_A_Label", None, 5)


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("node", "node"),
        ("/usr/local/bin/mcp-server-git", "mcp-server-git"),
        ("Server.PY", "server"),
        ("python3.11", "python3-11"),
        ("___", "server"),
        ("x" * 80, "x" * 63),
    ],
)
def test_target_name_from_the_command(command: str, name: str) -> None:
    assert _target_name(command) == name


# -------------------------------------------------------------- the stdio front


async def collect(data: list[bytes], limit: int) -> list[bytes | None]:
    reader = asyncio.StreamReader()
    for chunk in data:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [line async for line in _lines(reader, limit)]


async def test_lines_split_across_chunks_skip_blanks_and_flag_oversized() -> None:
    got = await collect([b'{"a"', b":1}\n\n  \n", b"x" * 20, b"y" * 20 + b"\n", b"ok\nlast"], 16)
    assert got == [b'{"a":1}', None, b"ok", b"last"]
    assert await collect([b"z" * 40], 16) == [None]
    assert await collect([b"exactly-16-bytes\n"], 16) == [b"exactly-16-bytes"]


class Front:
    """A StdioFront on an in-memory pipe, over a gateway with no targets."""

    def __init__(self) -> None:
        self.gateway = Gateway(GatewayConfig())
        self.reader = asyncio.StreamReader()
        self.out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.dispatcher = Dispatcher(self.gateway)
        self.front = StdioFront(self.dispatcher, self.reader, self._write)

    async def _write(self, data: bytes) -> None:
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        await self.out.put(json.loads(data))

    def send(self, msg: Any) -> None:
        self.reader.feed_data((msg if isinstance(msg, bytes) else json.dumps(msg).encode()) + b"\n")

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.out.get(), 5)


async def test_stdio_front_answers_and_closes_its_session_on_eof() -> None:
    f = Front()
    runner = asyncio.create_task(f.front.run())
    f.send({"jsonrpc": "2.0", "id": "p", "method": "ping"})
    assert await f.next() == {"jsonrpc": "2.0", "id": "p", "result": {}}
    f.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert "not initialized" in (await f.next())["error"]["message"]
    init = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "u", "version": "0"},
    }
    f.send({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": init})
    assert (await f.next())["result"]["protocolVersion"] == "2025-06-18"
    assert len(f.dispatcher.sessions) == 1
    f.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    f.send({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    assert await f.next() == {"jsonrpc": "2.0", "id": 3, "result": {"tools": []}}
    f.send(b"{nope")
    assert (await f.next())["error"]["code"] == -32700
    f.send({"jsonrpc": "2.0", "id": None, "method": "ping"})
    assert (await f.next())["error"]["code"] == -32600
    f.send({"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": init})
    assert "already initialized" in (await f.next())["error"]["message"]
    f.reader.feed_eof()
    await asyncio.wait_for(runner, 5)
    assert f.dispatcher.sessions.live == {}
