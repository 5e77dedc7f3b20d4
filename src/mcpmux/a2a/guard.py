"""The gateway's ``authorization`` section applied to requests on the A2A listener:
the CEL rules with ``a2a.agent`` and ``a2a.method`` (docs/a2a.md), and the
per-principal rate limits, read from the current policy (it is rebuilt on reload).
The CEL library is imported only when there are rules or limits."""

from __future__ import annotations

from collections.abc import Callable

from ..policy import AllowAll, Policy
from ..policy.auth import Principal


class PolicyGuard:
    def __init__(self, policy: Callable[[], Policy]) -> None:
        self._policy = policy

    def active(self) -> bool:
        """Do rules apply (so a request must be named, its body read for its method)?"""
        return self._policy().varies_per_caller

    def allows(self, principal: Principal | None, agent: str, method: str) -> bool:
        from ..policy.authorization import a2a_allowed

        return a2a_allowed(self._policy(), principal.claims if principal is not None else None, agent, method)

    def throttle(self, principal: Principal | None) -> float | None:
        """Charge one request: None, or the seconds to wait."""
        policy = self._policy()
        if isinstance(getattr(policy, "inner", policy), AllowAll):
            return None
        from ..policy.authorization import a2a_throttle

        return a2a_throttle(policy, principal.key if principal is not None else None)
