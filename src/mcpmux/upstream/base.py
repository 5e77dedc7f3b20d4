"""What every upstream kind shares: ids, pending requests, message dispatch."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from mypy_extensions import mypyc_attr

from .. import __version__
from ..jsonrpc import Message, is_notification, is_request, is_response
from ..observability import tracing
from ..protocol import HANDSHAKE_VERSIONS, LATEST_HANDSHAKE
from ..tasks import TaskOwner

log = logging.getLogger("mcpmux.upstream")

#: limits.max_response_bytes when nothing else says.
DEFAULT_MAX_RESPONSE: Final = 16 * 1024 * 1024
SUPPORTED_VERSIONS: Final[tuple[str, ...]] = HANDSHAKE_VERSIONS
LATEST_VERSION: Final = LATEST_HANDSHAKE


class UpstreamError(Exception):
    """The target could not answer: down, refused, timed out, exited or spoke garbage."""

    def __init__(self, target: str, message: str, status: int | None = None) -> None:
        super().__init__(f"target '{target}': {message}")
        self.target = target
        self.reason = message
        #: The HTTP status that caused it, when there was one (transport probing needs it).
        self.status = status


class CallSink(Protocol):
    """Receives what a target sends while it serves one request of one client."""

    #: Bytes of the call's response as read from the wire (set by transports that read
    #: it whole; None: not measured), so the result size limit costs no re-serialising.
    response_bytes: int | None

    @property
    def owner(self) -> object:
        """Whose call this is (a client session): requests are never guessed across owners."""
        ...

    def accepts(self, method: str) -> bool:
        """Can this call's client answer a server request of ``method``?"""
        ...

    async def notify(self, msg: Message) -> None: ...

    async def server_request(self, msg: Message, upstream: UpstreamSession) -> None: ...


Unsolicited = Callable[[Message, "UpstreamSession"], Awaitable[None]]
Reopened = Callable[["UpstreamSession"], Awaitable[None]]
HeaderProvider = Callable[[], Awaitable[dict[str, str]]]


@mypyc_attr(allow_interpreted_subclasses=True)  # target kinds and replicas subclass it
class UpstreamSession:
    """One initialized MCP session with a target.

    Subclasses implement ``_connect``, ``_send`` (stream transports) or
    ``_request`` (HTTP), and ``_disconnect``. Request ids are the session's own
    counter: the caller maps them to its client's ids, so ids never collide
    however many clients share this session.
    """

    kind = "base"
    #: True when the target speaks 2026-07-28 (no session; an envelope on every request).
    modern = False
    #: A modern target that also accepts the initialize handshake.
    dual = False
    #: The session is one client's own (not the target's shared or catalog session):
    #: whatever arrives on it that no call's stream carried is still that client's.
    single_owner = False
    #: Largest answer (a JSON body, one SSE event) read from the target; the target
    #: sets it from ``limits.max_response_bytes`` or its own ``max_response_bytes``.
    max_response_bytes = DEFAULT_MAX_RESPONSE

    def __init__(self, target: str, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.init_result: Message = {}
        self.protocol_version = LATEST_VERSION
        self.on_unsolicited: Unsolicited | None = None
        #: Called after the transport transparently replaced a session the target lost
        #: (HTTP 404 after a restart), so the owner can restore its state on the new one.
        self.on_reopened: Reopened | None = None
        self.closed = asyncio.Event()
        #: ``closed.is_set()`` as a plain attribute: Event.is_set is interpreted Python,
        #: and the per-call path asks twice a call.
        self.is_closed = False
        self.close_reason = ""
        self.last_used = 0.0
        #: Per-caller headers (identity from claims, an exchanged token), awaited for
        #: each HTTP request of a client's own session; may raise UpstreamError. Kinds
        #: that are not HTTP ignore it (the config refuses per-user credentials there).
        self.header_provider: HeaderProvider | None = None
        self._ids = itertools.count(1)
        self._pending: dict[Any, tuple[asyncio.Future[Message], CallSink | None]] = {}
        self._progress: dict[Any, CallSink] = {}
        self._tasks = TaskOwner(f"upstream:{target}")

    # -- lifecycle -------------------------------------------------------
    async def open(
        self,
        capabilities: dict[str, Any] | None = None,
        client_info: dict[str, Any] | None = None,
        protocol_version: str = LATEST_VERSION,
    ) -> Message:
        """Connect and run the initialize handshake, once for the session's life."""
        self._init_params = {
            "protocolVersion": protocol_version,
            "capabilities": capabilities or {},
            "clientInfo": client_info or {"name": "mcpmux", "version": __version__},
        }
        try:
            await asyncio.wait_for(self._handshake(), self.timeout)
        except TimeoutError:
            await self.aclose("initialize timed out")
            raise UpstreamError(
                self.target, f"no initialize answer within {self.timeout:g} s"
            ) from None
        # One name per exception type, and raised by name after an await: both are
        # rules of compiled code (docs/architecture.md, "Compiled modules").
        except UpstreamError as failed:
            await self.aclose("initialize failed")
            raise failed
        except asyncio.CancelledError as cancelled:
            # Whoever waited is gone (target removed, gateway stopping, call cancelled):
            # what the attempt started (a child process, a stream) must not outlive it.
            await asyncio.shield(self.aclose("cancelled while connecting"))
            raise cancelled
        except Exception as exc:
            await self.aclose("initialize failed")
            raise UpstreamError(self.target, f"cannot connect: {_describe(exc)}") from exc
        return self.init_result

    async def _handshake(self) -> None:
        await self._connect()
        resp = await self._request(self._message("initialize", self._init_params), None)
        if "error" in resp:
            err = resp["error"]
            raise UpstreamError(self.target, f"initialize refused: {err.get('message')}")
        res = resp.get("result")
        if not isinstance(res, dict) or not isinstance(res.get("protocolVersion"), str):
            raise UpstreamError(self.target, "initialize answer is not a valid InitializeResult")
        self.init_result = res
        self.protocol_version = res["protocolVersion"]
        await self.notify({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def aclose(self, reason: str = "closed") -> None:
        if not self.is_closed:
            self.close_reason = reason
            self.is_closed = True
            self.closed.set()
        self.fail_pending(reason)
        await self._tasks.aclose()
        try:
            await self._disconnect()
        except Exception as exc:  # closing must not raise
            log.debug("target '%s': error while closing: %r", self.target, exc)

    def lost(self, reason: str) -> None:
        """The transport broke: fail what waits, let the owner reconnect."""
        if not self.is_closed:
            log.warning("target '%s': connection lost: %s", self.target, reason)
            self.close_reason = reason
            self.is_closed = True
            self.closed.set()
        self.fail_pending(reason)

    def fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(UpstreamError(self.target, reason))

    # -- requests --------------------------------------------------------
    def next_id(self) -> int:
        return next(self._ids)

    async def request(
        self,
        method: str,
        params: Any,
        sink: CallSink | None = None,
        timeout: float | None = None,
        id: int | None = None,
    ) -> Message:
        """Send a request and return the target's response message (result or error)."""
        if self.is_closed:
            raise UpstreamError(self.target, f"session closed ({self.close_reason})")
        # Tracing hook: a CLIENT span (and its traceparent) while a traced request runs.
        trace = tracing.upstream_call(self.target, method) if tracing.TRACER is not None else None
        if trace is not None:
            params = trace.with_meta(params)
        token = None
        if sink is not None and isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                token = meta["progressToken"]
                self._progress[token] = sink
        try:
            call = self._request(self._message(method, params, id), sink)
            if trace is not None:
                call = trace.run(call)
            if timeout is None:
                return await call
            try:
                return await asyncio.wait_for(call, timeout)
            except TimeoutError:
                raise UpstreamError(
                    self.target, f"no answer to {method} within {timeout:g} s"
                ) from None
        finally:
            if token is not None:
                self._progress.pop(token, None)

    def _message(self, method: str, params: Any, id: int | None = None) -> Message:
        msg: Message = {"jsonrpc": "2.0", "id": self.next_id() if id is None else id, "method": method}
        if params is not None:
            msg["params"] = params
        return msg

    async def _request(self, msg: Message, sink: CallSink | None) -> Message:
        """Default for stream transports: write, then wait for the matching response."""
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[msg["id"]] = (fut, sink)
        try:
            await self._send(msg)
            return await fut
        finally:
            self._pending.pop(msg["id"], None)

    def cancel_pending(self, rid: Any, reason: str) -> None:
        """Answer a waiting request locally (the client cancelled it upstream)."""
        entry = self._pending.pop(rid, None)
        if entry and not entry[0].done():
            entry[0].set_result(
                {"jsonrpc": "2.0", "id": rid, "error": {"code": -32800, "message": reason}}
            )

    async def notify(self, msg: Message) -> None:
        await self._send(msg)

    async def respond(self, msg: Message) -> None:
        """Answer a request the target sent us (sampling, elicitation, roots)."""
        await self._send(msg)

    # -- incoming --------------------------------------------------------
    async def dispatch(self, msg: Any, sink: CallSink | None = None, size: int | None = None) -> None:
        """Route one message from the target; ``sink`` is the call whose stream carried it,
        ``size`` its length as read."""
        if not isinstance(msg, dict):
            log.warning("target '%s' sent a non-object message; ignored", self.target)
            return
        if self.resolve(msg, size):
            return
        if is_notification(msg):
            if msg["method"] == "notifications/progress":
                params = msg.get("params") or {}
                sink = self._progress.get(params.get("progressToken"), sink)
            if sink is not None:
                await sink.notify(msg)
            elif self.on_unsolicited is not None:
                await self.on_unsolicited(msg, self)
            return
        if is_request(msg):
            if sink is None:
                sink = self._attributed_sink()
            if sink is not None:
                await sink.server_request(msg, self)
            elif self.on_unsolicited is not None:
                await self.on_unsolicited(msg, self)
            else:
                await self.respond(
                    {
                        "jsonrpc": "2.0",
                        "id": msg["id"],
                        "error": {"code": -32601, "message": "no client to relay this request to"},
                    }
                )
            return
        log.warning("target '%s' sent an invalid JSON-RPC message; ignored", self.target)

    def resolve(self, msg: dict[str, Any], size: int | None = None) -> bool:
        """Hand a response to the request that waits for it (one nobody waits for is
        dropped). False when ``msg`` is not a response: :meth:`dispatch` routes it."""
        if not is_response(msg):
            return False
        rid = msg.get("id")
        # Our ids are ints; a target may answer with any JSON value (an object is unhashable).
        entry = self._pending.get(rid) if isinstance(rid, (int, str)) else None
        if entry and not entry[0].done():
            if entry[1] is not None:
                entry[1].response_bytes = size
            entry[0].set_result(msg)
        return True

    def _attributed_sink(self) -> CallSink | None:
        """The call a server request arrived without a per-call stream belongs to, when
        that cannot be wrong.

        On stdio and legacy SSE nothing on the wire links a server request to the call
        that caused it. A session of one client's own: it is that client's, on the stream
        of its oldest call. A shared session: only when exactly one call is in flight (the
        stream is in order, so the request is that call's); with more, nobody is asked:
        a wrong guess shows one client's prompt to another and returns another's answer.
        """
        sinks = [sink for _, sink in self._pending.values() if sink is not None]
        if self.single_owner or len(sinks) == 1:
            return sinks[0] if sinks else None
        return None

    # -- transport hooks -------------------------------------------------
    async def _connect(self) -> None:
        raise NotImplementedError

    async def _send(self, msg: Message) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        pass


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
