"""The admin listener: health, readiness and target state, for people and probes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import __version__
from .dispatch import Dispatcher


def admin_app(dispatcher: Dispatcher) -> Starlette:
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
        return JSONResponse(
            {"ready": ok, "connecting": pending, "unavailable": down},
            status_code=200 if ok else 503,
        )

    async def targets(_: Request) -> Response:
        return JSONResponse({**gateway.status(), "sessions": len(dispatcher.sessions)})

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

    return Starlette(
        routes=[
            Route("/api/discovery", discovery),
            Route("/api/config/status", config_status),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/api/targets", targets),
            Route("/api/targets/{name}", target),
        ]
    )
