"""JSON-RPC 2.0 as the gateway sees it: plain dicts, parsed once with orjson.

The forwarding path never builds model objects per message: it reads the few
keys routing needs and passes every other field through untouched.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

Message = dict[str, Any]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: A target the call needs is down, failed or timed out (server-defined range).
TARGET_UNAVAILABLE: Final = -32001
#: The request was cancelled by the client before its target answered.
REQUEST_CANCELLED: Final = -32800
#: The caller is over a rate limit (``data.retryAfter`` says when to try again).
RATE_LIMITED: Final = -32000

loads = orjson.loads


def dumps(msg: Any) -> bytes:
    return orjson.dumps(msg)


def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (peers send anything)."""
    return value if isinstance(value, dict) else {}


def is_request(msg: Message) -> bool:
    return "method" in msg and "id" in msg


def is_notification(msg: Message) -> bool:
    return "method" in msg and "id" not in msg


def is_response(msg: Message) -> bool:
    return "method" not in msg and ("result" in msg or "error" in msg)


def error(
    id: Any, code: int, message: str, data: Any = None
) -> Message:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id, "error": err}


def result(id: Any, value: Any) -> Message:
    return {"jsonrpc": "2.0", "id": id, "result": value}


def notification(method: str, params: Any = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def validate(msg: Any) -> str | None:
    """Return why ``msg`` is not a JSON-RPC 2.0 message, or None if it is one."""
    if not isinstance(msg, dict):
        return "a JSON-RPC message must be a JSON object"
    if msg.get("jsonrpc") != "2.0":
        return 'missing or wrong "jsonrpc" member: it must be "2.0"'
    if "method" in msg:
        if not isinstance(msg["method"], str):
            return '"method" must be a string'
        if "params" in msg and not isinstance(msg["params"], (dict, list)):
            return '"params" must be an object'
    elif "result" not in msg and "error" not in msg:
        return 'a message needs "method" (request/notification) or "result"/"error" (response)'
    if "id" in msg and not isinstance(msg["id"], (str, int)) and msg["id"] is not None:
        return '"id" must be a string or an integer'
    return None


class RPCError(Exception):
    """An error to answer a request with; carries its JSON-RPC code and data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_message(self, id: Any) -> Message:
        return error(id, self.code, self.message, self.data)
