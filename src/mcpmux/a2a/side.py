"""What the CLI runs for the A2A side: the agent registry, the listener's app, and the
reload hook. The listener itself is a uvicorn server the CLI starts and stops with the
others.

The agents are the gateway's targets of kind ``a2a``, whichever source they come from
(``a2a.agents`` in the config file, Kubernetes Services): the registry follows them
whenever it is used, so a reload or a discovered Service needs no hook of its own."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import GatewayConfig
from ..tasks import TaskOwner
from .agents import Agents
from .guard import PolicyGuard
from .proxy import A2aProxy

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..listener.auth import ResourceServer

log = logging.getLogger("mcpmux.a2a")


class A2aSide:
    def __init__(self, gateway: Gateway, config: GatewayConfig,
                 current: Callable[[], GatewayConfig], auth: ResourceServer | None = None,
                 guard: PolicyGuard | None = None) -> None:
        self.listen = config.a2a.listen if config.a2a is not None else None
        self._gateway = gateway
        self._registry = Agents([])
        self.app = A2aProxy(self.agents, lambda: current().limits.max_body_bytes,
                            lambda: current().limits.max_response_bytes, auth, guard)
        self._tasks = TaskOwner("a2a")

    def agents(self) -> Agents:
        """The registry, in step with the gateway's ``a2a`` targets; a new agent's card
        is read at once, so /api/agents shows its real state soon."""
        configs = [t.config.a2a for t in self._gateway.targets.values() if t.config.a2a is not None]
        for agent in self._registry.update(configs):
            self._tasks.spawn(agent.get_card(self._registry.http, fresh=True), f"card-{agent.name}")
        return self._registry

    def status(self) -> list[dict[str, Any]]:
        return self.agents().status()

    def reload(self, config: GatewayConfig) -> None:
        """The listener's address is read at start only."""
        new_listen = config.a2a.listen if config.a2a is not None else None
        if new_listen != self.listen:
            log.warning("config: 'a2a.listen' changed; it takes effect on restart")

    async def aclose(self) -> None:
        await self._tasks.aclose()
        await self._registry.aclose()
