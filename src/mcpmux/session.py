"""A client session's live half: what cannot be stored (streams, outbox, calls in flight).

The durable half is its ``SessionRecord`` (``state.py``). A ``ClientSession`` is
built around a record, and could be rebuilt from one: nothing here is needed to
continue the session elsewhere except what the record holds. A 2026-07-28 request
gets a ``stateless`` one that lives as long as the request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import mypyc_attr

from .fieldnames import header_lines
from .jsonrpc import METHOD_NOT_FOUND, Message, error
from .protocol import MISSING_CAPABILITY, log_admits, missing_capability
from .state import SessionRecord
from .upstream.base import UpstreamError, UpstreamSession

if TYPE_CHECKING:
    from .listener.streams import ResponseStream, Retain

log = logging.getLogger("mcpmux.session")

Emit = Callable[[Message], Awaitable[None]]

#: Messages kept for a GET stream nobody reads; the oldest go first.
OUTBOX_LIMIT: Final = 1000


class Call:
    """The sink of one forwarded request: where what the target sends during it goes.

    It also keeps the call's deadline: ``timeout`` seconds of silence from the target.
    Anything the target sends for the call restarts it; while the client is being asked
    something (sampling, elicitation) it is paused, and the answer restarts it."""

    __slots__ = ("cancelled", "deadlines", "emit", "expired", "expires", "expose", "response_bytes", "session",
                 "target", "timeout", "token")

    def __init__(self, session: ClientSession, target: str, emit: Emit | None, token: Any) -> None:
        self.session = session
        self.target = target
        self.emit = emit
        self.token = token
        self.cancelled = False
        self.timeout = 0.0
        #: Loop time at which the call times out (inf: paused); kept by ``deadlines``.
        self.expires = math.inf
        self.expired = False
        self.deadlines: Deadlines | None = None
        self.response_bytes: int | None = None
        #: Rewrites the target's task ids in what it sends (targets with tasks).
        self.expose: Callable[[Message], Message] | None = None

    def keep_alive(self) -> None:
        deadlines = self.deadlines
        if deadlines is not None and not self.expired:
            self.expires = expires = deadlines.loop.time() + self.timeout
            if expires < deadlines.at:  # it was paused, and the timer may not be armed
                deadlines.arm(expires)

    def pause(self) -> None:
        if self.deadlines is not None and not self.expired:
            self.expires = math.inf

    async def notify(self, msg: Message) -> None:
        self.keep_alive()
        method = msg.get("method")
        if method == "notifications/progress":
            if self.token is None:
                return
            msg = {**msg, "params": {**msg.get("params", {}), "progressToken": self.token}}
        elif method == "notifications/message" and not self.session.admits(msg):
            return
        if self.expose is not None:
            msg = self.expose(msg)
        await self.session.send(msg, self.emit)

    @property
    def owner(self) -> object:
        return self.session

    def accepts(self, method: str) -> bool:
        return missing_capability(self.session.capabilities, method) is None

    async def server_request(self, msg: Message, upstream: UpstreamSession) -> None:
        self.pause()  # the client's answer may take a person's time
        await self.session.relay_request(msg, upstream, self.emit, self)

    async def paused(self, retry_ms: int | None) -> asyncio.Event | None:
        """The target closed its answer stream to be polled; let our client poll too.
        Returns what is set when our client resumes (the target is resumed then)."""
        pause = getattr(self.emit, "pause", None)
        if pause is None:
            return None
        returned: asyncio.Event | None = await pause(retry_ms)
        return returned


#: Least time between two sweeps of the deadlines: each sweep reads every call in
#: flight, so many hung calls with staggered deadlines cost a bounded rate of sweeps
#: (not one per call), at the price of a timeout firing up to this much late.
SWEEP_GAP: Final = 0.05


class Deadlines:
    """The deadlines of the calls in flight, on one timer.

    ``asyncio.timeout`` per call costs a timer handle per call and another per
    progress notification (each one reschedules it). Here a call costs a dict entry,
    a progress notification one float, and one timer waits for the earliest deadline:
    when it fires it cancels the calls that expired and re-arms for the next, at
    least ``SWEEP_GAP`` later."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the first watch's
        #: When the timer fires (inf: not armed).
        self.at = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._calls: dict[Call, asyncio.Task[Any]] = {}
        #: Times the timer fired: each reads every call in flight.
        self.sweeps = 0

    def watch(self, call: Call, task: asyncio.Task[Any]) -> None:
        """Cancel ``task`` once ``call`` has heard nothing for ``call.timeout`` seconds
        (``call.expired`` says why it was cancelled)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        call.deadlines = self
        call.expires = expires = self.loop.time() + call.timeout
        self._calls[call] = task
        if expires < self.at:
            self.arm(expires)

    def forget(self, call: Call) -> None:
        """The call ended. The timer stays armed: it fires once, finds nothing and
        stops, cheaper than cancelling and re-arming it on every call."""
        self._calls.pop(call, None)
        call.deadlines = None

    def arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.at = at
        self._timer = self.loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self.at = None, math.inf
        self.sweeps += 1
        now = self.loop.time()
        later = math.inf
        for call, task in list(self._calls.items()):
            if call.expires <= now:
                del self._calls[call]
                call.expired = True
                task.cancel()
            elif call.expires < later:
                later = call.expires
        if later < math.inf:
            self.arm(max(later, now + SWEEP_GAP))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self.at = None, math.inf


@mypyc_attr(allow_interpreted_subclasses=True)  # target kinds and replicas subclass it
class ClientSession:
    def __init__(self, record: SessionRecord, *, stateless: bool = False) -> None:
        self.record = record
        self.stateless = stateless
        #: Upstream sessions of this client's own (targets that give each client one).
        self.upstreams: dict[str, UpstreamSession] = {}
        self._outbox: asyncio.Queue[Message] | None = None
        #: POST answer streams a client may still resume with Last-Event-ID.
        self.response_streams: dict[str, ResponseStream] = {}
        self.stream_ids = itertools.count(1)
        #: Copies resumable streams' events where other replicas can replay them (None:
        #: one process, where ``response_streams`` is all there is).
        self.retain: Retain | None = None
        self.last_active = time.monotonic()
        #: Sent a request since initialize (sessions that never did are reaped sooner).
        self.used = False
        #: Whose session slot this is (``sessions.client_key``), for the per-client limit.
        self.client_key: str | None = None
        self.closed = False
        #: GET streams open now: a session with one is not idle.
        self.streams = 0
        #: One opening of an upstream session per target at a time.
        self.opening: dict[str, asyncio.Lock] = {}
        #: Ids of the requests relayed to the client (a replica makes them name itself).
        self._ids: Iterator[int | str] = itertools.count(1)
        #: our id -> (upstream session, the target's id, the call it came in) for requests
        #: relayed to the client, or the future awaiting the answer to a request the
        #: gateway itself asked
        self._owed: dict[int | str, tuple[UpstreamSession, Any, Call | None] | asyncio.Future[Message]] = {}
        #: client request id -> (upstream, upstream id, task, call) while in flight
        self.inflight: dict[Any, tuple[UpstreamSession, int, asyncio.Task[Any] | None, Call]] = {}
        #: The owner's Principal and Authorization header as of its latest request (never
        #: stored in the record): per-caller upstream headers are made from them.
        self.caller: Any = None
        self.authorization: str | None = None
        #: The id as bytes and as a response header line, and the id they were made for.
        self._id_bytes = b""
        self._id_line = b""
        self._id_line_for: str | None = None

    def id_bytes(self) -> bytes:
        """The id as the ``mcp-session-id`` header's value, encoded once per id."""
        if self.record.id != self._id_line_for:
            self._encode_id()
        return self._id_bytes

    def id_line(self) -> bytes:
        """The ``mcp-session-id`` response header line, made once per id (the listener
        writes it with every answer)."""
        if self.record.id != self._id_line_for:
            self._encode_id()
        return self._id_line

    def _encode_id(self) -> None:
        sid = self.record.id
        self._id_bytes = sid.encode()
        self._id_line = header_lines([(b"mcp-session-id", self._id_bytes)])
        self._id_line_for = sid

    def touch(self) -> None:
        """The client used the session now: idle reaping counts from here."""
        self.last_active = time.monotonic()

    def stream_opened(self) -> None:
        """A GET stream (or legacy SSE stream, or stdio pipe) opened: not idle while open."""
        self.streams += 1

    def stream_closed(self) -> None:
        self.streams -= 1

    @property
    def outbox(self) -> asyncio.Queue[Message]:
        """What goes to the client's standing stream (GET, listen, stdout); made on first
        use, since most 2026 requests' sessions never need one."""
        if self._outbox is None:
            self._outbox = asyncio.Queue(OUTBOX_LIMIT)
        return self._outbox

    # -- the record's fields, read where they live --------------------------
    @property
    def id(self) -> str:
        return self.record.id

    @id.setter
    def id(self, value: str) -> None:
        self.record.id = value

    @property
    def protocol_version(self) -> str:
        return self.record.protocol_version

    @property
    def capabilities(self) -> dict[str, Any]:
        return self.record.capabilities

    @property
    def client_info(self) -> dict[str, Any]:
        return self.record.client_info

    @property
    def log_level(self) -> str | None:
        return self.record.log_level

    @property
    def subscriptions(self) -> set[str]:
        return self.record.subscriptions

    def stream_key(self) -> str:
        """A new answer stream's name, the head of its event ids (unique in the session)."""
        return f"s{next(self.stream_ids)}"

    def drop_retained(self, key: str) -> None:
        """A stream's answer was delivered: the copies of its events are not needed."""

    # -- outgoing --------------------------------------------------------
    async def send(self, msg: Message, emit: Emit | None = None) -> None:
        """On the stream of the call that caused it if there is one, else the GET stream."""
        if emit is not None:
            await emit(msg)
            return
        self.post(msg)

    def post(self, msg: Message) -> None:
        """Queue for the GET stream; when nobody reads it, the oldest is dropped."""
        if self.outbox.full():
            self.outbox.get_nowait()
            log.debug("session %s: outbox full, dropped the oldest message", self.id[:8])
        self.outbox.put_nowait(msg)

    def admits(self, msg: Message) -> bool:
        """A log message for this client? Handshake clients that set no level get the
        messages of their own calls; 2026 clients only what their request asked for."""
        if self.log_level is None:
            return not self.stateless
        return log_admits(self.log_level, msg)

    async def relay_request(
        self, msg: Message, upstream: UpstreamSession, emit: Emit | None, call: Call | None = None
    ) -> None:
        """A target asks the client something: give it our id, remember whose it is."""
        needed = missing_capability(self.capabilities, msg.get("method", ""))
        if needed is not None:
            if call is not None:
                call.keep_alive()
            await upstream.respond(
                error(msg["id"], METHOD_NOT_FOUND, f"the client did not declare the '{needed}' capability")
            )
            return
        gid = next(self._ids)
        self._owed[gid] = (upstream, msg["id"], call)
        await self.send({**msg, "id": gid}, emit)

    async def ask(self, request: Any, emit: Emit | None) -> Message:
        """Send the client a request of the gateway's own and wait for its answer."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return error(None, -32602, "the target sent a malformed input request")
        needed = missing_capability(self.capabilities, request["method"])
        if needed is not None:
            return error(None, MISSING_CAPABILITY, f"the client did not declare '{needed}'",
                         {"requiredCapabilities": {needed: {}}})
        gid = next(self._ids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._owed[gid] = fut
        try:
            await self.send({"jsonrpc": "2.0", "id": gid, "method": request["method"],
                             "params": request.get("params") or {}}, emit)
            return await fut
        finally:
            self._owed.pop(gid, None)

    # -- incoming --------------------------------------------------------
    async def on_response(self, msg: Message) -> bool:
        """The client answers a request we relayed; pass it to the target that asked."""
        entry = self._owed.pop(msg.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            return False
        if isinstance(entry, asyncio.Future):
            if not entry.done():
                entry.set_result(msg)
            return True
        upstream, upstream_id, call = entry
        if call is not None:
            call.keep_alive()
        try:
            await upstream.respond({**msg, "id": upstream_id})
        except UpstreamError as exc:
            log.warning("session %s: could not deliver an answer: %s", self.id[:8], exc)
        return True

    async def cancel(self, params: dict[str, Any]) -> None:
        """``notifications/cancelled`` for one of this client's requests in flight."""
        rid = params.get("requestId")
        entry = self.inflight.get(rid) if isinstance(rid, (str, int)) else None
        if entry is None:
            return
        upstream, rid, task, call = entry
        call.cancelled = True
        try:
            await upstream.notify(
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {**params, "requestId": rid}}
            )
        except UpstreamError:
            pass
        upstream.cancel_pending(rid, "cancelled by the client")
        if task is not None and not task.done():
            task.cancel()

    async def to_own_upstreams(self, msg: Message) -> None:
        """A client notification every upstream session of this client must see."""
        for upstream in list(self.upstreams.values()):
            try:
                await upstream.notify(msg)
            except UpstreamError:
                pass

    # -- end -------------------------------------------------------------
    async def aclose(self) -> None:
        """Cancel the calls in flight and close this client's own upstream sessions."""
        if self.closed:
            return
        self.closed = True
        for _, _, task, call in list(self.inflight.values()):
            if task is not None and not task.done() and task is not asyncio.current_task():
                call.cancelled = True
                task.cancel()
        ups, self.upstreams = self.upstreams, {}
        await asyncio.gather(*(u.aclose("client session ended") for u in ups.values()))
