"""A small real A2A agent built with the official ``a2a-sdk`` (1.x), for the A2A tests.

Run it as ``python tests/peers/a2a_agent.py --name alpha --port N``; tests use
:func:`start_agent`, which picks a free port, waits until the card is served and stops
it after. The agent lives under ``/agent`` (so base-path mapping is exercised): card at
``/agent/.well-known/agent-card.json``, JSON-RPC (1.0, and 0.3 alongside) at
``/agent/jsonrpc``, HTTP+JSON at ``/agent/rest``.

What it does depends on the message text:

* anything: a task that goes working ("thinking about ...") and completes with the
  artifact ``{name} echo: {text}``;
* ``slow ...``: the same with three status updates 0.4 s apart (streaming is seen live);
* ``hang``: a task that stays working until it is cancelled;
* ``message ...``: a plain Message answer, no task;
* ``die``: the process exits at once.

Push-notification configs are stored and can be read back (no notification is sent).

``/_debug/headers`` returns the headers of the last JSON-RPC request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__)
BASE = "/agent"


def make_app(name: str, port: int) -> Any:
    from a2a.helpers.proto_helpers import new_task, new_text_message, new_text_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes.agent_card_routes import create_agent_card_routes
    from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
    from a2a.server.routes.rest_routes import create_rest_routes
    from a2a.server.tasks import InMemoryPushNotificationConfigStore, InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import (
        AgentCapabilities,
        AgentCard,
        AgentInterface,
        AgentSkill,
        TaskState,
    )
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    origin = f"http://127.0.0.1:{port}{BASE}"
    card = AgentCard(
        name=f"{name} agent",
        description=f"The {name} echo agent of the mcpmux tests.",
        version="1.2.3",
        supported_interfaces=[
            AgentInterface(url=f"{origin}/jsonrpc", protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=f"{origin}/rest", protocol_binding="HTTP+JSON", protocol_version="1.0"),
            # Also 0.3 on the same endpoint: the card then carries 0.3's top-level url too.
            AgentInterface(url=f"{origin}/jsonrpc", protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        # Push notifications: their config calls are stored (nothing is ever sent).
        capabilities=AgentCapabilities(streaming=True, push_notifications=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="Echo", description=f"Repeats what {name} is told.",
                           tags=["echo"])],
    )

    class Echo(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            text = context.get_user_input()
            if text == "die":
                os._exit(3)
            if text.startswith("message"):
                await event_queue.enqueue_event(
                    new_text_message(f"{name} says: {text}", context_id=context.context_id))
                return
            assert context.task_id is not None and context.context_id is not None
            if context.current_task is None:
                await event_queue.enqueue_event(
                    new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED))
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            steps = 3 if text.startswith("slow") else 1
            for i in range(steps):
                await updater.start_work(new_text_message(
                    f"thinking about {text} ({i + 1}/{steps})", context_id=context.context_id,
                    task_id=context.task_id))
                if steps > 1:
                    await asyncio.sleep(0.4)
            if text == "hang":
                await asyncio.Event().wait()
            await updater.add_artifact([new_text_part(f"{name} echo: {text}")], name="reply")
            await updater.complete()

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            assert context.task_id is not None and context.context_id is not None
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card,
                                    push_config_store=InMemoryPushNotificationConfigStore())
    seen: dict[str, Any] = {}

    async def last_headers(_: Request) -> JSONResponse:
        return JSONResponse(seen)

    routes = [  # the debug route first: the REST routes mount /{tenant} for any other path
        Route("/_debug/headers", last_headers),
        *create_agent_card_routes(card, card_url=f"{BASE}/.well-known/agent-card.json"),
        *create_jsonrpc_routes(handler, rpc_url=f"{BASE}/jsonrpc", enable_v0_3_compat=True),
        *create_rest_routes(handler, path_prefix=f"{BASE}/rest"),
    ]
    app = Starlette(routes=routes)

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            seen.clear()
            seen.update({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    return recording


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AgentPeer:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """The agent's base URL (what the gateway config names)."""
        return f"http://127.0.0.1:{self.port}{BASE}"

    def last_headers(self) -> dict[str, str]:
        result: dict[str, str] = httpx.get(f"http://127.0.0.1:{self.port}/_debug/headers", timeout=5).json()
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def start_agent(name: str, log_path: Path, timeout: float = 30) -> Iterator[AgentPeer]:
    """Run the agent as a subprocess on a free port until the block ends."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(HERE), "--name", name, "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    peer = AgentPeer(name, port, proc, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"agent {name} exited with {proc.returncode}:\n{peer.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{peer.url}/.well-known/agent-card.json", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent {name} did not start:\n{peer.log()}")
            time.sleep(0.05)
        yield peer
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--name", default="alpha")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(args.name, args.port), host="127.0.0.1", port=args.port, log_level="warning",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
