"""A 2026-07-28 server with the SEP-2663 tasks extension (``io.modelcontextprotocol/tasks``).

No published server implements SEP-2663 yet: the conformance repository's reference
server at every commit reachable here has no tasks, the Python SDK 2.3 has none, and the
TypeScript SDK has the 2025-11-25 shape. So this stand-in implements the extension as the
conformance suite's ``tasks-*`` scenarios describe it, faithfully and no further, as
plain JSON-RPC over HTTP (stateless, JSON answers):

* ``server/discover`` advertises the extension under ``capabilities.extensions``;
* ``tools/call`` of a task-supporting tool from a client that declared the extension (in
  the request's ``_meta`` client capabilities) returns a flat ``CreateTaskResult``
  (``resultType: "task"``, ``taskId``, ``status``, ``ttlMs``, ``pollIntervalMs``); the
  task exists before the answer is sent; ``slow_compute`` with ``seconds: 0`` answers at
  once (the immediate-result shortcut); undeclared, optional tools run synchronously
  and ``failing_job`` (required) is ``-32021`` with ``requiredCapabilities``;
* ``tasks/get`` (DetailedTask, result or error inlined), ``tasks/update`` and
  ``tasks/cancel`` (``{resultType: "complete"}`` acks) need the extension declared
  (``-32021``) and a known id (``-32602``); ``tasks/result`` and ``tasks/list`` are gone
  (``-32601``);
* ``Mcp-Method`` / ``Mcp-Name`` must mirror the body (``-32020``, HTTP 400), ``Mcp-Name``
  carrying ``params.taskId`` on the tasks methods.

Usage: ``python tests/peers/tasks_server.py [PORT]``; prints ``LISTENING <port>``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

EXT = "io.modelcontextprotocol/tasks"
VERSION = "2026-07-28"
K_VERSION = "io.modelcontextprotocol/protocolVersion"
K_CAPS = "io.modelcontextprotocol/clientCapabilities"
TTL_MS = 60_000
POLL_MS = 200
NAME_PARAM = {"tools/call": "name", "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}
TERMINAL = ("completed", "failed", "cancelled")

TOOLS = [
    {"name": "greet", "description": "Sync-only: a greeting.",
     "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
    {"name": "slow_compute", "description": "Task-supporting: sleeps `seconds`, then answers.",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}, "label": {"type": "string"}}},
     "execution": {"taskSupport": "optional"}},
    {"name": "failing_job", "description": "Task required: a tool execution error after ~1 s.",
     "inputSchema": {"type": "object"}, "execution": {"taskSupport": "required"}},
    {"name": "protocol_error_job", "description": "Task-supporting: fails with a protocol error.",
     "inputSchema": {"type": "object"}, "execution": {"taskSupport": "optional"}},
]


class Failure(Exception):
    def __init__(self, code: int, message: str, data: Any = None, status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.data, self.status = code, message, data, status


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Task:
    id: str
    status: str = "working"
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    runner: asyncio.Task[None] | None = None

    def envelope(self) -> dict[str, Any]:
        return {"taskId": self.id, "status": self.status, "createdAt": self.created,
                "lastUpdatedAt": self.updated, "ttlMs": TTL_MS, "pollIntervalMs": POLL_MS}

    def settle(self, status: str, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        if self.status in TERMINAL:
            return
        self.status, self.result, self.error, self.updated = status, result, error, now()


def text(value: str, is_error: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"content": [{"type": "text", "text": value}]}
    if is_error:
        out["isError"] = True
    return out


class Server:
    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405)
        try:
            msg = json.loads(await request.read())
        except ValueError:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}},
                                     status=400)
        if not isinstance(msg, dict) or "method" not in msg:
            return web.Response(status=202)
        if "id" not in msg:
            return web.Response(status=202)  # notifications: nothing to do
        rid = msg["id"]
        try:
            res = await self.dispatch(msg, request.headers)
        except Failure as exc:
            err: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                err["data"] = exc.data
            return web.json_response({"jsonrpc": "2.0", "id": rid, "error": err}, status=exc.status)
        return web.json_response({"jsonrpc": "2.0", "id": rid, "result": res})

    async def dispatch(self, msg: dict[str, Any], headers: Any) -> dict[str, Any]:
        method = msg["method"]
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
        if meta.get(K_VERSION) != VERSION:
            raise Failure(-32022, "unsupported protocol version", {"supported": [VERSION]})
        if headers.get("mcp-method") != method:
            raise Failure(-32020, "Mcp-Method header does not match the method", status=400)
        key = NAME_PARAM.get(method)
        if key is not None and headers.get("mcp-name") != params.get(key):
            raise Failure(-32020, f"Mcp-Name header does not match params.{key}", status=400)
        caps = meta.get(K_CAPS) if isinstance(meta.get(K_CAPS), dict) else {}
        declared = isinstance(caps.get("extensions"), dict) and isinstance(caps["extensions"].get(EXT), dict)
        if method == "server/discover":
            return {"resultType": "complete", "supportedVersions": [VERSION], "ttlMs": 0, "cacheScope": "public",
                    "capabilities": {"tools": {}, "extensions": {EXT: {}}},
                    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "sep-2663-stand-in", "version": "1"}}}
        if method == "tools/list":
            return {"resultType": "complete", "tools": TOOLS}
        if method == "tools/call":
            return await self.call(params, declared)
        if method in ("tasks/get", "tasks/update", "tasks/cancel"):
            if not declared:
                raise Failure(-32021, f"{method} needs the {EXT} extension",
                              {"requiredCapabilities": {"extensions": {EXT: {}}}})
            task = self.tasks.get(params.get("taskId"))  # type: ignore[arg-type]
            if task is None:
                raise Failure(-32602, f"unknown task: {params.get('taskId')}")
            if method == "tasks/get":
                out = {"resultType": "complete", **task.envelope()}
                if task.result is not None:
                    out["result"] = task.result
                if task.error is not None:
                    out["error"] = task.error
                return out
            if method == "tasks/cancel" and task.status not in TERMINAL:
                if task.runner is not None:
                    task.runner.cancel()
                task.settle("cancelled")
            return {"resultType": "complete"}
        raise Failure(-32601, f"method not found: {method}")

    async def call(self, params: dict[str, Any], declared: bool) -> dict[str, Any]:
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "greet":
            return {"resultType": "complete", **text(f"Hello, {args.get('name', 'stranger')}!")}
        if name == "slow_compute":
            seconds = float(args.get("seconds", 0) or 0)
            label = args.get("label", "")
            if not declared or seconds == 0:  # synchronous, or the immediate-result shortcut
                await asyncio.sleep(min(seconds, 2))
                return {"resultType": "complete", **text(f"slow_compute[{label}] done in {seconds:g}s")}

            async def compute(task: Task) -> None:
                await asyncio.sleep(seconds)
                task.settle("completed", text(f"slow_compute[{label}] done in {seconds:g}s"))
            return self.start(compute)
        if name == "failing_job":
            if not declared:
                raise Failure(-32021, f"failing_job requires the {EXT} extension",
                              {"requiredCapabilities": {"extensions": {EXT: {}}}})

            async def fail(task: Task) -> None:
                await asyncio.sleep(1)
                task.settle("completed", text("failing_job: simulated tool execution error", is_error=True))
            return self.start(fail)
        if name == "protocol_error_job":
            error = {"code": -32603, "message": "protocol_error_job: simulated internal failure"}
            if not declared:
                raise Failure(error["code"], error["message"])  # type: ignore[arg-type]

            async def crash(task: Task) -> None:
                await asyncio.sleep(0.2)
                task.settle("failed", error=error)
            return self.start(crash)
        raise Failure(-32602, f"unknown tool: {name}")

    def start(self, body: Any) -> dict[str, Any]:
        """A task, registered before its CreateTaskResult is returned (durable create)."""
        task = Task(str(uuid.uuid4()))
        self.tasks[task.id] = task
        task.runner = asyncio.get_running_loop().create_task(body(task))
        return {"resultType": "task", **task.envelope()}


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_route("*", "/mcp", Server().handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"LISTENING {bound}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
