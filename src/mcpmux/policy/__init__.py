"""Where policies plug into the request path.

The dispatcher routes a request first, then asks the policy: ``authorize`` sees
what the request would reach (target, tool, prompt or resource as the target
names it) before anything is forwarded, and ``visible`` filters every list
page. A denial is answered exactly like an unknown name, so it reveals nothing.
``throttle`` runs once per client request, before routing: a caller over its rate
limit is told when to retry and nothing is forwarded.

Implementations: :class:`AllowAll` (the default) and
:class:`~mcpmux.policy.authorization.RulesPolicy` (CEL rules and rate limits);
:class:`~mcpmux.policy.servers.EndpointScoped` puts a virtual server's subset in
front of either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import Kind

if TYPE_CHECKING:
    from ..context import RequestContext


@dataclass(slots=True, init=False)
class Action:
    """What a routed request would do upstream. Policies read it and must not
    change it (one is built per check).

    The ``__init__`` is written out: compiled, a dataclass keeps the generated one,
    interpreted, and frozen it set each field through ``object.__setattr__``
    (4 % of a forwarded call's instructions)."""

    method: str
    target: str
    #: The tool's or prompt's name, or the resource URI, as the target knows it.
    name: str | None
    uri: str | None
    arguments: Any
    #: The name or URI as the client knows it (prefixed, renamed): what a virtual
    #: server's globs match.
    exposed: str | None

    def __init__(self, method: str, target: str, name: str | None = None, uri: str | None = None,
                 arguments: Any = None, exposed: str | None = None) -> None:
        self.method = method
        self.target = target
        self.name = name
        self.uri = uri
        self.arguments = arguments
        self.exposed = exposed


class Policy(Protocol):
    #: True when lists may differ from caller to caller (2026 lists are then
    #: ``cacheScope: private`` and never cached across callers).
    varies_per_caller: bool

    def authorize(self, ctx: RequestContext, action: Action) -> bool:
        """May this caller do this? Called after routing, before forwarding."""
        ...

    def visible(self, ctx: RequestContext, kind: Kind, action: Action) -> bool:
        """Does this caller see this list item? ``action`` is what calling (or reading)
        it would be, with the name or URI as the target knows it."""
        ...

    def throttle(self, ctx: RequestContext, method: str, name: str | None) -> float | None:
        """Charge one request (``name``: the tool a ``tools/call`` asks for, as the client
        named it). None when allowed, else the seconds until it would be."""
        ...


class AllowAll:
    """No authentication, no rules: everyone may do everything (the default)."""

    varies_per_caller = False

    def authorize(self, ctx: RequestContext, action: Action) -> bool:
        return True

    def visible(self, ctx: RequestContext, kind: Kind, action: Action) -> bool:
        return True

    def throttle(self, ctx: RequestContext, method: str, name: str | None) -> float | None:
        return None
