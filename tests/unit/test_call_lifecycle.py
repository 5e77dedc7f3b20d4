"""A call's life when its target goes silent or its client hangs up: timeouts,
cancellation upstream, and answers kept for a resume. The listener runs for real
(uvicorn on a loopback port, in this process) in front of fake targets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from tests.support.fake_upstream import Client, FakeServer, FakeSession, core

from mcpmux.dispatch import Dispatcher
from mcpmux.jsonrpc import Message
from mcpmux.listener import streams
from mcpmux.listener.h1 import protocol_class
from mcpmux.listener.http import StreamableHTTP


class Gate:
    """A tool that runs until released (and says when it started)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, _s: FakeServer, _f: FakeSession, msg: Message) -> Message:
        self.started.set()
        await self.release.wait()
        return {"result": {"content": [{"type": "text", "text": "done"}]}}


async def chatty(_s: FakeServer, session: FakeSession, msg: Message) -> Message:
    """Takes 6 ticks of 50 ms, sending progress on each: never silent for long."""
    token = msg["params"]["_meta"]["progressToken"]
    for i in range(6):
        await asyncio.sleep(0.05)
        await session.dispatch({"jsonrpc": "2.0", "method": "notifications/progress",
                                "params": {"progressToken": token, "progress": i}})
    return {"result": {"content": [{"type": "text", "text": "kept alive"}]}}


def cancelled(server: FakeServer) -> list[dict[str, Any]]:
    return [m["params"] for _, m in server.received if m.get("method") == "notifications/cancelled"]


async def until(check: Any, tries: int = 250) -> None:
    """Wait (bounded) for a condition the gateway brings about asynchronously."""
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def test_a_silent_call_times_out_cleanly_and_is_cancelled_upstream() -> None:
    gate = Gate()
    srv = {"a": FakeServer({"hang": gate, "chatty": chatty, "slow": gate}), "b": FakeServer({})}
    async with core(srv, limits={"call_timeout": 0.2}) as d:
        d.gateway.targets["a"].config.tool_timeouts["slow"] = 0  # this tool: no limit
        client = await Client.connect(d)
        resp = await client.request("tools/call", {"name": "a_hang"})
        err = resp["error"]
        assert err["code"] == -32001 and err["data"] == {"target": "a", "timeout": 0.2}
        assert "did not answer tools/call within 0.2 s" in err["message"]
        await until(lambda: cancelled(srv["a"]))
        [note] = cancelled(srv["a"])
        [call] = srv["a"].requests("tools/call")
        assert note["requestId"] == call["id"]
        # Progress keeps a call alive past the timeout: 300 ms of work, 200 ms limit.
        resp = await client.request("tools/call", {"name": "a_chatty", "_meta": {"progressToken": "p"}})
        assert resp["result"]["content"][0]["text"] == "kept alive"
        # A tool with its own timeout of 0 is never cut.
        slow = asyncio.ensure_future(client.request("tools/call", {"name": "a_slow"}))
        await asyncio.sleep(0.4)  # twice the limit: the call must still be running
        assert not slow.done()
        gate.release.set()
        assert (await slow)["result"]["content"][0]["text"] == "done"


async def test_waiting_for_the_client_s_answer_does_not_count_as_silence() -> None:
    async def asks(server: FakeServer, session: FakeSession, msg: Message) -> Message:
        answer = await server.ask(session, "elicitation/create", {"message": "sure?"}, during=msg["id"])
        return {"result": {"content": [], "answer": answer}}

    srv = {"a": FakeServer({"asks": asks}), "b": FakeServer({})}
    async with core(srv, {"a": "http", "b": "http"}, limits={"call_timeout": 0.2}) as d:
        client = await Client.connect(d, {"elicitation": {}})

        async def slow_person(_msg: Message) -> dict[str, Any]:
            await asyncio.sleep(0.5)  # a person reading the question
            return {"result": {"action": "accept", "content": {}}}

        client.on_request = slow_person
        resp = await client.request("tools/call", {"name": "a_asks"})
        assert resp["result"]["answer"]["result"]["action"] == "accept", resp


#: The gateway's own protocol calls back on a hang-up; under uvicorn's the listener
#: reads ``receive`` for it. Both ways are tested.
PROTOCOLS = {"mcpmux": protocol_class(65536, 10.0, 100), "uvicorn": "httptools"}


@contextlib.asynccontextmanager
async def listening(d: Dispatcher, protocol: str) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(StreamableHTTP(d), host="127.0.0.1", port=0, lifespan="off",
                                           log_level="warning", http=PROTOCOLS[protocol]))  # type: ignore[arg-type]
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


async def open_session(http: httpx.AsyncClient, url: str, version: str) -> dict[str, str]:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    resp = await http.post(url, json=init, headers={"Accept": "application/json, text/event-stream"})
    return {"Accept": "application/json, text/event-stream", "Mcp-Session-Id": resp.headers["mcp-session-id"],
            "MCP-Protocol-Version": version}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("prime_delay", [60.0, 0.0])
async def test_a_quick_answer_shares_one_write_with_its_priming_event(
        protocol: str, prime_delay: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """The priming event waits (PRIME_DELAY) for what follows: an answer that comes
    sooner goes out in the same write, after it. With no wait, they are two writes."""
    monkeypatch.setattr(streams, "PRIME_DELAY", prime_delay)
    sse_writes: list[bytes] = []
    write = asyncio.selector_events._SelectorSocketTransport.write  # type: ignore[attr-defined]

    def counting(self: Any, data: bytes) -> None:
        if b"\nid: " in bytes(data):  # an SSE event's id line (not Mcp-Session-Id)
            sse_writes.append(bytes(data))
        write(self, data)

    monkeypatch.setattr(asyncio.selector_events._SelectorSocketTransport, "write", counting)  # type: ignore[attr-defined]

    async def quick(_s: FakeServer, _f: FakeSession, msg: Message) -> Message:
        await asyncio.sleep(0.05)  # a round trip's worth, longer than no wait at all
        return {"result": {"content": [{"type": "text", "text": "quick"}]}}

    srv = {"a": FakeServer({"quick": quick}), "b": FakeServer({})}
    async with core(srv) as d, listening(d, protocol) as url, httpx.AsyncClient(timeout=10) as http:
        headers = await open_session(http, url, "2025-11-25")
        call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "a_quick"}}
        resp = await http.post(url, json=call, headers=headers)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [e for e in resp.text.split("\n\n") if e.strip()]
    assert events[0].startswith("id: ") and "data: \n" in events[0] + "\n", events  # priming first
    assert json.loads(events[1].split("data: ", 1)[1])["result"]["content"][0]["text"] == "quick"
    assert len(sse_writes) == (1 if prime_delay else 2), sse_writes


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_client_that_hangs_up_cancels_its_call_upstream(protocol: str) -> None:
    gate = Gate()
    srv = {"a": FakeServer({"hang": gate}), "b": FakeServer({})}
    async with core(srv) as d, listening(d, protocol) as url, httpx.AsyncClient(timeout=10) as http:
        headers = await open_session(http, url, "2025-06-18")  # JSON answers: nothing to resume
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "a_hang"}}
        post = asyncio.ensure_future(http.post(url, json=call, headers=headers))
        await gate.started.wait()
        post.cancel()  # the client hangs up
        with contextlib.suppress(asyncio.CancelledError):
            await post
        await until(lambda: cancelled(srv["a"]))  # the listener notices within WATCH_AFTER
        [call_seen] = srv["a"].requests("tools/call")
        assert cancelled(srv["a"]) == [{"requestId": call_seen["id"], "reason": "the client disconnected"}]
        [session] = d.sessions.live.values()
        assert session.inflight == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_answer_that_arrives_while_the_client_is_away_is_replayed_on_resume(protocol: str) -> None:
    gate = Gate()
    srv = {"a": FakeServer({"hang": gate}), "b": FakeServer({})}
    async with core(srv) as d, listening(d, protocol) as url, httpx.AsyncClient(timeout=10) as http:
        headers = await open_session(http, url, "2025-11-25")  # resumable SSE answers
        call = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "a_hang"}}
        async with http.stream("POST", url, json=call, headers=headers) as resp:
            lines = resp.aiter_lines()
            first_id = None
            async for line in lines:  # the priming event names the stream
                if line.startswith("id: "):
                    first_id = line[4:]
                    break
        assert first_id is not None  # and now the client is gone
        [session] = d.sessions.live.values()
        [stream] = session.response_streams.values()
        await gate.started.wait()
        await until(lambda: stream.detached)  # the listener has seen the hang-up
        gate.release.set()
        await asyncio.wait_for(stream.answered(), 5)  # the answer came, nobody there
        got: list[Message] = []
        resume = {**headers, "Last-Event-ID": first_id}
        async with http.stream("GET", url, headers=resume) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data: ") and line[6:].strip():
                    got.append(json.loads(line[6:]))
                    break
        assert got and got[0]["id"] == 8 and got[0]["result"]["content"][0]["text"] == "done"
