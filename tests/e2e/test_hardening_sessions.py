"""Sessions cannot be hoarded, and a hanging target delays nobody (the "Hardening" issue).

* One client (here: one source address) opening sessions until it is refused locks out
  only itself: another address still gets a session and calls. An ``/sse`` stream holds
  a slot from the moment it opens.
* A session that never made a request is reaped after ``limits.unused_session_timeout``,
  a session that made one stays; an ``/sse`` stream that never initializes is closed.
* A target that accepts TCP and never answers (``timeout: 30``) does not hold a client's
  ``initialize`` and ``tools/list``; a target that arrives later is announced with
  ``notifications/tools/list_changed``.

Another source address on loopback: the client socket binds 127.0.0.2 (Linux routes all
of 127/8 to ``lo``). No fixed sleeps: every wait is a bounded poll or an awaited event.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.peers.bad_servers import HERE as BAD_SERVERS
from tests.peers.bad_servers import HangingServer
from tests.support.gateway import Gateway, run_gateway
from tests.support.mcp_http import RawClient, sse_messages

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
WAIT = 15.0


def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=WAIT)


def initialize(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(url, json=INIT, headers=HEADERS)


def session_headers(sid: str) -> dict[str, str]:
    return {**HEADERS, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}


def call(client: httpx.Client, url: str, sid: str, method: str, params: dict[str, Any]) -> httpx.Response:
    return client.post(url, json={"jsonrpc": "2.0", "id": 2, "method": method, "params": params},
                       headers=session_headers(sid))


def answer(resp: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a POST, sent as JSON or as the last event of an SSE stream."""
    assert resp.status_code == 200, resp.text
    if resp.headers["content-type"].startswith("text/event-stream"):
        return sse_messages(resp.text)[-1]
    out: dict[str, Any] = resp.json()
    return out


def sessions(gw: Gateway) -> int:
    return int(httpx.get(f"{gw.admin_url}/api/targets", timeout=5).json()["sessions"])


def poll(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.05)


def sse_url(gw: Gateway) -> str:
    return gw.mcp_url.removesuffix("/mcp") + "/sse"


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Gateway]:
    config = {"targets": [CLOCK], "limits": {"max_sessions_per_client": 3, "unused_session_timeout": 1.0}}
    with run_gateway(config, tmp_path) as gw:
        yield gw


def test_one_address_at_its_session_limit_locks_out_only_itself(limited: Gateway) -> None:
    url = limited.mcp_url
    with client_from("127.0.0.1") as mine, client_from("127.0.0.2") as other:
        sids = []
        for _ in range(3):
            resp = initialize(mine, url)
            assert resp.status_code == 200, resp.text
            sids.append(resp.headers["mcp-session-id"])
        refused = initialize(mine, url)
        # The same kind of refusal as the global max_sessions one: HTTP 400, JSON-RPC -32000.
        assert refused.status_code == 400, refused.text
        err = refused.json()["error"]
        assert err["code"] == -32000
        assert "127.0.0.1" in err["message"] and "limits.max_sessions_per_client" in err["message"]
        assert "is 3" in err["message"]

        # Another address is not affected: it initializes and calls.
        resp = initialize(other, url)
        assert resp.status_code == 200, resp.text
        ok = call(other, url, resp.headers["mcp-session-id"], "tools/call",
                  {"name": "add", "arguments": {"a": 2, "b": 3}})
        assert answer(ok)["result"]["structuredContent"] == {"sum": 5}, ok.text

        # /sse streams count as well: refused with the 503 of the global limit.
        sse = mine.get(sse_url(limited), headers={"Accept": "text/event-stream"})
        assert sse.status_code == 503, sse.text
        assert "limits.max_sessions_per_client" in sse.json()["error"]["message"]

        # Ending a session frees its slot; a stream that never initialized takes it.
        assert mine.delete(url, headers=session_headers(sids.pop())).status_code == 200
        with mine.stream("GET", sse_url(limited), headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            assert initialize(mine, url).status_code == 400  # the stream holds the slot
        # The stream ended: the slot comes back (the gateway sees the disconnect).
        poll(lambda: initialize(mine, url).status_code == 200, "the /sse stream's slot was not released")


def test_unused_sessions_are_reaped_and_used_ones_stay(limited: Gateway) -> None:
    url = limited.mcp_url
    assert sessions(limited) == 0
    with client_from("127.0.0.1") as c:
        used = initialize(c, url).headers["mcp-session-id"]
        unused = initialize(c, url).headers["mcp-session-id"]
        assert call(c, url, used, "tools/list", {}).status_code == 200
        assert sessions(limited) == 2
        poll(lambda: sessions(limited) == 1, "the unused session was not reaped")
        # The one that made a request is still there; the other is gone (404: re-initialize).
        assert call(c, url, used, "tools/list", {}).status_code == 200
        assert call(c, url, unused, "tools/list", {}).status_code == 404

        # An /sse stream that never initializes is closed after the same timeout.
        started = time.monotonic()
        with c.stream("GET", sse_url(limited), headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            body = b"".join(stream.iter_bytes())  # returns when the gateway ends the stream
        assert b"event: endpoint" in body
        assert time.monotonic() - started < WAIT


# -------------------------------------------------------- a hanging target at start-up


def gated_target(name: str, gate: Path) -> dict[str, Any]:
    """A stdio target that answers nothing until ``gate`` exists (then a real server)."""
    script = f'while [ ! -e "{gate}" ]; do sleep 0.05; done; exec "{sys.executable}" "{BAD_SERVERS}" crashy'
    return {"name": name, "stdio": {"command": "sh", "args": ["-c", script]}, "timeout": 30}


async def test_a_hanging_target_does_not_delay_clients_and_a_late_one_is_announced(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with HangingServer() as hang:
        targets = [CLOCK, {"name": "hangs", "http": {"url": hang.url}, "timeout": 30}, gated_target("late", gate)]
        with run_gateway({"targets": targets}, tmp_path, wait=False) as gw:
            status = await asyncio.to_thread(gw.targets)
            assert status["hangs"]["state"] == "connecting" and status["late"]["state"] == "connecting"
            async with RawClient(gw.mcp_url, 60) as c:
                started = time.monotonic()
                await c.initialize()
                names = set(await c.tool_names())
                took = time.monotonic() - started
                assert names == {"clock_now", "clock_add", "clock_sleep"}
                assert took < 10, f"initialize + tools/list took {took:.1f} s with a target hanging"

                opened = asyncio.Event()
                listening = asyncio.create_task(
                    c.listen(lambda m: m.get("method") == "notifications/tools/list_changed", WAIT * 2, opened)
                )
                await asyncio.wait_for(opened.wait(), WAIT)
                gate.touch()  # the late target answers from now on
                await listening
                names = set(await c.tool_names())
                assert {"late_echo", "late_pid", "clock_now"} <= names, names
                assert not any(n.startswith("hangs_") for n in names)
