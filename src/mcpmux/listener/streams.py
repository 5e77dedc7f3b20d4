"""Response streams that outlive their HTTP connection (MCP 2025-11-25 resumability).

A POST's SSE answer is a ``ResponseStream``. Each event gets an id
``{stream}-{seq}`` and is kept (bounded) after it is written, so a client whose
connection broke, or whose stream the gateway closed to let it poll, can GET
with ``Last-Event-ID`` and receive what it missed, then the rest of the call.

Sessions that negotiated 2025-11-25 or later get every answer as SSE, opened
with a priming event (an id and empty data) and a ``retry`` hint; older
sessions get JSON unless the call streams something before its answer.

With replicas, a stream's events are also retained in Redis (``retain``, set by
``listener.http.new_stream``), so that a client may resume on another replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import orjson

from ..fieldnames import header_lines
from ..jsonrpc import Message
from ..sse import encode
from .h1 import Cycle

Send = Callable[[dict[str, Any]], Awaitable[None]]

SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
JSON_HEADERS: Final = [(b"content-type", b"application/json")]
#: The same, as the lines ``Cycle.answer`` writes (checked once, here).
SSE_HEAD: Final = header_lines(SSE_HEADERS)
JSON_HEAD: Final = header_lines(JSON_HEADERS)
#: Events kept per stream for replay.
REPLAY_LIMIT: Final = 256
#: How long a finished stream waits for its client to come back for the answer.
KEEP_FINISHED: Final = 60.0
#: Client reconnection delay we suggest, in milliseconds.
RETRY_MS: Final = 1000
#: Seconds an intermediate write may wait on a client that is not reading.
SLOW_CLIENT: Final = 2.0
#: How long a resumable answer's priming event waits to share a write with what follows
#: (most answers come sooner: one write a call less); a slower call gets it then.
PRIME_DELAY = 0.005  # not Final: a test changes it

log = logging.getLogger("mcpmux.listener.streams")


#: The events of a stream that is never replayed (nothing is ever appended to it).
_NO_EVENTS: Final[deque[tuple[int, bytes]]] = deque(maxlen=0)


class Retain(Protocol):
    """Keeps a copy of a stream's event where other replicas can replay it."""

    def __call__(self, key: str, rid: Any, seq: int, data: bytes, final: bool) -> None: ...


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(data)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": data})


class ResponseStream:
    __slots__ = (
        "_send",
        "cycle",
        "done",
        "events",
        "finished_at",
        "head",
        "headers",
        "key",
        "lagging",
        "prime_timer",
        "priming",
        "resumable",
        "retain",
        "retained",
        "returned",
        "rid",
        "seq",
        "started",
        "unprimed",
        "waiter",
    )

    def __init__(self, key: str, send: Send, headers: list[tuple[bytes, bytes]], resumable: bool,
                 cycle: Cycle | None = None, head: bytes = b"") -> None:
        self.key = key
        self._send: Send | None = send
        #: The gateway's own listener's request (None under another ASGI server): an
        #: answer that is the whole response goes out through it in one call.
        self.cycle = cycle
        self.headers = headers
        #: ``headers`` as header lines (``fieldnames.header_lines``), for ``cycle``.
        self.head = head
        self.resumable = resumable
        self.started = False
        self.seq = 0
        # Kept for a replay only on resumable streams; the others share an empty one.
        self.events: deque[tuple[int, bytes]] = deque(maxlen=REPLAY_LIMIT) if resumable else _NO_EVENTS
        #: The answer was written (or kept, if the client had gone).
        self.done = False
        self.finished_at = 0.0
        #: Set at the answer, for a resume waiting for it; made by that resume (most
        #: streams are never resumed, and an Event per call is not free).
        self.waiter: asyncio.Event | None = None
        self.lagging = False
        #: Set for a session shared by replicas: every event is copied out as written.
        self.retain: Retain | None = None
        #: Events copied out (they are dropped again once the answer was delivered).
        self.retained = 0
        self.rid: Any = None
        #: Set when the client comes back after a pause (the target is resumed then too);
        #: made by the first pause (most streams never pause).
        self.returned: asyncio.Event | None = None
        #: Started, but head and priming event not written yet (see :meth:`open`).
        self.unprimed = False
        self.prime_timer: asyncio.TimerHandle | None = None
        self.priming: asyncio.Task[None] | None = None

    def open(self) -> None:
        """Start the SSE answer (resumable sessions): priming event + retry hint.

        The spec says the priming event SHOULD go out at once; it is there so that a
        client whose connection breaks can resume. It goes out with the first event
        written, or after PRIME_DELAY if nothing was: an answer that comes sooner costs
        one write, not two, and a slower call is resumable from then on."""
        if self.resumable and self._send is not None:
            self.started = True
            self.unprimed = True
            self.prime_timer = asyncio.get_running_loop().call_later(PRIME_DELAY, self._prime_due)

    def _prime_due(self) -> None:
        self.prime_timer = None
        if self.unprimed and self._send is not None:
            self.priming = asyncio.ensure_future(self._write(b"", more=True))

    def _primed(self) -> None:
        self.unprimed = False
        if self.prime_timer is not None:
            self.prime_timer.cancel()
            self.prime_timer = None

    async def _start(self) -> None:
        self.started = True
        if self._send is None:
            return
        if self.resumable:
            self.unprimed = True  # head and priming event go out with the next write
            return
        await self._send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *self.headers]})

    async def _write(self, data: bytes, more: bool) -> None:
        if self._send is None:
            return
        try:
            if self.unprimed:
                self._primed()
                data = f"id: {self.key}-0\nretry: {RETRY_MS}\ndata: \n\n".encode() + data
                cycle = self.cycle
                if not more and cycle is not None:  # the whole answer: one call, one write
                    if cycle.must_wait():
                        await cycle.drained()
                    cycle.answer(200, SSE_HEAD + self.head, data)
                    return
                await self._send({"type": "http.response.start", "status": 200,
                                  "headers": [*SSE_HEADERS, *self.headers]})
            await self._send({"type": "http.response.body", "body": data, "more_body": more})
        except Exception:  # the connection is gone: keep buffering for a resume
            self._send = None

    def _event(self, msg: Message, final: bool = False) -> bytes:
        self.seq += 1
        data = encode(orjson.dumps(msg), id=f"{self.key}-{self.seq}" if self.resumable else None)
        if self.resumable:
            self.events.append((self.seq, data))
            if self.retain is not None and not final:
                self.retain(self.key, self.rid, self.seq, data, False)
                self.retained += 1
        return data

    async def __call__(self, msg: Message) -> None:
        """An intermediate message (progress, log, a server->client request).

        It is written from the target's reader, which other clients share (one stdio
        process serves them all): a client that stops reading must not stall it. A
        write that cannot finish within SLOW_CLIENT marks the stream lagging; later
        intermediate messages are then only kept for a resume, and the answer itself
        is still written by this request's own handler."""
        if self.lagging:
            self._event(msg)
            return
        try:
            await asyncio.wait_for(self._intermediate(msg), SLOW_CLIENT)
        except TimeoutError:
            self.lagging = True
            log.warning("stream %s: client not reading; holding back its notifications", self.key or "-")

    async def _intermediate(self, msg: Message) -> None:
        if not self.started:
            await self._start()
        await self._write(self._event(msg), more=True)

    async def finish(self, msg: Message, status: int = 200) -> None:
        """The answer: the last event of the stream, or plain JSON if it never started."""
        self.finished_at = time.monotonic()
        if not self.started:
            self._finished()
            cycle = self.cycle
            if cycle is not None and self._send is not None:
                if cycle.must_wait():
                    await cycle.drained()
                cycle.answer(status, JSON_HEAD + self.head, orjson.dumps(msg))
            elif self._send is not None:
                await send_json(self._send, status, msg, self.headers)
            return
        data = self._event(msg, final=True)
        self._finished()
        await self._write(data, more=False)
        if self._send is None and self.retain is not None:
            # Not delivered: the client comes back for it, maybe to another replica. A
            # delivered answer is never copied out (the usual case costs Redis nothing).
            self.retain(self.key, self.rid, self.seq, data, True)
            self.retained += 1

    async def answered(self) -> None:
        """Returns once the answer was written (or kept)."""
        if not self.done:
            if self.waiter is None:
                self.waiter = asyncio.Event()
            await self.waiter.wait()

    def _finished(self) -> None:
        self.done = True
        if self.waiter is not None:
            self.waiter.set()

    def detach(self) -> None:
        """The client hung up: keep what follows for its resume instead of writing it
        to a connection that swallows it."""
        self._send = None
        self._primed()  # not primed: it has no event id to resume from

    @property
    def detached(self) -> bool:
        """No live connection: what is written waits for a resume."""
        return self._send is None

    @property
    def delivered(self) -> bool:
        """Finished on a live connection: nobody will come back for it."""
        return self.done and self._send is not None

    async def pause(self, retry_ms: int | None) -> asyncio.Event | None:
        """The target closed its stream so the client polls: close ours the same way.
        Returns what is set when the client resumes (None: nothing was closed)."""
        if not self.resumable or self._send is None or self.done:
            return None
        if not self.started:
            await self._start()
        if self.returned is None:
            self.returned = asyncio.Event()
        returned = self.returned
        returned.clear()
        await self._write(f"retry: {retry_ms or RETRY_MS}\n\n".encode(), more=False)
        self._send = None
        return returned

    async def resume(self, send: Send, after: int) -> None:
        """A client came back with Last-Event-ID: replay, then follow to the answer."""
        self._primed()  # this connection's own head goes first; the first one had none
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *self.headers]})
        self._send = send
        if self.returned is not None:
            self.returned.set()
        for seq, data in list(self.events):
            if seq > after:
                await self._write(data, more=True)
        if self.done:
            await self._write(b"", more=False)
            return
        await self.answered()

    def expired(self, now: float) -> bool:
        return self.done and now - self.finished_at > KEEP_FINISHED
