"""The stdio target's stdout reader (``upstream/stdio.py``, ``StdoutLines``) against a
real child process: answers are handed over in the read callback, yet never before
what the child wrote ahead of them, and a child that floods a slow client is made to
wait instead of growing the gateway's memory. Under both loops: the gateway runs on
uvloop, whose pipe transports are not asyncio's."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from mcpmux.config import StdioSpec
from mcpmux.jsonrpc import Message
from mcpmux.upstream.base import UpstreamSession
from mcpmux.upstream.stdio import QUEUE_HIGH, StdioSession, StdoutLines

#: Answers ``initialize``; for any other request writes ``n`` progress notifications of
#: ``size`` bytes each and then the answer, all in one write.
CHILD = r"""
import json, sys
for line in sys.stdin:
    req = json.loads(line)
    if "id" not in req:
        continue
    if req["method"] == "initialize":
        res = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "t", "version": "1"}}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": res}) + "\n")
        sys.stdout.flush()
        continue
    p = req["params"]
    note = {"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": p["_meta"]["progressToken"], "progress": 0, "message": "x" * p["size"]}}
    out = []
    for i in range(p["n"]):
        note["params"]["progress"] = i
        out.append(json.dumps(note))
    out.append(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {"n": p["n"]}}))
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
"""


class Sink:
    """A client's call: records progress, optionally slow to take each one."""

    def __init__(self, session: StdioSession, gate: asyncio.Event | None = None) -> None:
        self.session = session
        self.gate = gate
        self.response_bytes: int | None = None
        self.progress: list[Any] = []
        self.max_queued = 0
        self.paused_seen = False

    @property
    def owner(self) -> object:
        return self

    def accepts(self, method: str) -> bool:
        return False

    async def notify(self, msg: Message) -> None:
        lines = self.session.lines
        assert lines is not None
        self.max_queued = max(self.max_queued, lines.queued)
        self.paused_seen |= lines.paused
        await asyncio.sleep(0)  # a client's stream takes its time: the loop runs meanwhile
        if self.gate is not None:  # a client slower than the child: the queue fills meanwhile
            await self.gate.wait()
        self.progress.append(msg["params"]["progress"])

    async def server_request(self, msg: Message, upstream: UpstreamSession) -> None:
        raise AssertionError(msg)


async def paused(lines: StdoutLines) -> None:
    while not lines.paused:
        await asyncio.sleep(0.01)


async def started() -> StdioSession:
    session = StdioSession("t", StdioSpec(command=sys.executable, args=["-c", CHILD]), timeout=30)
    await session.open()
    return session


RUNNERS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.mark.parametrize("loop", RUNNERS)
def test_progress_written_before_the_answer_reaches_the_client_before_it(loop: str) -> None:
    RUNNERS[loop](progress_then_answer())


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_child_flooding_a_slow_client_waits_and_the_queue_stays_bounded(loop: str) -> None:
    RUNNERS[loop](flood_a_slow_client())


async def progress_then_answer() -> None:
    session = await started()
    try:
        for n in (1, 3, 50):
            sink = Sink(session)
            resp = await session.request("tools/call", {"n": n, "size": 10, "_meta": {"progressToken": "p"}}, sink)
            assert resp["result"] == {"n": n}
            assert sink.progress == list(range(n))  # all delivered, in order, before the answer
            assert sink.response_bytes is not None and sink.response_bytes > 0
    finally:
        await session.aclose()


async def flood_a_slow_client() -> None:
    session = await started()
    gate = asyncio.Event()
    sink = Sink(session, gate)
    n, size = 400, 64 * 1024  # 26 MB of notifications ahead of the answer
    try:
        call = asyncio.ensure_future(
            session.request("tools/call", {"n": n, "size": size, "_meta": {"progressToken": "p"}}, sink))
        lines = session.lines
        assert lines is not None
        await asyncio.wait_for(paused(lines), 10)  # the child writes faster than the gated client takes
        gate.set()
        resp = await asyncio.wait_for(call, 30)
        assert resp["result"] == {"n": n}
        assert sink.progress == list(range(n))
        assert sink.paused_seen
        # Reading pauses within the pipe read (at most 256 kB) that crossed the mark (the
        # sink sees the queue less the message it is given).
        assert QUEUE_HIGH - size < sink.max_queued <= QUEUE_HIGH + 256 * 1024 + size, sink.max_queued
        assert not lines.paused and lines.queued == 0
    finally:
        await session.aclose()
