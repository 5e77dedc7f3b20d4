"""Resource subscriptions on a 2026-07-28-only target, through the gateway.

A modern target has no ``resources/subscribe``: a client follows a resource by naming
it in ``resourceSubscriptions`` on a ``subscriptions/listen`` stream. The gateway keeps
one such stream open on each modern target (its catalog feed) and asks it for every URI
its own clients follow, whichever era they speak:

* a 2026 client opens ``subscriptions/listen`` on the gateway with the prefixed URI;
* a handshake client sends ``resources/subscribe`` and gets the updates on its GET
  stream.

The target is ``modern`` of ``tests/peers/era_servers.py`` (official Python SDK): its
``touch_info`` changes ``modern://info`` and publishes ``notifications/resources/updated``
(only streams whose filter names the URI get it), and its ``listening`` tool reports the
``resourceSubscriptions`` of every listen stream open on it: what the gateway asks for.

Absence is proved with a barrier, never a sleep: a notification every stream gets
(``tools/list_changed``) is sent after the update; an update, had it been routed, would
have arrived first (the gateway posts it on arrival, a list change only after re-listing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from tests.support.clients import Inbox
from tests.support.eras import era_server
from tests.support.gateway import Gateway, run_gateway

V = "2026-07-28"
K_SUB = "io.modelcontextprotocol/subscriptionId"
#: The resource as the target names it, and as the gateway exposes it.
ORIGINAL = "modern://info"
URI = f"modern+{ORIGINAL}"
WAIT = 20.0

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("era-subscriptions")
    with era_server("modern", tmp / "modern.log") as modern:
        config = {"prefix": "always", "targets": [{"name": "modern", "http": {"url": modern}}]}
        with run_gateway(config, tmp) as g:
            yield g


# -- a small 2026 client -----------------------------------------------------------------
def _request(method: str, params: dict[str, Any], rid: Any) -> tuple[bytes, dict[str, str]]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "subscriptions-test", "version": "1"},
    }
    msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": meta}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": V,
        "Mcp-Method": method,
    }
    name = params.get("name") if method == "tools/call" else params.get("uri")
    if isinstance(name, str):
        headers["Mcp-Name"] = name
    return json.dumps(msg).encode(), headers


def _events(lines: list[str]) -> list[dict[str, Any]]:
    out, data = [], []
    for line in [*lines, ""]:
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            out.append(json.loads("\n".join(data)))
            data = []
    return out


async def rpc(url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One 2026 request; its result (asserted to be one)."""
    body, headers = _request(method, params, rid=method)
    async with httpx.AsyncClient(timeout=WAIT) as http:
        r = await http.post(url, content=body, headers=headers)
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        resp = _events(r.text.replace("\r\n", "\n").split("\n"))[-1]
    else:
        resp = r.json()
    assert "result" in resp and not resp["result"].get("isError"), resp
    result: dict[str, Any] = resp["result"]
    return result


async def call(url: str, tool: str, args: dict[str, Any] | None = None) -> str:
    res = await rpc(url, "tools/call", {"name": tool, "arguments": args or {}})
    return "".join(c["text"] for c in res["content"] if c.get("type") == "text")


async def listening(gw: Gateway) -> list[list[str]]:
    """The resourceSubscriptions of each listen stream open on the target (the gateway's)."""
    return list(json.loads(await call(gw.mcp_url, "modern_listening"))["streams"])


async def held(gw: Gateway) -> int:
    """How many listen requests the target holds unanswered (``hold_listens``)."""
    return int(json.loads(await call(gw.mcp_url, "modern_listening"))["held"])


async def settle(gw: Gateway, want: list[list[str]], what: str) -> None:
    """Wait (bounded) until the target's open listen streams are ``want``: a dropped
    stream ends on the server once it notices the disconnect, so the end state is
    awaited; it is the assertion."""
    deadline = time.monotonic() + WAIT
    seen = await listening(gw)
    while seen != want:
        assert time.monotonic() < deadline, f"{what}: the target's listen streams are {seen}"
        await asyncio.sleep(0.05)
        seen = await listening(gw)


class Listener:
    """A ``subscriptions/listen`` stream on the gateway, read into a queue by a task."""

    def __init__(self, url: str, rid: str, notifications: dict[str, Any]) -> None:
        self.url, self.rid, self.notifications = url, rid, notifications
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: The HTTP status, once the gateway answered (it does after acknowledging).
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        body, headers = _request(
            "subscriptions/listen", {"notifications": self.notifications}, self.rid
        )
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(WAIT, read=None)) as http,
            http.stream("POST", self.url, content=body, headers=headers) as resp,
        ):
            self.status.set_result(resp.status_code)
            lines: list[str] = []
            async for line in resp.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                for event in _events(lines):
                    self.queue.put_nowait(event)
                lines = []

    async def opened(self) -> int:
        assert self._task is not None
        await asyncio.wait((self.status, self._task), timeout=WAIT, return_when="FIRST_COMPLETED")
        assert self.status.done(), "the listen stream did not open"
        return self.status.result()

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), WAIT)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def listen(gw: Gateway, rid: str, notifications: dict[str, Any]) -> AsyncIterator[Listener]:
    """An open listen stream (HTTP 200), closed on exit."""
    stream = Listener(gw.mcp_url, rid, notifications)
    stream.start()
    try:
        assert await stream.opened() == 200
        yield stream
    finally:
        await stream.close()


# -- a handshake SDK client --------------------------------------------------------------

@contextlib.asynccontextmanager
async def handshake_client(gw: Gateway, box: Inbox) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(gw.mcp_url) as (read, write),
        ClientSession(read, write, message_handler=box) as s,
    ):
        init = await s.initialize()
        assert init.capabilities.resources is not None and init.capabilities.resources.subscribe
        yield s


def updated(m: Any) -> bool:
    return isinstance(m, types.ResourceUpdatedNotification)


def tools_changed(m: Any) -> bool:
    return isinstance(m, types.ToolListChangedNotification)


# -- the tests ---------------------------------------------------------------------------
async def test_a_2026_listener_gets_updates_of_what_it_subscribed(gw: Gateway) -> None:
    await settle(gw, [[]], "before")
    async with (
        listen(gw, "follow-info", {"resourceSubscriptions": [URI]}) as sub,
        listen(gw, "tools-only", {"toolsListChanged": True}) as bystander,
    ):
        ack = await sub.next()
        assert ack["method"] == "notifications/subscriptions/acknowledged", ack
        assert ack["params"]["notifications"] == {"resourceSubscriptions": [URI]}
        assert ack["params"]["_meta"] == {K_SUB: "follow-info"}
        ack = await bystander.next()
        assert ack["params"]["notifications"] == {"toolsListChanged": True}
        # The target already follows the URI (its own name for it) when the client is
        # acknowledged; the gateway's previous stream goes once the target notices.
        assert [ORIGINAL] in await listening(gw)
        await settle(gw, [[ORIGINAL]], "subscribed")

        assert await call(gw.mcp_url, "modern_touch_info", {"text": "first"}) == (
            f"updated {ORIGINAL}"
        )
        note = await sub.next()
        assert note == {
            "jsonrpc": "2.0",
            "method": "notifications/resources/updated",
            "params": {"uri": URI, "_meta": {K_SUB: "follow-info"}},
        }
        read = await rpc(gw.mcp_url, "resources/read", {"uri": URI})
        assert [(c["uri"], c["text"]) for c in read["contents"]] == [(URI, "first")]

        # Barrier: a tool list change reaches the bystander; the update it did not
        # subscribe to would have come first.
        await call(gw.mcp_url, "modern_add_tool", {"name": "after_first"})
        note = await bystander.next()
        assert note["method"] == "notifications/tools/list_changed", note
        assert note["params"]["_meta"] == {K_SUB: "tools-only"}
        assert bystander.queue.empty()
        assert sub.queue.empty()  # and the subscriber did not ask for list changes
    await settle(gw, [[]], "after the listener left")


async def test_acknowledged_only_once_the_target_follows_the_uri(gw: Gateway) -> None:
    """The target holds the gateway's new listen request (a slow acknowledgement). Until
    it answers, the client's listen is not acknowledged, and the gateway's old stream
    still carries list changes; once it does, an update right after the acknowledgement
    arrives."""
    await settle(gw, [[]], "before")
    async with listen(gw, "tools", {"toolsListChanged": True}) as bystander:
        await bystander.next()
        sub = Listener(gw.mcp_url, "slow", {"resourceSubscriptions": [URI]})
        await call(gw.mcp_url, "modern_hold_listens", {"hold": True})
        try:
            sub.start()
            deadline = time.monotonic() + WAIT
            while await held(gw) != 1:  # the gateway's new listen request reached the target
                assert time.monotonic() < deadline, "the gateway did not ask the target"
                await asyncio.sleep(0.02)
            await call(gw.mcp_url, "modern_add_tool", {"name": "while_held"})
            note = await bystander.next()
            assert note["method"] == "notifications/tools/list_changed", note
            assert not sub.status.done() and sub.queue.empty()  # not acknowledged yet

            await call(gw.mcp_url, "modern_hold_listens", {"hold": False})
            assert await sub.opened() == 200
            ack = await sub.next()
            assert ack["params"]["notifications"] == {"resourceSubscriptions": [URI]}
            await call(gw.mcp_url, "modern_touch_info", {"text": "right after"})
            note = await sub.next()
            assert (note["method"], note["params"]["uri"]) == (
                "notifications/resources/updated",
                URI,
            )
        finally:
            await call(gw.mcp_url, "modern_hold_listens", {"hold": False})
            await sub.close()
    await settle(gw, [[]], "after")


async def test_a_handshake_client_subscribes_to_a_modern_only_target(gw: Gateway) -> None:
    await settle(gw, [[]], "before")
    box = Inbox()
    async with handshake_client(gw, box) as s:
        await s.subscribe_resource(URI)
        assert [ORIGINAL] in await listening(gw)
        await settle(gw, [[ORIGINAL]], "subscribed")
        await s.call_tool("modern_touch_info", {"text": "second"})
        note = await box.wait_for(updated)
        assert str(note.params.uri) == URI
        # the gateway's own subscription id upstream means nothing to this client
        assert K_SUB not in (note.params.meta or {})
        read = await s.read_resource(URI)
        assert [getattr(c, "text", None) for c in read.contents] == ["second"]

        await s.unsubscribe_resource(URI)
        await settle(gw, [[]], "after resources/unsubscribe")
        mark = len(box.items)
        await s.call_tool("modern_touch_info", {"text": "third"})
        await s.call_tool("modern_add_tool", {"name": "after_unsubscribe"})
        await box.wait_for(tools_changed, since=mark)  # the barrier
        assert [m for m in box.items[mark:] if updated(m)] == []


async def test_the_upstream_listen_follows_the_last_subscriber(gw: Gateway) -> None:
    """Three ways to leave: ``resources/unsubscribe``, closing the listen stream, and
    ending the handshake session while subscribed. Only the last subscriber's leaving
    takes the URI off the gateway's upstream listen."""
    await settle(gw, [[]], "before")
    box = Inbox()
    async with handshake_client(gw, box) as s:
        async with listen(gw, "follow", {"resourceSubscriptions": [URI]}) as sub:
            await sub.next()  # acknowledged: the URI is followed
            await settle(gw, [[ORIGINAL]], "subscribed")
            await s.subscribe_resource(URI)  # a second subscriber: the same stream
            assert await listening(gw) == [[ORIGINAL]]
            # One of two subscribers leaves: the URI is still asked for; updates flow.
            await s.unsubscribe_resource(URI)
            assert await listening(gw) == [[ORIGINAL]]
            await call(gw.mcp_url, "modern_touch_info", {"text": "fourth"})
            assert (await sub.next())["params"]["uri"] == URI
            await s.subscribe_resource(URI)
        # The listener left; the handshake client still follows the URI.
        mark = len(box.items)
        await call(gw.mcp_url, "modern_touch_info", {"text": "fifth"})
        assert str((await box.wait_for(updated, since=mark)).params.uri) == URI
        assert await listening(gw) == [[ORIGINAL]]
    # The handshake session ended (DELETE) while subscribed: it was the last subscriber.
    await settle(gw, [[]], "after the last subscriber left")
    # ... and the gateway still listens: a list change reaches a fresh 2026 listener.
    async with listen(gw, "later", {"toolsListChanged": True}) as later:
        await later.next()
        await call(gw.mcp_url, "modern_add_tool", {"name": "after_everyone"})
        assert (await later.next())["method"] == "notifications/tools/list_changed"
