"""A target that is a child process speaking newline-delimited JSON-RPC on stdio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import orjson

from ..config import StdioSpec
from ..jsonrpc import Message
from .base import UpstreamError, UpstreamSession

log = logging.getLogger("mcpmux.upstream.stdio")

#: Seconds a child gets between SIGTERM and SIGKILL.
TERMINATE_GRACE = 3.0
#: Largest single message line accepted from a child.
LINE_LIMIT = 64 * 1024 * 1024


class StdioSession(UpstreamSession):
    """One process is one MCP session; the gateway shares it among clients (see docs)."""

    kind = "stdio"

    def __init__(self, target: str, spec: StdioSpec, timeout: float) -> None:
        super().__init__(target, timeout)
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def _connect(self) -> None:
        env = dict(os.environ) if self.spec.inherit_env else {"PATH": os.environ.get("PATH", "")}
        env.update(self.spec.env)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.spec.command,
                *self.spec.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.spec.cwd,
                env=env,
                limit=LINE_LIMIT,
                start_new_session=True,  # its own process group: we reap its children too
            )
        except FileNotFoundError:
            raise UpstreamError(self.target, f"command not found: {self.spec.command}") from None
        except PermissionError:
            raise UpstreamError(self.target, f"command not executable: {self.spec.command}") from None
        except NotADirectoryError:
            raise UpstreamError(self.target, f"working directory invalid: {self.spec.cwd}") from None
        log.info("target '%s': started pid %d: %s", self.target, self.proc.pid, self.spec.command)
        self._tasks.spawn(self._read_stdout(), "stdout")
        self._tasks.spawn(self._read_stderr(), "stderr")

    async def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        stdout = self.proc.stdout
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # line over LINE_LIMIT: the stream is unusable now
                self.lost("message larger than the line limit")
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
                continue
            try:
                await self.dispatch(msg)
            except Exception:
                log.exception("target '%s': failed to route a message", self.target)
        code = await self.proc.wait()
        self.lost(f"process exited with code {code}")

    async def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        child = logging.getLogger(f"mcpmux.target.{self.target}")
        while line := await self.proc.stderr.readline():
            child.info("%s", line.decode("utf-8", "replace").rstrip())

    async def _send(self, msg: Message) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.returncode is not None:
            raise UpstreamError(self.target, "process is not running")
        try:
            self.proc.stdin.write(orjson.dumps(msg) + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.lost("process closed its stdin")
            raise UpstreamError(self.target, "process closed its stdin") from None

    async def _disconnect(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), TERMINATE_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        log.info("target '%s': process %d stopped", self.target, proc.pid)
