"""How an upstream session fails: what its owner is told when connecting fails, that
whatever the attempt started is closed, and that an HTTP target's GET stream comes
back after a refusal. Run compiled too (scripts/test.sh), where a handler's name
bound to two exception types once turned each of these into a TypeError."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from mcpmux.upstream.base import UpstreamError, UpstreamSession
from mcpmux.upstream.http import HttpSession


class Failing(UpstreamSession):
    """A session whose handshake fails with ``error`` (or hangs when it is None)."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__("t", timeout=5)
        self.error = error
        self.started = asyncio.Event()

    async def _handshake(self) -> None:
        self.started.set()
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()


async def test_an_unexpected_error_is_an_upstream_error_that_says_what() -> None:
    session = Failing(RuntimeError("boom"))
    with pytest.raises(UpstreamError) as err:
        await session.open()
    assert "cannot connect: RuntimeError: boom" in str(err.value)
    assert session.is_closed and session.close_reason == "initialize failed"


async def test_an_upstream_error_passes_unchanged() -> None:
    refused = UpstreamError("t", "initialize refused: no")
    session = Failing(refused)
    with pytest.raises(UpstreamError) as err:
        await session.open()
    assert err.value is refused
    assert session.close_reason == "initialize failed"


async def test_cancelled_while_connecting_closes_and_stays_cancelled() -> None:
    session = Failing(None)
    task = asyncio.create_task(session.open())
    await session.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.is_closed and session.close_reason == "cancelled while connecting"


async def test_a_refused_get_stream_is_tried_again() -> None:
    """409 (another connection holds the stream, as between replicas) is retried after
    the backoff; the second GET is served and its message reaches the session."""
    gets: list[int] = []
    done = asyncio.Event()

    async def post(request: web.Request) -> web.StreamResponse:
        msg = await request.json()
        if msg.get("method") != "initialize":
            return web.Response(status=202)
        result = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "s", "version": "1"}}
        return web.json_response({"jsonrpc": "2.0", "id": msg["id"], "result": result},
                                 headers={"Mcp-Session-Id": "s1"})

    async def get(request: web.Request) -> web.StreamResponse:
        gets.append(1)
        if len(gets) == 1:
            return web.Response(status=409)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        note = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"back"}}'
        await resp.write(b"data: " + note + b"\n\n")
        await done.wait()  # held open until the test ends
        return resp

    app = web.Application()
    app.router.add_post("/mcp", post)
    app.router.add_get("/mcp", get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    arrived: asyncio.Queue[dict] = asyncio.Queue()
    async with aiohttp.ClientSession() as client:
        session = HttpSession("t", f"http://127.0.0.1:{port}/mcp", {}, client, timeout=5, era_hint="handshake")

        async def unsolicited(msg: dict, upstream: object) -> None:
            await arrived.put(msg)
        session.on_unsolicited = unsolicited
        try:
            await session.open()
            msg = await asyncio.wait_for(arrived.get(), 10)  # after the 1 s backoff
            assert msg["params"]["data"] == "back"
            assert len(gets) == 2
        finally:
            done.set()
            await session.aclose()
            await runner.cleanup()
