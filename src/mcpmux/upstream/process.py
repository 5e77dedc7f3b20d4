"""A child process wired into asyncio with exactly three inherited descriptors.

``asyncio.create_subprocess_exec`` under uvloop leaves duplicates of the
child's stdio pipes (and a loop-internal pipe) open inside the child, so a
child that closes its stdout never produces EOF and closing its stdin never
tells it to stop. Here ``subprocess.Popen(close_fds=True)`` starts the child,
the pipes are attached to the running loop, and exit is observed through a
pidfd, so behaviour is the same on uvloop and the default loop.

On Linux the command runs under ``reaper.py`` (see there): a shim that kills the
command and everything it started when the gateway dies, even by SIGKILL. ``pid`` is
then the shim's (the process group's); ``command_pid`` the command's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

#: The shim, run by path with ``-I -S``: only the standard library is imported.
REAPER = Path(__file__).with_name("reaper.py")
#: How long the shim may take to kill everything after it is told to.
SHIM_GRACE = 5.0
USE_REAPER = sys.platform.startswith("linux") and REAPER.is_file()


def _check_command(command: str, env: Mapping[str, str], cwd: str | None) -> None:
    """Raise what Popen would for a missing or non-executable command: under the shim,
    Popen starts Python, and the operator must still read "command not found: X"."""
    if cwd is not None and not os.path.isdir(cwd):
        raise FileNotFoundError(2, "No such file or directory", cwd)
    if os.sep in command:
        path = os.path.join(cwd or ".", command)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", command)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise PermissionError(13, "Permission denied", command)
        return
    if shutil.which(command, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(2, "No such file or directory", command)


def with_reaper(argv: Sequence[str]) -> list[str]:
    """``argv`` run under the reaper shim, whose parent is this process."""
    return [sys.executable, "-I", "-S", str(REAPER), "--parent", str(os.getpid()), "--", *argv]


class ChildProcess:
    def __init__(self, popen: subprocess.Popen[bytes], reaped: bool = False) -> None:
        self.popen = popen
        #: The process started (the shim under a reaper) and its process group's id.
        self.pid = popen.pid
        self.reaped = reaped
        self._command_pid: int | None = None if reaped else popen.pid
        self.stderr = asyncio.StreamReader(limit=2**20)
        self.stdin: asyncio.StreamWriter | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        stdout: Callable[[], asyncio.Protocol],
    ) -> ChildProcess:
        """Start ``argv``; its stdout is read by the protocol ``stdout`` makes (the caller
        splits it into messages itself), its stderr by :attr:`stderr`."""
        reaped = USE_REAPER
        if reaped:
            _check_command(argv[0], env, cwd)
            argv = with_reaper(argv)
        popen = subprocess.Popen(  # noqa: ASYNC220 - fork+exec is fast; see the module docstring
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            close_fds=True,
            start_new_session=True,  # its own process group: we can stop its children too
            bufsize=0,
        )
        child = cls(popen, reaped)
        loop = asyncio.get_running_loop()
        assert popen.stdin and popen.stdout and popen.stderr
        err = child.stderr
        try:
            await loop.connect_read_pipe(stdout, popen.stdout)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(err), popen.stderr)
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, popen.stdin
            )
        except BaseException:
            # Cancelled (or failed) between spawn and wiring: nobody else knows this
            # child, so it is killed and reaped here, never left running.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
            raise
        child.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        child._watch_exit(loop)
        return child

    def _watch_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd: poll instead
            loop.create_task(self._poll_exit())
            return

        def reap() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if not self._exited.done():
                self._exited.set_result(self.popen.wait())

        loop.add_reader(fd, reap)

    async def _poll_exit(self) -> None:
        while (code := self.popen.poll()) is None:
            await asyncio.sleep(0.1)
        if not self._exited.done():
            self._exited.set_result(code)

    @property
    def command_pid(self) -> int:
        """The command's own pid (under the shim: the shim's child), else the shim's."""
        if self._command_pid is None:
            try:
                with open(f"/proc/{self.pid}/task/{self.pid}/children") as fh:
                    kids = fh.read().split()
            except OSError:
                kids = []
            if not kids:
                return self.pid  # not forked yet, or gone
            self._command_pid = int(kids[0])
        return self._command_pid

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, grace: float) -> int:
        """Close stdin, SIGTERM the group, SIGKILL after ``grace``; always reaps."""
        if self.stdin is not None:
            with contextlib.suppress(Exception):
                self.stdin.close()
        if self.returncode is None:
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), grace)
            except TimeoutError:
                if self.reaped:
                    # The shim kills every descendant, also those that left the group
                    # (setsid): a SIGKILL of the group would kill the shim first.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(self.pid, signal.SIGUSR1)
                    # It is our own code and exits as soon as all is dead; a group
                    # SIGKILL before then would orphan what escaped the group (CI saw
                    # a 1 s wait run out on a loaded machine).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wait(), SHIM_GRACE)
                self.signal_group(signal.SIGKILL)
        code = await self.wait()
        self.signal_group(signal.SIGKILL)  # grandchildren left in the group
        return code
