"""``mcpmux run --workers N``: N gateway processes on one port, sharing one state store.

The supervisor binds the MCP and admin sockets once and starts N ordinary
``mcpmux run`` processes that inherit them (``--worker-fds``): the kernel hands each
new connection to whichever worker accepts first. Workers are replicas in every
other way: they share sessions through ``state.redis_url`` (required: without it a
session opened on one worker would be unknown to the next), each runs its own stdio
targets, and a worker that dies is started again while the others serve its sessions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .config import GatewayConfig

log = logging.getLogger("mcpmux.workers")

#: Seconds before a worker that exited is started again.
RESTART_DELAY = 1.0


def check(config: GatewayConfig, workers: int) -> str | None:
    """Why ``workers`` cannot run with this config (None: it can)."""
    if workers < 1:
        return "--workers must be at least 1"
    if workers > 1 and config.state is None:
        return ("--workers N > 1 needs shared session state: set state.redis_url in the config "
                "(each worker is a replica; see docs/scaling.md)")
    return None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def inherited(fds: str) -> dict[str, socket.socket]:
    """The sockets a worker got from its supervisor: ``MCP_FD[,ADMIN_FD]``."""
    names = ("mcp", "admin")
    return {name: socket.socket(fileno=int(fd)) for name, fd in zip(names, fds.split(","), strict=False) if fd}


def supervise(config: GatewayConfig, path: str, workers: int, options: list[str], ready_file: str | None) -> int:
    """Run ``workers`` worker processes (each ``mcpmux run -c path`` with ``options``)
    until SIGTERM/SIGINT; returns the exit status."""
    mcp = bind(config.listen.host, config.listen.port)
    admin = bind(config.admin.host, config.admin.port) if config.admin.enabled else None
    fds = f"{mcp.fileno()}" + (f",{admin.fileno()}" if admin is not None else "")
    keep = (mcp.fileno(), *((admin.fileno(),) if admin is not None else ()))
    run_dir = Path(ready_file).parent if ready_file else Path.cwd()
    stopping = False

    def start(i: int) -> tuple[subprocess.Popen[bytes], Path]:
        ready = run_dir / f".mcpmux-worker-{os.getpid()}-{i}.json"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "mcpmux", "run", "-c", path, *options,
                "--worker-fds", fds, "--ready-file", str(ready)]
        return subprocess.Popen(argv, pass_fds=keep), ready

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs = [start(i) for i in range(workers)]
    announced = False
    try:
        while not stopping:
            for i, (proc, _) in enumerate(procs):
                if proc.poll() is not None and not stopping:
                    log.warning("worker %d (pid %d) exited with %s; starting it again", i, proc.pid, proc.returncode)
                    time.sleep(RESTART_DELAY)
                    procs[i] = start(i)
            if not announced and all(ready.exists() for _, ready in procs):
                announced = True
                info = json.loads(procs[0][1].read_text())
                info["pid"] = os.getpid()
                info["workers"] = [p.pid for p, _ in procs]
                print(f"mcpmux: {workers} workers on {info['mcp']}", flush=True)
                if ready_file:
                    tmp = Path(f"{ready_file}.tmp")
                    tmp.write_text(json.dumps(info))
                    os.replace(tmp, ready_file)
            time.sleep(0.1)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc, ready in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            ready.unlink(missing_ok=True)
        mcp.close()
        if admin is not None:
            admin.close()
    return 0
