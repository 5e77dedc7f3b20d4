"""What every listener (MCP and admin port) refuses before the application sees it.

Two layers, both cheap on the hot path:

* :class:`GuardedHttpTools`, uvicorn's httptools protocol with limits the parser does
  not have: it buffers a request's headers without bound (four requests with 100 MB
  headers took the gateway from 56 MB to 465 MB), waits forever for headers that come
  a byte at a time (slowloris) or never (20,000 half-open connections exhausted file
  descriptors and new clients were reset, with nothing in the log), and accepts any
  number of connections. Here: bytes of an unfinished request head are counted per
  read (one addition per ``data_received``) and past ``limits.max_header_bytes`` the
  client gets 431 and the connection is closed; a request head must be complete within
  ``limits.header_timeout`` seconds of the connection or of its first byte (else 408
  and close); past ``limits.max_connections`` open connections a new one gets 503 at
  once and is closed, and that is logged (at most one line per 10 s, with a count).
* :class:`HostGuard`, an ASGI wrapper: the ``Host`` header must name this server
  (DNS rebinding: a web page whose domain resolves to 127.0.0.1 must not reach a
  loopback gateway), and the exact header size is checked (the protocol's count is
  per read, so it is exact only to within one read).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("mcpmux.listener.guard")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_ANY_ADDRESS = ("0.0.0.0", "::", "")


def _head_response(status: int, reason: str, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class _RateLimitedLog:
    """One warning per ``every`` seconds, saying how many events it stands for."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last = -every
        self.count = 0

    def __call__(self, message: str, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            log.warning(message + " (%d time(s) since the last report)", *args, self.count)
            self.last, self.count = now, 0


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size/time and connection limits.

    Subclassed per listener by :func:`guarded_protocol` with the limits as class
    attributes (uvicorn builds protocols from a class and its own config).
    """

    max_header_bytes = 64 * 1024
    header_timeout = 10.0
    max_connections = 1000
    refused_log = _RateLimitedLog()

    _head_bytes = 0
    _in_head = False
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.refused_log("connection limit reached (limits.max_connections = %d): new connections "
                             "get 503", self.max_connections)
            self._refuse(503, "Service Unavailable",
                         f"too many connections (limits.max_connections = {self.max_connections}); retry later")
            return
        self._start_head()

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "Request Timeout",
                         f"request headers not received within {self.header_timeout:g} s "
                         "(limits.header_timeout)")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._end_head()
        if not self.transport.is_closing():
            self.transport.write(_head_response(status, reason, message))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Still inside a request head after this read: count it (the parser keeps it).
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large",
                             f"request headers larger than {self.max_header_bytes} bytes "
                             "(limits.max_header_bytes)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head()

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)


def guarded_protocol(max_header_bytes: int, header_timeout: float, max_connections: int) -> type[GuardedHttpTools]:
    """A protocol class for one listener, with these limits."""
    return type("GuardedHttpTools", (GuardedHttpTools,), {
        "max_header_bytes": max_header_bytes,
        "header_timeout": header_timeout,
        "max_connections": max_connections,
        "refused_log": _RateLimitedLog(),
    })


def _hostname(host: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:80`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostGuard:
    """ASGI wrapper: refuse requests whose ``Host`` names another server (403), and
    requests whose headers exceed ``max_header_bytes`` (431).

    Accepted hosts: loopback names when ``listen_host`` is a loopback address, the
    listen host itself, and ``allowed`` (entries with or without a port; ``"*"``: any).
    Bound to ``0.0.0.0``/``::`` with nothing in ``allowed``, any host is accepted (the
    gateway cannot know the names it is reached by; list them to enforce the check).
    A request without ``Host`` (HTTP/1.0 probes) passes: browsers always send it.
    """

    def __init__(self, app: Any, listen_host: str, allowed: Iterable[str], max_header_bytes: int,
                 jsonrpc: bool = False) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.jsonrpc = jsonrpc
        allowed = [a.strip().lower() for a in allowed]
        self.any_host = "*" in allowed or (listen_host in _ANY_ADDRESS and not allowed)
        names = set(allowed)
        names.add(listen_host.lower())
        if ":" in listen_host and not listen_host.startswith("["):
            names.add(f"[{listen_host.lower()}]")
        if _is_loopback(listen_host):
            names |= LOOPBACK_NAMES
        self.names = frozenset(names)

    def allows(self, host: str) -> bool:
        host = host.strip().lower()
        return self.any_host or host in self.names or _hostname(host) in self.names

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = 0
        host = None
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name == b"host":
                host = value.decode("latin-1")
        if size > self.max_header_bytes:
            await self._refuse(send, 431, f"request headers larger than {self.max_header_bytes} bytes "
                                          "(limits.max_header_bytes)")
            return
        if host is not None and not self.allows(host):
            await self._refuse(send, 403, f"Host {host[:100]!r} is not allowed (DNS-rebinding protection); "
                                          "add it to allowed_hosts in the config")
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Any, status: int, message: str) -> None:
        if self.jsonrpc:
            body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}})
        else:
            body = orjson.dumps({"error": message})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")
