"""The HTTP/1.1 protocol of every listener: ``httptools`` on the event loop, ASGI to the app.

Why not uvicorn's own protocol: py-spy put 17-35 % of the gateway's CPU per
forwarded call in it, mostly in ``RequestResponseCycle.send`` (two regular
expressions per response header, an access-log check, the head and the body
written as two syscalls). A bare ``asyncio.Protocol`` with ``httptools``
measured 12.7 µs per request where uvicorn's took 41 (docs/benchmarks.md). This
one keeps ASGI, so every app (``/mcp``, legacy SSE, admin, A2A) is served
unchanged, but does only what those apps need:

- a response with a ``content-length`` is written in one ``write`` (head + body);
  a streamed one (SSE) gets its head at once and its chunks as they come;
- a request body that arrived with its head is handed over without a wait;
- one timer per connection, re-armed only when it fires, enforces both the
  header timeout and the keep-alive timeout (no timer per request).

uvicorn still runs the listener around it (binding, the sockets of ``run
--workers``, graceful shutdown): this class is what ``uvicorn.Config(http=...)``
instantiates per connection, and it keeps uvicorn's contract for that
(``server_state.connections``/``tasks``, ``shutdown()``).

Limits the parser itself does not have (each has a test that hits it):

- the bytes of an unfinished request head are counted per read (one addition per
  ``data_received``); past ``max_header_bytes`` the client gets 431 and the
  connection is closed (four requests with 100 MB heads took a gateway without
  this from 56 MB to 465 MB);
- a request head must be complete within ``header_timeout`` seconds of the
  connection or of its first byte (slowloris), else 408 and close;
- past ``max_connections`` open connections a new one gets 503 at once and is
  closed, logged at most once per 10 s with a count;
- reading pauses while more than 64 KiB of a body wait unread, and while a
  pipelined request waits for the one before it;
- a response that ends before its request body was read closes the connection;
  the rest of the body is dropped unparsed for at most ``LINGER`` seconds, so that
  the client reads the answer (a 413) instead of a reset;
- response header names and values with CR, LF or NUL are refused (injection).
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final, cast
from urllib.parse import unquote

import httptools
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

from ..fieldnames import header_lines, lowered
from .guard import HEADERS, RateLimitedLog, head_response

log = logging.getLogger("mcpmux.listener.h1")

#: Unread request body above which the socket is not read until the app catches up.
HIGH_WATER: Final = 64 * 1024
#: Seconds the rest of a refused request body is read and dropped before closing.
LINGER: Final = 5.0


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


STATUS_LINE: Final = {code: _status_line(code) for code in range(100, 600)}
_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
#: Scope key of the request's :class:`Cycle`, for the gateway's own apps (another ASGI
#: server has none, and they fall back to ``receive`` and ``send``). Through it an app
#: learns of a hang-up without a task parked in ``receive()`` (``on_disconnect``),
#: takes a body that came whole without a ``receive`` (``whole_body``), and writes a
#: whole answer in one call without two ASGI messages (``answer``).
CYCLE: Final = "mcpmux.cycle"
_DISCONNECT: Final = {"type": "http.disconnect"}
_NO_BODY_STATUS: Final = frozenset({204, 304})
#: Request methods as the scope's strings, without a decode per request.
_METHOD_NAMES: Final = {m.encode(): m for m in ("GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH")}
_TASK_NAME: Final = "mcpmux-request"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_INTERNAL_ERROR: Final = head_response(500, "Internal Server Error", "internal server error (see the gateway log)")

# Connection states the timer looks at.
_HEAD: Final = 0
_BUSY: Final = 1
_IDLE: Final = 2


def _unsafe(value: bytes) -> bool:
    return b"\r" in value or b"\n" in value or b"\0" in value


class Limits:
    """One listener's limits, shared by its connections (see :func:`protocol_class`)."""

    __slots__ = ("header_timeout", "max_connections", "max_header_bytes", "refused_log")

    def __init__(self, max_header_bytes: int = 64 * 1024, header_timeout: float = 10.0,
                 max_connections: int = 1000) -> None:
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.refused_log = RateLimitedLog()


class H1Protocol(asyncio.Protocol):
    """One client connection, with its listener's :class:`Limits`."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        self.max_header_bytes = limits.max_header_bytes
        self.header_timeout = limits.header_timeout
        self.max_connections = limits.max_connections
        self.refused_log = limits.refused_log
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_running_loop()
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.keepalive = float(config.timeout_keep_alive)
        self.root_path: str = config.root_path
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of pipelined requests even if data follows a "Connection: close".
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.closed = False
        self.broken = False
        #: The request whose app runs, and those pipelined behind it.
        self.active: Cycle | None = None
        self.pipeline: deque[Cycle] = deque()
        #: The request the parser is filling (its body goes there).
        self.current: Cycle | None = None
        self.read_paused = False
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.state = _HEAD
        self.since = 0.0
        self.head_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        #: The same headers decoded (the scope's ``mcpmux.headers``) and their size.
        self.fields: dict[str, str] = {}
        self.header_bytes = 0
        self.expect_continue = False

    # -- the transport's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.server = get_local_addr(transport)  # type: ignore[arg-type]
        self.client = get_remote_addr(transport)  # type: ignore[arg-type]
        if is_ssl(transport):  # type: ignore[arg-type]
            self.scheme = "https"
        if len(self.connections) > self.max_connections:
            self.refused_log("connection limit reached (limits.max_connections = %d): new connections "
                             "get 503", self.max_connections)
            self.refuse(503, "Service Unavailable",
                        f"too many connections (limits.max_connections = {self.max_connections}); retry later")
            return
        self.since = self.loop.time()
        self.timer = self.loop.call_later(min(self.header_timeout, self.keepalive), self.tick)

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No upgrades here (no WebSocket): the request is answered as plain HTTP,
            # which RFC 9110 allows, and the connection then closes (the bytes after
            # the head belong to the other protocol).
            self.broken = True
            if self.current is not None:
                self.current.keep_alive = False
            return
        except httptools.HttpParserError as exc:
            self.bad_request(exc)
            return
        if self.state == _HEAD and not self.closed:
            self.head_bytes += len(data)
            if self.head_bytes > self.max_header_bytes:
                self.head_too_large()

    def eof_received(self) -> bool | None:
        return None  # close: a half-closed client gets no answer, as with uvicorn

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for cycle in (self.active, *self.pipeline):
            if cycle is not None and not cycle.complete:
                cycle.disconnected = True
                cycle.wake()
                cycle.hung_up()
        self.pipeline.clear()
        self.active = self.current = None  # they point back at this protocol
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    async def drain(self) -> None:
        if self.drained is None or self.drained.done():
            self.drained = self.loop.create_future()
        await self.drained

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    # -- uvicorn's side

    def shutdown(self) -> None:
        """Graceful stop: close an idle connection now, a busy one after its answer."""
        if self.active is None:
            self.transport.close()
        else:
            self.active.keep_alive = False
            self.pipeline.clear()

    # -- limits

    def tick(self) -> None:
        """The connection's one timer: header timeout while a head is read, keep-alive
        timeout while idle; re-armed for whatever is due next."""
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        if self.state == _HEAD:
            left = self.since + self.header_timeout - now
            if left <= 0:
                self.refuse(408, "Request Timeout", f"request headers not received within "
                                                    f"{self.header_timeout:g} s (limits.header_timeout)")
                return
        elif self.state == _IDLE:
            left = self.since + self.keepalive - now
            if left <= 0:
                self.transport.close()
                return
        else:  # an app is answering: its own timeouts apply; look again later
            left = min(self.header_timeout, self.keepalive)
        self.timer = self.loop.call_later(left, self.tick)

    def refuse(self, status: int, reason: str, message: str) -> None:
        self.broken = True
        if not self.transport.is_closing():
            if self.active is None:  # not in the middle of another answer
                self.transport.write(head_response(status, reason, message))
            self.transport.close()

    def head_too_large(self) -> None:
        self.refuse(431, "Request Header Fields Too Large",
                    f"request headers larger than {self.max_header_bytes} bytes (limits.max_header_bytes)")

    def close_after(self, cycle: Cycle) -> None:
        """Close once ``cycle`` is answered. A client still sending the body would
        get a reset instead of the answer (unread data makes close() send RST), so
        its end is half-closed and what it sends is dropped for up to LINGER s."""
        if not cycle.more_body or self.closed or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.broken = True
        self.transport.write_eof()
        self.resume_reading()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(LINGER, self.transport.close)

    def bad_request(self, exc: Exception) -> None:
        log.info("malformed HTTP request from %s: %s", self.client and self.client[0], exc)
        self.refuse(400, "Bad Request", f"malformed HTTP request: {exc}")

    # -- the parser's callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.fields = {}
        self.header_bytes = 0
        self.expect_continue = False
        self.head_bytes = 0
        self.state = _HEAD
        self.since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        name, key = lowered(name)
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))
        self.fields[key] = value.decode("latin-1").strip()
        self.header_bytes += size

    def on_headers_complete(self) -> None:
        self.state = _BUSY
        if self.header_bytes > self.max_header_bytes:
            # The exact check (the per-read one misses a head that came in one read).
            self.current = None  # nothing of this request reaches an app
            self.head_too_large()
            return
        parser = self.parser
        url = httptools.parse_url(self.url)
        raw_path = url.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path, "latin-1")
        version = parser.get_http_version()
        method = parser.get_method()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": _METHOD_NAMES.get(method) or method.decode("ascii"),
            "root_path": self.root_path,
            "path": self.root_path + path if self.root_path else path,
            "raw_path": raw_path,
            # None when absent, though httptools' stub says bytes (compiled code checks it).
            "query_string": cast(Any, url).query or b"",
            "headers": self.headers,
            # No "state": there is no lifespan state (ASGI makes the key optional).
        }
        cycle = Cycle(self, scope, parser.should_keep_alive(), self.expect_continue)
        scope[CYCLE] = cycle
        scope[HEADERS] = self.fields
        self.current = cycle
        if self.active is None:
            self.start(cycle)
        else:
            self.pipeline.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.current
        if cycle is None or cycle.complete:
            return
        cycle.chunks.append(body)
        cycle.size += len(body)
        if cycle.size > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.current
        if cycle is None or cycle.complete:
            return
        cycle.more_body = False
        cycle.wake()

    # -- requests

    def start(self, cycle: Cycle) -> None:
        self.active = cycle
        # A Task made directly: create_task would format a "Task-N" name per request.
        task = asyncio.Task(cycle.run(self.app), loop=self.loop, name=_TASK_NAME)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def done(self, cycle: Cycle) -> None:
        """``cycle``'s answer is complete: start the next pipelined request, or idle."""
        if self.active is not cycle:
            return
        self.active = None
        self.server_state.total_requests += 1
        if self.closed or self.broken or self.transport.is_closing():
            return
        self.resume_reading()
        if self.pipeline:
            self.start(self.pipeline.popleft())
        elif self.state == _BUSY:
            self.state = _IDLE
            self.since = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_later(min(self.header_timeout, self.keepalive), self.tick)


class Cycle:
    """One request and its answer: the ASGI ``receive`` and ``send`` of one call."""

    __slots__ = ("chunked", "chunks", "complete", "conn", "disconnected", "expect_continue", "gone", "head",
                 "keep_alive", "left", "more_body", "ready", "scope", "size", "started", "waiter")

    def __init__(self, conn: H1Protocol, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.chunks: list[bytes] = []
        self.size = 0
        self.more_body = True
        #: Something arrived (body or its end) that ``receive`` has not returned yet.
        self.ready = False
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked = False
        #: Body bytes the ``content-length`` still expects (None: not given).
        self.left: int | None = None
        #: The response head, held to go out with the body in one write.
        self.head: bytes | None = None
        #: The app's hang-up callback (see :meth:`on_disconnect`).
        self.gone: Callable[[], None] | None = None

    def on_disconnect(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` if the client goes away before the answer is complete
        (at once if it already has); None forgets it. It runs inside the transport's
        callback: it must be quick (cancel a task, start one)."""
        self.gone = callback
        if self.disconnected:
            self.hung_up()

    def hung_up(self) -> None:
        gone, self.gone = self.gone, None
        if gone is not None:
            try:
                gone()
            except Exception:
                log.exception("%s %s: the disconnect callback failed", self.scope["method"], self.scope["path"][:200])

    def wake(self) -> None:
        self.ready = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app: Any) -> None:
        conn = self.conn
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            conn.transport.close()
            raise
        except BaseException:
            log.exception("%s %s: the app failed", self.scope["method"], self.scope["path"][:200])
            if not self.started and not self.disconnected:
                conn.transport.write(_INTERNAL_ERROR)
            conn.transport.close()
        else:
            if not self.complete and not self.disconnected:
                log.error("%s %s: the app returned without %s the response", self.scope["method"],
                          self.scope["path"][:200], "completing" if self.started else "starting")
                if not self.started:
                    conn.transport.write(_INTERNAL_ERROR)
                conn.transport.close()
        finally:
            # The scope holds this cycle: without this the two would form a reference
            # cycle per request, left to the garbage collector.
            del self.scope[CYCLE]
            conn.done(self)

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        if self.expect_continue:
            self.expect_continue = False
            if not self.started and not conn.closed:
                conn.transport.write(_CONTINUE)
        if not self.disconnected and not self.complete:
            conn.resume_reading()
            if not self.ready:
                self.waiter = conn.loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            self.ready = False
        if self.disconnected or self.complete:
            return _DISCONNECT
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.size = 0
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def whole_body(self) -> bytes | None:
        """The request body if all of it has arrived (the usual POST: it comes with its
        head), else None (then ``receive`` it). Only before the first ``receive``."""
        if self.more_body or self.disconnected or self.complete or self.expect_continue:
            return None
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.size = 0
        self.ready = False
        return body

    def must_wait(self) -> bool:
        """The client stopped reading (its socket's buffer is past the high-water mark):
        ``await drained()`` before ``answer``, which does not wait, so that a client that
        pipelines requests and reads nothing stalls them instead of filling memory."""
        return self.conn.write_paused and not self.disconnected

    async def drained(self) -> None:
        await self.conn.drain()

    def answer(self, status: int, head: bytes, body: bytes) -> None:
        """The whole response in one write: what ``http.response.start`` and one
        ``http.response.body`` do, without the two messages or the header scan.
        For the gateway's own apps: ``head`` is header lines made (and checked) once
        by ``fieldnames.header_lines``, without ``content-length``,
        ``transfer-encoding`` or ``connection`` (this sets them). A client gone
        already gets nothing, as with ``send``. Check ``must_wait`` first."""
        if self.started or status in _NO_BODY_STATUS:
            raise RuntimeError(f"answer({status}) after the response was started, or for a status without a body")
        conn = self.conn
        if self.more_body:
            self.keep_alive = False  # the body was not read: see _head
        default = conn.server_state.default_headers
        if default:
            head = header_lines(default) + head
        self.started = True
        self.expect_continue = False
        if self.disconnected:
            return
        ending = b"\r\n\r\n" if self.keep_alive else b"\r\nconnection: close\r\n\r\n"
        size = len(body)
        if self.scope["method"] == "HEAD":
            body = b""
        conn.transport.write(b"%b%bcontent-length: %d%b%b" % (STATUS_LINE[status], head, size, ending, body))
        self.complete = True
        self.gone = None
        self.wake()
        if not self.keep_alive:
            conn.close_after(self)
        conn.done(self)

    async def send(self, message: dict[str, Any]) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self._head(message)
            self.started = True
            self.expect_continue = False
            return
        if self.complete:
            raise RuntimeError(f"ASGI message {kind!r} after the response was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {kind!r}")
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            body = b""
        elif self.chunked:
            if body:
                body = b"%x\r\n%b\r\n" % (len(body), body)
            if not more:
                body += b"0\r\n\r\n"
        elif self.left is not None:
            self.left -= len(body)
            if self.left < 0:
                raise RuntimeError("response body longer than its content-length")
        if self.head is not None:
            body = self.head + body
            self.head = None
        if body:
            conn.transport.write(body)
        if not more:
            if self.left and self.scope["method"] != "HEAD":
                raise RuntimeError("response body shorter than its content-length")
            self.complete = True
            self.gone = None
            self.wake()  # a receive() waiting for a disconnect returns now
            if not self.keep_alive:
                conn.close_after(self)
            conn.done(self)

    def _head(self, message: dict[str, Any]) -> None:
        conn = self.conn
        status = message["status"]
        if self.more_body:
            # Answered before the request body was read (an error): not worth
            # reading on to reuse the connection; it closes after the answer.
            self.keep_alive = False
        parts = [STATUS_LINE[status]]
        lines = 2  # CRLFs written: the status line's and the blank line's, then one per header
        close_sent = False
        headers = message.get("headers", ())
        if conn.server_state.default_headers:
            headers = [*conn.server_state.default_headers, *headers]
        for name, value in headers:
            lname = lowered(name)[0]
            if lname == b"content-length":
                self.left = int(value)
            elif lname == b"transfer-encoding":
                self.chunked = value.lower() == b"chunked"
            elif lname == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                close_sent = True
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if not self.keep_alive and not close_sent:
            parts.append(b"connection: close\r\n")
            lines += 1
        method_has_body = self.scope["method"] != "HEAD" and status not in _NO_BODY_STATUS
        if self.left is None and not self.chunked and method_has_body:
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        # A CR, LF or NUL in a name or value would split the head (injection): the
        # head has exactly one CRLF per line we wrote, or a header smuggled one in.
        # (find, not ``in``: bytes ``in`` tries the needle as an int first and builds
        # and drops a TypeError.)
        if head.count(b"\n") != lines or head.count(b"\r") != lines or head.find(b"\0") >= 0:
            bad = next((n for n, v in headers if _unsafe(n) or _unsafe(v)), b"?")
            raise RuntimeError(f"response header {bytes(bad)[:64]!r} has a character not allowed in HTTP")
        # Held to go out with the first body chunk in one write; the apps send that
        # chunk right after the head, and a head alone goes out on the next loop pass.
        self.head = head
        if self.left is None:
            conn.loop.call_soon(self.flush_head)

    def flush_head(self) -> None:
        if self.head is not None and not self.conn.closed:
            self.conn.transport.write(self.head)
        self.head = None


def protocol_class(max_header_bytes: int, header_timeout: float, max_connections: int) -> Any:
    """What uvicorn's ``http=`` takes to build one listener's connections, with these
    limits. uvicorn only calls it, so a factory does: a subclass per listener would
    have to be an interpreted subclass of a compiled class (docs/architecture.md)."""
    return functools.partial(H1Protocol, limits=Limits(max_header_bytes, header_timeout, max_connections))
