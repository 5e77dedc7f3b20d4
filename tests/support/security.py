"""In-process peers for the security end-to-end tests, on an event loop in a thread.

The test IdP and a header-recording MCP target run on a background loop, so tests
(and the sync ``run_gateway`` helper) can block without starving them while the
gateway subprocess fetches keys, exchanges tokens or forwards calls.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web
from tests.support.idp import TestIdP

T = TypeVar("T")


class Background:
    """An asyncio loop in a daemon thread; :meth:`run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="security-peers", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def start_idp(bg: Background, audience: str) -> TestIdP:
    async def make() -> TestIdP:
        idp = TestIdP(audience)
        await idp.start()
        return idp

    return bg.run(make())


class Recorder:
    """A minimal streamable-HTTP MCP server (handshake era) that records every request's
    headers. Any path ``/<name>/mcp`` works; under ``/deny/`` a ``tools/call`` is
    answered with HTTP 401, as a target whose credentials were refused would answer.
    Tools: ``whoami`` (answers with the identity headers it got), ``limited``, ``secret``."""

    TOOLS = ("whoami", "limited", "secret")
    SHOWN = ("authorization", "x-static", "x-user", "x-groups")

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{name}/mcp", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def calls(self, name: str, tool: str | None = None) -> list[dict[str, Any]]:
        """The recorded tools/call requests to ``/<name>/mcp`` (of ``tool``)."""
        return [
            s for s in list(self.seen)
            if s["path"] == f"/{name}/mcp" and s["method"] == "tools/call"
            and (tool is None or s["tool"] == tool)
        ]

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(status=405)
        if request.method == "DELETE":
            return web.Response(status=200)
        body = await request.json()
        params = body.get("params") or {}
        self.seen.append({
            "path": request.path,
            "method": body.get("method"),
            "tool": params.get("name"),
            "headers": {k.lower(): v for k, v in request.headers.items()},
        })
        if "id" not in body:
            return web.Response(status=202)
        rid, method = body["id"], body.get("method")
        if method == "initialize":
            res: dict[str, Any] = {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "recorder", "version": "1"},
            }
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": res},
                                     headers={"Mcp-Session-Id": "rec-session"})
        if method == "ping":
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {}})
        if method == "tools/list":
            tools = [{"name": t, "inputSchema": {"type": "object"}} for t in self.TOOLS]
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}})
        if method == "tools/call":
            if request.path.startswith("/deny/"):
                return web.json_response(
                    {"error": "invalid_token"}, status=401,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            shown = {h: request.headers.get(h) for h in self.SHOWN}
            content = [{"type": "text", "text": json.dumps(shown)}]
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {"content": content}})
        return web.json_response(
            {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no {method}"}}
        )


def start_recorder(bg: Background) -> Recorder:
    async def make() -> Recorder:
        rec = Recorder()
        await rec.start()
        return rec

    return bg.run(make())
