"""The A2A listener: ``/{agent}/.well-known/agent-card.json`` serves the agent's card
rewritten to the gateway; anything else under ``/{agent}/`` is forwarded to the agent
as it is (JSON-RPC and HTTP+JSON alike), its answer relayed as it arrives, so an SSE
stream reaches the client event by event.

With ``auth`` configured, every request (the card too) needs a valid token, checked
as on the MCP listener (same 401/403/503 answers, RFC 9728 metadata served here as
well), and the authorization rules decide with ``a2a.agent`` and ``a2a.method``; a
refused request reaches no agent. The per-principal rate limits are charged here too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from yarl import URL

from .. import __version__
from ..listener.auth import ResourceServer
from ..policy.auth import Principal
from .agents import Agent, AgentError, Agents, connect_reason, read_limited
from .card import CARD_PATH, rewrite_card
from .guard import PolicyGuard

log = logging.getLogger("mcpmux.a2a")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Request headers a client's call carries to the agent (configured headers are added;
#: the client's own credentials are not passed on, see docs/a2a.md).
_FORWARDED = {"content-type", "accept", "a2a-version", "a2a-extensions", "x-a2a-extensions",
              "last-event-id", "accept-language"}
#: Response headers relayed back.
_RELAYED = {"content-type", "a2a-version", "a2a-extensions", "x-a2a-extensions", "cache-control", "etag"}


class _ClientGone(Exception):
    """The client left before its request body arrived: nothing is forwarded."""


class A2aProxy:
    """The ASGI app of the A2A listener."""

    def __init__(self, agents: Callable[[], Agents], max_body: Callable[[], int],
                 max_response: Callable[[], int], auth: ResourceServer | None = None,
                 guard: PolicyGuard | None = None) -> None:
        self._agents = agents
        self._max_body = max_body
        self._max_response = max_response
        self._auth = auth
        self._guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "/")
        principal = None
        if self._auth is not None:
            headers = dict(_headers(scope))
            if path in self._auth.metadata_paths:
                await self._auth.metadata(scope, headers, send)
                return
            principal = await self._auth.authenticate(scope, headers, send)
            if principal is None:
                return  # refused, answered
        wait = self._guard.throttle(principal) if self._guard is not None else None
        if wait is not None:
            await _json(send, 429, {"error": {"code": "rate_limited",
                                              "message": f"rate limit reached; retry in {wait:.1f} s"}},
                        [(b"retry-after", str(max(1, round(wait))).encode())])
            return
        name, _, rest = path.lstrip("/").partition("/")
        registry = self._agents()
        agent = registry.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(registry.agents)) or "none"
            await _json(send, 404, {"error": {"code": "unknown_agent",
                                              "message": f"no agent named {name!r} (agents: {known})"}})
            return
        if any(part in (".", "..") for part in rest.split("/")):
            # Resolved upstream, these would leave the agent's base path with its headers.
            await _json(send, 400, {"error": {"code": "bad_path", "message": "'.' and '..' segments are refused"}})
            return
        try:
            if "/" + rest == CARD_PATH and scope["method"] in ("GET", "HEAD"):
                if self._rules_on() and await self._refused(principal, agent, CARD_METHOD, send):
                    return
                await self._card(agent, registry, scope, send)
            else:
                await self._forward(agent, registry, rest, scope, receive, send, principal)
        except _ClientGone:
            return
        except AgentError as exc:
            await _json(send, exc.status, {"error": {"code": "agent_unavailable", "agent": agent.name,
                                                     "message": str(exc)}})

    def _rules_on(self) -> bool:
        return self._guard is not None and self._guard.active()

    async def _refused(self, principal: Principal | None, agent: Agent, method: str, send: Send) -> bool:
        """Answer 403 (and forward nothing) when the rules refuse this request."""
        if self._guard is None or self._guard.allows(principal, agent.name, method):
            return False
        await _json(send, 403, {"error": {"code": "forbidden", "agent": agent.name, "method": method,
                                          "message": "not allowed by the gateway's authorization rules"}})
        return True

    async def _card(self, agent: Agent, registry: Agents, scope: Scope, send: Send) -> None:
        card = await agent.get_card(registry.http)
        host = _header(scope, "host") or f"{scope['server'][0]}:{scope['server'][1]}"
        public = f"{scope.get('scheme', 'http')}://{host}/{agent.name}"
        await _json(send, 200, rewrite_card(card, agent.config.url, public))

    async def _forward(self, agent: Agent, registry: Agents, rest: str, scope: Scope,
                       receive: Receive, send: Send, principal: Principal | None) -> None:
        body = await _read_body(receive, self._max_body())
        if body is None:
            await _json(send, 413, {"error": {"code": "too_large",
                                              "message": f"request body over {self._max_body()} bytes"}})
            return
        if self._rules_on() and await self._refused(principal, agent, a2a_method(scope["method"], rest, body), send):
            return
        url = URL(f"{agent.base_url}/{rest}", encoded=True)
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            url = url.with_query(query)
        headers = {k: v for k, v in _headers(scope) if k in _FORWARDED}
        # The pool does not decompress (bodies are relayed as they come) and the client's
        # Accept-Encoding is not passed on: ask for the body as it is.
        headers.update({"Accept-Encoding": "identity", "User-Agent": f"mcpmux/{__version__}",
                        **agent.config.headers})
        try:
            # The answer's headers must come within the agent's timeout (a stream's body
            # may then take as long as it takes).
            resp = await asyncio.wait_for(registry.http.request(
                scope["method"], url, headers=headers, data=body or None, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=agent.config.timeout,
                                              sock_read=None),
            ), agent.config.timeout)
        except TimeoutError:
            agent.failed(f"no answer within {agent.config.timeout:g} s")
            raise AgentError(agent.name, f"no answer within {agent.config.timeout:g} s", 504) from None
        except aiohttp.ClientConnectorError as exc:
            agent.failed(f"cannot connect: {connect_reason(exc)}")
            raise AgentError(agent.name, f"unreachable: {connect_reason(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            agent.failed(f"{type(exc).__name__}: {exc}")
            raise AgentError(agent.name, f"request failed: {type(exc).__name__}: {exc}") from None
        async with resp:
            if resp.status >= 500:
                agent.failed(f"HTTP {resp.status} on {scope['method']} /{rest}")
            elif agent.state != "ready" and agent.card is not None:
                agent.ok()
            streaming = resp.headers.get("Content-Type", "").startswith("text/event-stream")
            relayed = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()
                       if k.lower() in _RELAYED]
            if not streaming:
                await self._relay_whole(agent, resp, relayed, send)
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": relayed})
            await _relay_stream(resp, receive, send)

    async def _relay_whole(self, agent: Agent, resp: aiohttp.ClientResponse,
                           headers: list[tuple[bytes, bytes]], send: Send) -> None:
        limit = self._max_response()
        try:
            raw = await asyncio.wait_for(read_limited(resp, limit + 1), agent.config.timeout)
        except TimeoutError:
            agent.failed(f"no answer within {agent.config.timeout:g} s")
            raise AgentError(agent.name, f"no answer within {agent.config.timeout:g} s", 504) from None
        except (aiohttp.ClientError, OSError) as exc:
            agent.failed(f"{type(exc).__name__}: {exc}")
            raise AgentError(agent.name, f"answer broke off: {type(exc).__name__}: {exc}") from None
        if len(raw) > limit:
            raise AgentError(agent.name, f"answer larger than {limit} bytes (limits.max_response_bytes)")
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [*headers, (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})


_TAIL = r"(?:.*/)?"
#: ``a2a.method`` of a card request.
CARD_METHOD = "GetAgentCard"
#: The HTTP+JSON binding's routes (the end of the path, below the agent's base path,
#: with or without the 0.3 ``v1/`` prefix) as the JSON-RPC methods they stand for, so
#: one rule covers both bindings.
_REST = [
    ("POST", re.compile(_TAIL + r"message:send"), "SendMessage"),
    ("POST", re.compile(_TAIL + r"message:stream"), "SendStreamingMessage"),
    ("GET", re.compile(_TAIL + r"tasks"), "ListTasks"),
    ("GET", re.compile(_TAIL + r"tasks/[^/:]+"), "GetTask"),
    ("POST", re.compile(_TAIL + r"tasks/[^/:]+:cancel"), "CancelTask"),
    (None, re.compile(_TAIL + r"tasks/[^/:]+:subscribe"), "SubscribeToTask"),
    ("POST", re.compile(_TAIL + r"tasks/[^/:]+/pushNotificationConfigs"), "CreateTaskPushNotificationConfig"),
    ("GET", re.compile(_TAIL + r"tasks/[^/:]+/pushNotificationConfigs"), "ListTaskPushNotificationConfig"),
    ("GET", re.compile(_TAIL + r"tasks/[^/:]+/pushNotificationConfigs/[^/]+"), "GetTaskPushNotificationConfig"),
    ("DELETE", re.compile(_TAIL + r"tasks/[^/:]+/pushNotificationConfigs/[^/]+"), "DeleteTaskPushNotificationConfig"),
    ("GET", re.compile(_TAIL + r"(extendedAgentCard|card)"), "GetExtendedAgentCard"),
]


def a2a_method(http_method: str, rest: str, body: bytes) -> str:
    """What a request asks of the agent, for the rules: a JSON-RPC body's ``method``
    (1.0 or 0.3 names, as sent), else the REST route's JSON-RPC name, else
    ``"<HTTP method> /<path>"``."""
    if body:
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            msg = None
        if isinstance(msg, dict) and isinstance(msg.get("method"), str):
            return str(msg["method"])
    path = rest.split("?", 1)[0].strip("/")
    for method, pattern, name in _REST:
        if (method is None or method == http_method) and pattern.fullmatch(path):
            return name
    return f"{http_method} /{path}"


async def _relay_stream(resp: aiohttp.ClientResponse, receive: Receive, send: Send) -> None:
    """Each chunk goes out as it arrives; the client leaving ends the upstream stream."""

    async def pump() -> None:
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    relay = asyncio.create_task(pump())
    watch = asyncio.create_task(gone())
    try:
        await asyncio.wait([relay, watch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relay, watch):
            task.cancel()
        await asyncio.gather(relay, watch, return_exceptions=True)
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "http.response.body", "body": b""})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]


def _header(scope: Scope, name: str) -> str | None:
    return next((v for k, v in _headers(scope) if k == name), None)


async def _json(send: Send, status: int, data: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(data)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
