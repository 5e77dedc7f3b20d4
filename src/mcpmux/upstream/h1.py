"""A small HTTP/1.1 client for the request/response traffic to one target.

Why not aiohttp here: py-spy put 37-44 % of the gateway's CPU per forwarded call in
aiohttp's request machinery (``ClientSession._request``, header preparation, the
payload registry, ``ClientResponse.start``, the connector), for a job that is
always the same: POST a small JSON body to one origin over a kept-alive connection,
read a JSON or SSE answer. This module does only that, on an ``asyncio.Protocol``
with ``httptools`` parsing the answer (the parser uvicorn uses on the other side):
the header block is pre-encoded by the caller, the request is one ``write``, and
an answer that arrived whole is handed over without another trip through the loop.

aiohttp stays for long-lived streams (GET streams, ``subscriptions/listen``,
legacy SSE, resumption) and OpenAPI targets, where its cost per call does not matter.

What it keeps from the aiohttp setup it replaces:
- a pool per target: at most ``limit`` connections at once (256), idle ones kept
  alive and reused last-in first-out, dropped after ``idle_timeout`` (shorter than
  Node's 5 s server default, so a reused socket is rarely one the server is closing,
  and never longer than what a ``Keep-Alive: timeout=N`` answer allows);
- connect bounded by the target's timeout; TLS with the default verified context;
- no redirects (the caller sees the 3xx), no proxies from the environment, no
  cookies; gzip/deflate answers are decoded (with the size limit applied to the
  decoded bytes), although no ``Accept-Encoding`` is sent;
- bounded memory: reading pauses while more than ``HIGH_WATER`` bytes wait unread,
  and the caller's read refuses past its limit (:class:`TooLarge`).

Header values are checked for CR, LF and NUL (a header injection otherwise, since
some come from the target, the session id).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import urlsplit

import httptools
from mypy_extensions import mypyc_attr

from ..fieldnames import lowered

#: Unread answer bytes above which the socket is not read until the caller catches up.
HIGH_WATER: Final = 256 * 1024
#: Idle keep-alive connections older than this are not reused (Node closes at 5 s).
IDLE_TIMEOUT: Final = 4.0
#: What may be skipped, and for how long, to keep a connection whose answer we have.
DRAIN_BYTES: Final = 64 * 1024
DRAIN_TIME: Final = 1.0
_BAD: Final = frozenset("\r\n\0")


@mypyc_attr(native_class=False)  # compiled classes cannot derive from OSError
class H1Error(ConnectionError):
    """The connection failed or the target spoke something that is not HTTP/1.1."""


class TooLarge(Exception):
    """The answer's body passed the caller's limit (the connection was closed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


def encode_headers(headers: dict[str, str]) -> bytes:
    """``Name: value\\r\\n`` lines; ValueError for a name or value that could inject."""
    out = []
    for k, v in headers.items():
        if not k or _BAD.intersection(k) or ":" in k or _BAD.intersection(v):
            raise ValueError(f"header {k!r} has a character not allowed in HTTP headers")
        out.append(f"{k}: {v}\r\n")
    return "".join(out).encode("latin-1", "replace")


class Response:
    """An answer whose headers have arrived; its body is read with :meth:`read` or
    :meth:`iter_chunks`, and the caller ends with :meth:`release` (reuse the
    connection if the body was read to its end) or :meth:`close` (drop it)."""

    __slots__ = ("_buffered", "_chunks", "_conn", "_decoder", "_done", "_error", "_waiter",
                 "headers", "status")

    def __init__(self, conn: Connection, status: int, headers: dict[str, str]) -> None:
        self._conn: Connection | None = conn
        self.status = status
        self.headers = headers
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        enc = headers.get("content-encoding", "identity").lower()
        self._decoder = zlib.decompressobj(47) if enc in ("gzip", "deflate", "x-gzip") else None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def content_length(self) -> int | None:
        v = self.headers.get("content-length")
        return int(v) if v is not None and v.isdigit() else None

    # -- fed by the connection ---------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- read by the caller ------------------------------------------------
    async def _next(self) -> bytes | None:
        """The next raw chunk of the body, or None at its end."""
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= HIGH_WATER // 2 and self._conn is not None:
            self._conn.resume()
        return chunk

    def _decode(self, chunk: bytes, limit: int) -> bytes:
        assert self._decoder is not None
        out = self._decoder.decompress(chunk, limit + 1)
        if len(out) > limit or self._decoder.unconsumed_tail:
            self.close()
            raise TooLarge(limit)
        return out

    async def read(self, limit: int) -> bytes:
        """The whole body, refused (connection closed) past ``limit`` bytes."""
        if self._decoder is None:
            if self._done and self._error is None and len(self._chunks) <= 1:  # it all came at once
                body = self._chunks.popleft() if self._chunks else b""
                self._buffered = 0
                if len(body) > limit:
                    self.close()
                    raise TooLarge(limit)
                return body
            cl = self.content_length
            if cl is not None and cl > limit:
                self.close()
                raise TooLarge(limit)
        buf = bytearray()
        while (chunk := await self._next()) is not None:
            if self._decoder is not None:
                chunk = self._decode(chunk, limit - len(buf))
            if len(buf) + len(chunk) > limit:
                self.close()
                raise TooLarge(limit)
            buf += chunk
        return bytes(buf)

    async def read_some(self, limit: int) -> bytes:
        """At most about ``limit`` bytes of the body (an error body is read only as far as
        it is kept); what is left is dropped with the connection on release."""
        buf = bytearray()
        while len(buf) < limit and (chunk := await self._next()) is not None:
            if self._decoder is not None:
                chunk = self._decoder.decompress(chunk, limit)
            buf += chunk
        return bytes(buf[:limit])

    def iter_chunks(self, limit: int = HIGH_WATER) -> AsyncIterator[bytes]:
        """The body as it arrives (an SSE stream); ``limit`` bounds one decoded chunk."""
        return _Chunks(self, limit)

    @property
    def complete(self) -> bool:
        return self._done and self._error is None and not self._chunks

    def release(self) -> None:
        """Done with the answer: the connection goes back to the pool if the body was read
        to its end and both sides keep it alive; otherwise it is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._error is not None:
                conn.finish(reusable=False)
            elif self._done:
                conn.finish(reusable=not self._chunks)
            else:  # the caller has what it wanted (an SSE answer) before the body's end
                conn.drain()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish(reusable=False)


class _Chunks:
    """``Response.iter_chunks``: a class, as mypyc compiles no async generators."""

    __slots__ = ("limit", "resp")

    def __init__(self, resp: Response, limit: int) -> None:
        self.resp = resp
        self.limit = limit

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        resp = self.resp
        chunk = await resp._next()
        if chunk is None:
            raise StopAsyncIteration
        return resp._decode(chunk, self.limit) if resp._decoder is not None else chunk


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        #: Made in the loop it serves; kept because ``get_running_loop`` is a ``getpid``
        #: system call on 3.11 and :meth:`send` needs the loop once per call.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.keep_alive_for = pool.idle_timeout
        self._headers: dict[str, str] = {}
        self._head: asyncio.Future[Response] | None = None
        self._resp: Response | None = None
        self._paused = False
        self._length_known = False
        self._drain: asyncio.TimerHandle | None = None
        self._drained = 0

    # -- asyncio.Protocol ------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(H1Error(f"invalid HTTP answer: {exc}"))
            self._close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost ends what is pending

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        self.pool._forget(self)
        resp = self._resp
        if resp is not None and not resp._done and not self._length_known:
            resp._finish()  # no Content-Length, not chunked: the body ends with the connection
        self._fail(H1Error(f"connection closed by the target{f' ({exc})' if exc else ''}"))

    # -- httptools callbacks ---------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = lowered(name)[1]
        val = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = val if old is None else f"{old}, {val}"

    def on_headers_complete(self) -> None:
        headers, self._headers = self._headers, {}
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim answer (101 excluded: never asked for): skip it
            return
        te = headers.get("transfer-encoding", "")
        self._length_known = "content-length" in headers or "chunked" in te.lower() or status in (204, 304)
        ka = headers.get("keep-alive")
        if ka:
            for part in ka.split(","):
                k, _, v = part.strip().partition("=")
                if k.lower() == "timeout" and v.strip().isdigit():
                    self.keep_alive_for = min(self.keep_alive_for, max(0.0, int(v) - 1.0))
        resp = self._resp = Response(self, status, headers)
        head = self._head
        if head is not None and not head.done():
            head.set_result(resp)

    def on_body(self, body: bytes) -> None:
        if self._drain is not None:
            self._drained += len(body)
            if self._drained > DRAIN_BYTES:
                self._end_drain(False)
        elif self._resp is not None:
            self._resp._feed(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.keep_alive_for = -1.0
        if self._drain is not None:
            self._end_drain(True)
            return
        resp = self._resp
        if resp is None:  # the end of an interim (1xx) answer
            return
        resp._finish()

    # -- used by Pool and Response ---------------------------------------
    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._head = head = self.loop.create_future()
        self._resp = None
        self.transport.write(data)
        return head

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, exc: BaseException) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        resp = self._resp
        if resp is not None:
            resp._finish(exc)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def finish(self, reusable: bool) -> None:
        """The caller is done with the current exchange."""
        self._head = None
        self._resp = None
        self._idle(reusable)
        self.pool._slots.release()

    def _idle(self, reusable: bool) -> None:
        if reusable and self.keep_alive_for > 0 and not self.closed and not self._paused:
            self.idle_since = time.monotonic()
            self.pool._put(self)
        else:
            self._close()
            self.pool._forget(self)

    def drain(self) -> None:
        """The caller is done but the body has not ended (a server ends an SSE answer
        with a last empty chunk, often in a packet of its own): skip what is left, then
        keep the connection, unless more than DRAIN_BYTES or DRAIN_TIME pass first."""
        self._head = None
        self._resp = None
        self.pool._slots.release()
        if self.closed or self.keep_alive_for <= 0:
            self._idle(False)
            return
        self._drained = 0
        self._drain = asyncio.get_running_loop().call_later(DRAIN_TIME, self._end_drain, False)
        if self._paused:
            self._paused = False
            if self.transport is not None:
                self.transport.resume_reading()

    def _end_drain(self, reusable: bool) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
            self._idle(reusable)


class Slots:
    """The pool's counting semaphore. Taking a free slot is a plain call: the pool takes
    one per request, and ``asyncio.Semaphore`` is interpreted Python that makes a
    coroutine (and, on 3.11, scans its waiters) on every acquire."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """A slot now, if one is free and nobody waits for one."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Queue for a slot; :meth:`release` hands it over, first come first served."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.cancelled():
                if fut in self.waiters:  # a release may have dropped it already
                    self.waiters.remove(fut)
            else:  # handed a slot, then cancelled before taking it: pass it on
                self.release()
            raise

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class Pool:
    """Connections to one origin (scheme, host, port): at most ``limit`` at once."""

    def __init__(self, url: str, limit: int = 256, connect_timeout: float = 10.0,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.url = url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        default = (self.https and self.port == 443) or (not self.https and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default else f"{host}:{self.port}"
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self.https else None
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()
        self._slots = Slots(limit)
        self.closed = False

    def request_head(self, method: str, headers: bytes, path: str | None = None) -> bytes:
        """The request line, Host and ``headers`` (pre-encoded lines) without the length:
        callers keep it and add ``Content-Length`` per request (see :meth:`request`)."""
        return (f"{method} {path or self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n".encode("latin-1")
                + headers)

    async def request(self, head: bytes, body: bytes | None = None, extra: bytes = b"") -> Response:
        """Send ``head`` (from :meth:`request_head`) + ``extra`` header lines + the body,
        and return once the answer's status and headers are in."""
        if self.closed:
            raise H1Error("client closed")
        if body is None:
            data = head + extra + b"\r\n"
        else:
            data = b"%s%sContent-Length: %d\r\n\r\n%s" % (head, extra, len(body), body)
        if not self._slots.take():
            await self._slots.wait()
        conn = self._reuse()  # the usual case, without a coroutine
        if conn is None:
            try:
                conn = await self._connect()
            except BaseException:
                self._slots.release()
                raise
        try:
            return await conn.send(data)
        except BaseException:
            conn.finish(reusable=False)  # cancelled or failed mid-exchange: its state is unknown
            raise

    def _reuse(self) -> Connection | None:
        """The most recently used idle connection still good to reuse, if any."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < conn.keep_alive_for:
                return conn
            conn._close()
            self._all.discard(conn)
        return None

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(self)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, self.host, self.port, ssl=self._ssl,
                                       server_hostname=self.host if self._ssl else None),
                self.connect_timeout)
        except TimeoutError:
            raise H1Error(f"cannot connect to {self.host}:{self.port}: timed out after "
                          f"{self.connect_timeout:g} s") from None
        except OSError as exc:
            raise H1Error(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._all.add(conn)
        return conn

    def _put(self, conn: Connection) -> None:
        if self.closed:
            conn._close()
            return
        self._idle.append(conn)

    def _forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    async def aclose(self) -> None:
        self.closed = True
        for conn in list(self._all):
            conn._close()
        self._idle.clear()
        self._all.clear()

