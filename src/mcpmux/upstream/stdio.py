"""A target that is a child process speaking newline-delimited JSON-RPC on stdio."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import Any, Final, cast

import orjson

from ..config import StdioSpec
from ..jsonlines import LineParser
from ..jsonrpc import Message
from ..redact import redact
from ..sse import EventTooLarge
from .base import UpstreamError, UpstreamSession
from .process import ChildProcess

log = logging.getLogger("mcpmux.upstream.stdio")

#: Seconds a child gets between SIGTERM and SIGKILL.
TERMINATE_GRACE: Final = 3.0
#: Largest single message line accepted from a child.
LINE_LIMIT: Final = 64 * 1024 * 1024
#: stderr lines kept to explain a failure in lastError.
STDERR_TAIL: Final = 5
#: Bytes of parsed messages waiting for the reader task: above HIGH the child's stdout is
#: not read until the task is back under LOW, so a flooding child waits, not the gateway's
#: memory grows.
QUEUE_HIGH: Final = 4 * 1024 * 1024
QUEUE_LOW: Final = 1024 * 1024


class StdoutLines(asyncio.Protocol):
    """The child's stdout, split into messages as it arrives.

    An answer to a pending request is handed over right here, in the loop's read
    callback, when nothing read before it is still being routed: no task wakes per
    answer, and the order the child wrote in is kept. Everything else (notifications,
    server requests, answers behind them) is queued, in order, for the session's reader
    task, which may have to wait for a client.
    """

    def __init__(self, session: StdioSession) -> None:
        self.session = session
        self.transport: asyncio.ReadTransport | None = None
        self.parser = LineParser(LINE_LIMIT)
        self.queue: deque[tuple[Any, int]] = deque()
        self.queued = 0
        #: The reader task is routing a message (the queue may be empty meanwhile).
        self.busy = False
        self.paused = False
        self.eof = False
        #: Reading stopped for good (a line over the limit).
        self.dropped = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A read pipe transport (uvloop's does not derive from asyncio.ReadTransport).
        self.transport = cast(asyncio.ReadTransport, transport)

    def data_received(self, data: bytes) -> None:
        if self.dropped:
            return
        try:
            lines = self.parser.feed(data)
        except EventTooLarge:
            self._drop()
            return
        for line in lines:
            try:
                self._message(line)
            except Exception:  # a bug here must not end the stream (the transport would close)
                log.exception("target '%s': failed to read a message", self.session.target)

    def _message(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.session.garbage(line)
            return
        size = len(line)
        if not self.queue and not self.busy and isinstance(msg, dict) and self.session.resolve(msg, size):
            return
        self.queue.append((msg, size))
        self.queued += size
        if self.queued > QUEUE_HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def taken(self, size: int) -> None:
        """The reader task took a message off the queue."""
        self.queued -= size
        if self.paused and self.queued < QUEUE_LOW and not self.dropped and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    async def more(self) -> None:
        """Wait until something is queued or stdout ended."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        await waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None

    def _drop(self) -> None:
        self.dropped = True
        self.queue.clear()
        self._wake()
        self.session.too_long()

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()


class StdioSession(UpstreamSession):
    """One process is one MCP session; the gateway shares it among clients (see docs)."""

    kind = "stdio"

    def __init__(self, target: str, spec: StdioSpec, timeout: float) -> None:
        super().__init__(target, timeout)
        self.spec = spec
        self.proc: ChildProcess | None = None
        self.lines: StdoutLines | None = None
        self._stopping: asyncio.Future[int] | None = None
        self._stop_logged = False
        #: The child's last stderr lines: the usual explanation of why it died.
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)

    @property
    def pid(self) -> int | None:
        """The server command's own pid (what it reports as its pid), not the reaper
        shim's that the gateway started it under (``proc.pid``, its process group)."""
        return self.proc.command_pid if self.proc else None

    async def _handshake(self) -> None:
        await super()._handshake()
        if self.proc is not None:
            # Under the reaper shim: learn the command's own pid while it surely runs,
            # so status and the stop log name it even after it is gone.
            _ = self.proc.command_pid

    async def _connect(self) -> None:
        env = dict(os.environ) if self.spec.inherit_env else {"PATH": os.environ.get("PATH", "")}
        env.update(self.spec.env)
        try:
            lines = self.lines = StdoutLines(self)
            self.proc = await ChildProcess.start(
                [self.spec.command, *self.spec.args], env, self.spec.cwd, lambda: lines
            )
        except FileNotFoundError as absent:
            missing = self.spec.cwd if absent.filename == self.spec.cwd else self.spec.command
            what = "working directory not found" if missing == self.spec.cwd else "command not found"
            raise UpstreamError(self.target, f"{what}: {missing}") from None
        except PermissionError:
            raise UpstreamError(self.target, f"command not executable: {self.spec.command}") from None
        except NotADirectoryError:
            raise UpstreamError(self.target, f"working directory invalid: {self.spec.cwd}") from None
        except OSError as exc:
            raise UpstreamError(self.target, f"cannot start {self.spec.command}: {exc}") from None
        log.info("target '%s': started pid %d%s: %s", self.target, self.proc.pid,
                 " (reaper shim)" if self.proc.reaped else "", self.spec.command)
        self._tasks.spawn(self._read_stdout(), "stdout")
        self._tasks.spawn(self._read_stderr(), "stderr")

    async def _read_stdout(self) -> None:
        """Route what :class:`StdoutLines` queued, in order, then handle the end of stdout."""
        lines = self.lines
        assert lines is not None and self.proc is not None
        queue = lines.queue
        while True:
            if queue:
                msg, size = queue.popleft()
                lines.taken(size)
                lines.busy = True
                try:
                    await self.dispatch(msg, None, size)
                except Exception:
                    log.exception("target '%s': failed to route a message", self.target)
                lines.busy = False
            elif lines.dropped:
                return
            elif lines.eof:
                break
            else:
                await lines.more()
        # stdout closed: the session is over whether or not the process lingers.
        try:
            code: int | None = await asyncio.wait_for(self.proc.wait(), 1.0)
        except TimeoutError:
            code = None
        reason = "closed its stdout" if code is None else f"process exited with code {code}"
        if self.stderr_tail:
            reason += f"; last stderr: {self.stderr_tail[-1]}"
        self.lost(reason)
        self._stop_soon()

    def garbage(self, line: bytes) -> None:
        log.warning("target '%s' wrote non-JSON to stdout: %.200r", self.target, line)
        self.stderr_tail.append(f"(stdout, not JSON) {line[:200].decode('utf-8', 'replace')}")

    def too_long(self) -> None:
        """A line over LINE_LIMIT: the stream is unusable now."""
        self.lost("message larger than the line limit")
        self._stop_soon()

    def _stop_soon(self) -> None:
        """A process whose stdout is unusable serves nobody: stop it now rather than when
        its owner next looks (a capability-set or client process may have no one watching).
        The owner's aclose waits for this same stop."""
        if self.proc is not None and self._stopping is None:
            self._stopping = asyncio.ensure_future(self.proc.stop(TERMINATE_GRACE))

    async def _read_stderr(self) -> None:
        assert self.proc
        child = logging.getLogger(f"mcpmux.target.{self.target}")
        while line := await self.proc.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(redact(text)[:300])
            child.info("%s", text)

    async def _send(self, msg: Message) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise UpstreamError(self.target, "process is not running")
        stdin = proc.stdin
        try:
            stdin.write(orjson.dumps(msg) + b"\n")
            # Mostly the pipe took it all: no coroutine to wait on a drain that is done.
            if stdin.transport.get_write_buffer_size() or stdin.transport.is_closing():
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.lost("process closed its stdin")
            raise UpstreamError(self.target, "process closed its stdin") from None

    async def _disconnect(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self._stop_soon()
        assert self._stopping is not None
        # Shielded and shared: a cancelled caller does not abort the stop, and a second
        # caller (a shutdown racing a removal) waits until the child is really gone.
        code = await asyncio.shield(self._stopping)
        if not self._stop_logged:
            self._stop_logged = True
            log.info("target '%s': process %d stopped (code %s)", self.target, proc.command_pid, code)
