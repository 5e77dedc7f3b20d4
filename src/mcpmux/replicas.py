"""Replicas sharing sessions through Redis: any replica serves any request of any session.

What is shared, and how (docs/scaling.md says it for operators):

- **Records** live in Redis (``redis_store.RedisStore``). A replica asked about a
  session it does not hold rebuilds the live half from the record
  (``ReplicatedSessions.resume``); the client's own upstream HTTP sessions are
  continued with their recorded ``Mcp-Session-Id``, no new initialize.
- **Messages for a session's GET stream** produced on a replica that does not hold
  that stream (an update, a log line, a request of the client's own upstream
  session) are published on the session's channel ``{prefix}:s:{sid}``. A replica
  subscribes to it while it holds one of the session's GET streams, and only then:
  ``PUBLISH`` answers how many replicas received the message, so 0 means nobody
  holds a stream now and the message is queued here, as one process would. Replica
  death needs no clean-up (its subscriptions end with its connection), and there is
  no "who holds the stream" registry to keep right.
- **Answers to requests relayed to the client** (elicitation, sampling, roots) may be
  POSTed to any replica. The relaying replica gives each such request an id naming
  itself (``"{replica}.{n}"``), so the replica that receives the answer publishes it
  on that replica's own channel ``{prefix}:r:{replica}``: routed by the id, no lookup.
- **Session ends** (DELETE) are announced on ``{prefix}:all`` so every replica drops
  its runtime of the session.
- **Subscriptions that live in one replica** (on its stdio process, or a 2026 target's
  listen stream) name that replica in the record (``sub:{uri}`` = its id). Each replica
  renews ``{prefix}:replica:{id}`` every ``HEARTBEAT`` seconds (TTL ``ALIVE_TTL``); a
  replica serving a session whose holder's key is gone (or that let it go: "") takes the
  subscription over with a compare-and-set on that field, so exactly one replica
  re-subscribes, and only once the holder is gone: no duplicate updates.
- **Resumable answer streams** (2025-11-25) have keys naming their replica
  (``{replica}.s{n}``), so event ids are unique across replicas. Each event but a
  delivered answer is appended to ``{prefix}:ev:{sid}:{key}`` (capped at
  ``REPLAY_LIMIT``, TTL the session's) and published on a channel of that name, in the
  sender's pipeline (no round trip added to the call); the list goes once the answer
  was delivered. A ``GET`` with ``Last-Event-ID`` of another replica's stream
  subscribes to that channel, replays the list, then follows to the answer, or ends
  the call with an error if its replica is gone.
- **Lists** (``list_changed``) are not published: every replica's own catalog
  session hears the change and tells the streams it holds.

Nothing of this runs without ``state.redis_url``: one process pays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from .config import GatewayConfig, LimitsConfig, StateConfig
from .era import StateSealer
from .jsonrpc import INTERNAL_ERROR, Message, error
from .listener.streams import REPLAY_LIMIT
from .redis_store import RedisStore
from .session import ClientSession
from .sessions import Sessions
from .sse import encode
from .state import SessionRecord
from .tasks import TaskOwner
from .upstream.http import HttpSession

if TYPE_CHECKING:
    from .dispatch import Dispatcher

log = logging.getLogger("mcpmux.replicas")

#: Seconds between batched touches (TTL renewals and record refreshes) of used sessions.
TOUCH_INTERVAL = 2.0
#: Seconds between health checks of Redis (and liveness marks of this replica).
HEARTBEAT = 2.0
#: Seconds a replica's liveness key outlives its last renewal: how long its subscriptions
#: wait before another replica takes them over after a SIGKILL.
ALIVE_TTL = int(HEARTBEAT * 3)
#: Take a holder field over only if it still names the holder that was found gone.
_TAKE_OVER = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""
#: Retained streams are trimmed to ``REPLAY_LIMIT`` (and their TTL renewed) this often.
TRIM_EVERY = 64
#: Queues commands on the sender's pipeline; returns how many it queued.
Op = Callable[[Pipeline], int]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
#: Messages published in one pipelined round trip at most.
PUBLISH_BATCH = 256


def connect(config: StateConfig) -> Redis:
    """A pooled client that gives up quickly: a down Redis must not stall requests."""
    return Redis.from_url(
        config.redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        max_connections=64,
    )


class ReplicatedSession(ClientSession):
    """A client session whose GET streams, and relayed requests, may be on another replica."""

    def __init__(self, record: SessionRecord, replication: Replication) -> None:
        self.replication = replication
        #: Closing it leaves its upstream HTTP sessions open (other replicas continue them).
        self.detached = False
        super().__init__(record)
        replication.touched.add(self.id)
        self._ids = _ids(replication.id)
        self.retain = self._retain

    def stream_key(self) -> str:
        return f"{self.replication.id}.s{next(self.stream_ids)}"

    def _retain(self, key: str, rid: Any, seq: int, data: bytes, final: bool) -> None:
        self.replication.retain(self.id, key, rid, seq, data, final)

    def drop_retained(self, key: str) -> None:
        self.replication.drop_events(self.id, key)

    # Methods, not properties over the attributes: compiled code (session.py is) reads
    # and writes attributes directly, past an interpreted subclass's properties.
    def stream_opened(self) -> None:
        super().stream_opened()
        if self.streams == 1:
            self.replication.follow(self.id)

    def stream_closed(self) -> None:
        super().stream_closed()
        if self.streams == 0:
            self.replication.unfollow(self.id)

    def touch(self) -> None:
        super().touch()
        self.replication.touched.add(self.id)

    def post(self, msg: Message) -> None:
        """For the GET stream: here if this replica holds one, else wherever one is."""
        if self.streams > 0 or str(msg.get("method", "")).endswith("/list_changed") or self.closed:
            super().post(msg)
        else:
            self.replication.publish_note(self, msg)

    def post_here(self, msg: Message) -> None:
        super().post(msg)

    async def on_response(self, msg: Message) -> bool:
        if await super().on_response(msg):
            return True
        return self.replication.route_answer(self, msg)

    async def answer_here(self, msg: Message) -> bool:
        return await super().on_response(msg)

    async def aclose(self) -> None:
        if self.detached:
            for up in self.upstreams.values():
                if isinstance(up, HttpSession):
                    up.session_id = None  # closed here without DELETE: it lives on elsewhere
        await super().aclose()


def _ids(replica: str) -> Iterator[int | str]:
    return (f"{replica}.{n}" for n in itertools.count(1))


class ReplicatedSessions(Sessions):
    """``Sessions`` whose records are shared: unknown ids are looked up in the store."""

    def __init__(self, limits: Callable[[], LimitsConfig], replication: Replication) -> None:
        super().__init__(limits, replication.store)
        self.replication = replication
        self.runtime = lambda record: ReplicatedSession(record, replication)
        self.replica = replication.id
        self._resuming: dict[str, asyncio.Future[ClientSession | None]] = {}

    async def resume(self, sid: str) -> ClientSession | None:
        if not sid or len(sid) > 128:
            return None
        pending = self._resuming.get(sid)
        if pending is not None:  # one lookup however many requests ask at once
            return await asyncio.shield(pending)
        fut: asyncio.Future[ClientSession | None] = asyncio.get_running_loop().create_future()
        self._resuming[sid] = fut
        try:
            record = await self.store.get(sid)
            session = self.live.get(sid)
            if session is None and record is not None:
                session = self.runtime(record)
                self.live[sid] = session
                log.info("session %s: continued here (opened on another replica)", sid[:8])
                if any(h != self.replica for h in record.holders.values()):
                    self.replication.adopt_soon()
            fut.set_result(session)
            return session
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._resuming.pop(sid, None)

    async def remove(self, sid: str) -> ClientSession | None:
        """The client ended it (DELETE): gone everywhere."""
        session = await super().remove(sid)
        if session is not None:
            self.replication.announce_closed(sid)
        return session

    async def retire(self, sid: str) -> ClientSession | None:
        """Idle here: the runtime goes; the record stays unless it expired in Redis too
        (then nobody used it for the whole timeout, and its upstream sessions close)."""
        session = self.live.pop(sid, None)
        if session is None:
            return None
        self.release(session.client_key)
        store = self.replication.store
        if await store.get(sid) is not None and isinstance(session, ReplicatedSession):
            session.detached = True
            await self.replication.let_go(session)
        store.forget(sid)
        return session

    async def resume_stream(self, session: ClientSession, key: str, after: int, send: Any, receive: Any,
                            headers: list[tuple[bytes, bytes]]) -> bool:
        return await self.replication.resume_stream(session, key, after, send, receive, headers)

    def state_status(self) -> dict[str, Any]:
        """For ``/readyz`` and ``/api/targets``: is the shared store reachable?"""
        return self.replication.status()

    async def recorded_upstream(self, session: ClientSession, target: str) -> tuple[str, str] | None:
        record = await self.store.get(session.id)  # fresh: another replica may have opened it
        if record is None:
            return None
        upstream_id = record.upstream_ids.get(target)
        if upstream_id is None:
            return None
        version = record.upstream_versions.get(target) or session.protocol_version
        session.record.upstream_ids[target] = upstream_id
        session.record.upstream_versions[target] = version
        return upstream_id, version


class Replication:
    """This replica's link to the others: the shared store, pub/sub, health."""

    def __init__(self, config: GatewayConfig, redis: Redis | None = None,
                 limits: Callable[[], LimitsConfig] | None = None) -> None:
        assert config.state is not None
        self.config = config.state
        self.prefix = config.state.key_prefix
        #: Names this replica in relayed request ids and its channel.
        self.id = secrets.token_hex(4)
        self.redis = redis or connect(config.state)
        self.store = RedisStore(self.redis, self.prefix, config.limits.session_idle_timeout)
        self.health = self.store.health
        #: The current limits (the gateway's, which a reload replaces).
        self.sessions = ReplicatedSessions(limits or (lambda: config.limits), self)
        #: Sessions used since the last touch.
        self.touched: set[str] = set()
        self._channels: set[str] = {self._replica_channel(self.id), f"{self.prefix}:all"}
        self._pubsub: PubSub | None = None
        self._out: asyncio.Queue[tuple[str, bytes, ReplicatedSession | None, Message] | Op] = asyncio.Queue()
        self._tasks = TaskOwner(f"replica:{self.id}")
        self._dispatcher: Dispatcher | None = None
        self._key_shared = "MCPMUX_STATE_KEY" in os.environ
        #: The requestState key this replica uses when it came from Redis (put back if
        #: Redis restarts empty, so replicas started later use the same one).
        self._sealer_hex: str | None = None
        self.published = 0
        self.received = 0

    # -- lifecycle ----------------------------------------------------------
    async def start(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        await self.store.ping()
        await self._share_sealer_key()
        self._tasks.spawn(self._reader(), "pubsub-reader")
        self._tasks.spawn(self._sender(), "pubsub-sender")
        self._tasks.spawn(self._toucher(), "touch")
        self._tasks.spawn(self._heartbeat(), "heartbeat")
        await self._alive()
        log.info("replica %s: sessions shared through %s (%s)", self.id, _safe_url(self.config.redis_url),
                 "up" if self.health.up else f"down: {self.health.last_error}")

    def detach_all(self) -> None:
        """Stopping: this replica's sessions go on at the others."""
        for session in self.sessions.live.values():
            if isinstance(session, ReplicatedSession):
                session.detached = True

    async def aclose(self) -> None:
        await self._tasks.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(self._alive_key(self.id))  # stopped: others take over now
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()

    def status(self) -> dict[str, Any]:
        return {**self.health.status(), "replica": self.id, "published": self.published,
                "received": self.received}

    async def _share_sealer_key(self) -> None:
        """One ``requestState`` key for every replica: ``MCPMUX_STATE_KEY`` if set, else
        one the first replica puts in Redis (``SET NX``; the others read it)."""
        if self._key_shared or self._dispatcher is None:
            return
        key = f"{self.prefix}:sealer-key"
        try:
            await self.redis.set(key, secrets.token_hex(32), nx=True)
            value = await self.redis.get(key)
        except RedisError as exc:
            self.health.failed(exc)
            return
        if value:
            self._sealer_hex = value.decode() if isinstance(value, bytes) else value
            self._dispatcher.bridge.sealer = StateSealer(bytes.fromhex(self._sealer_hex))
            self._key_shared = True

    # -- outgoing -----------------------------------------------------------
    def follow(self, sid: str) -> None:
        channel = self._session_channel(sid)
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is not None:
            self._tasks.spawn(self._subscribe(pubsub, channel), "subscribe")

    def unfollow(self, sid: str) -> None:
        channel = self._session_channel(sid)
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is not None:
            self._tasks.spawn(self._subscribe(pubsub, channel, False), "unsubscribe")

    async def _subscribe(self, pubsub: PubSub, channel: str, on: bool = True) -> None:
        try:
            await (pubsub.subscribe(channel) if on else pubsub.unsubscribe(channel))
        except (RedisError, OSError) as exc:
            self.health.failed(exc)  # the reader reconnects and subscribes to all again

    def publish_note(self, session: ReplicatedSession, msg: Message) -> None:
        self._out.put_nowait((self._session_channel(session.id), orjson.dumps(msg), session, msg))

    def route_answer(self, session: ClientSession, msg: Message) -> bool:
        """An answer to a request another replica relayed: to that replica."""
        rid = msg.get("id")
        if not isinstance(rid, str) or "." not in rid:
            return False
        replica = rid.partition(".")[0]
        if replica == self.id:
            return False
        data = orjson.dumps({"s": session.id, "m": msg})
        self._out.put_nowait((self._replica_channel(replica), data, None, msg))
        return True

    def announce_closed(self, sid: str) -> None:
        data = orjson.dumps({"k": "closed", "s": sid, "r": self.id})
        self._out.put_nowait((f"{self.prefix}:all", data, None, {}))

    async def _sender(self) -> None:
        """Publishes in order, batched in one pipeline; what nobody received is queued
        on the session here (its client may open a stream here later)."""
        while True:
            batch = [await self._out.get()]
            while len(batch) < PUBLISH_BATCH and not self._out.empty():
                batch.append(self._out.get_nowait())
            notes = [item for item in batch if not callable(item)]
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    at, spots = 0, []
                    for item in batch:
                        if callable(item):
                            at += item(pipe)
                        else:
                            pipe.publish(item[0], item[1])
                            spots.append(at)
                            at += 1
                    replies = await pipe.execute()
                counts = [replies[i] for i in spots]
                self.health.ok()
            except (RedisError, OSError) as exc:
                self.health.failed(exc)
                counts = [0] * len(notes)
            self.published += len(notes)
            for (channel, _, session, msg), n in zip(notes, counts, strict=True):
                if n:
                    continue
                if session is not None:
                    session.post_here(msg)
                elif channel.startswith(f"{self.prefix}:r:"):
                    log.warning("an answer for replica %s found no one: it is gone, and so is its call",
                                channel.rsplit(":", 1)[-1])

    # -- resumable streams -----------------------------------------------------
    def _events_key(self, sid: str, key: str) -> str:
        return f"{self.prefix}:ev:{sid}:{key}"

    def retain(self, sid: str, key: str, rid: Any, seq: int, data: bytes, final: bool) -> None:
        """Copy one event of a resumable stream out: into its capped list, and to whoever
        follows the stream from another replica. Written by the sender, batched."""
        name = self._events_key(sid, key)
        item = (b"F" if final else b"E") + orjson.dumps(rid) + b"\n" + data
        renew = seq == 1 or final or seq % TRIM_EVERY == 0
        ttl = self.store.ttl

        def op(pipe: Pipeline) -> int:
            pipe.rpush(name, item)
            pipe.publish(name, item)
            if not renew:
                return 2
            pipe.ltrim(name, -REPLAY_LIMIT, -1)
            pipe.expire(name, ttl)
            return 4

        self._out.put_nowait(op)

    def drop_events(self, sid: str, key: str) -> None:
        name = self._events_key(sid, key)

        def op(pipe: Pipeline) -> int:
            pipe.delete(name)
            return 1

        self._out.put_nowait(op)

    async def resume_stream(self, session: ClientSession, key: str, after: int, send: Send, receive: Receive,
                            headers: list[tuple[bytes, bytes]]) -> bool:
        """``Last-Event-ID`` of a stream another replica holds: replay what it retained,
        then follow its further events to the answer. False: not another replica's."""
        holder, dot, _ = key.partition(".")
        if not dot or holder == self.id:
            return False
        name = self._events_key(session.id, key)
        pubsub = self.redis.pubsub()
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            try:
                await pubsub.subscribe(name)
                # Subscribed before the list is read: an event written meanwhile is in
                # one or both (duplicates are skipped by sequence number), never in neither.
                while (await pubsub.get_message(timeout=5.0)) is None:
                    pass
                items = await self.redis.lrange(name, 0, -1)  # type: ignore[misc]
            except (RedisError, OSError) as exc:
                self.health.failed(exc)
                return False
            log.info("session %s: stream %s of replica %s resumed here after event %d", session.id[:8], key,
                     holder, after)
            replay = _Replay(send, after)
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for item in items:
                await replay.write(item)
            while not replay.final and not gone.done():
                try:
                    got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=HEARTBEAT)
                    alive = got is not None or bool(await self.redis.exists(self._alive_key(holder)))
                except (RedisError, OSError) as exc:
                    self.health.failed(exc)
                    break
                if got is not None and got.get("type") == "message":
                    await replay.write(got["data"])
                elif not alive:  # the call ran there and died with it
                    msg = error(replay.rid, INTERNAL_ERROR, f"the gateway replica that ran this request "
                                f"({holder}) stopped before it answered; the request may be retried")
                    await replay.write(b"F" + orjson.dumps(replay.rid) + b"\n" + encode(
                        orjson.dumps(msg), id=f"{key}-{replay.last + 1}"))
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b""})
            if replay.final:
                self.drop_events(session.id, key)
            return True
        finally:
            gone.cancel()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    # -- incoming -----------------------------------------------------------
    async def _reader(self) -> None:
        backoff = 0.2
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(*self._channels)
                self._pubsub = pubsub
                backoff = 0.2
                while True:
                    item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if item is not None and item.get("type") == "message":
                        self._deliver(item["channel"], item["data"])
            except (RedisError, OSError) as exc:
                self.health.failed(exc)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _deliver(self, channel: bytes | str, data: bytes) -> None:
        self.received += 1
        name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        head = f"{self.prefix}:s:"
        if name.startswith(head):
            session = self.sessions.live.get(name[len(head):])
            if isinstance(session, ReplicatedSession) and session.streams > 0:
                session.post_here(payload)
            return
        sid = payload.get("s")
        session = self.sessions.live.get(sid) if isinstance(sid, str) else None
        if name == f"{self.prefix}:all":
            if payload.get("k") == "closed" and payload.get("r") != self.id and session is not None:
                self._tasks.spawn(self._closed_elsewhere(session), "closed-elsewhere")
            return
        msg = payload.get("m")
        if isinstance(session, ReplicatedSession) and isinstance(msg, dict):
            self._tasks.spawn(self._answer(session, msg), "answer")

    async def _answer(self, session: ReplicatedSession, msg: Message) -> None:
        if not await session.answer_here(msg):
            log.info("session %s: an answer for an unknown request %r", session.id[:8], msg.get("id"))

    async def _closed_elsewhere(self, session: ClientSession) -> None:
        dispatcher = self._dispatcher
        if dispatcher is None or self.sessions.live.get(session.id) is not session:
            return
        self.sessions.live.pop(session.id, None)
        self.store.forget(session.id)
        if isinstance(session, ReplicatedSession):
            session.detached = True  # the replica that ended it closed its upstream sessions
        await session.aclose()
        await dispatcher.gateway.subscriptions.drop(session.id, dispatcher.gateway.targets)
        log.info("session %s: closed on another replica", session.id[:8])

    # -- upkeep -------------------------------------------------------------
    async def _toucher(self) -> None:
        """Renew the TTL of the sessions used lately and take in what other replicas
        changed in their records; all in one round trip per interval."""
        interval = min(TOUCH_INTERVAL, self.store.ttl / 4)
        while True:
            await asyncio.sleep(interval)
            sids = [sid for sid in self.touched if sid in self.sessions.live]
            self.touched.clear()
            if not sids or not self.health.up:
                continue
            records = await self.store.touch(sids)
            for sid, record in records.items():
                session = self.sessions.live.get(sid)
                if session is None:
                    continue
                if record is None:
                    # Redis lost it (restarted empty) while this replica holds the session.
                    await self.store.put(session.record)
                else:
                    _refresh(session.record, record)

    async def _heartbeat(self) -> None:
        was_up = self.health.up
        while True:
            await asyncio.sleep(HEARTBEAT)
            if await self.store.ping():
                await self._alive()
                await self.adopt()
                if not self._key_shared:
                    await self._share_sealer_key()
                if not was_up:
                    await self.store.resync()
                    if self._sealer_hex is not None:
                        with contextlib.suppress(RedisError, OSError):
                            await self.redis.set(f"{self.prefix}:sealer-key", self._sealer_hex, nx=True)
                    # Redis may have restarted empty: the records of what is live here go back.
                    for session in list(self.sessions.live.values()):
                        self.touched.add(session.id)
            was_up = self.health.up

    async def _alive(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.set(self._alive_key(self.id), time.time(), ex=ALIVE_TTL)

    # -- subscriptions held in one replica ------------------------------------
    def adopt_soon(self) -> None:
        """A session just continued here names another holder: check it now, not at the
        next heartbeat (the client may be waiting for updates)."""
        self._tasks.spawn(self.adopt(), "adopt")

    async def adopt(self) -> None:
        """Take over the subscriptions of the sessions held here whose holder is gone."""
        dispatcher = self._dispatcher
        held = [(s, uri, holder) for s in list(self.sessions.live.values()) if not s.closed
                for uri, holder in list(s.record.holders.items()) if holder != self.id]
        if dispatcher is None or not held:
            return
        names = sorted({h for _, _, h in held if h})
        try:
            marks = await self.redis.mget([self._alive_key(h) for h in names]) if names else []
        except (RedisError, OSError) as exc:
            self.health.failed(exc)
            return
        alive = {h for h, mark in zip(names, marks, strict=True) if mark is not None}
        for session, uri, holder in held:
            if holder in alive or session.record.holders.get(uri) != holder:
                continue
            if not await self._swap(session, uri, holder, self.id):
                continue  # another replica was first, or the client unsubscribed
            if await dispatcher.resubscribe(session, uri):
                log.info("session %s: subscription to %s taken over from replica %s", session.id[:8], uri,
                         holder or "(let go)")
            else:  # let go again: tried again at the next heartbeat, here or elsewhere
                await self._swap(session, uri, self.id, "")

    async def let_go(self, session: ClientSession) -> None:
        """The session leaves this replica: its subscriptions held here are for others to take."""
        for uri, holder in list(session.record.holders.items()):
            if holder == self.id:
                await self._swap(session, uri, holder, "")

    async def _swap(self, session: ClientSession, uri: str, old: str, new: str) -> bool:
        """Compare-and-set the holder of one subscription, in Redis and here."""
        name = f"sub:{uri}"
        try:
            done = await self.redis.eval(_TAKE_OVER, 1, self.store.key(session.id), name, old, new)  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            self.health.failed(exc)
            return False
        if not done:
            return False
        session.record.holders[uri] = new
        self.store.remember_field(session.id, name, new)
        return True

    # -- names --------------------------------------------------------------
    def _alive_key(self, replica: str) -> str:
        return f"{self.prefix}:replica:{replica}"

    def _session_channel(self, sid: str) -> str:
        return f"{self.prefix}:s:{sid}"

    def _replica_channel(self, replica: str) -> str:
        return f"{self.prefix}:r:{replica}"


class _Replay:
    """Writes retained events to a resumed stream once each, in order, after ``last``."""

    def __init__(self, send: Send, after: int) -> None:
        self.send = send
        self.last = after
        self.final = False
        self.rid: Any = None

    async def write(self, item: bytes | str) -> None:
        if isinstance(item, str):
            item = item.encode()
        flag, head, data = item[:1], *item[1:].split(b"\n", 1)
        seq_text = data.split(b"\n", 1)[0].rpartition(b"-")[2]
        self.rid = orjson.loads(head)
        seq = int(seq_text) if seq_text.isdigit() else 0
        if seq > self.last:
            self.last = seq
            await self.send({"type": "http.response.body", "body": data, "more_body": True})
        self.final = self.final or flag == b"F"


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _refresh(mine: SessionRecord, theirs: SessionRecord) -> None:
    """Take what other replicas changed (level, subscriptions, upstream sessions)."""
    mine.log_level = theirs.log_level
    mine.subscriptions = theirs.subscriptions
    mine.holders = theirs.holders
    mine.upstream_ids.update(theirs.upstream_ids)
    mine.upstream_versions.update(theirs.upstream_versions)


def _safe_url(url: str) -> str:
    """The Redis URL without its password, for logs."""
    head, at, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if at else url
