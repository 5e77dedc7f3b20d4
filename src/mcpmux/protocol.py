"""MCP as the gateway needs it: versions, method tables, ``_meta`` keys, error codes,
and the few per-client rules (capabilities, log levels) that every path applies.

Everything here is constant or a small pure function. It is the one place these
are defined: the listeners, the dispatcher, the upstream kinds and the 2026 layer
all read them from here.
"""

from __future__ import annotations

from typing import Any, Final, Literal

# -- protocol revisions -----------------------------------------------------------
#: Handshake era (``initialize``, sessions), newest first.
HANDSHAKE_VERSIONS: Final[tuple[str, ...]] = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
#: Stateless era (an envelope on every request).
MODERN_VERSIONS: Final[tuple[str, ...]] = ("2026-07-28",)
ALL_VERSIONS: Final[tuple[str, ...]] = MODERN_VERSIONS + HANDSHAKE_VERSIONS
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[0]
LATEST_MODERN: Final = MODERN_VERSIONS[0]
#: Sessions from this revision on get resumable SSE answers (priming event, ids).
RESUMABLE_FROM: Final = "2025-11-25"

# -- the 2026 envelope in ``params._meta`` -------------------------------------------
K_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
K_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
K_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
K_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
K_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
K_SUBSCRIPTION: Final = "io.modelcontextprotocol/subscriptionId"
#: The per-request envelope: the client's word to the gateway, not to a handshake target.
ENVELOPE_KEYS: Final[tuple[str, ...]] = (K_VERSION, K_CAPABILITIES, K_CLIENT_INFO, K_LOG_LEVEL)

# -- 2026 error codes -----------------------------------------------------------
HEADER_MISMATCH: Final = -32020
MISSING_CAPABILITY: Final = -32021
UNSUPPORTED_VERSION: Final = -32022

# -- methods --------------------------------------------------------------------
#: Methods that do not exist in the 2026 (stateless) protocol.
HANDSHAKE_ONLY: Final = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
#: Calls a handshake-era target may interrupt with a server->client request.
HELD_METHODS: Final = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})
#: Methods whose name (or URI) is mirrored into the ``Mcp-Name`` header.
NAME_PARAM: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
              # SEP-2663: the tasks methods mirror their task id into Mcp-Name.
              "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}

Kind = Literal["tools", "prompts", "resources", "resourceTemplates"]
KINDS: Final[tuple[Kind, ...]] = ("tools", "prompts", "resources", "resourceTemplates")
LIST_METHODS: Final[dict[str, Kind]] = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}
#: The notification that tells clients a kind changed.
CHANGED: Final[dict[Kind, str]] = {
    "tools": "notifications/tools/list_changed",
    "prompts": "notifications/prompts/list_changed",
    "resources": "notifications/resources/list_changed",
    "resourceTemplates": "notifications/resources/list_changed",
}
#: A target's list_changed notification and the kind to re-list.
LIST_CHANGED: Final[dict[str, Kind]] = {
    "notifications/tools/list_changed": "tools",
    "notifications/prompts/list_changed": "prompts",
    "notifications/resources/list_changed": "resources",
}
#: Which server capability must be present for a kind to be listed.
CAPABILITY: Final[dict[Kind, str]] = {
    "tools": "tools",
    "prompts": "prompts",
    "resources": "resources",
    "resourceTemplates": "resources",
}

# -- client capabilities ------------------------------------------------------------
#: Server->client requests and the client capability each needs.
NEEDS_CAPABILITY: Final = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}


def missing_capability(capabilities: dict[str, Any], method: str) -> str | None:
    """The capability a client lacks to answer a server request of ``method``, if any."""
    needed = NEEDS_CAPABILITY.get(method)
    return needed if needed is not None and needed not in capabilities else None


# -- logging --------------------------------------------------------------------
LOG_LEVELS: Final[tuple[str, ...]] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LEVEL_RANK: Final = {name: i for i, name in enumerate(LOG_LEVELS)}


def log_admits(level: str | None, msg: dict[str, Any]) -> bool:
    """Does a client that asked for ``level`` get this ``notifications/message``?
    Unknown or missing levels rank above every known one (never filtered out)."""
    if level is None:
        return False
    got = (msg.get("params") or {}).get("level")
    rank = LEVEL_RANK.get(got, len(LEVEL_RANK)) if isinstance(got, str) else len(LEVEL_RANK)
    return rank >= LEVEL_RANK[level]

