"""A raw streamable-HTTP MCP client for tests that must see exactly what went over the wire.

The SDK client hides status codes and error ``data``; this one returns the JSON-RPC
message as sent (JSON or the last message of an SSE stream). It parses SSE itself, so
a bug in the gateway's own parser cannot hide behind it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import httpx
import orjson

ACCEPT = "application/json, text/event-stream"
VERSION = "2025-11-25"


def sse_messages(text: str) -> list[dict[str, Any]]:
    """The JSON ``data`` of every event in a complete SSE body."""
    out: list[dict[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip(" ") if ln.startswith("data:") else None for ln in block.split("\n")]
        lines = [d for d in data if d is not None]
        if lines and "".join(lines).strip():
            out.append(orjson.loads("\n".join(lines)))
    return out


class RawClient:
    def __init__(self, url: str, timeout: float = 20) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=timeout)
        self.sid: str | None = None
        self.version = VERSION
        self.notifications: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.sid:
            try:
                await self.http.delete(self.url, headers=self.headers())
            except httpx.HTTPError:
                pass
        await self.http.aclose()

    def headers(self, **extra: str) -> dict[str, str]:
        h = {"Accept": ACCEPT, "Content-Type": "application/json"}
        if self.sid:
            h["Mcp-Session-Id"] = self.sid
            h["MCP-Protocol-Version"] = self.version
        h.update(extra)
        return h

    async def send(self, msg: dict[str, Any]) -> httpx.Response:
        return await self.http.post(self.url, content=orjson.dumps(msg), headers=self.headers())

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; return its response message (result or error)."""
        rid = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        resp = await self.send(msg)
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            msgs = sse_messages(resp.text)
            self.notifications.extend(m for m in msgs if m.get("id") != rid)
            answers = [m for m in msgs if m.get("id") == rid and "method" not in m]
            assert answers, f"no answer to {method} on the stream: {resp.text[:500]}"
            return answers[-1]
        assert ctype.startswith("application/json"), (
            f"{method}: HTTP {resp.status_code} {ctype}: {resp.text[:300]}"
        )
        data: dict[str, Any] = resp.json()
        assert data.get("id") == rid, data
        return data

    async def initialize(self) -> dict[str, Any]:
        rid = next(self._ids)
        resp = await self.send(
            {
                "jsonrpc": "2.0",
                "id": rid,
                "method": "initialize",
                "params": {
                    "protocolVersion": VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "mcpmux-tests", "version": "0"},
                },
            }
        )
        assert resp.status_code == 200, f"initialize: HTTP {resp.status_code}: {resp.text}"
        self.sid = resp.headers["mcp-session-id"]
        init: dict[str, Any] = resp.json()["result"]
        self.version = init["protocolVersion"]
        ack = await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ack.status_code == 202, ack.text
        return init

    async def tool_names(self) -> list[str]:
        """Every page of tools/list, in order."""
        names: list[str] = []
        cursor: str | None = None
        while True:
            resp = await self.rpc("tools/list", {"cursor": cursor} if cursor else None)
            assert "result" in resp, resp
            names += [t["name"] for t in resp["result"]["tools"]]
            cursor = resp["result"].get("nextCursor")
            if not cursor:
                return names

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.rpc("tools/call", {"name": name, "arguments": arguments or {}})

    async def listen(
        self,
        until: Callable[[dict[str, Any]], bool],
        within: float = 20,
        opened: asyncio.Event | None = None,
    ) -> dict[str, Any]:
        """Open the GET stream; return the first message for which ``until`` is true."""
        headers = {
            "Accept": "text/event-stream",
            "Mcp-Session-Id": self.sid or "",
            "MCP-Protocol-Version": self.version,
        }

        async def read() -> dict[str, Any]:
            async with self.http.stream(
                "GET", self.url, headers=headers, timeout=httpx.Timeout(within, read=None)
            ) as resp:
                assert resp.status_code == 200, f"GET stream: HTTP {resp.status_code}"
                buf = ""
                async for chunk in resp.aiter_text():
                    if opened is not None:
                        opened.set()
                    buf += chunk.replace("\r\n", "\n")
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        for msg in sse_messages(block + "\n\n"):
                            if until(msg):
                                return msg
            raise AssertionError("GET stream ended before the expected message")

        return await asyncio.wait_for(read(), within)
