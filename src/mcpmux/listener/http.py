"""The streamable HTTP listener (MCP 2025-03-26 .. 2025-11-25) at ``/mcp``.

Raw ASGI rather than a framework route: the hot path parses the body once,
picks JSON or SSE lazily (JSON unless the target sends something before its
answer), and writes bytes straight out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from .. import era
from ..context import RequestContext, owner_key
from ..dispatch import Dispatcher
from ..jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Message,
    RPCError,
    error,
    is_notification,
    is_request,
    validate,
)
from ..multiplexer.servers import VirtualServer
from ..protocol import HANDSHAKE_VERSIONS as SUPPORTED_VERSIONS
from ..protocol import MODERN_VERSIONS, RESUMABLE_FROM
from ..session import ClientSession
from ..sse import encode
from ..tasks import race
from .auth import ResourceServer
from .guard import HEADERS
from .h1 import CYCLE, Cycle
from .modern import serve_modern
from .streams import SSE_HEADERS, ResponseStream, send_json

log = logging.getLogger("mcpmux.listener")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

LOOPBACK: Final = {"localhost", "127.0.0.1", "::1", "[::1]"}
#: Seconds a call runs before the listener watches for its client hanging up.
WATCH_AFTER: Final = 0.5
#: Where the listener leaves the authenticated caller for the handlers in ``extra``.
PRINCIPAL: Final = "mcpmux.principal"
#: Where it leaves the virtual server of a ``{path}/{name}`` endpoint for them.
SERVER: Final = "mcpmux.server"


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: int = INVALID_REQUEST, id: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.id = id


async def send_empty(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0"), *(headers or [])]})
    await send({"type": "http.response.body", "body": b""})


def principal_of(scope: Scope) -> Any:
    """The caller the listener authenticated (None without authentication)."""
    return scope.get(PRINCIPAL)


class StreamableHTTP:
    """ASGI app: ``/mcp`` (and ``/mcp/``), and ``/mcp/{name}`` for each virtual server
    (``servers:``); everything else is 404.

    With ``auth`` every request to ``/mcp`` and to the ``extra`` handlers (``/sse``,
    ``/messages``) is authenticated first, and the RFC 9728 metadata is served."""

    def __init__(self, dispatcher: Dispatcher, path: str = "/mcp", auth: ResourceServer | None = None) -> None:
        self.dispatcher = dispatcher
        self.gateway = dispatcher.gateway
        self.path = path
        self.auth = auth
        self.extra: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {}
        #: Endpoints that also serve each virtual server at ``{path}/{name}``.
        self.scoped: set[str] = {path}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        auth = self.auth
        if auth is not None and path in auth.metadata_paths:
            await auth.metadata(scope, headers_of(scope), send)
            return
        handler = self.extra.get(path)
        server: VirtualServer | None = None
        if path != self.path and handler is None:
            base, _, name = path.rpartition("/")
            if base not in self.scoped:
                await send_json(send, 404, {"error": f"not found: the MCP endpoint is {self.path}"})
                return
            server = self.dispatcher.servers.get(name)
            if server is None:
                await send_json(send, 404, {"error": f"unknown virtual server '{name[:64]}': no entry "
                                                     "of that name under 'servers:' in the config"})
                return
            handler = self.extra.get(base)
        headers = headers_of(scope)
        if not self._origin_ok(headers.get("origin")):
            await send_json(send, 403, error(None, INVALID_REQUEST, f"forbidden: Origin {headers['origin']} is not allowed (see allowed_origins)"))
            return
        principal = None
        if auth is not None:
            # Before the body is read or a session looked up: a refusal changes nothing.
            principal = await auth.authenticate(scope, headers, send)
            if principal is None:
                return
        if handler is not None:
            scope[PRINCIPAL] = principal
            scope[SERVER] = server
            await handler(scope, receive, send)
            return
        method = scope["method"]
        try:
            if method == "POST":
                await self._post(headers, receive, send, principal, peer_of(scope), server, scope.get(CYCLE))
            elif method == "GET":
                await self._get(headers, receive, send, principal, server)
            elif method == "DELETE":
                await self._delete(headers, send, principal, server)
            else:
                await send_json(send, 405, error(None, INVALID_REQUEST, f"method {method} not allowed: use POST, GET or DELETE"),
                                [(b"allow", b"GET, POST, DELETE")])
        except HttpError as exc:
            await send_json(send, exc.status, error(exc.id, exc.code, exc.message))

    def _origin_ok(self, origin: str | None) -> bool:
        if origin is None:
            return True
        allowed = self.gateway.config.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        try:
            host = urlsplit(origin).hostname
        except ValueError:  # e.g. "http://[": a malformed Origin is a foreign one, not a 500
            return False
        return host in LOOPBACK

    async def _session(self, headers: dict[str, str], principal: Any,
                       server: VirtualServer | None = None) -> ClientSession:
        sid = headers.get("mcp-session-id")
        if not sid:
            raise HttpError(400, "missing Mcp-Session-Id header: initialize first and send the id it returned")
        session = self.dispatcher.sessions.live.get(sid)
        if session is None:  # another replica's, when replicas share a store
            session = await self.dispatcher.sessions.resume(sid)
        return self._checked(session, headers, principal, server)

    def _checked(self, session: ClientSession | None, headers: dict[str, str], principal: Any,
                 server: VirtualServer | None) -> ClientSession:
        """``session`` if this caller may use it here (404 otherwise), and the protocol
        version header one the gateway speaks (400)."""
        if session is not None and session.record.owner != owner_key(principal):
            # Someone else's session: answered as unknown, so its existence is not confirmed.
            log.warning("session %s: presented by %s, not its owner; refused",
                        session.id[:8], owner_key(principal))
            session = None
        if session is not None and session.record.server != (server.name if server else None):
            # Opened on another endpoint: its subset is not this one's.
            session = None
        if session is None:
            raise HttpError(404, "unknown or expired session: initialize a new one", -32001)
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in SUPPORTED_VERSIONS:
            raise HttpError(400, f"unsupported MCP-Protocol-Version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
        return session

    async def _post(self, headers: dict[str, str], receive: Receive, send: Send, principal: Any = None,
                    peer: str | None = None, server: VirtualServer | None = None, cycle: Cycle | None = None) -> None:
        if not _accepts_both(headers.get("accept", "")):
            raise HttpError(406, "not acceptable: Accept must list application/json and text/event-stream")
        msg = await read_message(receive, headers, self.gateway.config.limits.max_body_bytes, cycle)
        if "mcp-session-id" not in headers and (
            era.is_modern(msg) or headers.get("mcp-protocol-version") in MODERN_VERSIONS
        ):
            if is_request(msg):
                await serve_modern(self.dispatcher, msg, headers, receive, send, principal, server, cycle)
            else:  # 2026 HTTP defines no client notifications; accepted and ignored
                await send_empty(send, 202)
            return
        if msg.get("method") == "initialize" and "id" in msg:
            await self._initialize(msg, send, principal, peer, server)
            return
        live = self.dispatcher.sessions.live.get(headers.get("mcp-session-id") or "")
        # A session of this replica (the usual case) is checked without a coroutine.
        session = (self._checked(live, headers, principal, server) if live is not None
                   else await self._session(headers, principal, server))
        session_hdr = [(b"mcp-session-id", session.id_bytes())]
        if is_request(msg):
            resumable = session.protocol_version >= RESUMABLE_FROM
            stream = new_stream(session, send, session_hdr, resumable, msg["id"], cycle)
            if resumable:
                stream.open()
            watch = DisconnectWatch(cycle, receive, session, stream, msg["id"], resumable)
            try:
                resp = await self.dispatcher.handle(
                    RequestContext(session, "http", headers, stream, principal, server=server), msg)
            except Exception:
                log.exception("session %s: request %s failed", session.id[:8], msg.get("method"))
                resp = error(msg["id"], -32603, "internal gateway error (see the gateway log)")
            finally:
                watch.stop()
            await stream.finish(resp)
            stream_done(session, stream)
        elif is_notification(msg):
            await self.dispatcher.notification(
                RequestContext(session, "http", headers, principal=principal, server=server), msg)
            await send_empty(send, 202)
        else:
            await self.dispatcher.response(
                RequestContext(session, "http", headers, principal=principal, server=server), msg)
            await send_empty(send, 202)

    async def _initialize(self, msg: Message, send: Send, principal: Any = None, peer: str | None = None,
                          server: VirtualServer | None = None) -> None:
        try:
            session, resp = await self.dispatcher.initialize(msg, principal, peer=peer,
                                                             server=server.name if server else None)
        except RPCError as exc:
            await send_json(send, 400, exc.to_message(msg["id"]))
            return
        await send_json(send, 200, resp, [(b"mcp-session-id", session.id.encode())])

    async def _get(self, headers: dict[str, str], receive: Receive, send: Send, principal: Any = None,
                   server: VirtualServer | None = None) -> None:
        if not _accepts(headers.get("accept", ""), "text/event-stream"):
            raise HttpError(406, "not acceptable: a GET stream needs Accept: text/event-stream")
        session = await self._session(headers, principal, server)
        last = headers.get("last-event-id")
        if last:
            key, _, seq = last.rpartition("-")
            stream = session.response_streams.get(key)
            if stream is not None and seq.isascii() and seq.isdigit():
                await stream.resume(send, int(seq))
                stream_done(session, stream)
                return
            # Another replica's stream (replicas share the events they retained).
            if seq.isascii() and seq.isdigit() and await self.dispatcher.sessions.resume_stream(
                    session, key, int(seq), send, receive, [*SSE_HEADERS, (b"mcp-session-id", session.id.encode())]):
                return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, (b"mcp-session-id", session.id.encode())]})
        await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})

        async def pump() -> None:
            while True:
                msg = await session.outbox.get()
                await send({"type": "http.response.body", "body": encode(orjson.dumps(msg)), "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(disconnected())]
        session.stream_opened()
        try:
            await race(tasks)
        finally:
            session.stream_closed()
            session.touch()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b""})

    async def _delete(self, headers: dict[str, str], send: Send, principal: Any = None,
                      server: VirtualServer | None = None) -> None:
        session = await self._session(headers, principal, server)
        await self.dispatcher.close_session(session.id)
        await send_empty(send, 200)


class DisconnectWatch:
    """Notices a client that hangs up on a POST before its answer.

    The ASGI server's ``send`` does nothing, silently, once the client is gone. A
    resumable stream (2025-11-25 sessions) is then detached: its events, the answer
    too, wait for the client's GET with ``Last-Event-ID``. Otherwise nobody can come
    back for the answer, so the call is cancelled upstream.

    The gateway's own listener (``listener/h1.py``) calls back on a hang-up (``cycle``):
    a call costs nothing to watch. Under another ASGI server the only way to know is to
    read ``receive`` for ``http.disconnect``: resumable streams are read from the start
    (their answer must never be counted as delivered to a dead connection), others
    once the call has run ``WATCH_AFTER`` seconds, so a quick call costs a timer, not a task.
    """

    __slots__ = ("_cycle", "_receive", "_rid", "_session", "_stream", "_task", "_timer")

    def __init__(self, cycle: Cycle | None, receive: Receive,
                 session: ClientSession, stream: ResponseStream, rid: Any, resumable: bool) -> None:
        self._cycle, self._receive, self._session, self._stream, self._rid = cycle, receive, session, stream, rid
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        if cycle is not None:
            cycle.on_disconnect(self._gone)
        elif resumable:
            self._start()
        else:
            self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._gone()

    def _gone(self) -> None:
        if self._stream.resumable:
            self._stream.detach()
            return
        # Owned like the watch: stop() cancels it once the call has ended.
        self._task = asyncio.ensure_future(
            self._session.cancel({"requestId": self._rid, "reason": "the client disconnected"}))

    def stop(self) -> None:
        if self._cycle is not None:
            self._cycle.on_disconnect(None)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


def new_stream(
    session: ClientSession, send: Send, headers: list[tuple[bytes, bytes]], resumable: bool, rid: Any = None,
    cycle: Cycle | None = None,
) -> ResponseStream:
    """A POST's answer stream; a resumable one is kept until it has been delivered."""
    key = session.stream_key()
    stream = ResponseStream(key, send, headers, resumable, cycle, session.id_line())
    if resumable:
        stream.rid = rid
        stream.retain = session.retain
        streams = session.response_streams
        if len(streams) >= 64:  # only undelivered answers linger: rare
            now = time.monotonic()
            for k in [k for k, s in streams.items() if s.expired(now)]:
                del streams[k]
        streams[key] = stream
    return stream


def stream_done(session: ClientSession, stream: ResponseStream) -> None:
    """Forget a stream whose answer reached a live connection (the usual case)."""
    if stream.delivered:
        session.response_streams.pop(stream.key, None)
        if stream.retained:
            session.drop_retained(stream.key)


def _request_id_problem(msg: Message) -> str | None:
    """MCP: a request id is a string or an integer, never null; JSON booleans are not ids."""
    if "method" in msg and "id" in msg and (msg["id"] is None or isinstance(msg["id"], bool)):
        return '"id" of a request must be a string or an integer (not null or a boolean)'
    return None


def echo_id(msg: Any) -> Any:
    """The id to put on an Invalid Request error: the sender's only if it is a valid one
    (JSON-RPC: if the id cannot be determined, it is null)."""
    rid = msg.get("id") if isinstance(msg, dict) else None
    return rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None


async def read_message(receive: Receive, headers: dict[str, str], limit: int, cycle: Cycle | None = None) -> Message:
    """One POSTed JSON-RPC message, or the HttpError that says what is wrong with it.
    With the gateway's own listener (``cycle``) a body that came whole is taken
    without a ``receive``."""
    ctype = headers.get("content-type", "")
    if ctype != "application/json":  # what clients send, without parameters: no parsing
        ctype = ctype.split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, f"unsupported media type {ctype or '(none)'}: send application/json")
    body = cycle.whole_body() if cycle is not None else None
    if body is None:
        body = await _read_body(receive, headers, limit)
    elif len(body) > limit:
        raise HttpError(413, f"request body too large: {len(body)} bytes, the limit is {limit}")
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"parse error: {exc}", PARSE_ERROR) from None
    if isinstance(msg, list):
        raise HttpError(
            400, "JSON-RPC batches are not supported (removed in MCP 2025-06-18): send one message per request"
        )
    problem = validate(msg) or _request_id_problem(msg)
    if problem:
        raise HttpError(400, f"invalid request: {problem}", INVALID_REQUEST, echo_id(msg))
    return msg


def peer_of(scope: Scope) -> str | None:
    """The socket peer's address (never X-Forwarded-For: a client can write that)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def headers_of(scope: Scope) -> dict[str, str]:
    """The request's headers by lowercased name (decoded while parsing by the gateway's
    own protocol; here under another ASGI server)."""
    fields: dict[str, str] | None = scope.get(HEADERS)
    if fields is not None:
        return fields
    return {k.decode("latin-1").lower(): v.decode("latin-1").strip() for k, v in scope["headers"]}


_ACCEPTS: Final[dict[str, bool]] = {}


def _accepts_both(accept: str) -> bool:
    """A POST's Accept lists JSON and SSE; remembered for the few values clients send."""
    known = _ACCEPTS.get(accept)
    if known is None:
        known = _accepts(accept, "application/json") and _accepts(accept, "text/event-stream")
        if len(_ACCEPTS) < 256:  # client input: bounded, first come
            _ACCEPTS[accept] = known
    return known


def _accepts(accept: str, mime: str) -> bool:
    major = mime.split("/")[0]
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in (mime, "*/*", f"{major}/*"):
            return True
    return False


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HttpError(413, f"request body too large: {length} bytes, the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected while sending the body")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body too large: over the limit of {limit} bytes")
        if not event.get("more_body"):
            if not chunks:  # the whole body in one event: the usual case
                return chunk  # type: ignore[no-any-return]
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
