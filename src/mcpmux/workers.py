"""``mcpmux run --workers N``: N gateway processes on one port, sharing one state store.

Each worker binds its own listening socket with ``SO_REUSEPORT`` on the same port
(``--worker-ports``), so the kernel spreads new connections across the workers by a
hash of the connection. (One accept socket shared by every worker would let the
worker that wakes first take most of them, keep-alive connections included.) The
supervisor first reserves the port: with port 0 it binds a ``SO_REUSEPORT`` socket
without listening (it gets no connections) and tells the workers the port it got;
holding it keeps the port theirs while a worker restarts. Workers are replicas in every
other way: they share sessions through ``state.redis_url`` (required: without it a
session opened on one worker would be unknown to the next), each runs its own stdio
targets, and a worker that dies is started again while the others serve its sessions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .config import GatewayConfig
from .observability.workers import ENV as WORKER_DIR

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
    if workers > 1 and config.a2a is not None:
        return "--workers N > 1 does not serve the A2A listener yet: run one process with 'a2a'"
    return None


def bind(host: str, port: int, listen: bool = True) -> socket.socket:
    """A socket on ``host:port`` that other sockets of this user may bind too; the
    kernel balances connections among the listening ones."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    return sock


def own_sockets(config: GatewayConfig, ports: str) -> dict[str, socket.socket]:
    """A worker's listening sockets on the ports its supervisor reserved: ``MCP[,ADMIN]``."""
    given = ports.split(",")
    out = {"mcp": bind(config.listen.host, int(given[0]))}
    if len(given) > 1 and given[1]:
        out["admin"] = bind(config.admin.host, int(given[1]))
    return out


def supervise(config: GatewayConfig, path: str, workers: int, options: list[str], ready_file: str | None) -> int:
    """Run ``workers`` worker processes (each ``mcpmux run -c path`` with ``options``)
    until SIGTERM/SIGINT; returns the exit status."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print("mcpmux: --workers needs SO_REUSEPORT (Linux, BSD, macOS)", file=sys.stderr)
        return 2
    try:
        mcp = bind(config.listen.host, config.listen.port, listen=False)
        admin = bind(config.admin.host, config.admin.port, listen=False) if config.admin.enabled else None
    except OSError as exc:
        print(f"mcpmux: cannot bind the listen port: {exc}", file=sys.stderr)
        return 2
    ports = f"{mcp.getsockname()[1]}" + (f",{admin.getsockname()[1]}" if admin is not None else "")
    run_dir = Path(ready_file).parent if ready_file else Path.cwd()
    # Where each worker serves its metrics to the others (observability/workers.py).
    env = {**os.environ, WORKER_DIR: tempfile.mkdtemp(prefix="mcpmux-workers-")}
    stopping = False

    def start(i: int) -> tuple[subprocess.Popen[bytes], Path]:
        ready = run_dir / f".mcpmux-worker-{os.getpid()}-{i}.json"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "mcpmux", "run", "-c", path, *options,
                "--worker-ports", ports, "--ready-file", str(ready)]
        return subprocess.Popen(argv, env=env), ready

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
        shutil.rmtree(env[WORKER_DIR], ignore_errors=True)
    return 0
