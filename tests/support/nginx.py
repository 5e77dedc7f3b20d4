"""nginx as the load balancer in front of gateway replicas, on a free loopback port.

Round robin, no stickiness, ``proxy_buffering off`` (SSE goes through as it is
written), HTTP/1.1 keep-alive to the replicas. The same settings docs/scaling.md
gives operators.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CONFIG = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream mcpmux {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mcpmux;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.fail("nginx is not installed: run scripts/setup.sh (it installs nginx)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_nginx(backends: list[str], workdir: Path) -> Iterator[str]:
    """Balance over ``backends`` (``host:port``); yields the base URL."""
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"        server {b} max_fails=1 fail_timeout=30s;" for b in backends)
    conf = workdir / "nginx.conf"
    conf.write_text(CONFIG.format(dir=workdir, port=port, servers=servers))
    proc = subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(workdir), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "stderr.log", "wb"),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nginx exited: {(workdir / 'stderr.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                pytest.fail("nginx did not listen in time")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
