"""Targets that live in the test's own process, for fast tests of the core.

Like httpx's ``MockTransport``: the gateway's upstream side is swapped for
``FakeSession``s that hand every message to a ``FakeServer`` (plain Python,
no sockets, no processes). The dispatcher, sessions, routing and policy seams
run for real. ``core()`` builds a gateway and dispatcher on such targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from mcpmux.config import GatewayConfig, config_from_dict
from mcpmux.context import RequestContext
from mcpmux.dispatch import Dispatcher
from mcpmux.gateway import Gateway
from mcpmux.jsonrpc import Message
from mcpmux.policy import Policy
from mcpmux.session import ClientSession
from mcpmux.target import Target
from mcpmux.upstream.base import UpstreamSession

ToolHandler = Callable[["FakeServer", "FakeSession", Message], Awaitable[Message]]


class FakeServer:
    """An MCP server as a table of tools, prompts and resources. Everything it
    receives is recorded in ``received`` (with the upstream session it came on)."""

    def __init__(
        self,
        tools: dict[str, ToolHandler] | None = None,
        prompts: tuple[str, ...] = (),
        resources: tuple[str, ...] = (),
        capabilities: dict[str, Any] | None = None,
        unlisted: tuple[str, ...] = (),
    ) -> None:
        self.tools = tools or {}
        #: Tools it answers but does not list (test hooks, tools that come and go).
        self.unlisted = unlisted
        self.prompts = prompts
        self.resources = resources
        self.capabilities = capabilities or {
            "tools": {}, "prompts": {}, "resources": {"subscribe": True}, "logging": {},
        }
        self.received: list[tuple[FakeSession, Message]] = []
        self.sessions: list[FakeSession] = []
        self._asked: dict[Any, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1000)

    def requests(self, method: str) -> list[Message]:
        return [m for _, m in self.received if m.get("method") == method and "id" in m]

    async def ask(self, session: FakeSession, method: str, params: dict[str, Any], during: Any = None) -> Message:
        """A server->client request (sampling, elicitation, roots) on ``session``: on the
        stream of call ``during`` (as streamable HTTP carries it), else unattributed (stdio)."""
        rid = next(self._ids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._asked[rid] = fut
        await session.dispatch({"jsonrpc": "2.0", "id": rid, "method": method, "params": params},
                               session.sink_of(during))
        return await fut

    async def log(self, session: FakeSession, level: str, data: Any) -> None:
        """An unattributed log line, as a stdio server writes it."""
        await session.dispatch({"jsonrpc": "2.0", "method": "notifications/message",
                                "params": {"level": level, "data": data}})

    async def handle(self, session: FakeSession, msg: Message) -> None:
        self.received.append((session, msg))
        if "method" not in msg:  # the gateway answers one of our requests
            fut = self._asked.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if "id" not in msg:
            return
        method, params = msg["method"], msg.get("params") or {}
        res: Any
        if method == "initialize":
            res = {"protocolVersion": params.get("protocolVersion", "2025-11-25"),
                   "capabilities": self.capabilities, "serverInfo": {"name": "fake", "version": "1"}}
        elif method == "tools/list":
            res = {"tools": [{"name": n, "inputSchema": {"type": "object"}}
                             for n in self.tools if n not in self.unlisted]}
        elif method == "prompts/list":
            res = {"prompts": [{"name": n} for n in self.prompts]}
        elif method == "resources/list":
            res = {"resources": [{"uri": u, "name": u} for u in self.resources]}
        elif method == "resources/templates/list":
            res = {"resourceTemplates": []}
        elif method == "tools/call":
            handler = self.tools.get(params.get("name"))
            if handler is None:
                await session.dispatch({"jsonrpc": "2.0", "id": msg["id"],
                                        "error": {"code": -32602, "message": "no such tool"}})
                return
            session.calls[msg["id"]] = msg
            try:
                reply = await handler(self, session, msg)
            finally:
                session.calls.pop(msg["id"], None)
            await session.dispatch({**reply, "jsonrpc": "2.0", "id": msg["id"]})
            return
        else:  # ping, setLevel, subscribe, unsubscribe, prompts/get, resources/read...
            res = {}
        await session.dispatch({"jsonrpc": "2.0", "id": msg["id"], "result": res})


class FakeSession(UpstreamSession):
    """An upstream session whose wire is a method call on a ``FakeServer``."""

    kind = "fake"

    def __init__(self, target: str, server: FakeServer, timeout: float = 5.0) -> None:
        super().__init__(target, timeout)
        self.server = server
        #: The server's calls in flight on this session (id -> request).
        self.calls: dict[Any, Message] = {}
        server.sessions.append(self)
        #: What streamable HTTP would call its Mcp-Session-Id.
        self.session_id = f"{target}-{len(server.sessions)}"

    def sink_of(self, uid: Any) -> Any:
        """The sink of call ``uid`` (what a per-call stream delivers to), or None."""
        entry = self._pending.get(uid) if uid is not None else None
        return entry[1] if entry else None

    async def _connect(self) -> None:
        pass

    async def _send(self, msg: Message) -> None:
        self._tasks.spawn(self.server.handle(self, msg), f"fake-{msg.get('method', 'answer')}")


def config(targets: dict[str, str], curation: dict[str, dict[str, Any]] | None = None,
           **extra: Any) -> GatewayConfig:
    """A config whose targets are ``{name: "stdio" | "http"}``: a shared target or one
    that gives each client its own session, with ``curation[name]`` as its ``tools``.
    Nothing is ever started or dialled."""
    specs = {
        "stdio": lambda n: {"stdio": {"command": f"/nonexistent/{n}"}},
        "http": lambda n: {"http": {"url": f"http://127.0.0.1:9/{n}"}},
    }
    curation = curation or {}
    return config_from_dict({"targets": [{"name": n, **specs[k](n), **({"tools": curation[n]} if n in curation else {})}
                                         for n, k in targets.items()], **extra})


@contextlib.asynccontextmanager
async def core(
    servers: dict[str, FakeServer], kinds: dict[str, str] | None = None,
    policy: Policy | None = None, curation: dict[str, dict[str, Any]] | None = None, **extra: Any,
) -> AsyncIterator[Dispatcher]:
    """A started gateway and dispatcher whose targets are ``servers``."""
    kinds = kinds or {name: "stdio" for name in servers}

    def factory(target: Target, _listen: bool, _era: str | None) -> UpstreamSession:
        return FakeSession(target.name, servers[target.name])

    gateway = Gateway(config(kinds, curation, **extra), session_factory=factory)
    dispatcher = Dispatcher(gateway, policy)
    await dispatcher.start()
    try:
        await asyncio.wait_for(gateway.wait_ready(), 5)
        assert all(t.ready for t in gateway.targets.values()), gateway.status()
        yield dispatcher
    finally:
        await dispatcher.aclose()


class Client:
    """A handshake-era client session driven straight through the dispatcher."""

    def __init__(self, dispatcher: Dispatcher, session: ClientSession) -> None:
        self.dispatcher = dispatcher
        self.session = session
        self.streamed: list[Message] = []
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, dispatcher: Dispatcher, capabilities: dict[str, Any] | None = None,
                      principal: Any = None) -> Client:
        msg = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities or {},
                          "clientInfo": {"name": "test", "version": "1"}}}
        session, _ = await dispatcher.initialize(msg, principal)
        return cls(dispatcher, session)

    async def emit(self, msg: Message) -> None:
        self.streamed.append(msg)
        if "id" in msg and "method" in msg and self.on_request is not None:
            answer = await self.on_request(msg)
            await self.dispatcher.response(RequestContext(self.session, "http"), {"jsonrpc": "2.0", "id": msg["id"], **answer})

    on_request: Callable[[Message], Awaitable[dict[str, Any]]] | None = None

    async def request(self, method: str, params: dict[str, Any] | None = None, rid: Any = None) -> Message:
        msg: Message = {"jsonrpc": "2.0", "id": rid if rid is not None else f"c-{next(self._ids)}", "method": method}
        if params is not None:
            msg["params"] = params
        return await self.dispatcher.handle(RequestContext(self.session, "http", emit=self.emit), msg)

    def outbox(self) -> list[Message]:
        out = []
        while not self.session.outbox.empty():
            out.append(self.session.outbox.get_nowait())
        return out
