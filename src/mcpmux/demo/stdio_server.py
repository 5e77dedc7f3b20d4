"""A deliberately tiny MCP server loop over stdio, used by the bundled demo servers.

The demos must start instantly and run with only the package's runtime dependencies,
so they cannot use the official SDK. Messages are newline-delimited JSON-RPC on
stdin/stdout; stdout carries protocol traffic only (``print`` goes to stderr).
Requests run as tasks, so ``ping`` and cancellation still work while a slow tool runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
Json = dict[str, Any]


class RpcError(Exception):
    """Turned into a JSON-RPC error response (protocol-level failure)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class ToolError(Exception):
    """Turned into a tool result with ``isError: true`` so the model can see and react to it."""


def text_result(text: str, structured: Json | None = None, *, is_error: bool = False) -> Json:
    """Build a ``tools/call`` result from text plus optional structured content."""
    result: Json = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


@dataclass
class Ctx:
    """Per-call handle that lets a tool report progress and log without knowing the wire format."""

    server: StdioServer
    progress_token: str | int | None = None

    async def progress(self, progress: float, total: float | None = None, msg: str = "") -> None:
        if self.progress_token is None:
            return
        params: Json = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if msg:
            params["message"] = msg
        await self.server.notify("notifications/progress", params)


ToolFn = Callable[[Json, Ctx], Awaitable[Json]]


class StdioServer:
    """Registry of tools/resources/prompts plus the read-dispatch-write loop."""

    def __init__(self, name: str, version: str = "0.1.0", *, resources_list_changed: bool = False):
        self.info = {"name": name, "version": version}
        self.tools: dict[str, tuple[Json, ToolFn]] = {}
        self.resources: dict[str, tuple[Json, Callable[[], Awaitable[str]]]] = {}
        self.templates: list[
            tuple[Json, re.Pattern[str], Callable[..., Awaitable[str | None]]]
        ] = []
        self.prompts: dict[str, tuple[Json, Callable[[Json], Awaitable[Json]]]] = {}
        self.resources_list_changed = resources_list_changed
        self.extra_resources: Callable[[], list[Json]] = list  # dynamic entries for resources/list
        self.log_level = "info"
        self._tasks: dict[Any, asyncio.Task[None]] = {}
        self._out = sys.stdout.buffer

    # -- registration (decorators); metadata dicts are sent to clients as-is -------
    def tool(self, name: str, description: str, input_schema: Json, **extra: Any) -> Any:
        meta = {"name": name, "description": description, "inputSchema": input_schema, **extra}
        return lambda fn: _register(self.tools, name, meta, fn)

    def resource(self, uri: str, name: str, mime_type: str, description: str = "") -> Any:
        meta = {"uri": uri, "name": name, "mimeType": mime_type, "description": description}
        return lambda fn: _register(self.resources, uri, meta, fn)

    def template(self, uri_template: str, name: str, mime_type: str, description: str = "") -> Any:
        """Register a reader for a ``{var}`` URI template; the reader returns None for "not found"."""
        meta = {"uriTemplate": uri_template, "name": name, "mimeType": mime_type}
        var = r"(?P<\1>[^/]+)"
        pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", var, re.escape(uri_template)) + "$")

        def deco(fn: Callable[..., Awaitable[str | None]]) -> Callable[..., Awaitable[str | None]]:
            self.templates.append((meta | {"description": description}, pattern, fn))
            return fn

        return deco

    def prompt(self, name: str, description: str, arguments: list[Json]) -> Any:
        meta = {"name": name, "description": description, "arguments": arguments}
        return lambda fn: _register(self.prompts, name, meta, fn)

    # -- outbound ------------------------------------------------------------------
    def _write(self, msg: Json) -> None:
        self._out.write(orjson.dumps({"jsonrpc": "2.0", **msg}) + b"\n")
        self._out.flush()

    def _error(self, msg_id: Any, code: int, message: str, data: Any = None) -> None:
        error = {"code": code, "message": message, **({"data": data} if data is not None else {})}
        self._write({"id": msg_id, "error": error})

    async def notify(self, method: str, params: Json | None = None) -> None:
        self._write({"method": method, **({"params": params} if params is not None else {})})

    async def log(self, level: str, data: Any) -> None:
        """Send ``notifications/message`` if ``level`` is at or above the client's chosen level."""
        if LOG_LEVELS.index(level) >= LOG_LEVELS.index(self.log_level):
            params = {"level": level, "logger": self.info["name"], "data": data}
            await self.notify("notifications/message", params)

    # -- dispatch ------------------------------------------------------------------
    def capabilities(self) -> Json:
        caps: Json = {"logging": {}}
        if self.tools:
            caps["tools"] = {"listChanged": False}
        if self.resources or self.templates:
            caps["resources"] = {"listChanged": self.resources_list_changed, "subscribe": False}
        if self.prompts:
            caps["prompts"] = {"listChanged": False}
        return caps

    async def handle(self, method: str, p: Json) -> Json:
        if method == "initialize":
            requested = p.get("protocolVersion")
            version = requested if requested in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
            return {
                "protocolVersion": version,
                "capabilities": self.capabilities(),
                "serverInfo": self.info,
            }
        if method == "ping":
            return {}
        if method == "logging/setLevel":
            if p.get("level") not in LOG_LEVELS:
                raise RpcError(-32602, f"invalid log level: {p.get('level')!r}")
            self.log_level = p["level"]
            return {}
        if method == "tools/list":
            return {"tools": [meta for meta, _ in self.tools.values()]}
        if method == "tools/call":
            return await self._call_tool(p)
        if method == "resources/list":
            return {"resources": [m for m, _ in self.resources.values()] + self.extra_resources()}
        if method == "resources/templates/list":
            return {"resourceTemplates": [meta for meta, _, _ in self.templates]}
        if method == "resources/read":
            return await self._read(_require_str(p, "uri"))
        if method == "prompts/list":
            return {"prompts": [meta for meta, _ in self.prompts.values()]}
        if method == "prompts/get":
            meta, fn = self._lookup(self.prompts, _require_str(p, "name"), "prompt")
            args = p.get("arguments") or {}
            for arg in meta["arguments"]:
                if arg.get("required") and not isinstance(args.get(arg["name"]), str):
                    raise RpcError(-32602, f"missing required argument: {arg['name']}")
            return await fn(args)
        raise RpcError(-32601, f"method not found: {method}")

    def _lookup(self, table: dict[str, Any], name: str, kind: str) -> Any:
        if name not in table:
            raise RpcError(-32602, f"unknown {kind}: {name}")
        return table[name]

    async def _call_tool(self, p: Json) -> Json:
        meta, fn = self._lookup(self.tools, _require_str(p, "name"), "tool")
        args = p.get("arguments") or {}
        if not isinstance(args, dict):
            raise RpcError(-32602, "arguments must be an object")
        missing = [k for k in meta["inputSchema"].get("required", []) if k not in args]
        ctx = Ctx(self, (p.get("_meta") or {}).get("progressToken"))
        try:
            if missing:
                raise ToolError(f"missing required argument(s): {', '.join(missing)}")
            return await fn(args, ctx)
        except ToolError as exc:
            return text_result(str(exc), is_error=True)
        except Exception as exc:  # a buggy tool is still a tool error, not a dead server
            return text_result(f"{type(exc).__name__}: {exc}", is_error=True)

    async def _read(self, uri: str) -> Json:
        if uri in self.resources:
            meta, fn = self.resources[uri]
            return {"contents": [{"uri": uri, "mimeType": meta["mimeType"], "text": await fn()}]}
        for meta, pattern, reader in self.templates:
            if m := pattern.match(uri):
                text = await reader(**{k: unquote(v) for k, v in m.groupdict().items()})
                if text is not None:
                    return {"contents": [{"uri": uri, "mimeType": meta["mimeType"], "text": text}]}
        raise RpcError(-32002, f"resource not found: {uri}", {"uri": uri})

    async def _respond(self, msg_id: Any, method: str, params: Json) -> None:
        # A cancelled task raises CancelledError past these handlers: no response, per the spec.
        try:
            self._write({"id": msg_id, "result": await self.handle(method, params)})
        except RpcError as exc:
            self._error(msg_id, exc.code, exc.message, exc.data)
        except Exception as exc:
            self._error(msg_id, -32603, f"internal error: {exc}")
        finally:
            self._tasks.pop(msg_id, None)

    def _receive(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return self._error(None, -32700, f"parse error: {exc}")
        if not isinstance(msg, dict) or not isinstance(msg.get("method", ""), str):
            return self._error(None, -32600, "invalid request")
        method, params, msg_id = msg.get("method"), msg.get("params") or {}, msg.get("id")
        if method is None:
            return None  # a response to a request we never send
        if not isinstance(msg_id, str | int | None) or isinstance(msg_id, bool):
            return self._error(None, -32600, "invalid request id")
        if "id" not in msg:  # notification; only cancellation needs any action
            if method == "notifications/cancelled" and isinstance(params, dict):
                if (task := self._tasks.get(params.get("requestId"))) is not None:
                    task.cancel()
            return None
        if not isinstance(params, dict):
            return self._error(msg_id, -32602, "params must be an object")
        self._tasks[msg_id] = asyncio.create_task(self._respond(msg_id, method, params))
        return None

    async def serve(self) -> None:
        """Read stdin on a daemon thread (portable, never blocks interpreter exit) until EOF."""
        loop, lines = asyncio.get_running_loop(), asyncio.Queue[bytes]()

        def reader() -> None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed on exit
                for line in sys.stdin.buffer:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
                loop.call_soon_threadsafe(lines.put_nowait, b"")

        threading.Thread(target=reader, daemon=True).start()
        while line := await lines.get():
            if line.strip():
                self._receive(line)
        # EOF: the client is gone; asyncio.run() cancels whatever is still running.

    def run(self) -> None:
        """Serve until stdin closes; owns the process's stdout from here on."""
        self._out = sys.stdout.buffer
        sys.stdout = sys.stderr  # a stray print() must never corrupt the protocol stream
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self.serve())


def _register(table: dict[str, Any], key: str, meta: Json, fn: Any) -> Any:
    table[key] = (meta, fn)
    return fn


def _require_str(p: Json, key: str) -> str:
    if not isinstance(value := p.get(key), str):
        raise RpcError(-32602, f"missing or invalid {key!r}")
    return value
