"""Start the single-era SDK servers of ``tests/peers/era_servers.py`` as subprocesses."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.conformance import peers_dir
from tests.support.gateway import stop_process


@contextmanager
def era_server(
    era: str,
    log_path: Path,
    *,
    ttl_ms: int | None = None,
    cache_scope: str = "private",
    startup_timeout: float = 30,
) -> Iterator[str]:
    """Run a ``modern`` (2026-07-28 only) or ``handshake`` (legacy only) server on a free
    port; yield its ``/mcp`` URL; stop it on exit. Its stderr goes to ``log_path``."""
    argv = [sys.executable, str(peers_dir() / "era_servers.py"), era, "--port", "0"]
    if ttl_ms is not None:
        argv += ["--ttl-ms", str(ttl_ms), "--cache-scope", cache_scope]
    with log_path.open("ab") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert proc.stdout is not None
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + startup_timeout
            while not line.startswith(b"LISTENING "):
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    raise RuntimeError(
                        f"{era} server did not start (exit {proc.poll()}):\n{log_path.read_text()}"
                    )
                if sel.select(left):
                    line = proc.stdout.readline()
        yield line.split()[1].decode()
    finally:
        stop_process(proc, grace=5)
        if proc.stdout is not None:
            proc.stdout.close()
