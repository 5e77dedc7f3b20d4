"""What every listener (MCP and admin port) refuses before the application sees it.

Two layers, both cheap on the hot path:

* :class:`~mcpmux.listener.h1.H1Protocol` (listener/h1.py), the HTTP/1.1 protocol,
  limits what reaches the parser: header bytes and time, connections, unread body;
  its refusals are written with :func:`head_response` and logged through
  :class:`RateLimitedLog`.
* :class:`HostGuard`, an ASGI wrapper: the ``Host`` header must name this server
  (DNS rebinding: a web page whose domain resolves to 127.0.0.1 must not reach a
  loopback gateway), and the exact header size is checked (the protocol's count is
  per read, so it is exact only to within one read).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any, Final

import orjson

log = logging.getLogger("mcpmux.listener.guard")

LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_ANY_ADDRESS: Final[tuple[str, ...]] = ("0.0.0.0", "::", "")
#: Distinct Host headers whose verdict is remembered.
_SEEN: Final = 256


def head_response(status: int, reason: str, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class RateLimitedLog:
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


def _hostname(host: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:80`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


#: Scope key of the headers as ``{name: value}`` strings (names lowercased, values
#: stripped; a repeated name keeps its last value), decoded once while parsing by the
#: gateway's own protocol (``h1.py``), which also kept the head within max_header_bytes.
HEADERS: Final = "mcpmux.headers"


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
        #: Host header -> allowed, for the few values a listener sees again and again.
        self._seen: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            name = host.strip().lower()
            known = self.any_host or name in self.names or _hostname(name) in self.names
            if len(self._seen) < _SEEN:  # client input: bounded, first come
                self._seen[host] = known
        return known

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine itself: it returns the app's (or the refusal's), so a call's
        # await chain has no level for the guard (each level is resumed on every wake-up).
        if scope["type"] != "http":
            return self.app(scope, receive, send)  # type: ignore[no-any-return]
        fields = scope.get(HEADERS)
        if fields is not None:  # the gateway's own protocol: it enforced max_header_bytes
            host = fields.get("host")
        else:
            size = 0
            host = None
            for name, value in scope["headers"]:
                size += len(name) + len(value) + 4
                if name == b"host":
                    host = value.decode("latin-1")
            if size > self.max_header_bytes:
                return self._refuse(send, 431, f"request headers larger than {self.max_header_bytes} bytes "
                                               "(limits.max_header_bytes)")
        if host is not None and not self.allows(host):
            return self._refuse(send, 403, f"Host {host[:100]!r} is not allowed (DNS-rebinding protection); "
                                           "add it to allowed_hosts in the config")
        return self.app(scope, receive, send)  # type: ignore[no-any-return]

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
