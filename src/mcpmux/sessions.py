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
    def __init__(self, limits: Callable[[], LimitsConfig], store: SessionStore | None = None) -> None:
        #: The current limits (a config reload replaces them).
        self._limits = limits
        self.store: SessionStore = store or MemoryStore()
        self.live: dict[str, ClientSession] = {}
        #: Session slots each client holds (see ``client_key``): kept on open and remove,
        #: so the per-client limit costs a dict lookup, not a scan.
        self.per_client: dict[str, int] = {}
        #: 2026 ``subscriptions/listen`` streams: id -> (their queue's session, notification kinds)
        self.listeners: dict[str, tuple[ClientSession, set[str]]] = {}
        #: Builds the live half of a record (replicas build one that reaches the others).
        self.runtime: Callable[[SessionRecord], ClientSession] = ClientSession
        #: This replica's name when replicas share the store (None: one process); it is
        #: recorded as the holder of subscriptions that live in this process only.
        self.replica: str | None = None

    @property
    def limits(self) -> LimitsConfig:
        return self._limits()

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

    async def open(self, owner: str | None, version: str, params: dict[str, Any],
                   client: str | None = None, held: str | None = None,
                   server: str | None = None) -> ClientSession:
        """A new session of ``client`` (see ``client_key``). ``held``: the slot the caller
        already claimed for it (an /sse stream claims one when it opens); the session takes
        it over, or swaps it for one of ``client``'s."""
        if len(self.live) >= self.limits.max_sessions:
            raise RPCError(-32000, "too many sessions: the gateway is at its session limit")
        if client != held:
            self.claim(client)
        record = SessionRecord.from_initialize(secrets.token_hex(16), owner, version, params)
        record.server = server
        try:
            await self.store.put(record)
        except BaseException:
            if client != held:
                self.release(client)
            raise
        if client != held:
            self.release(held)
        session = self.runtime(record)
        session.client_key = client
        self.live[record.id] = session
        return session

    def claim(self, client: str | None) -> None:
        """Take one of ``client``'s session slots, or refuse past ``limits.max_sessions_per_client``."""
        if client is not None:
            self.check(client)
            self.per_client[client] = self.per_client.get(client, 0) + 1

    def check(self, client: str | None) -> None:
        """Refuse a new session of ``client`` when it holds all it may."""
        held = self.per_client.get(client, 0) if client is not None else 0
        limit = self.limits.max_sessions_per_client
        if held >= limit:
            raise RPCError(-32000, f"too many sessions from {client}: it holds {held}, the limit "
                           f"(limits.max_sessions_per_client) is {limit}; end sessions it no longer "
                           "uses (DELETE, or close the stream) and retry")

    def release(self, client: str | None) -> None:
        if client is None:
            return
        left = self.per_client.get(client, 0) - 1
        if left > 0:
            self.per_client[client] = left
        else:
            self.per_client.pop(client, None)

    async def save(self, session: ClientSession) -> None:
        """The record changed (log level, subscriptions, upstream ids): store it."""
        if not session.stateless and session.id in self.live:
            await self.store.put(session.record)

    async def remove(self, sid: str) -> ClientSession | None:
        session = self.live.pop(sid, None)
        if session is not None:
            self.release(session.client_key)
            await self.store.delete(sid)
        return session

    async def resume(self, sid: str) -> ClientSession | None:
        """A session this process does not hold. One process has nothing to resume;
        replicas sharing a store rebuild it from its record (``replicas.py``)."""
        return None

    async def resume_stream(self, session: ClientSession, key: str, after: int, send: Any, receive: Any,
                            headers: list[tuple[bytes, bytes]]) -> bool:
        """Resume an answer stream this process does not hold (False: unknown here). One
        process holds all of its streams; replicas replay what another one retained."""
        return False

    async def retire(self, sid: str) -> ClientSession | None:
        """An idle session leaves this process: in one process, that is its end."""
        return await self.remove(sid)

    async def recorded_upstream(self, session: ClientSession, target: str) -> tuple[str, str] | None:
        """An upstream session of this client's that another replica opened on ``target``
        (its id and protocol version), to continue without a new initialize."""
        return None

    def idle(self, limit: float, unused: float | None = None) -> list[str]:
        """Sessions with no open GET stream that did nothing for ``limit`` seconds, or,
        when they never sent a request after initialize, for ``unused`` seconds."""
        now = time.monotonic()
        return [sid for sid, s in self.live.items()
                if s.streams == 0 and now - s.last_active > _limit_of(s, limit, unused)]

    def next_expiry(self, limit: float, unused: float | None = None) -> float | None:
        """When the first session would become idle (``time.monotonic()`` clock), if any."""
        deadlines = [s.last_active + _limit_of(s, limit, unused) for s in self.live.values() if s.streams == 0]
        return min(deadlines, default=None)

    def broadcast(self, method: str) -> None:
        """A list changed: every session, and the listeners that asked for it."""
        msg: Message = notification(method)
        for s in list(self.live.values()):
            s.post(msg)
        for listener, kinds in list(self.listeners.values()):
            if method in kinds:
                listener.post(msg)


def _limit_of(session: ClientSession, limit: float, unused: float | None) -> float:
    return limit if session.used or unused is None else min(limit, unused)


def client_key(principal_key: str | None, peer: str | None) -> str | None:
    """Whose session slots a new session takes: the principal's with authentication (behind
    a proxy every client has the proxy's address), else the socket peer address's."""
    if principal_key is not None:
        return f"principal {principal_key}"
    if peer:
        return f"address {peer}"
    return None
