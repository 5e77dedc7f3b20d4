"""The stdio front (``mcpmux stdio``): the whole gateway as one MCP server on stdin/stdout.

For clients that can only launch a command (desktop apps): newline-delimited
JSON-RPC, one client session for the life of the process. Requests are answered
concurrently, each in a task of the front; answers, progress, logs and
server->client requests are written to stdout one line each. stdout carries
nothing else: the CLI points file descriptor 1 at stderr before anything runs and
keeps the real stdout for this front alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO

import orjson

from ..context import RequestContext
from ..dispatch import Dispatcher
from ..jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Message,
    RPCError,
    error,
    is_notification,
    is_request,
    result,
    validate,
)
from ..session import ClientSession
from ..tasks import TaskOwner

log = logging.getLogger("mcpmux.listener.stdio")

Write = Callable[[bytes], Awaitable[None]]
READ_CHUNK = 1 << 16


class StdioFront:
    def __init__(self, dispatcher: Dispatcher, reader: asyncio.StreamReader, write: Write) -> None:
        self.dispatcher = dispatcher
        self.gateway = dispatcher.gateway
        self.reader = reader
        self._write = write
        self._lock = asyncio.Lock()
        self.session: ClientSession | None = None
        self._tasks = TaskOwner("stdio-front")
        self.broken = False

    async def send(self, msg: Message) -> None:
        """One message, one line; whole lines only, whatever runs concurrently."""
        if self.broken:
            return
        async with self._lock:
            try:
                await self._write(orjson.dumps(msg) + b"\n")
            except (BrokenPipeError, ConnectionResetError, OSError) as exc:
                log.warning("stdout closed (%s): the client is gone", exc)
                self.broken = True

    async def run(self) -> None:
        """Serve until stdin ends (or the client stops reading); then close the session."""
        try:
            limit = self.gateway.config.limits.max_body_bytes
            async for line in _lines(self.reader, limit):
                if self.broken:
                    break
                if line is None:
                    await self.send(
                        error(
                            None,
                            INVALID_REQUEST,
                            f"message larger than {limit} bytes (limits.max_body_bytes)",
                        )
                    )
                    continue
                await self._receive(line)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await self.dispatcher.close_session(session.id)
        await self._tasks.aclose()

    async def _receive(self, line: bytes) -> None:
        try:
            msg: Any = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            await self.send(error(None, PARSE_ERROR, f"parse error: {exc}"))
            return
        if isinstance(msg, list):
            await self.send(
                error(
                    None,
                    INVALID_REQUEST,
                    "JSON-RPC batches are not supported: send one message per line",
                )
            )
            return
        problem = validate(msg)
        if (
            problem is None
            and "method" in msg
            and "id" in msg
            and (msg["id"] is None or isinstance(msg["id"], bool))
        ):
            problem = '"id" of a request must be a string or an integer (not null or a boolean)'
        if problem:
            rid = msg.get("id") if isinstance(msg, dict) else None
            ok = isinstance(rid, str | int) and not isinstance(rid, bool)
            await self.send(
                error(rid if ok else None, INVALID_REQUEST, f"invalid request: {problem}")
            )
            return
        session = self.session
        if session is None:
            await self._before_initialize(msg)
        elif is_request(msg):
            self._tasks.spawn(self._answer(RequestContext(session, "stdio", emit=self.send), msg),
                              f"request-{msg['method']}")
        elif is_notification(msg):
            await self.dispatcher.notification(RequestContext(session, "stdio"), msg)
        else:
            await self.dispatcher.response(RequestContext(session, "stdio"), msg)

    async def _before_initialize(self, msg: Message) -> None:
        if not is_request(msg):
            return  # notifications (and stray answers) before initialize: nothing to act on
        if msg["method"] == "ping":
            await self.send(result(msg["id"], {}))
        elif msg["method"] != "initialize":
            await self.send(
                error(msg["id"], INVALID_REQUEST, "not initialized: send initialize first")
            )
        else:
            try:
                session, resp = await self.dispatcher.initialize(msg)
            except RPCError as exc:
                await self.send(exc.to_message(msg["id"]))
                return
            self.session = session
            session.stream_opened()  # the pipe is open for the session's whole life: never idle
            self._tasks.spawn(self._pump(session), "outbox")
            await self.send(resp)

    async def _answer(self, ctx: RequestContext, msg: Message) -> None:
        try:
            resp = await self.dispatcher.handle(ctx, msg)
        except Exception:
            log.exception("request %s failed", msg.get("method"))
            resp = error(msg["id"], -32603, "internal gateway error (see the gateway log)")
        await self.send(resp)

    async def _pump(self, session: ClientSession) -> None:
        while True:
            await self.send(await session.outbox.get())


async def _lines(reader: asyncio.StreamReader, limit: int) -> AsyncIterator[bytes | None]:
    """Non-empty lines of at most ``limit`` bytes; None for each longer one (skipped whole)."""
    pending = bytearray()
    over = False
    while chunk := await reader.read(READ_CHUNK):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end]
            start = end + 1
            if over or len(pending) + len(piece) > limit:
                over = False
                pending.clear()
                yield None
                continue
            pending += piece
            line = bytes(pending).strip()
            pending.clear()
            if line:
                yield line
        rest = chunk[start:]
        if not over:
            pending += rest
            if len(pending) > limit:
                over = True
                pending.clear()
    line = bytes(pending).strip()
    if over:
        yield None
    elif line:
        yield line


# -- wiring the process's own stdin/stdout ------------------------------------


def take_stdout() -> BinaryIO:
    """Keep the real stdout for the protocol; point fd 1 (and so every stray print,
    by us or a library) at stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    return out


async def open_stdio(out: BinaryIO) -> tuple[asyncio.StreamReader, Write]:
    """An asyncio reader on stdin and a writer on ``out``; pipes (what MCP clients give
    us) are non-blocking, anything else (a file, a terminal) falls back to a thread."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_CHUNK * 4)
    # Only pipes and sockets go to the loop: uvloop aborts the process (no exception)
    # when given a regular file, e.g. stdout redirected to a log.
    if _is_pipe(sys.stdin.fileno()):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    else:
        _read_in_thread(loop, reader)
    if not _is_pipe(out.fileno()):

        async def write_blocking(data: bytes) -> None:
            await asyncio.to_thread(_write_all, out, data)

        return reader, write_blocking
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)

    async def write(data: bytes) -> None:
        if writer.is_closing():
            raise BrokenPipeError("stdout is closed")
        writer.write(data)
        await writer.drain()

    return reader, write


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = out.write(view)
        view = view[n or 0 :]
    out.flush()


def _read_in_thread(loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader) -> None:
    import threading

    def pump() -> None:
        fd = sys.stdin.fileno()
        try:
            while data := os.read(fd, READ_CHUNK):
                loop.call_soon_threadsafe(reader.feed_data, data)
        except OSError:
            pass
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(reader.feed_eof)

    threading.Thread(target=pump, name="mcpmux-stdin", daemon=True).start()
