"""Single-era MCP servers built on the official Python SDK (``mcp`` 2.3.0).

The SDK serves both protocol eras on one endpoint (a dual-era server), so each era is
pinned by a thin ASGI layer in front of the SDK app, answering exactly what a server
of that era alone would:

* ``modern``: 2026-07-28 only (lists may carry ``--ttl-ms``/``--cache-scope`` hints).
  A POST whose ``MCP-Protocol-Version`` header is not a modern version
  (``initialize`` from a legacy client, or anything without the header) gets ``400``
  and ``UnsupportedProtocolVersionError`` (-32022) naming the versions it supports
  (versioning.mdx: a modern-only server SHOULD name them in any error to
  ``initialize``); GET and DELETE get ``405`` (streamable-http.mdx).
* ``handshake``: 2025-11-25 and earlier only. A modern POST (2026 header) gets what a
  legacy streamable-HTTP server answers a request without a session:
  ``400`` "No valid session ID provided" (-32000, as the TypeScript SDK does), and
  ``server/discover`` inside a session is an unknown method (-32601).

Both offer the same fixtures, each asking for input the way its era does:

* ``echo(text)``: a plain tool;
* ``ask_name()``: elicitation (``Hello, <name>!``), ``ask_model(question)``: sampling
  (``model said: <text>``), ``ask_both()``: both, one after the other
  (``<name>: <text>``); modern: ``InputRequiredResult`` answered on the retry (a
  modern server refuses with -32021 when the request did not declare the capability);
  handshake: ``ctx.elicit`` / ``create_message`` on the call's stream;
* ``slow(seconds)``: sleeps (handshake: ``ask=true`` elicits a name first);
* ``log_levels()``: ``notifications/message`` at debug, info, warning and error;
* ``add_tool(name)``: registers a tool and announces ``tools/list_changed``
  (modern: ``subscriptions/listen``; handshake: the session's GET stream);
* ``stats()``: how many times ``ask_name`` ran (so a test can tell that a request the
  gateway refused never reached the server) and how ``slow`` runs ended;
* ``whoami()``: the request's version, ``_meta`` and client capabilities as the
  server saw them;
* prompt ``greeting(name)``; resource ``<era>://info``.

The modern server's ``modern://info`` is subscribable the 2026 way (``resources.subscribe``
is served by ``subscriptions/listen``: the SDK's ``ListenHandler`` delivers an update only
to the streams whose ``resourceSubscriptions`` name the URI):

* ``touch_info(text)``: changes what ``modern://info`` reads and publishes
  ``notifications/resources/updated`` for it (``ctx.notify_resource_updated``);
* ``listening()``: ``{"streams": [...], "held": n}``, the ``resourceSubscriptions`` of
  every ``subscriptions/listen`` stream open on the server right now (one list per
  stream), so a test can tell what a client asks to follow; and how many listen
  requests are held;
* ``hold_listens(hold)``: while true, new ``subscriptions/listen`` requests wait
  unanswered (a target slow to acknowledge); false lets them through.

Run: ``python era_servers.py modern|handshake [--port 0] [--ttl-ms N --cache-scope S]``.
The first stdout line is ``LISTENING http://HOST:PORT/mcp`` once the socket accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel

# Sampling, elicitation over the session and logging are "deprecated as of 2026-07-28":
# exactly what a handshake-era server uses.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

MODERN_VERSIONS = ("2026-07-28",)
NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "Your name"}},
    "required": ["name"],
}
LOG_LEVELS = ("debug", "info", "warning", "error")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


class Name(BaseModel):
    name: str


def _text(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)])


def _sampling(question: str) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=question))
    return CreateMessageRequest(
        params=CreateMessageRequestParams(messages=[message], max_tokens=50)
    )


def _require(ctx: Context, capability: str) -> None:
    """A modern server MUST NOT send input requests the client did not declare (mrtr.mdx):
    it answers MissingRequiredClientCapabilityError instead."""
    caps = ctx.client_capabilities
    if caps is None or getattr(caps, capability) is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message=f"this tool needs the client capability '{capability}'",
            data={"requiredCapabilities": {capability: {}}},
        )


#: Tool runs in this process, for ``stats``.
RUNS: Counter[str] = Counter()


async def _slow(seconds: float, label: str = "") -> CallToolResult:
    RUNS["slow_started"] += 1
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        RUNS["slow_cancelled"] += 1
        raise
    RUNS["slow_finished"] += 1
    return _text(f"slept {seconds:g}{label}")


def _diagnostics(mcp: MCPServer) -> None:
    @mcp.tool()
    def stats() -> CallToolResult:
        """How many times each counted tool ran."""
        return _text(json.dumps(dict(RUNS)))

    @mcp.tool()
    def whoami(ctx: Context) -> CallToolResult:
        """What this server was told about the request: its version, ``_meta`` and the
        client's capabilities (from the envelope, or from ``initialize``)."""
        params = ctx.request_context.params or {}
        caps = ctx.client_capabilities
        return _text(
            json.dumps(
                {
                    "protocolVersion": ctx.protocol_version,
                    "meta": params.get("_meta") or {},
                    "capabilities": caps.model_dump(by_alias=True, exclude_none=True)
                    if caps is not None
                    else None,
                }
            )
        )


#: What ``modern://info`` reads (``touch_info`` changes it).
INFO = {"text": "served by a 2026-07-28-only server"}
INFO_URI = "modern://info"


class ListenLog:
    """Middleware: the ``resourceSubscriptions`` of each ``subscriptions/listen`` stream
    while it is open (its handler runs until the client goes, or is cancelled); and, while
    ``hold`` is set, new listen requests wait (unanswered, counted in ``held``)."""

    def __init__(self) -> None:
        self.open: dict[object, list[str]] = {}
        self.held = 0
        self.gate: anyio.Event | None = None

    def hold(self, on: bool) -> None:
        if on and self.gate is None:
            self.gate = anyio.Event()
        elif not on and self.gate is not None:
            self.gate.set()
            self.gate = None

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        if self.gate is not None:
            self.held += 1
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        wanted = ((ctx.params or {}).get("notifications") or {}).get("resourceSubscriptions")
        token = object()
        self.open[token] = [str(u) for u in wanted] if isinstance(wanted, list) else []
        try:
            return await call_next(ctx)
        finally:
            self.open.pop(token, None)


def build_modern(cache_hint: CacheHint | None = None) -> MCPServer:
    hints: Any = None
    if cache_hint is not None:
        hints = {m: cache_hint for m in ("tools/list", "prompts/list", "resources/list")}
    listens = ListenLog()
    mcp = MCPServer(name="era-modern", version="1.0.0", cache_hints=hints, middleware=[listens])
    _diagnostics(mcp)

    @mcp.tool()
    def listening() -> CallToolResult:
        """The resourceSubscriptions of each subscriptions/listen stream open now, and how
        many listen requests ``hold_listens`` is holding."""
        return _text(json.dumps({"streams": sorted(listens.open.values()), "held": listens.held}))

    @mcp.tool()
    def hold_listens(hold: bool) -> CallToolResult:
        """Hold new subscriptions/listen requests unanswered (a slow acknowledgement),
        or let them through."""
        listens.hold(hold)
        return _text(f"holding: {hold}")

    @mcp.tool()
    async def touch_info(text: str, ctx: Context) -> CallToolResult:
        """Changes modern://info and tells the listen streams that follow it."""
        INFO["text"] = text
        await ctx.notify_resource_updated(INFO_URI)
        return _text(f"updated {INFO_URI}")

    @mcp.tool()
    def echo(text: str) -> CallToolResult:
        """Echoes its argument."""
        return _text(f"modern echo: {text}")

    @mcp.tool()
    async def ask_name(ctx: Context) -> CallToolResult | InputRequiredResult:
        """Asks the user's name (multi-round-trip elicitation)."""
        RUNS["ask_name"] += 1
        answer = (ctx.input_responses or {}).get("name")
        if isinstance(answer, ElicitResult):
            if answer.action != "accept":
                return _text(f"no name ({answer.action})")
            return _text(f"Hello, {(answer.content or {}).get('name')}!")
        _require(ctx, "elicitation")
        ask = ElicitRequest(
            params=ElicitRequestFormParams(
                message="What is your name?", requested_schema=NAME_SCHEMA
            )
        )
        return InputRequiredResult(input_requests={"name": ask}, request_state="asked-name")

    @mcp.tool()
    async def ask_model(question: str, ctx: Context) -> CallToolResult | InputRequiredResult:
        """Asks the client's model (multi-round-trip sampling)."""
        answer = (ctx.input_responses or {}).get("llm")
        if isinstance(answer, CreateMessageResult):
            text = answer.content.text if isinstance(answer.content, TextContent) else "?"
            return _text(f"model said: {text}")
        _require(ctx, "sampling")
        return InputRequiredResult(input_requests={"llm": _sampling(question)})

    @mcp.tool()
    async def ask_both(ctx: Context) -> CallToolResult | InputRequiredResult:
        """Two rounds: the user's name, then the model's greeting for it."""
        state = json.loads(ctx.request_state) if ctx.request_state else {}
        responses = ctx.input_responses or {}
        if "name" not in state:
            answer = responses.get("name")
            if not isinstance(answer, ElicitResult):
                _require(ctx, "elicitation")
                ask = ElicitRequest(
                    params=ElicitRequestFormParams(message="Name?", requested_schema=NAME_SCHEMA)
                )
                return InputRequiredResult(
                    input_requests={"name": ask}, request_state=json.dumps({})
                )
            state["name"] = (answer.content or {}).get("name")
        reply = responses.get("greeting")
        if not isinstance(reply, CreateMessageResult):
            _require(ctx, "sampling")
            return InputRequiredResult(
                input_requests={"greeting": _sampling(f"Greet {state['name']}")},
                request_state=json.dumps(state),
            )
        text = reply.content.text if isinstance(reply.content, TextContent) else "?"
        return _text(f"{state['name']}: {text}")

    @mcp.tool()
    async def slow(seconds: float) -> CallToolResult:
        """Sleeps; ``stats`` counts how its runs ended (finished or cancelled)."""
        return await _slow(seconds)

    @mcp.tool()
    async def log_levels(ctx: Context) -> CallToolResult:
        """Logs one line at each of debug, info, warning and error."""
        for level in LOG_LEVELS:
            await ctx.log(level, f"modern {level} line")  # type: ignore[arg-type]
        return _text("logged")

    @mcp.tool()
    async def add_tool(name: str, ctx: Context) -> CallToolResult:
        """Registers a new tool and announces the change."""
        mcp.add_tool(lambda: "added", name=name, description="added at run time")
        await ctx.notify_tools_changed()
        return _text(f"added {name}")

    @mcp.prompt()
    def greeting(name: str) -> list[UserMessage]:
        """Greets someone."""
        return [UserMessage(f"Hello {name}, from the modern server.")]

    @mcp.resource(INFO_URI, name="info", mime_type="text/plain")
    def info() -> str:
        return INFO["text"]

    return mcp


def build_handshake() -> MCPServer:
    mcp = MCPServer(name="era-handshake", version="1.0.0")
    _diagnostics(mcp)

    @mcp.tool()
    def echo(text: str) -> CallToolResult:
        """Echoes its argument."""
        return _text(f"legacy echo: {text}")

    @mcp.tool()
    async def ask_name(ctx: Context) -> CallToolResult:
        """Asks the user's name (elicitation/create on the call's stream)."""
        RUNS["ask_name"] += 1
        result = await ctx.elicit("What is your name?", Name)
        if result.action != "accept":
            return _text(f"no name ({result.action})")
        return _text(f"Hello, {result.data.name}!")

    @mcp.tool()
    async def ask_model(question: str, ctx: Context) -> CallToolResult:
        """Asks the client's model (sampling/createMessage on the call's stream)."""
        result = await ctx.session.create_message(
            messages=_sampling(question).params.messages,
            max_tokens=50,
            related_request_id=ctx.request_id,
        )
        text = result.content.text if isinstance(result.content, TextContent) else "?"
        return _text(f"model said: {text}")

    @mcp.tool()
    async def ask_both(ctx: Context) -> CallToolResult:
        """Two questions in one call: the user's name, then the model's greeting for it."""
        result = await ctx.elicit("Name?", Name)
        if result.action != "accept":
            return _text(f"no name ({result.action})")
        reply = await ctx.session.create_message(
            messages=_sampling(f"Greet {result.data.name}").params.messages,
            max_tokens=50,
            related_request_id=ctx.request_id,
        )
        text = reply.content.text if isinstance(reply.content, TextContent) else "?"
        return _text(f"{result.data.name}: {text}")

    @mcp.tool()
    async def slow(seconds: float, ctx: Context, ask: bool = False) -> CallToolResult:
        """Sleeps (after asking a name, with ``ask``); ``stats`` counts how its runs ended."""
        label = ""
        if ask:
            result = await ctx.elicit("Name?", Name)
            label = f" for {result.data.name}" if result.action == "accept" else ""
        return await _slow(seconds, label)

    @mcp.tool()
    async def log_levels(ctx: Context) -> CallToolResult:
        """Logs one line at each of debug, info, warning and error."""
        for level in LOG_LEVELS:
            await ctx.log(level, f"legacy {level} line")  # type: ignore[arg-type]
        return _text("logged")

    @mcp.tool()
    async def add_tool(name: str, ctx: Context) -> CallToolResult:
        """Registers a new tool and announces the change on the session's GET stream."""
        mcp.add_tool(lambda: "added", name=name, description="added at run time")
        await ctx.session.send_tool_list_changed()
        return _text(f"added {name}")

    @mcp.prompt()
    def greeting(name: str) -> list[UserMessage]:
        """Greets someone."""
        return [UserMessage(f"Hello {name}, from the handshake server.")]

    @mcp.resource("legacy://info", name="info", mime_type="text/plain")
    def info() -> str:
        return "served by a handshake-era-only server"

    return mcp


# -- era pinning (ASGI) ---------------------------------------------------------------
async def _json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _read(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a ``receive`` that replays it to the wrapped app."""
    chunks: list[bytes] = []
    while True:
        event = await receive()
        if event["type"] != "http.request":
            break
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _message(body: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(body)
    except ValueError:
        return {}
    return msg if isinstance(msg, dict) else {}


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == name), None)


def modern_only(app: Any) -> ASGI:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["method"] in ("GET", "DELETE"):
            await _json(
                send,
                405,
                {"error": "this server speaks only 2026-07-28: POST"},
                [(b"allow", b"POST")],
            )
            return
        version = _header(scope, b"mcp-protocol-version")
        if scope["method"] == "POST" and version not in MODERN_VERSIONS:
            body, _ = await _read(receive)
            msg = _message(body)
            requested = version or (msg.get("params") or {}).get("protocolVersion")
            error = {
                "code": -32022,
                "message": f"Unsupported protocol version: this server speaks only {', '.join(MODERN_VERSIONS)}",
                "data": {"supported": list(MODERN_VERSIONS), "requested": requested},
            }
            await _json(send, 400, {"jsonrpc": "2.0", "id": msg.get("id"), "error": error})
            return
        await app(scope, receive, send)

    return wrapped


def handshake_only(app: Any) -> ASGI:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        if (
            _header(scope, b"mcp-protocol-version") in MODERN_VERSIONS
            and _header(scope, b"mcp-session-id") is None
        ):
            await _json(
                send,
                400,
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": -32000,
                        "message": "Bad Request: No valid session ID provided",
                    },
                },
            )
            return
        body, replay = await _read(receive)
        msg = _message(body)
        if msg.get("method") == "server/discover":
            await _json(
                send,
                200,
                {
                    "jsonrpc": "2.0",
                    "id": msg.get("id"),
                    "error": {"code": -32601, "message": "Method not found: server/discover"},
                },
            )
            return
        await app(scope, replay, send)

    return wrapped


def build_app(era: str, cache_hint: CacheHint | None = None) -> ASGI:
    if era == "modern":
        return modern_only(build_modern(cache_hint).streamable_http_app())
    if era == "handshake":
        return handshake_only(build_handshake().streamable_http_app())
    raise ValueError(f"unknown era {era!r}")


async def serve(era: str, host: str, port: int, cache_hint: CacheHint | None) -> None:
    app = build_app(era, cache_hint)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    print(f"LISTENING http://{host}:{sock.getsockname()[1]}/mcp", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A single-era MCP server (official Python SDK)")
    parser.add_argument("era", choices=("modern", "handshake"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttl-ms", type=int, default=None, help="modern: ttlMs on lists")
    parser.add_argument("--cache-scope", choices=("public", "private"), default="private")
    args = parser.parse_args(argv)
    hint = (
        CacheHint(ttl_ms=args.ttl_ms, scope=args.cache_scope) if args.ttl_ms is not None else None
    )
    asyncio.run(serve(args.era, args.host, args.port, hint))


if __name__ == "__main__":
    main()
