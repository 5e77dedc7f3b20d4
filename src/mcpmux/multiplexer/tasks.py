"""Task ids (2025-11-25 tasks, and the 2026 tasks extension, SEP-2663) routed back to
the target and caller that own them.

The gateway implements no tasks itself: a target that supports them creates them, and
every id it hands out is replaced by a sealed one naming that target, the caller's
scope (its session, or its principal for stateless requests) and the target's own id.
Sealed with the same key as the 2026 ``requestState`` (``MCPMUX_STATE_KEY`` across
replicas), so any replica can route it, and an id from one session is refused in
another: ids are never guessable across sessions.
"""

from __future__ import annotations

from typing import Any, Final

from ..era import StateSealer
from ..jsonrpc import INVALID_PARAMS, Message, RPCError

#: ``_meta`` key naming the task a message belongs to.
RELATED: Final = "io.modelcontextprotocol/related-task"
#: Methods that carry a task id in ``params.taskId`` and go to the task's target.
BY_ID: Final[tuple[str, ...]] = ("tasks/get", "tasks/result", "tasks/cancel")
#: The 2026 tasks extension (SEP-2663): advertised under ``capabilities.extensions``,
#: task creation decided by the server (a flat ``CreateTaskResult``), no tasks/result
#: and no tasks/list (the result is inlined on tasks/get), and tasks/update for input.
EXTENSION: Final = "io.modelcontextprotocol/tasks"
#: The extension's methods that carry a task id.
BY_ID_2026: Final[tuple[str, ...]] = ("tasks/get", "tasks/update", "tasks/cancel")


def scope_of(session_id: str, owner: str | None) -> str:
    """Whose tasks: a handshake session's, or (stateless requests) a principal's."""
    return f"s:{session_id}" if session_id else f"p:{owner or ''}"


class TaskIds:
    def __init__(self, sealer: StateSealer) -> None:
        self.sealer = sealer

    def seal(self, target: str, scope: str, task_id: str) -> str:
        return "mcpmux-task." + self.sealer.seal({"t": target, "s": scope, "i": task_id})

    def open(self, sealed: Any, scope: str) -> tuple[str, str]:
        """(target, the target's id) of an id this gateway gave this scope; else -32602."""
        bad = RPCError(INVALID_PARAMS, f"unknown task: {sealed}")
        if not isinstance(sealed, str) or not sealed.startswith("mcpmux-task."):
            raise bad
        try:
            data = self.sealer.open(sealed.removeprefix("mcpmux-task."))
        except RPCError:
            raise bad from None
        target, owner, task_id = data.get("t"), data.get("s"), data.get("i")
        if owner != scope or not isinstance(target, str) or not isinstance(task_id, str):
            raise bad
        return target, task_id

    def expose(self, msg: Message, target: str, scope: str) -> Message:
        """A result or notification from ``target`` with each task id it names sealed:
        ``task.taskId`` (created), ``taskId`` (a task; tasks/status), ``tasks[]``
        (tasks/list) and the related-task ``_meta``."""
        key = "result" if "result" in msg else "params"
        body = msg.get(key)
        if not isinstance(body, dict):
            return msg
        return {**msg, key: self._body(body, target, scope)}

    def _body(self, body: dict[str, Any], target: str, scope: str) -> dict[str, Any]:
        out = dict(body)
        if isinstance(out.get("taskId"), str):
            out["taskId"] = self.seal(target, scope, out["taskId"])
        task = out.get("task")
        if isinstance(task, dict) and isinstance(task.get("taskId"), str):
            out["task"] = {**task, "taskId": self.seal(target, scope, task["taskId"])}
        tasks = out.get("tasks")
        if isinstance(tasks, list):
            out["tasks"] = [
                {**t, "taskId": self.seal(target, scope, t["taskId"])}
                if isinstance(t, dict) and isinstance(t.get("taskId"), str) else t
                for t in tasks
            ]
        meta = out.get("_meta")
        related = meta.get(RELATED) if isinstance(meta, dict) else None
        if isinstance(meta, dict) and isinstance(related, dict) and isinstance(related.get("taskId"), str):
            sealed = self.seal(target, scope, related["taskId"])
            out["_meta"] = {**meta, RELATED: {**related, "taskId": sealed}}
        return out


def extension(capabilities: Any) -> dict[str, Any] | None:
    """The tasks extension's settings in ``capabilities`` (a server's or a client's), if declared."""
    ext = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    found = ext.get(EXTENSION) if isinstance(ext, dict) else None
    return found if isinstance(found, dict) else None


def supports(capabilities: dict[str, Any], *path: str) -> bool:
    """Does a target's ``tasks`` capability declare ``path`` (e.g. requests, tools, call)?"""
    node: Any = capabilities.get("tasks")
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return isinstance(node, dict)


def merge_capability(into: dict[str, Any], tasks: dict[str, Any]) -> None:
    """The union of targets' ``tasks`` capabilities (each key an object, nested)."""
    for key, value in tasks.items():
        if isinstance(value, dict):
            merge_capability(into.setdefault(key, {}), value)
        else:
            into.setdefault(key, value)
