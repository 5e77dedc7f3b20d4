"""SDK-client helpers shared by the end-to-end suites: what a server pushes to a
session, and callbacks answering its requests."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import anyio
import mcp.types as types
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError

WAIT = 20.0


class Inbox:
    """What the server pushes to one SDK session, in arrival order (a message_handler)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        self.items.append(message)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, pred: Callable[[Any], bool], within: float = WAIT, since: int = 0) -> Any:
        """The first message (from index ``since``) matching ``pred``; fails after ``within`` s."""
        with anyio.fail_after(within):
            while True:
                for m in self.items[since:]:
                    if pred(m):
                        return m
                await self._changed.wait()

    def logs(self) -> list[types.LoggingMessageNotificationParams]:
        return [m.params for m in self.items if isinstance(m, types.LoggingMessageNotification)]

    def updated(self) -> list[str]:
        return [str(m.params.uri) for m in self.items if isinstance(m, types.ResourceUpdatedNotification)]


class Answers:
    """SDK callbacks answering server->client requests, recording what arrived."""

    def __init__(self) -> None:
        self.sampling: list[types.CreateMessageRequestParams] = []
        self.elicitation: list[types.ElicitRequestParams] = []

    async def sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.sampling.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled-answer-4711"),
            model="test-model-x",
            stop_reason="endTurn",
        )

    async def elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.elicitation.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})


async def kill_mid_call(
    session: ClientSession, tool: str, arguments: dict[str, Any], pid: int
) -> MCPError:
    """Start a long ``tool`` call that reports progress, SIGKILL ``pid`` once progress
    arrives, and return the error the call ends with (fails if it ends without one)."""
    started = anyio.Event()
    errors: list[MCPError] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async def in_flight() -> None:
        try:
            await session.call_tool(tool, arguments, progress_callback=on_progress)
        except MCPError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_flight)
        with anyio.fail_after(WAIT):
            await started.wait()
        os.kill(pid, signal.SIGKILL)
    assert errors, f"{tool} ended without an error after its server was killed"
    return errors[0]
