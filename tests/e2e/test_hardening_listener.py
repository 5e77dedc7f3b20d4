"""Hostile clients against both listeners (MCP and admin port): huge and slow headers,
too many connections, and a Host that is not ours (DNS rebinding)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.gateway import Gateway, peak_rss_kb, run_gateway

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
MiB = 1024 * 1024
RSS_BOUND_KB = 300 * 1024


def hostport(url: str) -> tuple[str, int]:
    u = httpx.URL(url)
    assert u.host and u.port
    return u.host, u.port




def read_answer(sock: socket.socket, timeout: float = 15) -> bytes:
    sock.settimeout(timeout)
    out = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.fixture
def gw(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    config: dict[str, Any] = {"targets": [CLOCK], **getattr(request, "param", {})}
    with run_gateway(config, tmp_path) as g:
        yield g


def test_huge_headers_get_431_and_memory_stays_bounded(gw: Gateway) -> None:
    for url in (gw.mcp_url, gw.admin_url) * 2:
        with socket.create_connection(hostport(url)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            chunk = b"a" * MiB
            sent = 0
            with contextlib.suppress(OSError):
                while sent < 100 * MiB:  # stops when the gateway hangs up
                    s.sendall(chunk)
                    sent += len(chunk)
            answer = read_answer(s)
        assert answer.startswith(b"HTTP/1.1 431"), (url, answer[:200], sent)
        assert b"max_header_bytes" in answer
        assert sent < 100 * MiB, "the whole 100 MB header was accepted"
    peak = peak_rss_kb(gw.proc.pid)
    assert peak < RSS_BOUND_KB, peak
    # Headers just over the limit, in one piece: the exact check (after parsing) says 431 too.
    r = httpx.get(f"{gw.mcp_url}", headers={"X-Big": "b" * (65 * 1024)}, timeout=10)
    assert r.status_code == 431, r.text
    assert httpx.get(f"{gw.admin_url}/healthz", timeout=5).status_code == 200
    print(f"4 x 100 MB headers: 431 each; gateway peak RSS {peak // 1024} MB")


@pytest.mark.parametrize("gw", [{"limits": {"header_timeout": 2}}], indirect=True)
def test_slow_and_missing_headers_are_cut(gw: Gateway) -> None:
    host, port = hostport(gw.mcp_url)
    with socket.create_connection((host, port)) as slow, socket.create_connection((host, port)) as silent:
        started = time.monotonic()
        slow.sendall(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow.settimeout(0.5)
        answer = b""
        while time.monotonic() - started < 15:
            try:
                slow.sendall(b"X")  # one byte of a header line every 0.5 s: never ends
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
            except TimeoutError:
                continue
            except OSError:
                break
        cut_after = time.monotonic() - started
        silent_answer = read_answer(silent, 15)
        silent_after = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer[:200]
    assert 1.5 < cut_after < 6, cut_after
    assert silent_answer.startswith(b"HTTP/1.1 408") and silent_after < 6, (silent_answer[:100], silent_after)
    assert httpx.get(f"{gw.admin_url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("gw", [{"limits": {"keepalive_timeout": 1}}], indirect=True)
def test_idle_keep_alive_connections_are_closed(gw: Gateway) -> None:
    with socket.create_connection(hostport(gw.admin_url)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(5)
        answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(body) < length:  # headers and body may come in two writes
            chunk = s.recv(65536)
            assert chunk, "closed mid-answer"
            body += chunk
        started = time.monotonic()
        assert read_answer(s, 10) == b""  # closed by the server
        assert time.monotonic() - started < 4


@pytest.mark.parametrize("gw", [{"limits": {"max_connections": 20, "header_timeout": 60}}], indirect=True)
def test_over_the_connection_limit_a_clear_503_then_service_again(gw: Gateway) -> None:
    addr = hostport(gw.mcp_url)
    held = [socket.create_connection(addr) for _ in range(20)]
    try:
        time.sleep(0.3)
        with socket.create_connection(addr) as extra:
            answer = read_answer(extra, 10)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"max_connections" in answer
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while "connection limit reached" not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.log().count("connection limit reached") == 1, gw.log()[-2000:]
    time.sleep(0.3)
    r = httpx.post(gw.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                   headers={"Accept": "application/json, text/event-stream"}, timeout=10)
    assert r.status_code != 503, r.text


def test_foreign_host_is_refused_on_both_ports(gw: Gateway) -> None:
    for url in (gw.mcp_url, f"{gw.admin_url}/healthz"):
        _, port = hostport(url)
        bad = httpx.get(url, headers={"Host": "evil.example"}, timeout=5)
        assert bad.status_code == 403, (url, bad.status_code, bad.text)
        assert "evil.example" in bad.text and "allowed_hosts" in bad.text
        for good_host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1"):
            ok = httpx.get(url, headers={"Host": good_host}, timeout=5)
            assert ok.status_code != 403, (url, good_host, ok.text)


@pytest.mark.parametrize("gw", [{"allowed_hosts": ["mcp.internal"]}], indirect=True)
def test_allowed_hosts_adds_names(gw: Gateway) -> None:
    url = f"{gw.admin_url}/healthz"
    assert httpx.get(url, headers={"Host": "mcp.internal:8080"}, timeout=5).status_code == 200
    assert httpx.get(url, headers={"Host": "evil.example"}, timeout=5).status_code == 403
