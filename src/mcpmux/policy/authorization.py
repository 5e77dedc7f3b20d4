"""The configured policy: CEL rules (who may call what) and rate limits per caller.

:class:`RulesPolicy` is what ``authorization:`` in the config turns into
(:func:`build_policy`). ``authorize`` evaluates the rules on what a routed request
would reach, with the names the *target* uses (``mcp.tool.name`` is ``echo``, not
``demo_echo``), so a rule keeps meaning the same thing whatever the prefix mode;
``visible`` applies the same test to every list item, so callers see exactly what
they may use. A request that names no tool, prompt or resource (a method forwarded
in bridge mode) is allowed to any caller that got this far — authenticated, when
``auth`` is on. ``initialize``, ``ping``, ``logging/setLevel`` and the lists never
reach ``authorize`` at all.

Rate limits are charged per principal (its ``key``, ``"<iss>|<sub>"``); without
authentication every caller shares the key ``anonymous``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..config import AuthorizationConfig, GatewayConfig
from ..context import owner_key
from ..protocol import Kind
from . import Action, AllowAll, Policy
from .ratelimit import RateLimiter
from .rules import Rules

if TYPE_CHECKING:
    from ..context import RequestContext

__all__ = ["ANONYMOUS", "RulesPolicy", "a2a_allowed", "a2a_throttle", "build_policy", "principal_key"]

ANONYMOUS: Final = "anonymous"
_NO_CLAIMS: Final[dict[str, Any]] = {}


def principal_key(ctx: RequestContext) -> str:
    key = owner_key(ctx.principal)
    return key if isinstance(key, str) else ANONYMOUS


def _mcp(action: Action) -> dict[str, Any]:
    """The ``mcp`` variable of the rules for one action."""
    out: dict[str, Any] = {"method": action.method, "target": action.target}
    if action.uri is not None:
        out["resource"] = {"uri": action.uri}
    elif action.name is not None:
        if action.method == "tools/call":
            out["tool"] = {"name": action.name}
        else:  # prompts/get, and completion/complete on a prompt
            out["prompt"] = {"name": action.name}
    if action.arguments is not None:
        out["arguments"] = action.arguments
    return out


class RulesPolicy:
    """See the module docstring. ``rules`` and ``limiter`` may each be empty."""

    def __init__(self, rules: Rules, limiter: RateLimiter, config: AuthorizationConfig) -> None:
        self.rules = rules
        self.limiter = limiter
        #: What it was built from (a reload with the same section keeps this object).
        self.config = config
        self.varies_per_caller = len(rules) > 0

    def _allows(self, ctx: RequestContext, action: Action) -> bool:
        if not self.varies_per_caller or (action.name is None and action.uri is None):
            return True
        claims = getattr(ctx.principal, "claims", None)
        return self.rules.allows(claims if isinstance(claims, dict) else _NO_CLAIMS, _mcp(action))

    def authorize(self, ctx: RequestContext, action: Action) -> bool:
        return self._allows(ctx, action)

    def visible(self, ctx: RequestContext, kind: Kind, action: Action) -> bool:
        return self._allows(ctx, action)

    def throttle(self, ctx: RequestContext, method: str, name: str | None) -> float | None:
        if not self.limiter:
            return None
        return self.limiter.check(principal_key(ctx), name if method == "tools/call" else None)


def a2a_allowed(policy: Policy, claims: dict[str, Any] | None, agent: str, method: str) -> bool:
    """May a caller with these claims make this A2A request (``method``: the JSON-RPC
    method, or the REST binding's equivalent)? The rules are the MCP listener's, with
    ``a2a.agent`` and ``a2a.method`` instead of ``mcp``; without rules, yes."""
    inner = getattr(policy, "inner", policy)  # a virtual server's scope has no A2A part
    if not isinstance(inner, RulesPolicy) or not inner.varies_per_caller:
        return True
    return inner.rules.allows_a2a(claims or _NO_CLAIMS, {"agent": agent, "method": method})


def a2a_throttle(policy: Policy, key: str | None) -> float | None:
    """Charge one A2A request to the caller's per-principal buckets (the ones its MCP
    requests draw from; per-tool limits are MCP's): None, or the seconds to wait."""
    inner = getattr(policy, "inner", policy)
    if not isinstance(inner, RulesPolicy) or not inner.limiter:
        return None
    return inner.limiter.check(key or ANONYMOUS, None)


def build_policy(config: GatewayConfig, current: Policy | None = None) -> Policy:
    """The policy for ``config``; ``current`` is kept when its section did not change
    (a reload must not refill everyone's rate-limit buckets)."""
    section = config.authorization
    if section is None or (not section.rules and not section.rate_limits):
        return AllowAll()
    if isinstance(current, RulesPolicy) and current.config == section:
        return current
    limiter = RateLimiter(section.rate_limits)
    if isinstance(current, RulesPolicy) and current.config.rate_limits == section.rate_limits:
        limiter = current.limiter  # only the rules changed: the buckets carry over
    return RulesPolicy(Rules(section.rules), limiter, section)
