"""Task ownership: every background task belongs to an owner that cancels it.

asyncio.TaskGroup fits code with one lexical scope; gateway objects (targets,
upstream sessions, client sessions) live across requests, so each owns a
``TaskOwner`` and closes it when the object closes. Nothing is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

log = logging.getLogger("mcpmux")


class TaskOwner:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self.name} is closed")
        # The Task made directly: asyncio.create_task is Python on 3.11, and the loop's
        # would format a "Task-N" name first.
        task = asyncio.Task(coro, loop=asyncio.get_running_loop(), name=f"{self.name}:{name or 'task'}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task %s failed: %r", task.get_name(), exc, exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel every owned task and wait for them (a task may not outlive its owner)."""
        self._closed = True
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def race(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait until the first of ``tasks`` is done, then cancel the others and wait for
    them, also when the caller is cancelled: none outlives the call."""
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except BaseException as exc:
        await _cancel(tasks)
        raise exc  # by name, not a finally: docs/architecture.md, "Compiled modules"
    await _cancel(tasks)


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
