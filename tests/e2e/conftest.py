"""Session-scoped third-party peers for the end-to-end tests.

Peers are started once per test session on free loopback ports and stopped (with
their whole process group) at the end, so no test leaks a process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.conformance import server_everything_cmd

READY_LINE = "MCP Streamable HTTP Server listening on port"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpPeer:
    """A server-everything process in streamableHttp mode."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_everything_http(log_path: Path, port: int | None = None, timeout: float = 30) -> HttpPeer:
    """Start ``server-everything streamableHttp`` on ``port`` and wait until it listens.

    Output goes to a file (the server logs every request to stdout: an unread pipe
    would block it). It gets its own process group so stopping it reaps everything.
    """
    port = port or free_port()
    env = {**os.environ, "PORT": str(port)}
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            server_everything_cmd("streamableHttp"),
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    peer = HttpPeer(port, proc, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server-everything exited with {proc.returncode}:\n{peer.log()}")
        if f"{READY_LINE} {port}" in peer.log():
            break
        if time.monotonic() > deadline:
            stop_peer(peer)
            raise RuntimeError(f"server-everything did not start within {timeout}s:\n{peer.log()}")
        time.sleep(0.05)
    # The log line comes from the listen callback; make sure the socket answers.
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(peer.url, timeout=5)
    return peer


def stop_peer(peer: HttpPeer) -> None:
    proc = peer.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def everything_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpPeer]:
    """One shared server-everything (streamableHttp) for the whole test session."""
    peer = start_everything_http(tmp_path_factory.mktemp("everything-http") / "peer.log")
    try:
        yield peer
    finally:
        stop_peer(peer)
