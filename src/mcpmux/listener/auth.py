"""The MCP port as an OAuth 2.1 resource server: authenticate each HTTP request once.

``StreamableHTTP`` calls :meth:`ResourceServer.authenticate` at its entry, before it
reads a body or looks a session up, for ``/mcp`` (handshake and 2026 requests),
``/sse`` and ``/messages``. A refusal is answered here — 401 with a
``WWW-Authenticate: Bearer resource_metadata="…"`` challenge, 403 for a missing
scope, 503 when the signing keys cannot be loaded — so a refused request changes
nothing and reaches no target. The RFC 9728 metadata is served without
authentication at ``/.well-known/oauth-protected-resource`` and its path-specific
form (``…/mcp``, and the configured resource's path).

The cost on the hot path is the authenticator's: a token already validated is a
SHA-256 and a dict lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

from ..config import AuthConfig
from ..jsonrpc import INVALID_REQUEST, error
from ..policy.auth import (
    AuthError,
    JwksUnavailable,
    JwtAuthenticator,
    Principal,
    metadata_paths,
    metadata_url,
    protected_resource_metadata,
    public_base_url,
    www_authenticate,
)
from .streams import send_json

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: JSON-RPC code of a 401/403 body (the HTTP status and challenge are what clients act on).
UNAUTHORIZED: Final = INVALID_REQUEST
#: JSON-RPC code of the 503 body when no token can be checked.
AUTH_UNAVAILABLE: Final = -32000


class ResourceServer:
    def __init__(self, cfg: AuthConfig, authenticator: JwtAuthenticator, mcp_path: str = "/mcp") -> None:
        self.cfg = cfg
        self.authenticator = authenticator
        paths = set(metadata_paths("http://localhost" + mcp_path))
        if cfg.resource:
            paths.update(metadata_paths(cfg.resource))
        #: Paths that serve the metadata document (no authentication).
        self.metadata_paths = frozenset(paths)
        self._mcp_path = mcp_path
        #: The ``scope`` a challenge suggests: what every token needs, else what is offered.
        self.scope_hint = " ".join(cfg.required_scopes or cfg.scopes_supported) or None
        self._origin: str | None = None
        if cfg.resource:
            parts = urlsplit(cfg.resource)
            self._origin = f"{parts.scheme}://{parts.netloc}"

    async def aclose(self) -> None:
        await self.authenticator.aclose()

    # -- URLs ------------------------------------------------------------------
    def base_url(self, scope: Scope, headers: dict[str, str]) -> str:
        """``scheme://host`` as clients see the MCP port (proxy headers only if trusted)."""
        host = headers.get("host")
        if not host:
            server = scope.get("server") or ("localhost", None)
            host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
        return public_base_url(headers, scope.get("scheme", "http"), host, self.cfg.trust_forwarded_headers)

    def resource(self, base: str) -> str:
        return self.cfg.resource or base.rstrip("/") + self._mcp_path

    def metadata_url(self, scope: Scope, headers: dict[str, str]) -> str:
        """Where the challenge points: the configured resource's own well-known URL, else
        the one of the URL the client used."""
        base = self.base_url(scope, headers)
        return metadata_url(self._origin or base, self.resource(base))

    # -- the two entry points ------------------------------------------------------
    async def metadata(self, scope: Scope, headers: dict[str, str], send: Send) -> None:
        """RFC 9728 Protected Resource Metadata (public: clients read it before they
        have a token, and browser clients from another origin)."""
        cors = [(b"access-control-allow-origin", b"*")]
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204,
                        "headers": [*cors, (b"access-control-allow-methods", b"GET")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": "use GET"}, [(b"allow", b"GET")])
            return
        doc = protected_resource_metadata(self.cfg, self.base_url(scope, headers))
        await send_json(send, 200, doc, [*cors, (b"cache-control", b"max-age=300")])

    async def authenticate(self, scope: Scope, headers: dict[str, str], send: Send) -> Principal | None:
        """The caller, or None after answering the refusal."""
        try:
            return await self.authenticator.authenticate(
                headers.get("authorization"), scope.get("query_string") or b""
            )
        except JwksUnavailable as unavailable:  # one name per type (docs/architecture.md)
            body = error(None, AUTH_UNAVAILABLE,
                         f"authentication is temporarily unavailable: {unavailable.description}")
            await send_json(send, 503, body, [(b"retry-after", b"5")])
        except AuthError as err:
            challenge = www_authenticate(err, self.metadata_url(scope, headers), self.scope_hint)
            data: dict[str, Any] = {"status": err.status}
            if err.error:
                data["error"] = err.error
            what = "forbidden" if err.status == 403 else "unauthorized"
            body = error(None, UNAUTHORIZED, f"{what}: {err.description}", data)
            await send_json(send, err.status, body, [(b"www-authenticate", challenge.encode("latin-1"))])
        return None
