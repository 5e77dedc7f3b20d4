"""The client sessions of this process: their live halves, and the store of their records."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from .config import LimitsConfig
from .jsonrpc import Message, RPCError, notification
from .session import ClientSession
from .state import MemoryStore, SessionRecord, SessionStore

log = logging.getLogger("mcpmux.sessions")


class Sessions:
    def __init__(self, limits: LimitsConfig, store: SessionStore | None = None) -> None:
        self.limits = limits
        self.store: SessionStore = store or MemoryStore()
        self.live: dict[str, ClientSession] = {}
        #: 2026 ``subscriptions/listen`` streams: id -> (their queue's session, notification kinds)
        self.listeners: dict[str, tuple[ClientSession, set[str]]] = {}
        #: Builds the live half of a record (replicas build one that reaches the others).
        self.runtime: Callable[[SessionRecord], ClientSession] = ClientSession

    def __len__(self) -> int:
        return len(self.live)

    def get(self, sid: str) -> ClientSession | None:
        return self.live.get(sid)

    def follower(self, sid: str) -> ClientSession | None:
        """A session or a 2026 listener, by id: whoever follows a resource."""
        session = self.live.get(sid)
        if session is None and sid in self.listeners:
            session = self.listeners[sid][0]
        return session

    async def open(self, owner: str | None, version: str, params: dict[str, Any]) -> ClientSession:
        if len(self.live) >= self.limits.max_sessions:
            raise RPCError(-32000, "too many sessions: the gateway is at its session limit")
        record = SessionRecord.from_initialize(secrets.token_hex(16), owner, version, params)
        await self.store.put(record)
        session = self.runtime(record)
        self.live[record.id] = session
        return session

    async def save(self, session: ClientSession) -> None:
        """The record changed (log level, subscriptions, upstream ids): store it."""
        if not session.stateless and session.id in self.live:
            await self.store.put(session.record)

    async def remove(self, sid: str) -> ClientSession | None:
        session = self.live.pop(sid, None)
        if session is not None:
            await self.store.delete(sid)
        return session

    async def resume(self, sid: str) -> ClientSession | None:
        """A session this process does not hold. One process has nothing to resume;
        replicas sharing a store rebuild it from its record (``replicas.py``)."""
        return None

    async def retire(self, sid: str) -> ClientSession | None:
        """An idle session leaves this process: in one process, that is its end."""
        return await self.remove(sid)

    async def recorded_upstream(self, session: ClientSession, target: str) -> tuple[str, str] | None:
        """An upstream session of this client's that another replica opened on ``target``
        (its id and protocol version), to continue without a new initialize."""
        return None

    def idle(self, limit: float) -> list[str]:
        """Sessions with no open GET stream that did nothing for ``limit`` seconds."""
        now = time.monotonic()
        return [sid for sid, s in self.live.items() if s.streams == 0 and now - s.last_active > limit]

    def broadcast(self, method: str) -> None:
        """A list changed: every session, and the listeners that asked for it."""
        msg: Message = notification(method)
        for s in list(self.live.values()):
            s.post(msg)
        for listener, kinds in list(self.listeners.values()):
            if method in kinds:
                listener.post(msg)
