"""What the CLI runs for the A2A side: the agent registry, the listener's app, and the
reload hook. The listener itself is a uvicorn server the CLI starts and stops with the
others."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import GatewayConfig
from ..tasks import TaskOwner
from .agents import Agents
from .proxy import A2aProxy

log = logging.getLogger("mcpmux.a2a")


class A2aSide:
    def __init__(self, config: GatewayConfig, current: Callable[[], GatewayConfig]) -> None:
        self.listen = config.a2a.listen if config.a2a is not None else None
        self.agents = Agents(config.a2a.agents if config.a2a is not None else [])
        self.app = A2aProxy(lambda: self.agents, lambda: current().limits.max_body_bytes,
                            lambda: current().limits.max_response_bytes)
        self._tasks = TaskOwner("a2a")

    def start(self) -> None:
        """Read every card once, so /api/agents shows real states soon after start."""
        self._tasks.spawn(self.agents.check_all(), "cards")

    def reload(self, config: GatewayConfig) -> None:
        """Agents follow the file; the listener's address is read at start only."""
        new_listen = config.a2a.listen if config.a2a is not None else None
        if new_listen != self.listen:
            log.warning("config: 'a2a.listen' changed; it takes effect on restart")
        self.agents.update(config.a2a.agents if config.a2a is not None else [])
        self._tasks.spawn(self.agents.check_all(), "cards")

    async def aclose(self) -> None:
        await self._tasks.aclose()
        await self.agents.aclose()
