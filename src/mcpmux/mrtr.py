"""Multi round-trip requests across eras (2026-07-28 ``InputRequiredResult``).

A modern client cannot receive server->client requests. When a handshake-era
target sends ``elicitation/create``, ``sampling/createMessage`` or
``roots/list`` during a modern client's call, the gateway keeps that upstream
call running in a ``Continuation``, answers the client with an
``InputRequiredResult`` whose ``requestState`` names the continuation, and
feeds the client's ``inputResponses`` (on its retry) back to the target.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .jsonrpc import Message
from .tasks import TaskOwner
from .upstream.base import UpstreamError, UpstreamSession

log = logging.getLogger("mcpmux.mrtr")

#: How long an unanswered continuation keeps its upstream call waiting.
CONTINUATION_TTL = 600.0
Emit = Callable[[Message], Awaitable[None]]


class Continuation:
    """One upstream call outliving the client request that started it. It is the
    call's sink: progress goes to whichever client request is waiting now."""

    def __init__(self, cid: str, target: str) -> None:
        self.id = cid
        self.target = target
        self.events: asyncio.Queue[tuple[str, Any, UpstreamSession | None]] = asyncio.Queue()
        #: our key -> (upstream, the target's request id)
        self.pending: dict[str, tuple[UpstreamSession, Any]] = {}
        #: our key -> the input request as the client saw it (asked again if unanswered)
        self.asked: dict[str, Message] = {}
        self.emit: Emit | None = None
        self.token: Any = None
        self.log_level: str | None = None
        self.keys = itertools.count(1)
        self.touched = time.monotonic()
        self.task: asyncio.Task[Any] | None = None
        #: The request it answers (method and name): its requestState is bound to it.
        self.origin = ""
        #: The upstream call held: where it runs and its id there.
        self.upstream: UpstreamSession | None = None
        self.uid: Any = None
        #: Set when a newer client request takes over waiting for this call.
        self._turn = asyncio.Event()

    async def notify(self, msg: Message) -> None:
        from .session import LEVEL_RANK

        method = msg.get("method")
        if method == "notifications/progress":
            if self.token is None:
                return
            msg = {**msg, "params": {**msg.get("params", {}), "progressToken": self.token}}
        elif method == "notifications/message":
            level = (msg.get("params") or {}).get("level")
            rank = LEVEL_RANK.get(level, 99) if isinstance(level, str) else 99
            if self.log_level is None or rank < LEVEL_RANK[self.log_level]:
                return
        if self.emit is not None:
            await self.emit(msg)

    @property
    def owner(self) -> object:
        return self

    def accepts(self, method: str) -> bool:
        return True

    async def server_request(self, msg: Message, upstream: UpstreamSession) -> None:
        await self.events.put(("request", msg, upstream))

    async def next_event(self) -> tuple[str, Any, UpstreamSession | None] | None:
        """The call's next event, for the newest client request waiting on it; an older
        waiter (a retry its client gave up on) gets None instead of taking the event.

        Fix (eras e2e): two waiters shared the queue, so the one whose client had gone
        took the answer and the live retry hung."""
        self._turn.set()
        turn = self._turn = asyncio.Event()
        get = asyncio.ensure_future(self.events.get())
        superseded = asyncio.ensure_future(turn.wait())
        try:
            await asyncio.wait((get, superseded), return_when=asyncio.FIRST_COMPLETED)
        finally:
            superseded.cancel()
            if not get.done():
                get.cancel()  # Queue.get cancelled before it took an item: nothing is lost
        return get.result() if get.done() and not get.cancelled() else None

    async def answer(self, key: str, value: Any) -> bool:
        entry = self.pending.pop(key, None)
        self.asked.pop(key, None)
        if entry is None:
            return False
        upstream, uid = entry
        reply: Message = {"jsonrpc": "2.0", "id": uid, "result": value}
        if isinstance(value, dict) and "error" in value and "code" in (value.get("error") or {}):
            reply = {"jsonrpc": "2.0", "id": uid, "error": value["error"]}
        await upstream.respond(reply)
        return True

    async def refuse_pending(self, reason: str) -> None:
        pending, self.pending = self.pending, {}
        self.asked = {}
        for upstream, uid in pending.values():
            try:
                await upstream.respond({"jsonrpc": "2.0", "id": uid, "error": {"code": -32603, "message": reason}})
            except UpstreamError:
                pass


class Continuations:
    """The gateway's registry of held calls; it owns their tasks."""

    def __init__(self) -> None:
        self._items: dict[str, Continuation] = {}
        self._tasks = TaskOwner("continuations")

    def __len__(self) -> int:
        return len(self._items)

    def start(self, target: str, upstream: UpstreamSession, method: str, params: Any) -> Continuation:
        self._expire()
        cont = Continuation(secrets.token_urlsafe(12), target)
        cont.upstream, cont.uid = upstream, upstream.next_id()
        self._items[cont.id] = cont

        async def run() -> None:
            try:
                resp = await upstream.request(method, params, cont, id=cont.uid)
                await cont.events.put(("response", resp, None))
            except UpstreamError as exc:
                await cont.events.put(("error", exc, None))

        cont.task = self._tasks.spawn(run(), f"continuation-{target}")
        return cont

    def get(self, cid: Any) -> Continuation | None:
        cont = self._items.get(cid) if isinstance(cid, str) else None
        if cont is not None:
            cont.touched = time.monotonic()
        return cont

    async def drop(self, cont: Continuation, reason: str = "abandoned") -> None:
        self._items.pop(cont.id, None)
        await cont.refuse_pending(reason)
        if cont.task is not None and not cont.task.done():
            cont.task.cancel()
            if cont.upstream is not None:
                # A handshake-era target does not take a closed stream for a cancellation.
                note = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": cont.uid, "reason": reason}}
                try:
                    await cont.upstream.notify(note)
                except UpstreamError:
                    pass

    def _expire(self) -> None:
        now = time.monotonic()
        for cont in [c for c in self._items.values() if now - c.touched > CONTINUATION_TTL]:
            log.info("continuation for '%s' expired without a retry", cont.target)
            self._items.pop(cont.id, None)
            if cont.task is not None:
                cont.task.cancel()

    async def aclose(self) -> None:
        self._items.clear()
        await self._tasks.aclose()
