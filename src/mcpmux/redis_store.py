"""Session records in Redis (or Valkey): the ``SessionStore`` replicas share.

One hash per session, ``{prefix}:session:{id}``, one field per item that can change
on its own, so two replicas changing different things of one session never
overwrite each other (a whole-record JSON value would: last writer wins):

    base          JSON: id, owner, protocol version, capabilities, client info, created
    level         the log level the client set (absent: none)
    sub:{uri}     for each resource the client subscribed to: "1", or the replica that
                  holds it when it lives in one replica (stdio, 2026 targets; "" let go)
    up:{target}   the client's own upstream ``Mcp-Session-Id`` on that target
    upv:{target}  the protocol version that upstream session negotiated

``put`` writes only the fields that differ from what this process last read or
wrote. Every key has a TTL of ``limits.session_idle_timeout``; it is renewed when
the record is written and by ``touch``, which the replica calls in batches (one
pipelined round trip every few seconds for all sessions used since), never per call.

When Redis cannot be reached, reads answer "not here" and writes are kept and
written again once it is back (``resync``): the replica goes on serving the
sessions it holds. ``health`` says which, for ``/readyz`` and ``/api/targets``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .state import SessionRecord

log = logging.getLogger("mcpmux.state.redis")

_BASE_KEYS = ("id", "owner", "protocol_version", "capabilities", "client_info", "cursors", "created")


def record_fields(record: SessionRecord) -> dict[str, str]:
    """The hash fields of a record (strings: what HGETALL gives back)."""
    base = {k: getattr(record, k) for k in _BASE_KEYS}
    out = {"base": orjson.dumps(base).decode()}
    if record.log_level is not None:
        out["level"] = record.log_level
    for uri in record.subscriptions:
        out[f"sub:{uri}"] = record.holders.get(uri, "1")
    for target, sid in record.upstream_ids.items():
        out[f"up:{target}"] = sid
    for target, version in record.upstream_versions.items():
        out[f"upv:{target}"] = version
    return out


def record_from_fields(fields: dict[str, str]) -> SessionRecord | None:
    raw = fields.get("base")
    if raw is None:
        return None  # a half-written or foreign key: not a session
    base = orjson.loads(raw)
    record = SessionRecord(**{k: base[k] for k in _BASE_KEYS if k in base})
    record.log_level = fields.get("level")
    for name, value in fields.items():
        if name.startswith("sub:"):
            record.subscriptions.add(name[4:])
            if value != "1":
                record.holders[name[4:]] = value
        elif name.startswith("up:"):
            record.upstream_ids[name[3:]] = value
        elif name.startswith("upv:"):
            record.upstream_versions[name[4:]] = value
    return record


class Health:
    """Is the shared store reachable? Changed by every operation, read by probes."""

    def __init__(self) -> None:
        self.up = True
        self.last_error: str | None = None
        self.since = time.time()

    def ok(self) -> bool:
        if not self.up:
            log.warning("state: Redis reachable again")
            self.up, self.since = True, time.time()
        return True

    def failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.up:
            log.error("state: Redis unreachable (%s); serving the sessions held here", self.last_error)
            self.up, self.since = False, time.time()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"redis": "up" if self.up else "down", "since": self.since}
        if self.last_error is not None:
            out["lastError"] = self.last_error
        return out


class RedisStore:
    def __init__(self, redis: Redis, prefix: str, ttl: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = max(1, math.ceil(ttl))
        self.health = Health()
        #: sid -> the fields as this process last read or wrote them (diffs are written).
        self._known: dict[str, dict[str, str]] = {}
        #: Records whose write failed while Redis was down: written again by ``resync``.
        self._unsynced: dict[str, SessionRecord] = {}

    def key(self, sid: str) -> str:
        return f"{self.prefix}:session:{sid}"

    async def get(self, sid: str) -> SessionRecord | None:
        if sid in self._unsynced:
            return self._unsynced[sid]
        try:
            fields = await self.redis.hgetall(self.key(sid))  # type: ignore[misc]
        except RedisError as exc:
            self.health.failed(exc)
            return None
        self.health.ok()
        return self._remember(sid, fields)

    def _remember(self, sid: str, raw: dict[Any, Any]) -> SessionRecord | None:
        fields = {_s(k): _s(v) for k, v in raw.items()}
        record = record_from_fields(fields)
        if record is None:
            self._known.pop(sid, None)
        else:
            self._known[sid] = fields
        return record

    async def put(self, record: SessionRecord) -> None:
        sid = record.id
        new = record_fields(record)
        old = self._known.get(sid, {})
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        gone = [k for k in old if k not in new]
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                if changed:
                    pipe.hset(self.key(sid), mapping=dict[Any, Any](changed))
                if gone:
                    pipe.hdel(self.key(sid), *gone)
                pipe.expire(self.key(sid), self.ttl)
                await pipe.execute()
        except RedisError as exc:
            self.health.failed(exc)
            self._unsynced[sid] = record
            return
        self.health.ok()
        self._unsynced.pop(sid, None)
        self._known[sid] = new

    async def delete(self, sid: str) -> None:
        self._known.pop(sid, None)
        self._unsynced.pop(sid, None)
        try:
            await self.redis.delete(self.key(sid))
        except RedisError as exc:
            self.health.failed(exc)
            return
        self.health.ok()

    def forget(self, sid: str) -> None:
        """This process no longer holds the session: drop what it remembered of it."""
        self._known.pop(sid, None)
        self._unsynced.pop(sid, None)

    def remember_field(self, sid: str, name: str, value: str) -> None:
        """A field this process changed outside ``put`` (a compare-and-set): not a diff to write."""
        known = self._known.get(sid)
        if known is not None:
            known[name] = value

    async def count(self) -> int:
        n = 0
        try:
            async for _ in self.redis.scan_iter(match=f"{self.prefix}:session:*", count=1000):
                n += 1
        except RedisError as exc:
            self.health.failed(exc)
            return len(self._known)
        return n

    async def touch(self, sids: list[str]) -> dict[str, SessionRecord | None]:
        """One pipelined round trip: renew each TTL and read each record back."""
        if not sids:
            return {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.expire(self.key(sid), self.ttl)
                    pipe.hgetall(self.key(sid))
                replies = await pipe.execute()
        except RedisError as exc:
            self.health.failed(exc)
            return {}
        self.health.ok()
        return {sid: self._remember(sid, replies[2 * i + 1]) for i, sid in enumerate(sids)}

    async def resync(self) -> None:
        """Redis is back: write what could not be written while it was down."""
        for sid, record in list(self._unsynced.items()):
            self._known.pop(sid, None)  # written whole: Redis may have lost it
            await self.put(record)
            if not self.health.up:
                return

    async def ping(self) -> bool:
        try:
            await self.redis.ping()  # type: ignore[misc]
        except RedisError as exc:
            self.health.failed(exc)
            return False
        self.health.ok()
        return True


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
