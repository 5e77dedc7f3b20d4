"""An agent as an MCP target of kind ``a2a``, answered in process like an OpenAPI
target: one tool, ``send_message``, whose call is an A2A 1.0 ``SendMessage`` (or
``SendStreamingMessage`` when the client asked for progress). Routing, prefixes,
curation and policies apply to it as to any tool. Agent failures are ``isError``
results: an agent being down does not make the target unhealthy once its card was
read."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from .. import __version__, sse
from ..config import A2aAgentConfig
from ..jsonrpc import Message
from ..redact import redact
from ..upstream.base import SUPPORTED_VERSIONS, CallSink, UpstreamError, UpstreamSession
from .agents import AgentError, connect_reason, fetch_card, read_limited
from .card import jsonrpc_path, skills_text

log = logging.getLogger("mcpmux.a2a")

#: The A2A protocol version the tool speaks to agents.
A2A_VERSION = "1.0"
TOOL = "send_message"

_INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "The text to send to the agent."},
        "context_id": {"type": "string",
                       "description": "Continue this conversation (a contextId from an earlier answer)."},
    },
    "required": ["message"],
    "additionalProperties": False,
}


class A2aSession(UpstreamSession):
    kind = "a2a"

    def __init__(self, target: str, agent: A2aAgentConfig, client: aiohttp.ClientSession,
                 catalog: UpstreamSession | None = None) -> None:
        super().__init__(target, agent.timeout)
        self.agent = agent
        self._http = client
        self.card: dict[str, Any] | None = catalog.card if isinstance(catalog, A2aSession) else None

    async def _connect(self) -> None:
        if self.card is not None:
            return
        try:
            self.card = await fetch_card(self._http, self.agent)
        except AgentError as exc:
            raise UpstreamError(self.target, exc.reason) from None

    async def _send(self, msg: Message) -> None:
        """Notifications need no answer."""

    async def _request(self, msg: Message, sink: CallSink | None) -> Message:
        rid = msg.get("id")
        method = msg.get("method")
        found = msg.get("params")
        params: dict[str, Any] = found if isinstance(found, dict) else {}
        card = self.card or {}
        if method == "initialize":
            asked = params.get("protocolVersion")
            result: dict[str, Any] = {
                "protocolVersion": asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": str(card.get("name") or self.target),
                               "version": str(card.get("version") or "0")},
            }
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            result = {"tools": [self._tool(card)]}
        elif method == "tools/call":
            if params.get("name") != TOOL:
                return _error(rid, -32602, f"Unknown tool: {params.get('name')}")
            found_args = params.get("arguments")
            args: dict[str, Any] = found_args if isinstance(found_args, dict) else {}
            text, context = args.get("message"), args.get("context_id")
            if not isinstance(text, str) or (context is not None and not isinstance(context, str)):
                return _error(rid, -32602, "arguments: 'message' (string) is required; 'context_id' is a string")
            meta = params.get("_meta")
            token = meta.get("progressToken") if isinstance(meta, dict) else None
            result = await self.send_message(text, context, token, sink)
        else:
            return _error(rid, -32601, f"Method not found: {method}")
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _tool(self, card: dict[str, Any]) -> dict[str, Any]:
        about = card.get("description") or f"the A2A agent {self.target}"
        skills = skills_text(card)
        description = f"Send a message to {card.get('name') or self.target}: {about}"
        if skills:
            description += f"\nSkills:\n{skills}"
        return {"name": TOOL, "description": description, "inputSchema": _INPUT_SCHEMA}

    async def send_message(self, text: str, context_id: str | None, token: Any,
                           sink: CallSink | None) -> dict[str, Any]:
        message: dict[str, Any] = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER",
                                   "parts": [{"text": text}]}
        if context_id:
            message["contextId"] = context_id
        streaming = token is not None and sink is not None and bool(
            (self.card or {}).get("capabilities", {}).get("streaming"))
        request = {"jsonrpc": "2.0", "id": 1,
                   "method": "SendStreamingMessage" if streaming else "SendMessage",
                   "params": {"message": message}}
        url = f"{self.agent.url.rstrip('/')}/{jsonrpc_path(self.card or {}, self.agent.url)}"
        headers = {"Content-Type": "application/json", "A2A-Version": A2A_VERSION,
                   "Accept": "text/event-stream" if streaming else "application/json",
                   "Accept-Encoding": "identity", "User-Agent": f"mcpmux/{__version__}", **self.agent.headers}
        try:
            async with self._http.post(url, data=orjson.dumps(request), headers=headers,
                                       allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(
                                           total=None if streaming else self.agent.timeout,
                                           sock_connect=self.agent.timeout)) as resp:
                if resp.status >= 400:
                    return _failure(self.target, f"HTTP {resp.status} from {url}")
                if streaming:
                    outcome = await self._stream(resp, token, sink)
                else:
                    raw = await read_limited(resp, self.max_response_bytes + 1)
                    if len(raw) > self.max_response_bytes:
                        return _failure(self.target, f"answer larger than {self.max_response_bytes} bytes")
                    outcome = _answer(orjson.loads(raw))
        except TimeoutError:
            return _failure(self.target, f"no answer within {self.agent.timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            return _failure(self.target, f"cannot connect: {connect_reason(exc)}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: not JSON
            return _failure(self.target, f"{type(exc).__name__}: {exc}")
        except AgentError as exc:
            return _failure(self.target, exc.reason)
        return _result(outcome)

    async def _stream(self, resp: aiohttp.ClientResponse, token: Any, sink: CallSink | None) -> dict[str, Any]:
        """Folds the events into the final task (or message); status updates become
        progress notifications."""
        task: dict[str, Any] | None = None
        step = 0
        async for payload in _sse_data(resp, self.max_response_bytes):
            event = _answer(orjson.loads(payload))
            if "message" in event:
                return event
            update = event.get("statusUpdate") or event.get("artifactUpdate")
            if task is None and isinstance(update, dict):  # an agent that sent no Task first
                task = {"id": update.get("taskId"), "contextId": update.get("contextId"), "status": {}}
            if "task" in event:
                task = event["task"]
            elif "statusUpdate" in event and task is not None:
                task["status"] = event["statusUpdate"].get("status", {})
                step += 1
                note = _text(task["status"].get("message", {}).get("parts", []))
                await self.dispatch({"jsonrpc": "2.0", "method": "notifications/progress",
                                     "params": {"progressToken": token, "progress": step,
                                                "message": note or task["status"].get("state", "")}}, sink)
            elif "artifactUpdate" in event and task is not None:
                artifact = event["artifactUpdate"].get("artifact", {})
                artifacts = task.setdefault("artifacts", [])
                same = next((a for a in artifacts if a.get("artifactId") == artifact.get("artifactId")), None)
                if same is not None and event["artifactUpdate"].get("append"):
                    same.setdefault("parts", []).extend(artifact.get("parts", []))
                else:
                    artifacts.append(artifact)
        if task is None:
            raise AgentError(self.target, "the stream ended without a task or message")
        return {"task": task}


async def _sse_data(resp: aiohttp.ClientResponse, limit: int) -> AsyncIterator[str]:
    """The ``data`` of each SSE event as it arrives; an event over ``limit`` bytes fails."""
    parser = sse.Parser(limit)
    try:
        async for chunk in resp.content.iter_any():
            for event in parser.feed(chunk):
                if event.data:
                    yield event.data
    except sse.EventTooLarge:
        raise AgentError("", f"a stream event larger than {limit} bytes (limits.max_response_bytes)") from None


def _answer(envelope: Any) -> dict[str, Any]:
    """The ``result`` of a JSON-RPC answer; an ``error`` becomes AgentError."""
    if not isinstance(envelope, dict):
        raise AgentError("", "an answer that is not a JSON object")
    if "error" in envelope:
        err = envelope["error"] if isinstance(envelope["error"], dict) else {}
        raise AgentError("", f"A2A error {err.get('code')}: {err.get('message')}")
    result = envelope.get("result")
    if not isinstance(result, dict):
        raise AgentError("", "an answer without a result")
    return result


def _text(parts: Any) -> str:
    return "\n".join(p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str))


def _result(outcome: dict[str, Any]) -> dict[str, Any]:
    """The reply text (the message, else the artifacts, else the status message) and
    the whole A2A answer as structuredContent."""
    if "message" in outcome:
        text = _text(outcome["message"].get("parts"))
        return {"content": [{"type": "text", "text": text}], "structuredContent": outcome}
    task = outcome.get("task", {})
    text = "\n".join(t for a in task.get("artifacts") or () if (t := _text(a.get("parts"))))
    status = task.get("status") or {}
    if not text:
        text = _text((status.get("message") or {}).get("parts"))
    state = status.get("state", "")
    failed = state in ("TASK_STATE_FAILED", "TASK_STATE_REJECTED", "TASK_STATE_CANCELED")
    if failed:
        text = f"the agent's task ended {state}" + (f": {text}" if text else "")
    out: dict[str, Any] = {"content": [{"type": "text", "text": text}], "structuredContent": outcome}
    if failed:
        out["isError"] = True
    return out


def _failure(target: str, reason: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": redact(f"agent '{target}': {reason}")}], "isError": True}


def _error(rid: Any, code: int, message: str) -> Message:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
