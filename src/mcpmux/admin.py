"""The admin listener: health, readiness and target state, for people and probes.

With ``admin.token`` set, every endpoint needs ``Authorization: Bearer <token>``
(compared in constant time) except ``/healthz`` and ``/readyz``: probes (kubelet,
load balancers) usually cannot send a token, and those two say nothing but
"up" and which targets are connecting or down. Nothing here prints a secret from
the config: target status has names, states and errors, never headers, env or
client secrets.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import __version__
from .dispatch import Dispatcher

#: Endpoints open without the admin token (probes).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def require_token(app: ASGIApp, token: str) -> ASGIApp:
    """``app`` behind a static bearer token (except :data:`OPEN_PATHS`)."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") not in OPEN_PATHS:
            given = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
            if not hmac.compare_digest(given.strip(), expected):
                response = JSONResponse(
                    {"error": "unauthorized: this admin endpoint needs Authorization: Bearer <admin.token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="mcpmux-admin"'},
                )
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


def admin_app(dispatcher: Dispatcher) -> ASGIApp:
    gateway = dispatcher.gateway

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

    async def target(request: Request) -> Response:
        t = gateway.targets.get(request.path_params["name"])
        if t is None:
            return JSONResponse({"error": f"no target named {request.path_params['name']!r}"}, 404)
        return JSONResponse(t.status())

    async def config_status(_: Request) -> Response:
        """Whether the last edit of the watched config file was applied, and if not, why."""
        return JSONResponse(gateway.config_status)

    async def discovery(_: Request) -> Response:
        """Each discovery source: the watched file, and Kubernetes when configured."""
        out = {name: status() for name, status in gateway.source_status.items()}
        out["file"] = gateway.config_status
        return JSONResponse(out)

    app = Starlette(
        routes=[
            Route("/api/discovery", discovery),
            Route("/api/config/status", config_status),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/api/targets", targets),
            Route("/api/targets/{name}", target),
        ]
    )
    token = gateway.config.admin.token
    return require_token(app, token) if token else app
