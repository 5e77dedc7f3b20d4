"""Two gateway replicas sharing sessions through a real Redis, behind a real nginx.

nginx balances round robin with no stickiness, so consecutive requests of one
session alternate between the replicas. Where a test must know which replica does
what (the call on one, the answer on the other), it talks to each replica directly
too: the same session id works on both, which is the point.

Peers: server-everything over stdio (one process per replica) and over streamable
HTTP (one, shared by both replicas: the client's upstream session is continued by
whichever replica serves the request).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from tests.e2e.conftest import HttpPeer
from tests.support.clients import Answers
from tests.support.conformance import server_everything_cmd
from tests.support.gateway import Gateway, run_gateway
from tests.support.mcp_http import sse_messages
from tests.support.nginx import run_nginx
from tests.support.redis_server import RedisServer, redis_server, start_redis

from mcpmux.replicas import TOUCH_INTERVAL

__all__ = ["redis_server"]

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
STATIC_DOC = "demo://resource/static/document/{}"
WAIT = 20.0
_prefixes = itertools.count(1)


@dataclass
class Cluster:
    a: Gateway
    b: Gateway
    lb: str  # the balancer's /mcp URL

    @property
    def replicas(self) -> list[Gateway]:
        return [self.a, self.b]


def replica_config(redis_url: str, web_url: str, prefix: str) -> dict[str, Any]:
    cmd = server_everything_cmd("stdio")
    return {
        "state": {"redis_url": redis_url, "key_prefix": prefix},
        "targets": [
            {"name": "everything", "stdio": {"command": cmd[0], "args": cmd[1:]}},
            {"name": "web", "http": {"url": web_url}},
        ],
    }


@contextlib.contextmanager
def cluster(redis: RedisServer, web: HttpPeer, tmp: Path) -> Iterator[Cluster]:
    config = replica_config(redis.url, web.url, f"e2e{os.getpid()}-{next(_prefixes)}")
    with (
        run_gateway(config, tmp) as a,
        run_gateway(config, tmp) as b,
        run_nginx([a.mcp_url.split("/")[2], b.mcp_url.split("/")[2]], tmp / "nginx") as base,
    ):
        yield Cluster(a, b, f"{base}/mcp")


@pytest.fixture(scope="module")
def two(redis_server: RedisServer, everything_http: HttpPeer,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(redis_server, everything_http, tmp_path_factory.mktemp("replicas")) as c:
        yield c


class Raw:
    """One session, spoken on the wire, to whichever URL each request names."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.sid = ""
        self.ids = itertools.count(1)

    def headers(self, **extra: str) -> dict[str, str]:
        h = {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": self.sid,
             "MCP-Protocol-Version": VERSION}
        return {**h, **extra}

    async def initialize(self, url: str, capabilities: dict[str, Any] | None = None) -> None:
        msg = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": VERSION, "capabilities": capabilities or {},
                          "clientInfo": {"name": "replica-tests", "version": "0"}}}
        resp = await self.http.post(url, content=orjson.dumps(msg),
                                    headers={"Accept": ACCEPT, "Content-Type": "application/json"})
        assert resp.status_code == 200, resp.text
        self.sid = resp.headers["mcp-session-id"]
        ack = await self.http.post(url, content=orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                                   headers=self.headers())
        assert ack.status_code == 202, ack.text

    async def rpc(self, url: str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = next(self.ids)
        msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
        resp = await self.http.post(url, content=orjson.dumps(msg), headers=self.headers())
        assert resp.status_code == 200, f"{method}: HTTP {resp.status_code}: {resp.text[:300]}"
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            answers = [m for m in sse_messages(resp.text) if m.get("id") == rid and "method" not in m]
            assert answers, resp.text[:500]
            return answers[-1]
        data: dict[str, Any] = resp.json()
        return data

    async def stream(self, url: str, method: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A request whose SSE answer is read message by message as it arrives."""
        msg = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        async with self.http.stream("POST", url, content=orjson.dumps(msg), headers=self.headers()) as resp:
            assert resp.status_code == 200, await resp.aread()
            async for event in _events(resp):
                yield event

    async def listen(self, url: str, opened: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": self.sid, "MCP-Protocol-Version": VERSION}
        async with self.http.stream("GET", url, headers=headers, timeout=httpx.Timeout(WAIT, read=None)) as resp:
            assert resp.status_code == 200, await resp.aread()
            if opened is not None:
                opened.set()
            async for event in _events(resp):
                yield event


async def _events(resp: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    buf = ""
    async for chunk in resp.aiter_text():
        buf += chunk.replace("\r\n", "\n")
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            for m in sse_messages(block + "\n\n"):
                yield m


async def _with_ids(resp: httpx.Response) -> AsyncIterator[tuple[str | None, dict[str, Any] | None]]:
    """Each SSE event as (its id, its JSON data or None)."""
    buf = ""
    async for chunk in resp.aiter_text():
        buf += chunk.replace("\r\n", "\n")
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            ids = [ln[3:].strip() for ln in block.split("\n") if ln.startswith("id:")]
            msgs = sse_messages(block + "\n\n")
            if ids or msgs:
                yield (ids[0] if ids else None), (msgs[0] if msgs else None)


def text(resp: dict[str, Any]) -> str:
    assert "result" in resp, resp
    return "\n".join(c.get("text", "") for c in resp["result"].get("content", []))


def shared_state(gw: Gateway) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{gw.admin_url}/api/targets", timeout=5).json()["state"]
    return state


def sessions_on(gw: Gateway) -> int:
    return int(httpx.get(f"{gw.admin_url}/api/targets", timeout=5).json()["sessions"])


@contextlib.asynccontextmanager
async def sdk(url: str, **kwargs: Any) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write, **kwargs) as s:
        await s.initialize()
        yield s


# ------------------------------------------------------------------------------ tests

async def test_calls_and_progress_through_the_balancer(two: Cluster) -> None:
    """An SDK client through round robin: each request may land on either replica, and
    the session, its upstream HTTP session and its progress all carry on."""
    before = [sessions_on(g) for g in two.replicas]
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with sdk(two.lb) as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        assert {"web_echo", "everything_echo"} <= tools
        for i in range(6):
            for target in ("web", "everything"):
                res = await s.call_tool(f"{target}_echo", {"message": f"hi-{i}"})
                assert not res.is_error and f"hi-{i}" in res.content[0].text  # type: ignore[union-attr]
        with anyio.fail_after(WAIT):
            res = await s.call_tool("web_trigger-long-running-operation", {"duration": 1, "steps": 4},
                                    progress_callback=on_progress)
        assert not res.is_error, res
        assert progress == [1, 2, 3, 4]
        # Both replicas served this one session (each holds a runtime of it).
        after = [sessions_on(g) for g in two.replicas]
        assert all(n > m for n, m in zip(after, before, strict=True)), (before, after)


async def test_the_same_session_id_works_on_either_replica(two: Cluster) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        c = Raw(http)
        await c.initialize(two.a.mcp_url)
        first = await c.rpc(two.a.mcp_url, "tools/call", {"name": "web_echo", "arguments": {"message": "one"}})
        assert "one" in text(first)
        # b never saw initialize: it continues the session from its record, and the
        # client's upstream session on `web` with it (no new initialize upstream).
        second = await c.rpc(two.b.mcp_url, "tools/call", {"name": "web_echo", "arguments": {"message": "two"}})
        assert "two" in text(second)
        assert "continued here" in two.b.log()
        unknown = await http.post(two.b.mcp_url, content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                                  headers={**c.headers(), "Mcp-Session-Id": "f" * 32})
        assert unknown.status_code == 404
        # DELETE on one replica ends it on both.
        gone = await http.delete(two.a.mcp_url, headers=c.headers())
        assert gone.status_code == 200
        for url in (two.a.mcp_url, two.b.mcp_url):
            for _ in range(50):
                r = await http.post(url, content=b'{"jsonrpc":"2.0","id":9,"method":"ping"}', headers=c.headers())
                if r.status_code == 404:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 404, (url, r.status_code)


@pytest.mark.parametrize("target", ["web", "everything"])
async def test_an_elicitation_answered_on_the_other_replica(two: Cluster, target: str) -> None:
    """The call runs on b, which relays the target's elicitation on the call's stream;
    the client's answer is POSTed to a, which does not know the request and sends it
    to b; b answers the target and the call completes on b's stream."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT, read=WAIT)) as http:
        c = Raw(http)
        await c.initialize(two.a.mcp_url, {"elicitation": {"form": {}}})
        asked: list[dict[str, Any]] = []
        final: dict[str, Any] = {}
        with anyio.fail_after(WAIT):
            async for msg in c.stream(two.b.mcp_url, "tools/call",
                                      {"name": f"{target}_trigger-elicitation-request", "arguments": {}}):
                if msg.get("method") == "elicitation/create":
                    assert str(msg["id"]).startswith(shared_state(two.b)["replica"] + ".")
                    asked.append(msg)
                    answer = {"jsonrpc": "2.0", "id": msg["id"],
                              "result": {"action": "accept", "content": {"name": "Ada Lovelace", "check": True}}}
                    posted = await http.post(two.a.mcp_url, content=orjson.dumps(answer), headers=c.headers())
                    assert posted.status_code == 202, posted.text
                elif "result" in msg or "error" in msg:
                    final = msg
                    break
        assert len(asked) == 1
        assert "Name: Ada Lovelace" in text(final), final


async def test_an_elicitation_through_the_balancer(two: Cluster) -> None:
    """The SDK client through round robin: wherever the call and the answer land."""
    answers = Answers()
    async with sdk(two.lb, elicitation_callback=answers.elicit) as s:
        for _ in range(3):
            with anyio.fail_after(WAIT):
                res = await s.call_tool("web_trigger-elicitation-request", {})
            assert not res.is_error, res
            assert "Name: Ada Lovelace" in " ".join(getattr(c, "text", "") for c in res.content)
    assert len(answers.elicitation) == 3


async def test_using_a_session_on_another_replica_renews_its_record(two: Cluster, redis_server: RedisServer) -> None:
    """A request on the replica that continued a session marks it used there, and that
    replica's next touch renews the record's TTL in Redis (``ReplicatedSession.touch``,
    which the compiled dispatcher must call, not bypass)."""
    prefix = orjson.loads(two.a.config_path.read_text())["state"]["key_prefix"]
    check = Redis.from_url(redis_server.url)
    async with httpx.AsyncClient(timeout=WAIT) as http:
        c = Raw(http)
        await c.initialize(two.a.mcp_url)
        key = f"{prefix}:session:{c.sid}"
        assert "result" in await c.rpc(two.b.mcp_url, "ping")  # continued on b
        try:
            async def renewed() -> None:
                while await check.ttl(key) <= 50:
                    await asyncio.sleep(0.1)

            # The touches of the requests so far land within one interval of each replica.
            await asyncio.sleep(2 * TOUCH_INTERVAL + 0.5)
            # Unused now: nobody renews it (two more intervals pass).
            await check.expire(key, 50)
            await asyncio.sleep(2 * TOUCH_INTERVAL + 0.5)
            assert 0 < await check.ttl(key) <= 50
            # Used on b: b renews it.
            assert "result" in await c.rpc(two.b.mcp_url, "ping")
            with anyio.fail_after(WAIT):
                await renewed()
        finally:
            await check.aclose()


@pytest.mark.parametrize("target", ["web", "everything"])
async def test_a_subscription_update_arrives_on_the_other_replicas_stream(two: Cluster, target: str) -> None:
    """Subscribed (and the updates started) through a; the client's GET stream is on b.
    web: a holds the client's upstream session whose stream carries the update;
    everything: a's own stdio process sends it. Either way b's stream gets it."""
    uri = f"{target}+{STATIC_DOC.format('architecture.md')}"
    async with httpx.AsyncClient(timeout=WAIT) as http:
        c = Raw(http)
        await c.initialize(two.a.mcp_url)
        opened = await c.rpc(two.a.mcp_url, "resources/subscribe", {"uri": uri})
        assert "result" in opened, opened
        got: list[dict[str, Any]] = []
        received = shared_state(two.b)["received"]

        async def watch() -> None:
            async for msg in c.listen(two.b.mcp_url):
                if msg.get("method") == "notifications/resources/updated":
                    got.append(msg)
                    return

        watcher = asyncio.ensure_future(watch())
        await asyncio.sleep(0.5)  # b holds the stream and follows the session's channel
        toggled = await c.rpc(two.a.mcp_url, "tools/call", {"name": f"{target}_toggle-subscriber-updates"})
        assert "result" in toggled, toggled
        try:
            with anyio.fail_after(WAIT):
                await watcher
        finally:
            watcher.cancel()
            await c.rpc(two.a.mcp_url, "tools/call", {"name": f"{target}_toggle-subscriber-updates"})
        assert got[0]["params"]["uri"] == uri
        assert shared_state(two.b)["received"] > received  # it came through Redis
        ready = httpx.get(f"{two.b.admin_url}/readyz", timeout=5).json()
        assert ready["state"]["redis"] == "up" and ready["degraded"] is False


async def test_a_replica_killed_mid_session(
    redis_server: RedisServer, everything_http: HttpPeer, tmp_path: Path
) -> None:
    """SIGKILL one replica: the call in flight on it ends (its stream just ends), and the
    session goes on at the other with the same id, no re-initialize."""
    with cluster(redis_server, everything_http, tmp_path) as c:
        async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT, read=WAIT)) as http:
            raw = Raw(http)
            await raw.initialize(c.lb)
            for i in range(4):  # both replicas serve it
                assert f"r{i}" in text(await raw.rpc(c.lb, "tools/call",
                                                     {"name": "web_echo", "arguments": {"message": f"r{i}"}}))

            async def long_call_on_a() -> str:
                try:
                    async for msg in raw.stream(c.a.mcp_url, "tools/call",
                                                {"name": "web_trigger-long-running-operation",
                                                 "arguments": {"duration": 30, "steps": 30},
                                                 "_meta": {"progressToken": 1}}):
                        if msg.get("method") == "notifications/progress":
                            started.set()
                        elif "result" in msg or "error" in msg:
                            return "answered"
                except (httpx.HTTPError, anyio.EndOfStream):
                    return "stream broke"
                return "stream ended"

            started = asyncio.Event()
            call = asyncio.ensure_future(long_call_on_a())
            with anyio.fail_after(WAIT):
                await started.wait()
            os.kill(c.a.proc.pid, signal.SIGKILL)
            c.a.proc.wait(10)
            with anyio.fail_after(10):
                outcome = await call
            assert outcome in ("stream broke", "stream ended")
            # The same session, through the balancer (only b is left), no initialize.
            for i in range(4):
                res = await raw.rpc(c.lb, "tools/call", {"name": "web_echo", "arguments": {"message": f"after{i}"}})
                assert f"after{i}" in text(res)
                res = await raw.rpc(c.lb, "tools/call", {"name": "everything_echo", "arguments": {"message": "s"}})
                assert "s" in text(res)
            tools = await raw.rpc(c.lb, "tools/list")
            assert any(t["name"] == "web_echo" for t in tools["result"]["tools"])
        # An SDK client opened now works too (b alone).
        async with sdk(c.lb) as s:
            res = await s.call_tool("web_echo", {"message": "fresh"})
            assert not res.is_error


async def test_a_stdio_subscription_taken_over_when_its_replica_dies(
    redis_server: RedisServer, everything_http: HttpPeer, tmp_path: Path
) -> None:
    """Subscribed through a on a's stdio process; the client's GET stream is on b. a is
    killed: b finds a's liveness key gone, takes the subscription over (its own stdio
    process subscribes), and the updates of b's process reach the client's stream."""
    uri = f"everything+{STATIC_DOC.format('architecture.md')}"
    with cluster(redis_server, everything_http, tmp_path) as c:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            raw = Raw(http)
            await raw.initialize(c.a.mcp_url)
            assert "result" in await raw.rpc(c.a.mcp_url, "resources/subscribe", {"uri": uri})
            opened = asyncio.Event()
            got: list[dict[str, Any]] = []

            async def watch() -> None:
                async for msg in raw.listen(c.b.mcp_url, opened):
                    if msg.get("method") == "notifications/resources/updated":
                        got.append(msg)
                        return

            watcher = asyncio.ensure_future(watch())
            try:
                with anyio.fail_after(WAIT):
                    await opened.wait()
                assert "taken over" not in c.b.log()  # a lives: its subscription stays a's
                os.kill(c.a.proc.pid, signal.SIGKILL)
                c.a.proc.wait(10)
                # Updates start on b's process; they name only what b's process follows.
                toggled = await raw.rpc(c.b.mcp_url, "tools/call", {"name": "everything_toggle-subscriber-updates"})
                assert "result" in toggled, toggled
                with anyio.fail_after(2 * WAIT):  # a's key expires, b takes over, the next tick
                    await watcher
            finally:
                watcher.cancel()
            assert got[0]["params"]["uri"] == uri
            assert c.b.log().count("taken over from replica") == 1


async def _break_after_first_progress(raw: Raw, url: str, arguments: dict[str, Any]) -> tuple[str, list[int]]:
    """POST a long call, read its stream up to the first progress event, hang up; the
    last event id and the progress seen."""
    msg = {"jsonrpc": "2.0", "id": 77, "method": "tools/call",
           "params": {"name": "web_trigger-long-running-operation", "arguments": arguments,
                      "_meta": {"progressToken": "p"}}}
    seen: list[int] = []
    async with httpx.AsyncClient(timeout=WAIT) as own, \
            own.stream("POST", url, content=orjson.dumps(msg), headers=raw.headers()) as resp:
        assert resp.status_code == 200
        async for eid, m in _with_ids(resp):
            if m is not None and m.get("method") == "notifications/progress":
                seen.append(int(m["params"]["progress"]))
                assert eid is not None
                return eid, seen
    raise AssertionError("the stream ended before any progress")


async def _resume(raw: Raw, url: str, last: str) -> list[tuple[str | None, dict[str, Any] | None]]:
    headers = {**raw.headers(), "Accept": "text/event-stream", "Last-Event-ID": last}
    got: list[tuple[str | None, dict[str, Any] | None]] = []
    async with raw.http.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for eid, m in _with_ids(resp):
            got.append((eid, m))
            if m is not None and ("result" in m or "error" in m):
                break
    return got


async def test_a_broken_answer_stream_resumes_on_the_other_replica(two: Cluster) -> None:
    """The call's POST goes through nginx to one replica; its stream breaks after the
    first progress event; the client resumes with Last-Event-ID on the other replica and
    gets the progress it missed (replayed from Redis, then followed live) and the answer."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT, read=WAIT)) as http:
        raw = Raw(http)
        await raw.initialize(two.lb)
        with anyio.fail_after(WAIT):
            last, seen = await _break_after_first_progress(raw, two.lb, {"duration": 3, "steps": 3})
        holder = last.partition(".")[0]
        names = {shared_state(g)["replica"]: g for g in two.replicas}
        assert holder in names, (last, names)
        other = next(g for name, g in names.items() if name != holder)
        with anyio.fail_after(WAIT):
            got = await _resume(raw, other.mcp_url, last)
        after = int(last.rpartition("-")[2])
        seqs = [int(eid.rpartition("-")[2]) for eid, _ in got if eid is not None]
        assert seqs == sorted(set(seqs)) and seqs[0] == after + 1, (last, got)
        assert all(eid is None or eid.startswith(f"{holder}.") for eid, _ in got)
        seen += [int(m["params"]["progress"]) for _, m in got if m and m.get("method") == "notifications/progress"]
        assert seen == [1, 2, 3], got
        answer = got[-1][1]
        assert answer is not None and answer["id"] == 77 and "result" in answer, got
        assert f"stream {holder}.s" in other.log() and "resumed here" in other.log()


async def test_resuming_a_stream_whose_replica_died_ends_the_call_cleanly(
    redis_server: RedisServer, everything_http: HttpPeer, tmp_path: Path
) -> None:
    """The replica running the call is killed after the stream broke: the other replica
    replays what was retained and answers the call with an error, not silence."""
    with cluster(redis_server, everything_http, tmp_path) as c:
        async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT, read=WAIT)) as http:
            raw = Raw(http)
            await raw.initialize(c.lb)
            prefix = orjson.loads(c.a.config_path.read_text())["state"]["key_prefix"]
            check = Redis.from_url(redis_server.url)
            watch = check.pubsub()
            try:
                await watch.psubscribe(f"{prefix}:ev:*")
                with anyio.fail_after(WAIT):
                    last, _ = await _break_after_first_progress(raw, c.a.mcp_url, {"duration": 60, "steps": 60})
                    # a retained the event before it dies (written, then published, in one pipeline)
                    while (m := await watch.get_message(ignore_subscribe_messages=True, timeout=WAIT)) is None:
                        pass
                assert last.encode() in m["data"], m
            finally:
                await watch.aclose()
                await check.aclose()
            os.kill(c.a.proc.pid, signal.SIGKILL)
            c.a.proc.wait(10)
            with anyio.fail_after(2 * WAIT):  # a's liveness key expires
                got = await _resume(raw, c.b.mcp_url, last)
            answer = got[-1][1]
            assert answer is not None and answer["id"] == 77, got
            assert "stopped before it answered" in answer["error"]["message"]


# --------------------------------------------------------------------------- --workers

def test_workers_without_shared_state_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "one.json"
    cfg.write_text('{"listen": {"port": 0}, "admin": {"port": 0}, "targets": []}')
    done = subprocess.run([sys.executable, "-m", "mcpmux", "run", "-c", str(cfg), "--workers", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "state.redis_url" in done.stderr


def start_workers(cfg: Path, ready: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "mcpmux", "run", "-c", str(cfg), "--workers", "2",
                             "--ready-file", str(ready), "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT)


async def test_workers_share_one_port_and_the_sessions(redis_server: RedisServer, tmp_path: Path) -> None:
    """``--workers 2``: two processes accept on one port; a session opened on one is
    served by the other (the kernel picks the worker for each new connection)."""
    cfg = tmp_path / "workers.json"
    cfg.write_text(orjson.dumps({"listen": {"port": 0}, "admin": {"port": 0}, "targets": [],
                                 "state": {"redis_url": redis_server.url, "key_prefix": f"w{os.getpid()}"}}).decode())
    ready = tmp_path / "ready.json"
    log = open(tmp_path / "workers.log", "wb")
    dirs_before = _worker_dirs()
    proc = start_workers(cfg, ready, log)
    try:
        for _ in range(600):
            if ready.exists() or proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert ready.exists(), (tmp_path / "workers.log").read_text()
        info = orjson.loads(ready.read_text())
        assert len(info["workers"]) == 2
        port = int(info["mcp"].rsplit(":", 1)[1].split("/")[0])
        # Each worker listens on its own SO_REUSEPORT socket (not one inherited socket).
        listening = _sockets_on(port, "0A")
        owners = {pid: _inodes_of(pid) & listening for pid in info["workers"]}
        assert len(listening) == 2 and all(len(v) == 1 for v in owners.values()), (listening, owners)
        # Fresh connections held open: the kernel gives each worker some of them.
        held = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(24)]
        try:
            for conn in held:  # accepted (a request answered) before counting
                conn.sendall(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n")
                assert conn.recv(64).startswith(b"HTTP/1.1 ")
            established = _sockets_on(port, "01")
            per_worker = [len(_inodes_of(pid) & established) for pid in info["workers"]]
            assert sum(per_worker) == len(held) and min(per_worker) > 0, per_worker
        finally:
            for conn in held:
                conn.close()
        for _ in range(8):
            # A new client (new connections) per session: the kernel spreads them.
            async with httpx.AsyncClient(timeout=WAIT) as http:
                c = Raw(http)
                await c.initialize(info["mcp"])
            async with httpx.AsyncClient(timeout=WAIT) as http2:
                c.http = http2
                assert "result" in await c.rpc(info["mcp"], "ping")
                assert "result" in await c.rpc(info["mcp"], "tools/list")
        # The admin port is shared too: whichever worker a scrape reaches, /metrics adds up
        # both workers' numbers (alone, each would show its own share of the 8 pings).
        for _ in range(6):
            text = httpx.get(f"{info['admin']}/metrics", timeout=WAIT).text
            got = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
            assert got[("mcpmux_workers", ())] == 2, text
            assert got[("mcpmux_requests_total", (("method", "ping"), ("outcome", "ok"), ("target", "-")))] == 8
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()
    for pid in info["workers"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _worker_dirs() <= dirs_before  # the directory of the workers' metrics sockets


def _worker_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("mcpmux-workers-*"))


def _sockets_on(port: int, state: str) -> set[int]:
    """Inodes of the TCP sockets with local ``port`` in ``state`` (0A listen, 01 established)."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    found.add(int(fields[9]))
    return found


def _inodes_of(pid: int) -> set[int]:
    out: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    return out


# ----------------------------------------------------------------------- Redis failure

async def test_redis_stopped_under_load_and_started_again(
    everything_http: HttpPeer, tmp_path: Path
) -> None:
    """Redis goes away while clients call through the balancer: the replicas serve the
    sessions they hold, say "degraded" in /readyz, and once Redis is back (empty: no
    persistence) they put the records back and share sessions again, without a restart."""
    redis = start_redis(tmp_path / "redis-own")
    try:
        with cluster(redis, everything_http, tmp_path) as c:
            async with httpx.AsyncClient(timeout=WAIT) as http:
                clients = [Raw(http) for _ in range(6)]
                for raw in clients:
                    await raw.initialize(c.lb)
                    for gw in c.replicas:  # each replica holds every session
                        assert "w" in text(await raw.rpc(gw.mcp_url, "tools/call",
                                                         {"name": "web_echo", "arguments": {"message": "w"}}))
                failures: list[str] = []
                calls = 0
                stop = asyncio.Event()

                async def load(raw: Raw) -> None:
                    nonlocal calls
                    while not stop.is_set():
                        try:
                            res = await raw.rpc(c.lb, "tools/call", {"name": "web_echo", "arguments": {"message": "x"}})
                            if "result" not in res:
                                failures.append(str(res))
                        except (AssertionError, httpx.HTTPError) as exc:
                            failures.append(repr(exc))
                        calls += 1

                tasks = [asyncio.ensure_future(load(raw)) for raw in clients]
                await asyncio.sleep(1)
                redis.stop()
                for _ in range(100):
                    states = [httpx.get(f"{g.admin_url}/readyz", timeout=5).json() for g in c.replicas]
                    if all(s["degraded"] for s in states):
                        break
                    await asyncio.sleep(0.1)
                assert all(s["state"]["redis"] == "down" and s["state"]["lastError"] for s in states), states
                assert all(s["ready"] for s in states)
                during = calls
                await asyncio.sleep(2)
                assert calls > during  # still serving
                redis.start()
                for _ in range(100):
                    states = [httpx.get(f"{g.admin_url}/readyz", timeout=5).json() for g in c.replicas]
                    if not any(s["degraded"] for s in states):
                        break
                    await asyncio.sleep(0.1)
                assert not any(s["degraded"] for s in states), states
                await asyncio.sleep(3)  # a touch round: records put back
                stop.set()
                await asyncio.gather(*tasks)
                assert calls > 50 and not failures, (calls, failures[:5])
                # The records are back, and a session opened now is shared again.
                check = Redis.from_url(redis.url)
                try:
                    keys = [k async for k in check.scan_iter(match="*:session:*")]
                finally:
                    await check.aclose()
                assert len(keys) >= len(clients)
                fresh = Raw(http)
                await fresh.initialize(c.a.mcp_url)
                assert "n" in text(await fresh.rpc(c.b.mcp_url, "tools/call",
                                                   {"name": "web_echo", "arguments": {"message": "n"}}))
    finally:
        redis.stop()
