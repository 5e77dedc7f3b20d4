"""RedisStore and the replica link (replicas.py) against a real redis-server.

Two ``Replication`` objects in one process stand for two replicas: they share
nothing but Redis, exactly as two processes would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis
from tests.support.redis_server import RedisServer, redis_server, start_redis

from mcpmux.config import config_from_dict
from mcpmux.era import StateSealer
from mcpmux.redis_store import RedisStore, record_fields, record_from_fields
from mcpmux.replicas import ReplicatedSession, Replication
from mcpmux.state import SessionRecord
from mcpmux.subscriptions import SubscriptionRegistry

__all__ = ["redis_server"]


def record(sid: str = "s1") -> SessionRecord:
    return SessionRecord(sid, "alice", "2025-06-18", {"elicitation": {}}, {"name": "t", "version": "1"},
                         created=1000.0)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


def test_a_record_survives_the_trip_through_hash_fields() -> None:
    r = record()
    r.log_level = "info"
    r.subscriptions = {"a://1", "b://x:y", "c://held", "d://let-go"}
    r.holders = {"c://held": "r1", "d://let-go": ""}
    r.upstream_ids = {"web": "abc"}
    r.upstream_versions = {"web": "2025-06-18"}
    back = record_from_fields(record_fields(r))
    assert back == r
    assert record_from_fields({"level": "info"}) is None  # no base: not a session


async def test_put_get_delete_and_ttl(redis: Redis) -> None:
    store = RedisStore(redis, "t", ttl=120)
    await store.put(record())
    got = await store.get("s1")
    assert got == record()
    assert 110 < await redis.ttl("t:session:s1") <= 120
    assert await store.count() == 1
    await store.delete("s1")
    assert await store.get("s1") is None
    assert await store.count() == 0


async def test_two_replicas_changing_different_things_both_keep_theirs(redis: Redis) -> None:
    """Fields are written as diffs, so a replica never writes back a stale copy of
    what another changed (a whole-record value would: last writer wins)."""
    a, b = RedisStore(redis, "t", 60), RedisStore(redis, "t", 60)
    await a.put(record())
    ra, rb = await a.get("s1"), await b.get("s1")
    assert ra is not None and rb is not None
    ra.subscriptions.add("res://1")
    await a.put(ra)
    rb.upstream_ids["web"] = "up-1"
    rb.upstream_versions["web"] = "2025-06-18"
    await b.put(rb)  # b's copy has no subscription: it must not remove a's
    final = await RedisStore(redis, "t", 60).get("s1")
    assert final is not None
    assert final.subscriptions == {"res://1"}
    assert final.upstream_ids == {"web": "up-1"}
    ra.subscriptions.discard("res://1")
    await a.put(ra)
    final = await RedisStore(redis, "t", 60).get("s1")
    assert final is not None and final.subscriptions == set() and final.upstream_ids == {"web": "up-1"}


async def test_touch_renews_ttls_and_reads_back_in_one_batch(redis: Redis) -> None:
    store = RedisStore(redis, "t", ttl=100)
    await store.put(record("s1"))
    await store.put(record("s2"))
    await redis.expire("t:session:s1", 5)
    got = await store.touch(["s1", "s2", "gone"])
    assert got["s1"] == record("s1") and got["s2"] == record("s2") and got["gone"] is None
    assert await redis.ttl("t:session:s1") > 90


async def test_redis_down_is_reported_and_writes_wait_for_it(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    client = Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    store = RedisStore(client, "t", 60)
    try:
        await store.put(record("early"))
        server.stop()
        await store.put(record("late"))  # no exception: kept for later
        assert await store.get("other") is None
        status = store.health.status()
        assert status["redis"] == "down" and status["lastError"]
        assert await store.get("late") == record("late")  # still served from here
        server.start()
        assert await store.ping()
        await store.resync()
        assert store.health.status()["redis"] == "up"
        assert await RedisStore(client, "t", 60).get("late") == record("late")
    finally:
        await client.aclose()
        server.stop()


# -- two replicas ---------------------------------------------------------------------

def _config(url: str) -> Any:
    return config_from_dict({"state": {"redis_url": url, "key_prefix": "u"}, "targets": []})


def _dispatcher() -> Any:
    return SimpleNamespace(bridge=SimpleNamespace(sealer=StateSealer()),
                           gateway=SimpleNamespace(subscriptions=SubscriptionRegistry(), targets={}))


@pytest.fixture
async def pair(redis: Redis, redis_server: RedisServer) -> AsyncIterator[tuple[Replication, Replication, Any, Any]]:
    reps = [Replication(_config(redis_server.url)) for _ in range(2)]
    dispatchers = [_dispatcher() for _ in reps]
    for rep, d in zip(reps, dispatchers, strict=True):
        await rep.start(d)
    await asyncio.sleep(0.2)  # both subscribed to their channels
    try:
        yield reps[0], reps[1], dispatchers[0], dispatchers[1]
    finally:
        for rep in reps:
            await rep.aclose()


async def _until(pred: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_session_opened_on_one_replica_is_continued_on_the_other(pair: Any) -> None:
    a, b, _, _ = pair
    session = await a.sessions.open("alice", "2025-06-18", {"capabilities": {}, "clientInfo": {"name": "c"}})
    assert isinstance(session, ReplicatedSession)
    other = await b.sessions.resume(session.id)
    assert other is not None and other.id == session.id and other.record.owner == "alice"
    assert await b.sessions.resume("no-such-session") is None


async def test_requeststate_key_is_shared(pair: Any) -> None:
    _, _, da, db = pair
    token = da.bridge.sealer.seal({"x": 1})
    assert db.bridge.sealer.open(token) == {"x": 1}


async def test_a_note_reaches_the_replica_holding_the_stream(pair: Any) -> None:
    a, b, _, _ = pair
    session = await a.sessions.open(None, "2025-06-18", {})
    there = await b.sessions.resume(session.id)
    assert isinstance(there, ReplicatedSession)
    there.stream_opened()  # a GET stream opened on b
    await _until(lambda: a.redis is not None and b._pubsub is not None)
    await asyncio.sleep(0.2)  # b's SUBSCRIBE is on its way
    note = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "x://1"}}
    session.post(note)
    await _until(lambda: not there.outbox.empty())
    assert there.outbox.get_nowait() == note
    assert session.outbox.empty()
    # Nobody holds a stream: the message waits here, as in one process.
    there.stream_closed()
    await asyncio.sleep(0.2)
    session.post(note)
    await _until(lambda: not session.outbox.empty())
    assert there.outbox.empty()


async def test_an_answer_posted_to_the_other_replica_reaches_the_asker(pair: Any) -> None:
    a, b, _, _ = pair
    session = await a.sessions.open(None, "2025-06-18", {"capabilities": {"elicitation": {}}})
    sent: list[dict[str, Any]] = []

    async def emit(msg: dict[str, Any]) -> None:
        sent.append(msg)

    asking = asyncio.ensure_future(session.ask({"method": "elicitation/create", "params": {}}, emit))
    await _until(lambda: bool(sent))
    rid = sent[0]["id"]
    assert isinstance(rid, str) and rid.startswith(f"{a.id}.")  # names the replica that asked
    there = await b.sessions.resume(session.id)
    assert there is not None
    assert await there.on_response({"jsonrpc": "2.0", "id": rid, "result": {"action": "accept"}})
    answer = await asyncio.wait_for(asking, 5)
    assert answer["result"] == {"action": "accept"}


async def test_a_delete_on_one_replica_ends_the_session_on_the_other(pair: Any) -> None:
    a, b, _, _ = pair
    session = await a.sessions.open(None, "2025-06-18", {})
    there = await b.sessions.resume(session.id)
    assert there is not None
    await a.sessions.remove(session.id)
    await _until(lambda: session.id not in b.sessions.live)
    assert there.closed
    assert await b.sessions.resume(session.id) is None


async def test_idle_on_one_replica_keeps_the_record_for_the_others(pair: Any) -> None:
    a, b, _, _ = pair
    session = await a.sessions.open(None, "2025-06-18", {})
    await b.sessions.resume(session.id)
    gone = await b.sessions.retire(session.id)
    assert isinstance(gone, ReplicatedSession) and gone.detached
    assert await a.store.get(session.id) is not None
    with contextlib.suppress(Exception):
        await gone.aclose()


@pytest.mark.parametrize("url", ["http://x:6379", "redis://", "redis://h:99999/0", "redis://h/db"])
def test_a_bad_redis_url_is_a_config_error(url: str) -> None:
    from mcpmux.config import ConfigError

    with pytest.raises(ConfigError, match="redis_url"):
        config_from_dict({"state": {"redis_url": url}})


def test_without_state_nothing_is_shared() -> None:
    assert config_from_dict({}).state is None
    assert config_from_dict({"state": {"redis_url": "redis://h:6379/0"}}).state is not None
