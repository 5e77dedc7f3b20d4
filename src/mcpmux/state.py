"""Session state as data: what a client session must keep to go on, and where it is kept.

A ``SessionRecord`` is plain and serialisable: the durable half of a client
session. The live half (streams, outbox, calls in flight) is ``ClientSession``
in ``session.py`` and is rebuilt from a record. ``SessionStore`` is where records
live; ``MemoryStore`` is the store of one process (the default).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class SessionRecord:
    id: str
    #: The principal that opened it (None without authentication): nobody else may use it.
    owner: str | None
    protocol_version: str
    capabilities: dict[str, Any] = field(default_factory=dict)
    client_info: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = None
    #: Resource URIs (as the client named them) the client subscribed to.
    subscriptions: set[str] = field(default_factory=set)
    #: Subscriptions that live in one replica (a stdio process, a 2026 target's listen
    #: stream): URI -> the replica holding it ("" once let go), so another replica can
    #: take them over when that one is gone. Empty in one process.
    holders: dict[str, str] = field(default_factory=dict)
    #: Upstream ``Mcp-Session-Id`` per target, for targets where the client has its own session.
    upstream_ids: dict[str, str] = field(default_factory=dict)
    #: The protocol version each of those upstream sessions negotiated (another replica
    #: continuing the session sends it without initializing again).
    upstream_versions: dict[str, str] = field(default_factory=dict)
    #: Cursors the gateway handed out and must remember (merged-list cursors are
    #: self-contained today, so this stays empty; kept for stores that page upstream).
    cursors: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    #: The virtual server whose endpoint opened it (None: the plain ``/mcp``); the session
    #: is unknown on every other endpoint.
    server: str | None = None

    @classmethod
    def from_initialize(cls, sid: str, owner: str | None, version: str, params: dict[str, Any]) -> SessionRecord:
        caps = params.get("capabilities")
        info = params.get("clientInfo")
        return cls(sid, owner, version, caps if isinstance(caps, dict) else {},
                   info if isinstance(info, dict) else {})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["subscriptions"] = sorted(self.subscriptions)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionRecord:
        data = dict(data)
        data["subscriptions"] = set(data.get("subscriptions") or ())
        return cls(**data)


class SessionStore(Protocol):
    """Where session records live. Writes happen when the state changes (initialize,
    setLevel, subscribe, an upstream session opened), never per forwarded call."""

    async def get(self, sid: str) -> SessionRecord | None: ...

    async def put(self, record: SessionRecord) -> None: ...

    async def delete(self, sid: str) -> None: ...

    async def count(self) -> int: ...

    async def touch(self, sids: list[str]) -> dict[str, SessionRecord | None]:
        """Sessions in use: keep their records from expiring; returns their current
        records (another replica may have changed them). Called in batches, never per call."""
        ...


class MemoryStore:
    """The records of one process. Records are stored as dicts, as an external
    store would hold them, so nothing can depend on sharing the live object."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}

    async def get(self, sid: str) -> SessionRecord | None:
        data = self._records.get(sid)
        return SessionRecord.from_dict(data) if data is not None else None

    async def put(self, record: SessionRecord) -> None:
        self._records[record.id] = record.to_dict()

    async def delete(self, sid: str) -> None:
        self._records.pop(sid, None)

    async def count(self) -> int:
        return len(self._records)

    async def touch(self, sids: list[str]) -> dict[str, SessionRecord | None]:
        return {sid: await self.get(sid) for sid in sids}
