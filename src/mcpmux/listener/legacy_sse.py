"""The legacy HTTP+SSE listener (MCP 2024-11-05) at ``/sse`` and ``/messages``.

Served on the MCP port next to ``/mcp`` (mounted through ``StreamableHTTP.extra``,
so the Origin check has already run). ``GET /sse`` opens a stream whose first
event, ``endpoint``, names the URL to POST messages to
(``/messages?sessionId=<id>``). Every POST carries one JSON-RPC message and gets
202; answers, and everything the gateway sends on its own (progress, logs,
list_changed, sampling/elicitation/roots requests), go out on the stream as
``event: message``.

The stream is the connection: the client session starts with the ``initialize``
POSTed for it and ends when the stream closes. Requests are answered
concurrently, each in a task owned by the connection (cancelled when it closes),
through the same dispatcher as ``/mcp``, so everything multiplexes the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..context import RequestContext, owner_key
from ..dispatch import Dispatcher
from ..jsonrpc import (
    INVALID_REQUEST,
    Message,
    RPCError,
    error,
    is_notification,
    is_request,
    result,
)
from ..session import ClientSession
from ..sessions import client_key
from ..sse import encode
from ..tasks import TaskOwner
from .http import (
    SERVER,
    HttpError,
    Receive,
    Scope,
    Send,
    StreamableHTTP,
    echo_id,
    headers_of,
    peer_of,
    principal_of,
    read_message,
    send_empty,
)
from .streams import SSE_HEADERS, send_json

log = logging.getLogger("mcpmux.listener.sse")

#: Seconds between keep-alive comments on an idle stream (proxies close silent ones).
KEEPALIVE = 15.0


class Connection:
    """One open ``GET /sse`` stream and the client session that lives on it."""

    def __init__(self, cid: str, send: Send, principal: Any = None) -> None:
        self.id = cid
        #: Who opened the stream: only they may POST to it (and own its session).
        self.principal = principal
        self.owner = owner_key(principal)
        self._send = send
        self._lock = asyncio.Lock()
        self.session: ClientSession | None = None
        self.initialized = asyncio.Event()
        self.init_lock = asyncio.Lock()
        #: Set when the stream is over (client gone, write failed, gateway stopping).
        self.closed = asyncio.Event()
        self.tasks = TaskOwner(f"sse:{cid[:8]}")
        #: The client's session slot this stream holds until its session takes it over.
        self.slot: str | None = None
        self.peer: str | None = None
        #: The virtual server of the stream's endpoint (``/sse/{name}``), by name: looked
        #: up on every message, so a reload applies and a removed one ends its use.
        self.server: str | None = None

    async def write(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        async with self._lock:  # one event at a time: concurrent answers never interleave
            try:
                await self._send({"type": "http.response.body", "body": data, "more_body": True})
            except Exception:  # the client is gone
                self.closed.set()

    async def emit(self, msg: Message) -> None:
        """Send one JSON-RPC message on the stream (the ``Emit`` of every call)."""
        await self.write(encode(orjson.dumps(msg), event="message"))


class LegacySSE:
    """ASGI handlers for ``/sse`` and ``/messages``; see :meth:`mount`."""

    def __init__(
        self, dispatcher: Dispatcher, sse_path: str = "/sse", messages_path: str = "/messages"
    ) -> None:
        self.dispatcher = dispatcher
        self.gateway = dispatcher.gateway
        self.sse_path = sse_path
        self.messages_path = messages_path
        self.connections: dict[str, Connection] = {}

    def mount(self, app: StreamableHTTP) -> LegacySSE:
        app.extra[self.sse_path] = self.stream
        app.extra[self.messages_path] = self.message
        app.scoped.add(self.sse_path)
        return self

    def close_all(self) -> None:
        """End every stream (the gateway is stopping): their sessions close with them."""
        for conn in list(self.connections.values()):
            conn.closed.set()

    # -- GET /sse ----------------------------------------------------------
    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await send_json(
                send,
                405,
                error(
                    None,
                    INVALID_REQUEST,
                    f"method {scope['method']} not allowed on {self.sse_path}: "
                    f"GET opens the stream, messages are POSTed to {self.messages_path}",
                ),
                [(b"allow", b"GET")],
            )
            return
        accept = headers_of(scope).get("accept")
        if accept is not None and not _accepts_sse(accept):
            await send_json(
                send,
                406,
                error(
                    None,
                    INVALID_REQUEST,
                    "not acceptable: the stream needs Accept: text/event-stream",
                ),
            )
            return
        if len(self.connections) >= self.gateway.config.limits.max_sessions:
            await send_json(
                send,
                503,
                error(None, -32000, "too many open streams: the gateway is at its session limit"),
            )
            return
        # A stream is a session slot of its client from the start, initialized or not.
        peer = peer_of(scope)
        slot = client_key(None, peer)
        try:
            self.dispatcher.sessions.claim(slot)
        except RPCError as exc:
            await send_json(send, 503, exc.to_message(None))
            return
        cid = secrets.token_hex(16)
        conn = Connection(cid, send, principal_of(scope))
        conn.slot, conn.peer = slot, peer
        server = scope.get(SERVER)
        conn.server = server.name if server is not None else None
        self.connections[cid] = conn
        endpoint = f"{scope.get('root_path', '')}{self.messages_path}?sessionId={cid}"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await conn.write(encode(endpoint.encode(), event="endpoint"))
            conn.tasks.spawn(self._pump(conn), "outbox")
            conn.tasks.spawn(_keepalive(conn), "keepalive")
            conn.tasks.spawn(_disconnected(conn, receive), "disconnect")
            conn.tasks.spawn(_initialized_within(conn, self.gateway.config.limits.unused_session_timeout),
                             "unused")
            await conn.closed.wait()
        finally:
            await self._end(conn)
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b""})

    async def _end(self, conn: Connection) -> None:
        conn.closed.set()
        self.connections.pop(conn.id, None)
        # Close the session first: its calls in flight end as cancelled, not as orphans.
        async with conn.init_lock:
            session, conn.session = conn.session, None
            slot, conn.slot = conn.slot, None
        self.dispatcher.sessions.release(slot)
        if session is not None:
            session.stream_closed()
            await self.dispatcher.close_session(session.id)
        await conn.tasks.aclose()
        log.debug("sse %s: stream closed", conn.id[:8])

    async def _pump(self, conn: Connection) -> None:
        """Server-initiated messages of the session (list_changed, logs, updates...)."""
        await conn.initialized.wait()
        session = conn.session
        if session is None:
            return
        while True:
            await conn.emit(await session.outbox.get())

    # -- POST /messages ----------------------------------------------------
    async def message(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._message(scope, receive, send)
        except HttpError as exc:
            await send_json(send, exc.status, error(exc.id, exc.code, exc.message))

    async def _message(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            text = f"method {scope['method']} not allowed on {self.messages_path}: POST one JSON-RPC message"
            await send_json(send, 405, error(None, INVALID_REQUEST, text), [(b"allow", b"POST")])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cid = (query.get("sessionId") or query.get("session_id") or [""])[0]
        if not cid:
            raise HttpError(
                400,
                f"missing sessionId query parameter: POST to the URL of the 'endpoint' event of GET {self.sse_path}",
            )
        conn = self.connections.get(cid)
        principal = principal_of(scope)
        if conn is not None and conn.owner != owner_key(principal):
            # Another caller's stream: answered as unknown, nothing is read or forwarded.
            log.warning("sse %s: POST by %s, not the stream's owner; refused", cid[:8], owner_key(principal))
            conn = None
        if conn is None or conn.closed.is_set():
            raise HttpError(
                404,
                f"unknown or closed session {cid[:64]!r}: open a new stream with GET {self.sse_path}",
                -32001,
            )
        server = self.dispatcher.servers.get(conn.server) if conn.server is not None else None
        if conn.server is not None and server is None:
            raise HttpError(404, f"virtual server '{conn.server}' is no longer configured", -32001)
        headers = headers_of(scope)
        msg = await read_message(receive, headers, self.gateway.config.limits.max_body_bytes)
        session = conn.session
        if session is None:
            await self._before_initialize(conn, msg)
        elif is_request(msg):
            ctx = RequestContext(session, "sse", headers, conn.emit, principal, server=server)
            conn.tasks.spawn(self._answer(conn, ctx, msg), f"request-{msg['method']}")
        elif is_notification(msg):
            await self.dispatcher.notification(
                RequestContext(session, "sse", headers, principal=principal, server=server), msg)
        else:
            await self.dispatcher.response(
                RequestContext(session, "sse", headers, principal=principal, server=server), msg)
        await send_empty(send, 202)

    async def _before_initialize(self, conn: Connection, msg: Message) -> None:
        method = msg.get("method")
        if method == "initialize" and "id" in msg:
            await self._initialize(conn, msg)
        elif method == "ping" and "id" in msg:
            await conn.emit(result(msg["id"], {}))
        elif not is_notification(msg):
            raise HttpError(
                400,
                "this session is not initialized: POST initialize first",
                INVALID_REQUEST,
                echo_id(msg),
            )
        # A notification before initialize has nothing to act on: accepted, dropped.

    async def _initialize(self, conn: Connection, msg: Message) -> None:
        """Answered before the POST returns, so nothing the client sends next can overtake it."""
        async with conn.init_lock:
            if conn.session is not None:  # a second initialize raced the first
                await conn.emit(
                    error(msg["id"], INVALID_REQUEST, "this session is already initialized")
                )
                return
            try:
                session, resp = await self.dispatcher.initialize(msg, conn.principal, peer=conn.peer,
                                                                 held=conn.slot, server=conn.server)
            except RPCError as exc:
                await conn.emit(exc.to_message(msg["id"]))
                return
            except Exception:
                log.exception("sse %s: initialize failed", conn.id[:8])
                await conn.emit(
                    error(msg["id"], -32603, "internal gateway error (see the gateway log)")
                )
                return
            conn.slot = None  # the session holds it now
            if conn.closed.is_set():  # the client left while we waited for targets
                await self.dispatcher.close_session(session.id)
                return
            session.stream_opened()
            conn.session = session
            log.info("sse %s: session %s", conn.id[:8], session.id[:8])
        await conn.emit(resp)
        conn.initialized.set()

    async def _answer(self, conn: Connection, ctx: RequestContext, msg: Message) -> None:
        try:
            resp = await self.dispatcher.handle(ctx, msg)
        except Exception:
            log.exception("sse %s: request %s failed", conn.id[:8], msg.get("method"))
            resp = error(msg["id"], -32603, "internal gateway error (see the gateway log)")
        await conn.emit(resp)


def _accepts_sse(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("text/event-stream", "*/*", "text/*", ""):
            return True
    return False


async def _keepalive(conn: Connection) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE)
        await conn.write(b": keepalive\n\n")


async def _initialized_within(conn: Connection, timeout: float) -> None:
    """A stream that never initializes holds a session slot: not for long."""
    try:
        await asyncio.wait_for(conn.initialized.wait(), timeout)
    except TimeoutError:
        log.info("sse %s: not initialized within %g s; closing", conn.id[:8], timeout)
        conn.closed.set()


async def _disconnected(conn: Connection, receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    conn.closed.set()
