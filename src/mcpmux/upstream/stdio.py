"""A target that is a child process speaking newline-delimited JSON-RPC on stdio."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque

import orjson

from ..config import StdioSpec
from ..jsonrpc import Message
from ..redact import redact
from .base import UpstreamError, UpstreamSession
from .process import ChildProcess

log = logging.getLogger("mcpmux.upstream.stdio")

#: Seconds a child gets between SIGTERM and SIGKILL.
TERMINATE_GRACE = 3.0
#: Largest single message line accepted from a child.
LINE_LIMIT = 64 * 1024 * 1024
#: stderr lines kept to explain a failure in lastError.
STDERR_TAIL = 5


class StdioSession(UpstreamSession):
    """One process is one MCP session; the gateway shares it among clients (see docs)."""

    kind = "stdio"

    def __init__(self, target: str, spec: StdioSpec, timeout: float) -> None:
        super().__init__(target, timeout)
        self.spec = spec
        self.proc: ChildProcess | None = None
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
            self.proc = await ChildProcess.start(
                [self.spec.command, *self.spec.args], env, self.spec.cwd, LINE_LIMIT
            )
        except FileNotFoundError as exc:
            missing = self.spec.cwd if exc.filename == self.spec.cwd else self.spec.command
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
        assert self.proc
        stdout = self.proc.stdout
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # line over LINE_LIMIT: the stream is unusable now
                self.lost("message larger than the line limit")
                self._stop_soon()
                return
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("target '%s' wrote non-JSON to stdout: %.200r", self.target, line)
                self.stderr_tail.append(f"(stdout, not JSON) {line[:200].decode('utf-8', 'replace')}")
                continue
            try:
                await self.dispatch(msg, None, len(line))
            except Exception:
                log.exception("target '%s': failed to route a message", self.target)
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
        try:
            proc.stdin.write(orjson.dumps(msg) + b"\n")
            await proc.stdin.drain()
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
