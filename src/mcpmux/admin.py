"""The admin listener: health, readiness and target state, for people and probes;
Prometheus ``/metrics``; and the web UI (overview and playground) at ``/``.

The UI's static files (``admin_ui/``) are open: they hold no data and no secret, and
the page asks for the token when an API answers 401. The playground speaks MCP to
``/mcp`` on this same port (the gateway's own MCP app, mounted here), so the browser
needs no CORS and the MCP port's Origin rules stay as strict as they are.

With ``admin.token`` set, every endpoint needs ``Authorization: Bearer <token>``
(compared in constant time) except ``/healthz`` and ``/readyz``: probes (kubelet,
load balancers) usually cannot send a token, and those two say nothing but
"up" and which targets are connecting or down. Nothing here prints a secret from
the config: target status has names, states and errors, never headers, env or
client secrets.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import __version__
from .dispatch import Dispatcher
from .observability.metrics import CONTENT_TYPE

#: Endpoints open without the admin token (probes, and the UI's static files).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "", "/index.html"})
OPEN_PREFIXES = ("/ui/",)
UI_DIR = Path(__file__).parent / "admin_ui"
#: Where the playground may send the admin token to /mcp, leaving Authorization to the
#: MCP listener's own authentication (a JWT, when ``auth`` is configured).
TOKEN_HEADER = b"x-mcpmux-admin-token"
#: The UI's pages: only this origin's scripts and styles; images may be data: URIs
#: (tool results); the playground may connect to another MCP URL if one is typed in.
UI_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "connect-src 'self' http: https:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def require_token(app: ASGIApp, token: str) -> ASGIApp:
    """``app`` behind a static bearer token (except :data:`OPEN_PATHS`)."""
    expected = f"Bearer {token}".encode()

    alternate = token.encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if scope["type"] == "http" and path.rstrip("/") not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            given = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
            other = next((v for k, v in scope["headers"] if k.lower() == TOKEN_HEADER), b"")
            if not (hmac.compare_digest(given.strip(), expected) or hmac.compare_digest(other.strip(), alternate)):
                response = JSONResponse(
                    {"error": "unauthorized: this admin endpoint needs Authorization: Bearer <admin.token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="mcpmux-admin"'},
                )
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


class SameOriginMCP:
    """The gateway's MCP app as the playground reaches it on the admin port.

    An ``Origin`` equal to this request's own ``Host`` is the admin page itself (the
    Host was checked by the listener's guard), so it is dropped before the MCP app's
    Origin check, which would refuse a non-loopback admin host; any other Origin is
    left for that check to judge. The admin token (``Authorization`` or
    :data:`TOKEN_HEADER`) is removed: it is the admin's, never an MCP credential.
    """

    def __init__(self, mcp: ASGIApp, token: str | None) -> None:
        self.mcp = mcp
        self.bearer = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = scope["headers"]
        origin = next((v for k, v in raw if k.lower() == b"origin"), None)
        host = next((v for k, v in raw if k.lower() == b"host"), None)
        same = origin is not None and host is not None and _netloc(origin) == host.lower()
        kept = []
        for k, v in raw:
            name = k.lower()
            if name == TOKEN_HEADER or (name == b"authorization" and self.bearer is not None
                                        and v.strip() == self.bearer):
                continue
            if name == b"origin" and same:
                continue
            kept.append((k, v))
        await self.mcp({**scope, "headers": kept}, receive, send)


def _netloc(origin: bytes) -> bytes | None:
    try:
        return urlsplit(origin.decode("latin-1")).netloc.lower().encode("latin-1")
    except ValueError:
        return None


def admin_app(dispatcher: Dispatcher, mcp: ASGIApp | None = None,
              listeners: dict[str, Any] | None = None,
              agents: Callable[[], list[dict[str, Any]]] | None = None) -> ASGIApp:
    """``mcp``: the MCP app the playground uses (None: no playground endpoint);
    ``listeners``: what the CLI bound (name -> URL), shown in the overview;
    ``agents``: the A2A agents' states (docs/a2a.md)."""
    gateway = dispatcher.gateway
    token = gateway.config.admin.token

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(_: Request) -> Response:
        """Ready once every target has had its first connection attempt (ready or failed).

        A target that is down does not make the gateway unready: that would pull the one
        endpoint out of its load balancer for every client (the article's bug, one level
        up). It is listed under ``unavailable`` so probes and people can still see it.
        """
        ok = gateway.ready()
        pending = [t.name for t in gateway.targets.values() if not t.first_attempt.is_set()]
        down = [t.name for t in gateway.targets.values() if t.first_attempt.is_set() and not t.ready]
        body: dict[str, Any] = {"ready": ok, "connecting": pending, "unavailable": down}
        state = shared_state()
        if state is not None:
            # Redis down does not make a replica unready: it serves the sessions it holds,
            # and pulling every replica out of the load balancer would serve none.
            body["state"] = state
            body["degraded"] = state.get("redis") != "up"
        return JSONResponse(body, status_code=200 if ok else 503)

    def shared_state() -> dict[str, Any] | None:
        status = getattr(dispatcher.sessions, "state_status", None)
        return status() if status is not None else None

    async def targets(_: Request) -> Response:
        out = {**gateway.status(), "sessions": len(dispatcher.sessions)}
        state = shared_state()
        if state is not None:
            out["state"] = state
        return JSONResponse(out)

    async def agent_list(_: Request) -> Response:
        return JSONResponse({"agents": agents() if agents is not None else []})

    async def target(request: Request) -> Response:
        t = gateway.targets.get(request.path_params["name"])
        if t is None:
            return JSONResponse({"error": f"no target named {request.path_params['name']!r}"}, 404)
        return JSONResponse(gateway.target_status(t))

    async def config_status(_: Request) -> Response:
        """Whether the last edit of the watched config file was applied, and if not, why."""
        return JSONResponse(gateway.config_status)

    async def discovery(_: Request) -> Response:
        """Each discovery source: the watched file, and Kubernetes when configured."""
        out = {name: status() for name, status in gateway.source_status.items()}
        out["file"] = gateway.config_status
        return JSONResponse(out)

    async def overview(_: Request) -> Response:
        """Everything the UI's overview shows, in one poll."""
        sources = {name: status() for name, status in gateway.source_status.items()}
        return JSONResponse({
            "version": __version__,
            "uptime": round(time.time() - gateway.started_at, 1),
            **gateway.status(),
            "sessions": len(dispatcher.sessions),
            "listeners": listeners or {},
            "discovery": {"file": gateway.config_status, **sources},
            "config": gateway.config_status,
            "playground": mcp is not None,
            "servers": [{"name": v.name, "search": v.search} for v in gateway.config.servers],
            "tracing": _tracing_on(),
            "agents": agents() if agents is not None else [],
        })

    async def metrics(_: Request) -> Response:
        observer = dispatcher.observer
        if observer is None:
            return JSONResponse({"error": "metrics are off in this process"}, 404)
        peers = observer.metrics.peers
        body = await peers.render_all() if peers is not None else observer.metrics.render()
        return Response(body, media_type=CONTENT_TYPE)

    async def index(_: Request) -> Response:
        return FileResponse(UI_DIR / "index.html", headers={**UI_HEADERS, "Cache-Control": "no-cache"})

    routes: list[Any] = [
        Route("/api/discovery", discovery),
        Route("/api/config/status", config_status),
        Route("/api/overview", overview),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/targets", targets),
        Route("/api/agents", agent_list),
        Route("/api/targets/{name}", target),
        Route("/", index),
        Route("/index.html", index),
        Mount("/ui", StaticFiles(directory=UI_DIR), name="ui"),
    ]
    if mcp is not None:
        same_origin = SameOriginMCP(mcp, token)
        routes.append(Route("/mcp", same_origin, methods=["GET", "POST", "DELETE"]))
        # Virtual servers, so the playground can try each one's subset.
        routes.append(Route("/mcp/{server}", same_origin, methods=["GET", "POST", "DELETE"]))
    app = Starlette(routes=routes)
    return require_token(app, token) if token else app


def _tracing_on() -> bool:
    from .observability import tracing

    return tracing.TRACER is not None
