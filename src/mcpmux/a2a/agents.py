"""The configured agents: each one's cached card and state, for the A2A listener and
``/api/agents``. One agent failing (down, a bad card) never touches the others."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import aiohttp
import orjson

from .. import __version__
from ..config import A2aAgentConfig
from ..redact import redact
from .card import CARD_PATH

log = logging.getLogger("mcpmux.a2a")

#: Seconds a fetched card is served before it is fetched again.
CARD_TTL = 30.0
#: Largest card accepted (bytes).
MAX_CARD_BYTES = 1024 * 1024


class AgentError(Exception):
    """The agent could not be reached or answered something unusable."""

    def __init__(self, agent: str, reason: str, status: int = 502) -> None:
        super().__init__(f"agent '{agent}': {reason}")
        self.agent = agent
        self.reason = reason
        self.status = status


class Agent:
    """One agent: its config, its last card, and whether it answered last time."""

    def __init__(self, config: A2aAgentConfig) -> None:
        self.config = config
        self.name = config.name
        #: "unknown" until the card was fetched, then "ready" or "unreachable".
        self.state = "unknown"
        self.last_error: str | None = None
        self.card: dict[str, Any] | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        return self.config.url.rstrip("/")

    def ok(self) -> None:
        self.state, self.last_error = "ready", None

    def failed(self, reason: str) -> None:
        if self.last_error != reason:
            log.warning("agent '%s': %s", self.name, redact(reason))
        self.state, self.last_error = "unreachable", redact(reason)

    async def get_card(self, http: aiohttp.ClientSession, fresh: bool = False) -> dict[str, Any]:
        """The agent's card, fetched again when older than CARD_TTL (or ``fresh``)."""
        async with self._lock:
            if self.card is not None and not fresh and time.monotonic() - self._fetched < CARD_TTL:
                return self.card
            try:
                self.card = await fetch_card(http, self.config)
            except AgentError as exc:
                self.failed(exc.reason)
                raise
            self._fetched = time.monotonic()
            self.ok()
            return self.card

    def status(self) -> dict[str, Any]:
        card = self.card or {}
        return {
            "name": self.name,
            "url": redact(self.config.url),  # a ${VAR} in it (a token in the query) stays hidden
            "state": self.state,
            "lastError": self.last_error,
            "card": {"name": card.get("name"), "version": card.get("version")} if self.card else None,
        }


async def fetch_card(http: aiohttp.ClientSession, config: A2aAgentConfig) -> dict[str, Any]:
    """GET ``{url}/.well-known/agent-card.json`` with the configured headers."""
    url = config.url.rstrip("/") + CARD_PATH
    headers = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": f"mcpmux/{__version__}",
               **config.headers}
    try:
        async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=config.timeout),
                            allow_redirects=False) as resp:
            if resp.status != 200:
                raise AgentError(config.name, f"card {url}: HTTP {resp.status}")
            raw = await read_limited(resp, MAX_CARD_BYTES + 1)
    except TimeoutError:
        raise AgentError(config.name, f"card {url}: no answer within {config.timeout:g} s", 504) from None
    except aiohttp.ClientConnectorError as exc:
        raise AgentError(config.name, f"cannot connect: {connect_reason(exc)}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise AgentError(config.name, f"card {url}: {type(exc).__name__}: {exc}") from None
    if len(raw) > MAX_CARD_BYTES:
        raise AgentError(config.name, f"card {url}: larger than {MAX_CARD_BYTES} bytes")
    try:
        card = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AgentError(config.name, f"card {url}: not JSON") from None
    if not isinstance(card, dict):
        raise AgentError(config.name, f"card {url}: not a JSON object")
    return card


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes and a little more when it is longer
    (the caller compares the length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)


def connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    why = os.strerror(os_error.errno) if os_error is not None and os_error.errno else str(os_error or exc)
    return f"{exc.host}:{exc.port}: {why}"


class Agents:
    """The registry: agents by name, one HTTP pool, replaced whole on reload."""

    def __init__(self, configs: list[A2aAgentConfig]) -> None:
        self.agents: dict[str, Agent] = {}
        self._http: aiohttp.ClientSession | None = None
        self.update(configs)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._http

    def update(self, configs: list[A2aAgentConfig]) -> list[Agent]:
        """Added agents appear, removed ones go, changed ones start over (their card is
        read again); returns the agents that are new."""
        wanted = {c.name: c for c in configs}
        for name in list(self.agents):
            if name not in wanted or wanted[name] != self.agents[name].config:
                del self.agents[name]
                log.info("agent '%s': %s", name, "removed" if name not in wanted else "changed")
        added = []
        for name, config in wanted.items():
            if name not in self.agents:
                self.agents[name] = agent = Agent(config)
                added.append(agent)
                log.info("agent '%s': %s", name, config.url)
        return added

    def status(self) -> list[dict[str, Any]]:
        return [a.status() for a in self.agents.values()]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
