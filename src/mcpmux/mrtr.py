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
from collections import deque
from typing import Any, Final

from .era import StateSealer
from .jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    TARGET_UNAVAILABLE,
    Message,
    RPCError,
    error,
    result,
)
from .protocol import MISSING_CAPABILITY, log_admits, missing_capability
from .redact import redact
from .session import Call, ClientSession, Emit
from .tasks import TaskOwner
from .upstream.base import UpstreamError, UpstreamSession

log = logging.getLogger("mcpmux.mrtr")

#: How long an unanswered continuation keeps its upstream call waiting.
CONTINUATION_TTL: Final = 600.0
#: Rounds of input a modern target may ask for one handshake client's call.
MAX_INPUT_ROUNDS: Final = 8
#: What a held call produces: ("request", the target's request, its upstream),
#: ("response", the answer, None) or ("error", the UpstreamError, None).
HeldEvent = tuple[str, Any, "UpstreamSession | None"]


def check_input_responses(value: Any) -> dict[str, Any]:
    """A retry's ``inputResponses``: an object of objects (each an elicitation, sampling
    or roots result). Anything else is a protocol error (-32602), answered before the
    request goes anywhere, as SEP-2322 asks of a server."""
    if not isinstance(value, dict):
        raise RPCError(INVALID_PARAMS, "inputResponses must be an object keyed by the inputRequests it answers")
    bad = next((k for k, v in value.items() if not isinstance(v, dict)), None)
    if bad is not None:
        raise RPCError(INVALID_PARAMS, f"inputResponses[{bad!r}] must be an object (the result of "
                       "the request it answers)")
    return value


class Continuation:
    """One upstream call outliving the client request that started it. It is the
    call's sink: progress goes to whichever client request is waiting now."""

    def __init__(self, cid: str, target: str) -> None:
        self.id = cid
        self.target = target
        #: What the call produced that no request has taken yet (see :meth:`next_event`).
        self._events: deque[HeldEvent] = deque()
        #: The newest client request waiting on the call, if any.
        self._waiter: asyncio.Future[HeldEvent | None] | None = None
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
        #: The principal (key) whose request started it: only they may resume it.
        self.principal: str | None = None
        #: The upstream call held: where it runs and its id there.
        self.upstream: UpstreamSession | None = None
        self.uid: Any = None
        self.response_bytes: int | None = None

    async def notify(self, msg: Message) -> None:
        method = msg.get("method")
        if method == "notifications/progress":
            if self.token is None:
                return
            msg = {**msg, "params": {**msg.get("params", {}), "progressToken": self.token}}
        elif method == "notifications/message" and not log_admits(self.log_level, msg):
            return
        if self.emit is not None:
            await self.emit(msg)

    @property
    def owner(self) -> object:
        return self

    def accepts(self, method: str) -> bool:
        return True

    async def server_request(self, msg: Message, upstream: UpstreamSession) -> None:
        self.put(("request", msg, upstream))

    def put(self, event: HeldEvent) -> None:
        """Hand ``event`` to the request waiting on the call, or keep it for the next."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(event)
        else:  # nobody waits, or the waiter was cancelled (its client went): kept
            self._events.append(event)

    async def next_event(self) -> HeldEvent | None:
        """The call's next event, for the newest client request waiting on it; an older
        waiter (a retry its client gave up on) gets None instead of taking the event,
        so a live retry never waits behind a request whose client has gone.

        One future per wait: no queue, no tasks (this runs on every 2026 call to a
        handshake target, most of which never ask anything)."""
        older, self._waiter = self._waiter, None
        if older is not None and not older.done():
            older.set_result(None)
        if self._events:
            return self._events.popleft()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return await waiter

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
                cont.put(("response", resp, None))
            except UpstreamError as exc:
                cont.put(("error", exc, None))

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


def origin_of(method: str, original: str) -> str:
    """What a requestState is bound to: the request that got it (method and upstream name)."""
    return f"{method} {original}"


class Bridge:
    """MRTR across eras, both ways: held calls for modern clients of handshake targets,
    real requests for handshake clients of modern targets, and the sealed state."""

    def __init__(self) -> None:
        self.continuations = Continuations()
        self.sealer = StateSealer()

    async def aclose(self) -> None:
        await self.continuations.aclose()

    def hold(
        self, target: str, upstream: UpstreamSession, method: str, params: Any, origin: str,
        owner: str | None = None,
    ) -> Continuation:
        held = self.continuations.start(target, upstream, method, params)
        held.origin = origin
        held.principal = owner
        return held

    async def resume(
        self, target: str, origin: str, params: dict[str, Any], owner: str | None = None
    ) -> tuple[dict[str, Any], Continuation | None]:
        """A modern client's retry: unwrap our requestState, deliver its inputResponses.
        ``owner`` is the caller's principal key: a state sealed for another is refused."""
        params = dict(params)
        state = self.sealer.open(params.pop("requestState", None))
        if state.get("p") != owner:
            # Bound to its principal: someone else's state (seen in a log, a proxy) must
            # neither resume their held call nor replay their target's state.
            raise RPCError(INVALID_PARAMS, "requestState was not issued to this caller")
        # Its shape was checked by the dispatcher (check_input_responses) before this.
        responses: dict[str, Any] = params.pop("inputResponses", None) or {}
        # Bound to the request that got it: a held call's state presented on another
        # tool of the same target must not resume that call.
        if state.get("t") != target or state.get("o") != origin:
            raise RPCError(INVALID_PARAMS, "requestState belongs to another tool, prompt or resource")
        if "c" not in state:  # a modern target's own state: give it back, untouched
            if state.get("s") is not None:
                params["requestState"] = state["s"]
            if responses:
                params["inputResponses"] = responses
            return params, None
        held = self.continuations.get(state["c"])
        if held is None or held.principal != owner:
            raise RPCError(INVALID_PARAMS, "requestState expired: send the request again without it")
        for key, value in responses.items():
            # Keys we did not ask (or already had answered) are ignored: a server SHOULD
            # ignore what it does not recognize (MRTR).
            await held.answer(key, value)
        return params, held

    async def await_held(
        self, session: ClientSession, held: Continuation, rid: Any, emit: Emit | None, token: Any
    ) -> Message:
        """Wait on a held call for the client's request ``rid``: its answer, or the next
        thing the target asks, as an InputRequiredResult."""
        held.emit, held.token, held.log_level = emit, token, session.log_level
        if held.pending:
            # A retry that left a question unanswered: the target still waits for that
            # answer, so ask for the missing information again.
            return self.ask_input(held, rid)
        try:
            event = await held.next_event()
        except asyncio.CancelledError as exc:
            # The client closed the stream of the request waiting on the call: in 2026 that
            # cancels it, so the target stops working on it too.
            await asyncio.shield(self.continuations.drop(held, "cancelled by the client"))
            raise exc  # by name after an await: docs/architecture.md, "Compiled modules"
        if event is None:
            return error(rid, INVALID_PARAMS, "a newer request with this requestState took over the call")
        kind, value, upstream = event
        if kind != "request":
            await self.continuations.drop(held, "done")
            if kind == "error":
                return error(rid, TARGET_UNAVAILABLE, redact(str(value)), {"target": held.target})
            return {**value, "id": rid}
        assert upstream is not None
        needed = missing_capability(session.capabilities, value.get("method", ""))
        if needed is not None:
            await upstream.respond(
                error(value["id"], METHOD_NOT_FOUND, f"the client did not declare the '{needed}' capability")
            )
            await self.continuations.drop(held, f"client lacks {needed}")
            return error(
                rid,
                MISSING_CAPABILITY,
                f"this request needs the client capability '{needed}'",
                # A ClientCapabilities object (schema: MissingRequiredClientCapabilityError).
                {"requiredCapabilities": {needed: {}}},
            )
        key = f"r{next(held.keys)}"
        held.pending[key] = (upstream, value["id"])
        held.asked[key] = {"method": value["method"], "params": value.get("params") or {}}
        return self.ask_input(held, rid)

    def ask_input(self, held: Continuation, rid: Any) -> Message:
        """The InputRequiredResult for what the held call still waits for."""
        state = self.sealer.seal({"t": held.target, "o": held.origin, "c": held.id, "p": held.principal})
        return result(
            rid, {"resultType": "input_required", "inputRequests": dict(held.asked), "requestState": state}
        )

    async def input_required(
        self,
        session: ClientSession,
        target: str,
        origin: str,
        upstream: UpstreamSession,
        method: str,
        params: dict[str, Any],
        resp: Message,
        call: Call,
    ) -> Message:
        """A modern target wants input. A modern client gets it with the target's state
        sealed; a handshake client is asked with real requests and the call retried."""
        res = resp["result"]
        if session.stateless:
            sealed = self.sealer.seal(
                {"t": target, "o": origin, "s": res.get("requestState"), "p": session.record.owner}
            )
            return {**resp, "result": {**res, "requestState": sealed}}
        for _ in range(MAX_INPUT_ROUNDS):
            answers: dict[str, Any] = {}
            for key, request in (res.get("inputRequests") or {}).items():
                answer = await session.ask(request, call.emit)
                if "error" in answer:
                    return {"jsonrpc": "2.0", "id": resp.get("id"), "error": answer["error"]}
                answers[key] = answer.get("result")
            retry = {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
            retry["inputResponses"] = answers
            if "requestState" in res:
                retry["requestState"] = res["requestState"]
            resp = await upstream.request(method, retry, call)
            res = resp.get("result")
            if not (isinstance(res, dict) and res.get("resultType") == "input_required"):
                return resp
        return error(resp.get("id"), TARGET_UNAVAILABLE, f"target '{target}' kept asking for input",
                     {"target": target})
