"""The 2026-07-28 (stateless) protocol as the gateway sees it.

A modern request carries its protocol version, client capabilities, client
info and log level in ``params._meta``; HTTP mirrors ``method`` and the name
or URI into ``Mcp-Method`` / ``Mcp-Name`` (and annotated tool arguments into
``Mcp-Param-*``). Everything here is small pure functions over plain dicts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .jsonrpc import INVALID_PARAMS, Message, RPCError
from .protocol import (  # noqa: F401 - the 2026 names the era layer's users read here
    ALL_VERSIONS,
    ENVELOPE_KEYS,
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    K_CAPABILITIES,
    K_CLIENT_INFO,
    K_LOG_LEVEL,
    K_SERVER_INFO,
    K_SUBSCRIPTION,
    K_VERSION,
    LATEST_MODERN,
    LOG_LEVELS,
    MISSING_CAPABILITY,
    MODERN_VERSIONS,
    NAME_PARAM,
    UNSUPPORTED_VERSION,
)

_SENTINEL: Final = re.compile(r"\A=\?base64\?(.*)\?=\Z", re.S)
_SAFE: Final = re.compile(r"\A[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?\Z")


def is_modern(msg: Message) -> bool:
    """A request in the 2026 era: it names its protocol version in ``_meta``."""
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and K_VERSION in meta


@dataclass(slots=True, init=False)
class Envelope:
    """A validated ``_meta`` envelope (``__init__`` written out: a compiled
    dataclass's generated one is interpreted)."""

    version: str
    capabilities: dict[str, Any]
    client_info: dict[str, Any]
    log_level: str | None

    def __init__(self, version: str, capabilities: dict[str, Any], client_info: dict[str, Any],
                 log_level: str | None) -> None:
        self.version = version
        self.capabilities = capabilities
        self.client_info = client_info
        self.log_level = log_level


def without_envelope(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the 2026 envelope keys taken out of ``_meta`` (the rest kept).

    A handshake-era target learnt the version and capabilities from ``initialize``;
    the envelope keys are reserved to 2026 requests, and servers that serve both eras
    refuse them on a handshake connection (the Python SDK answers -32600)."""
    meta = params.get("_meta")
    if not isinstance(meta, dict) or not any(k in meta for k in ENVELOPE_KEYS):
        return params
    rest = {k: v for k, v in meta.items() if k not in ENVELOPE_KEYS}
    out = {k: v for k, v in params.items() if k != "_meta"}
    if rest:
        out["_meta"] = rest
    return out


def decode_header(value: str | None) -> str | None:
    """Undo the ``=?base64?…?=`` sentinel encoding of Mcp-Name / Mcp-Param-* values."""
    if value is None:
        return None
    m = _SENTINEL.match(value)
    if m is None:
        return value
    try:
        return base64.b64decode(m.group(1), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RPCError(HEADER_MISMATCH, "header value has a malformed base64 sentinel") from None


def encode_header(value: str) -> str:
    if _SAFE.match(value) and not _SENTINEL.match(value):
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def check_envelope(msg: Message, headers: dict[str, str] | None) -> Envelope:
    """Validate a modern request's ``_meta`` and mirrored headers; raise the 2026 errors."""
    params = msg.get("params")
    if not isinstance(params, dict):
        params = {}
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise RPCError(INVALID_PARAMS, f"params._meta must carry {K_VERSION} and {K_CAPABILITIES}")
    missing = [k for k in (K_VERSION, K_CAPABILITIES) if k not in meta]
    if missing:
        raise RPCError(INVALID_PARAMS, f"params._meta is missing {', '.join(missing)}")
    version = meta[K_VERSION]
    if headers is not None:
        if headers.get("mcp-protocol-version") != version:
            raise RPCError(
                HEADER_MISMATCH,
                f"MCP-Protocol-Version header {headers.get('mcp-protocol-version')!r} does not match "
                f"_meta {K_VERSION} {version!r}",
            )
        if headers.get("mcp-method") != msg.get("method"):
            raise RPCError(
                HEADER_MISMATCH,
                f"Mcp-Method header {headers.get('mcp-method')!r} does not match method {msg.get('method')!r}",
            )
        key = NAME_PARAM.get(msg.get("method", ""))
        if key is not None and params.get(key) is not None:
            got = decode_header(headers.get("mcp-name"))
            if got != params.get(key):
                raise RPCError(
                    HEADER_MISMATCH,
                    f"Mcp-Name header {got!r} does not match params.{key} {params.get(key)!r}",
                )
    if not isinstance(version, str):
        raise RPCError(INVALID_PARAMS, f"_meta {K_VERSION} must be a string")
    if version not in MODERN_VERSIONS:
        raise RPCError(
            UNSUPPORTED_VERSION,
            f"unsupported protocol version {version!r}",
            {"supported": list(ALL_VERSIONS), "requested": version},
        )
    caps = meta[K_CAPABILITIES]
    if not isinstance(caps, dict):
        raise RPCError(INVALID_PARAMS, f"_meta {K_CAPABILITIES} must be an object")
    info = meta.get(K_CLIENT_INFO)
    if info is not None and not isinstance(info, dict):
        raise RPCError(INVALID_PARAMS, f"_meta {K_CLIENT_INFO} must be an object")
    level = meta.get(K_LOG_LEVEL)
    if level is not None and level not in LOG_LEVELS:
        raise RPCError(INVALID_PARAMS, f"_meta {K_LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}")
    return Envelope(version, caps, info or {}, level)


# -- x-mcp-header: tool arguments mirrored into Mcp-Param-* ---------------------
def header_params(schema: Any) -> dict[str, tuple[str, Any]]:
    """``{header name: (argument name, declared type)}`` for a tool's input schema."""
    out: dict[str, tuple[str, Any]] = {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return out
    for arg, prop in props.items():
        if isinstance(prop, dict) and isinstance(prop.get("x-mcp-header"), str):
            out[prop["x-mcp-header"]] = (arg, prop.get("type"))
    return out


def render_param(value: Any) -> str | None:
    """A tool argument as an Mcp-Param-* value (None: no header)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, float, str)):
        return encode_header(str(value))
    return None


def param_headers(schema: Any, arguments: Any) -> dict[str, str]:
    """The ``Mcp-Param-*`` headers a request to a modern target must carry."""
    out: dict[str, str] = {}
    if not isinstance(arguments, dict):
        return out
    for header, (arg, _) in header_params(schema).items():
        rendered = render_param(arguments.get(arg))
        if rendered is not None:
            out[f"Mcp-Param-{header}"] = rendered
    return out


def check_param_headers(schema: Any, arguments: Any, headers: dict[str, str]) -> None:
    """Annotated arguments must be mirrored, and match, when the client sends the call."""
    args = arguments if isinstance(arguments, dict) else {}
    for header, (arg, kind) in header_params(schema).items():
        value = args.get(arg)
        got = headers.get(f"mcp-param-{header.lower()}")
        if value is None:
            continue
        if got is None:
            raise RPCError(HEADER_MISMATCH, f"missing Mcp-Param-{header} header for argument {arg!r}")
        decoded = decode_header(got)
        if not _param_matches(kind, value, decoded or ""):
            raise RPCError(
                HEADER_MISMATCH, f"Mcp-Param-{header} header {decoded!r} does not match argument {arg!r}"
            )


def _param_matches(kind: Any, value: Any, decoded: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(decoded)
        except ValueError:
            return False
        return math.isclose(number, float(value), rel_tol=0, abs_tol=0)
    if isinstance(value, bool):
        return decoded == ("true" if value else "false")
    return decoded == str(value)


# -- requestState: the gateway's wrapper around what it (or a target) must see again --
class StateSealer:
    """Integrity-protects ``requestState`` (HMAC-SHA256, a few microseconds).

    The key is random per process unless ``MCPMUX_STATE_KEY`` is set, which
    replicas behind one load balancer should share.
    """

    def __init__(self, key: bytes | None = None) -> None:
        env = os.environ.get("MCPMUX_STATE_KEY")
        self._key = key or (env.encode() if env else os.urandom(32))

    def seal(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=")
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return (body + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()

    def open(self, token: Any) -> dict[str, Any]:
        bad = RPCError(INVALID_PARAMS, "requestState was not issued by this gateway or was altered")
        if not isinstance(token, str) or token.count(".") != 1:
            raise bad
        body, mac = token.encode().split(b".")
        want = base64.urlsafe_b64encode(hmac.new(self._key, body, hashlib.sha256).digest()[:16]).rstrip(b"=")
        if not hmac.compare_digest(want, mac):
            raise bad
        try:
            data = orjson.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        except (ValueError, binascii.Error):
            raise bad from None
        if not isinstance(data, dict):
            raise bad
        return data
