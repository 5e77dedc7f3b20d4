"""A virtual server's subset as one more step of the policy.

The endpoint a request came in on (``/mcp/{name}``) is in its context; what lies
outside that server's globs is invisible in lists and refused like an unknown
name, before the configured rules (``authorization:``) are asked. Wrapping the
policy, rather than adding a branch to the dispatcher, keeps one request path for
the plain endpoint and every virtual one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol import Kind
from . import Action, Policy

if TYPE_CHECKING:
    from ..context import RequestContext


def kind_of(action: Action) -> Kind | None:
    """Which globs of a server judge this action (None: it names nothing)."""
    if action.uri is not None:
        return "resources"
    if action.name is None:
        return None
    return "tools" if action.method == "tools/call" else "prompts"


class EndpointScoped:
    """``inner``, restricted to the virtual server of the request's endpoint, if any."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.varies_per_caller = inner.varies_per_caller

    @staticmethod
    def _in_subset(ctx: RequestContext, action: Action, kind: Kind | None = None) -> bool:
        server = ctx.server
        if server is None:
            return True
        kind = kind or kind_of(action)
        if kind == "resourceTemplates":
            kind = "resources"
        return kind is not None and server.admits(kind, action.exposed)

    def authorize(self, ctx: RequestContext, action: Action) -> bool:
        return self._in_subset(ctx, action) and self.inner.authorize(ctx, action)

    def visible(self, ctx: RequestContext, kind: Kind, action: Action) -> bool:
        return self._in_subset(ctx, action, kind) and self.inner.visible(ctx, kind, action)

    def throttle(self, ctx: RequestContext, method: str, name: str | None) -> float | None:
        return self.inner.throttle(ctx, method, name)
