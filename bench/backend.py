"""A minimal, fast MCP server over streamable HTTP: the ceiling the gateway is measured against.

It answers ``initialize`` (with a fresh ``Mcp-Session-Id``), notifications (202),
``ping``, ``tools/list`` and ``tools/call`` (``echo``), always as plain JSON, and
``DELETE`` (session end). A ``GET`` with a known session opens an SSE stream that
stays open until the client leaves, as the TypeScript SDK's servers do, so a
gateway pays for the streams it keeps (``--no-get-stream`` answers 405 instead).
Unknown session ids get 404, like real servers.

It is raw ASGI on uvicorn + httptools + uvloop with orjson, and one process can
listen on many ports (``--ports N``), which is how the 20- and 50-target scenarios
get 20 or 50 distinct targets without 50 processes.

    python bench/backend.py --ports 3 --tools 10
    LISTENING 40001 40002 40003          (first line on stdout, once serving)

``GET /stats`` (no session needed) answers ``{"sessions": n, "get_streams": n,
"calls": n, "initializes": n}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HDRS = [(b"content-type", b"application/json")]
SSE_HDRS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def make_tools(count: int) -> list[dict[str, Any]]:
    """``echo`` plus ``count - 1`` tools with realistic descriptions and schemas."""
    tools: list[dict[str, Any]] = [
        {
            "name": "echo",
            "description": "Echoes back the input message.",
            "inputSchema": {
                "type": "object",
                "properties": {"message": {"type": "string", "description": "Message to echo"}},
                "required": ["message"],
            },
        }
    ]
    for i in range(1, count):
        tools.append(
            {
                "name": f"tool-{i:03d}",
                "title": f"Tool number {i}",
                "description": f"Does task {i} on the given resource; returns a short report. "
                "Use it when the user asks for that task.",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Resource to work on"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "verbose": {"type": "boolean", "default": False},
                    },
                    "required": ["path"],
                },
                "annotations": {"readOnlyHint": True},
            }
        )
    return tools


class Backend:
    def __init__(self, tools: int, get_stream: bool) -> None:
        self.tools_result = {"tools": make_tools(tools)}
        self.get_stream = get_stream
        self.sessions: set[bytes] = set()
        self.streams = 0
        self.calls = 0
        self.initializes = 0
        self._sid = itertools.count(1)
        self._prefix = os.urandom(6).hex()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if scope["path"] == "/stats":
            body = {"sessions": len(self.sessions), "get_streams": self.streams, "calls": self.calls,
                    "initializes": self.initializes}
            await _reply(send, 200, orjson.dumps(body))
            return
        sid = b""
        for k, v in scope["headers"]:
            if k == b"mcp-session-id":
                sid = v
        if method == "POST":
            await self._post(sid, receive, send)
        elif method == "GET":
            await self._get(sid, receive, send)
        elif method == "DELETE":
            self.sessions.discard(sid)
            await _reply(send, 200 if sid else 400, b"")
        else:
            await _reply(send, 405, b"")

    async def _post(self, sid: bytes, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            ev = await receive()
            chunks.append(ev.get("body", b""))
            if not ev.get("more_body"):
                break
        msg = orjson.loads(b"".join(chunks))
        method = msg.get("method")
        rid = msg.get("id")
        if method == "initialize":
            self.initializes += 1
            new = f"{self._prefix}-{next(self._sid)}".encode()
            self.sessions.add(new)
            version = (msg.get("params") or {}).get("protocolVersion", "2025-06-18")
            result = {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "bench-backend", "version": "1.0"},
            }
            body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "result": result})
            await _reply(send, 200, body, [(b"mcp-session-id", new)])
            return
        if sid not in self.sessions:
            await _reply(send, 404 if sid else 400, b'{"error":"unknown session"}')
            return
        if rid is None:  # a notification or a response
            await _reply(send, 202, b"")
            return
        if method == "tools/call":
            self.calls += 1
            args = (msg.get("params") or {}).get("arguments") or {}
            res: dict[str, Any] = {
                "content": [{"type": "text", "text": f"Echo: {args.get('message', '')}"}]
            }
        elif method == "tools/list":
            res = self.tools_result
        elif method == "ping":
            res = {}
        else:
            err = {"code": -32601, "message": f"method not found: {method}"}
            await _reply(send, 200, orjson.dumps({"jsonrpc": "2.0", "id": rid, "error": err}))
            return
        await _reply(send, 200, orjson.dumps({"jsonrpc": "2.0", "id": rid, "result": res}))

    async def _get(self, sid: bytes, receive: Receive, send: Send) -> None:
        if not self.get_stream:
            await _reply(send, 405, b"")
            return
        if sid not in self.sessions:
            await _reply(send, 404 if sid else 400, b"")
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HDRS})
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        self.streams += 1
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            self.streams -= 1


async def _reply(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*JSON_HDRS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve(ports: int, tools: int, get_stream: bool) -> None:
    socks = []
    for _ in range(ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1024)
        s.setblocking(False)
        socks.append(s)
    config = uvicorn.Config(
        Backend(tools, get_stream), lifespan="off", log_level="warning", access_log=False,
        http="httptools", loop="none", backlog=1024, timeout_keep_alive=60,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=socks))
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    print("LISTENING " + " ".join(str(s.getsockname()[1]) for s in socks), flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1)
    parser.add_argument("--tools", type=int, default=1)
    parser.add_argument("--no-get-stream", dest="get_stream", action="store_false")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.ports, args.tools, args.get_stream))


if __name__ == "__main__":
    main()
