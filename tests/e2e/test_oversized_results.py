"""Oversized tool results (``limits.max_result_bytes``, issue 16) through real clients.

Target: ``tests/peers/big_results.py`` (stdio), whose tools return results as large
as asked. Clients: the official Python SDK, the MCP Inspector CLI and raw 2026
stateless requests. A result over the limit arrives cut, with a ``resource_link``
whose ``resources/read`` gives the whole of it back; only the session (2026: the
principal) that got it may read it; images are kept or dropped whole; the link
expires; past the memory bound results go to 0600 files that leave with them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, ResourceLink, TextContent
from tests.peers.big_results import lines
from tests.support.gateway import Gateway, run_gateway
from tests.support.inspector import inspector

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

PEER = str(Path(__file__).parents[1] / "peers" / "big_results.py")
LIMIT = 64 * 1024
TARGETS = [{"name": "big", "stdio": {"command": sys.executable, "args": [PEER]}}]
BASE: dict[str, Any] = {"targets": TARGETS, "prefix": "always"}
V2026 = "2026-07-28"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {**BASE, "limits": {"max_result_bytes": LIMIT}}
    with run_gateway(config, tmp_path_factory.mktemp("results")) as g:
        yield g


@contextlib.asynccontextmanager
async def sdk(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        yield s


def link_of(res: CallToolResult) -> ResourceLink:
    links = [c for c in res.content if isinstance(c, ResourceLink)]
    assert len(links) == 1, res.content
    return links[0]


def wire_size(res: CallToolResult) -> int:
    return len(orjson.dumps(res.model_dump(mode="json", by_alias=True, exclude_none=True)))


async def test_300kb_result_cut_and_read_back_whole(gw: Gateway) -> None:
    async with sdk(gw.mcp_url) as s:
        small = await s.call_tool("big_text", {"size": 1000})
        assert [c.type for c in small.content] == ["text"]  # under the limit: untouched
        res = await s.call_tool("big_text", {"size": 300_000})
        assert not res.is_error
        assert wire_size(res) <= LIMIT
        head, note = res.content[0], res.content[1]
        assert isinstance(head, TextContent) and isinstance(note, TextContent)
        whole = lines(300_000)
        assert whole.startswith(head.text) and 60_000 < len(head.text) < LIMIT
        link = link_of(res)
        assert str(link.uri).startswith("mcpmux://results/") and link.size is not None and link.size > 300_000
        assert f"{link.size} bytes, over limits.max_result_bytes ({LIMIT})" in note.text
        assert str(link.uri) in note.text
        read = await s.read_resource(link.uri)
        texts = [c.text for c in read.contents if hasattr(c, "text")]
        assert texts == [whole]


async def test_another_session_gets_unknown_resource(gw: Gateway) -> None:
    async with sdk(gw.mcp_url) as a, sdk(gw.mcp_url) as b:
        uri = str(link_of(await a.call_tool("big_text", {"size": 100_000})).uri)
        with pytest.raises(MCPError) as theirs:
            await b.read_resource(uri)  # type: ignore[arg-type]
        made_up = "mcpmux://results/" + "x" * 22
        with pytest.raises(MCPError) as unknown:
            await b.read_resource(made_up)  # type: ignore[arg-type]
        assert theirs.value.error.code == unknown.value.error.code
        assert theirs.value.error.message == unknown.value.error.message.replace(made_up, uri)
        assert len((await a.read_resource(uri)).contents) == 1  # the owner still can  # type: ignore[arg-type]


async def test_images_are_kept_or_dropped_whole(gw: Gateway) -> None:
    async with sdk(gw.mcp_url) as s:
        # The text before the image passes the limit: the image after the cut is left out whole.
        res = await s.call_tool("big_picture", {"before": 100_000, "image": 20_000, "after": 10})
        types = [c.type for c in res.content]
        assert types == ["text", "text", "resource_link"], types
        note = res.content[1]
        assert isinstance(note, TextContent) and "image (image/png)" in note.text
        read = await s.read_resource(link_of(res).uri)
        blobs = [c for c in read.contents if hasattr(c, "blob")]
        assert len(blobs) == 1 and len(blobs[0].blob) == 20_000  # type: ignore[union-attr]
        base64.b64decode(blobs[0].blob + "==")  # type: ignore[union-attr]
        # Small text, a fitting image, big text: the image stays whole, the text after it is cut.
        res = await s.call_tool("big_picture", {"before": 100, "image": 20_000, "after": 100_000})
        assert [c.type for c in res.content] == ["text", "image", "text", "text", "resource_link"]
        assert len(res.content[1].data) == 20_000  # type: ignore[union-attr]
        assert wire_size(res) <= LIMIT
        # An image larger than the limit is left out; the small text after it stays.
        res = await s.call_tool("big_picture", {"before": 100, "image": 100_000, "after": 50})
        assert [c.type for c in res.content] == ["text", "text", "text", "resource_link"]
        assert res.content[1].text == lines(50, "after")  # type: ignore[union-attr]


async def test_structured_content_is_dropped_with_the_text(gw: Gateway) -> None:
    async with sdk(gw.mcp_url) as s:
        res = await s.call_tool("big_text", {"size": 200_000, "structured": True})
        assert res.structured_content is None
        note = res.content[1]
        assert isinstance(note, TextContent) and "structuredContent" in note.text
        read = await s.read_resource(link_of(res).uri)
        assert json.loads(read.contents[-1].text) == {"length": 200_000, "first": lines(40)}  # type: ignore[union-attr]


def modern(url: str, method: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": V2026,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}
    name = params.get("name") or params.get("uri")
    head = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
            "MCP-Protocol-Version": V2026, "Mcp-Method": method, "Mcp-Name": str(name), **(headers or {})}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    resp = httpx.post(url, json=body, headers=head, timeout=20)
    out: dict[str, Any] = resp.json()
    return out


async def test_2026_stateless_requests_cut_and_read(gw: Gateway) -> None:
    res = modern(gw.mcp_url, "tools/call", {"name": "big_text", "arguments": {"size": 300_000}})["result"]
    link = res["content"][-1]
    assert link["type"] == "resource_link" and len(orjson.dumps(res)) <= LIMIT
    read = modern(gw.mcp_url, "resources/read", {"uri": link["uri"]})
    assert read["result"]["contents"][0]["text"] == lines(300_000)
    async with sdk(gw.mcp_url) as s:  # a 2025 session is not its owner
        with pytest.raises(MCPError, match="unknown resource"):
            await s.read_resource(link["uri"])


def test_inspector_cli_gets_the_cut_result(gw: Gateway) -> None:
    out = inspector(gw.mcp_url, "--method", "tools/call", "--tool-name", "big_text", "--tool-arg", "size=300000")
    assert [c["type"] for c in out["content"]] == ["text", "text", "resource_link"]
    assert out["content"][2]["uri"].startswith("mcpmux://results/")


def spilled(tmp: Path) -> list[Path]:
    return sorted(p for d in tmp.glob("mcpmux-results-*") for p in d.iterdir())


async def test_spill_to_disk_expiry_and_shutdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    limits = {"max_result_bytes": LIMIT, "max_result_memory_bytes": 150_000, "result_ttl": 3,
              "max_result_disk_bytes": 250_000}
    with run_gateway({**BASE, "limits": limits}, tmp_path) as g:
        async with sdk(g.mcp_url) as s:
            in_memory = link_of(await s.call_tool("big_text", {"size": 100_000})).uri
            assert spilled(spill) == []  # within the memory bound
            first = link_of(await s.call_tool("big_text", {"size": 120_000})).uri
            files = spilled(spill)
            assert len(files) == 1
            assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
            assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
            read = await s.read_resource(first)
            assert read.contents[0].text == lines(120_000)  # type: ignore[union-attr]
            # Past the disk bound the oldest spilled result goes.
            second = link_of(await s.call_tool("big_text", {"size": 150_000})).uri
            assert len(spilled(spill)) == 1 and spilled(spill) != files
            with pytest.raises(MCPError, match="unknown resource"):
                await s.read_resource(first)
            assert (await s.read_resource(second)).contents[0].text == lines(150_000)  # type: ignore[union-attr]
            # On expiry the file is deleted and the links stop working.
            deadline = time.monotonic() + 20
            while spilled(spill) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert spilled(spill) == []
            for uri in (in_memory, second):
                with pytest.raises(MCPError, match="unknown resource"):
                    await s.read_resource(uri)
            # A new one spills again (the directory stays until shutdown).
            link_of(await s.call_tool("big_text", {"size": 200_000}))
            assert len(spilled(spill)) == 1
    assert list(spill.glob("mcpmux-results-*")) == []  # shutdown removed the directory
    assert os.listdir(spill) == []
