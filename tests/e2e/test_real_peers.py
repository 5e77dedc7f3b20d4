"""mcpmux end to end against third-party peers nobody here wrote.

Servers: ``@modelcontextprotocol/server-everything`` (npm) over stdio (target
``everything``) and over streamable HTTP (target ``web``, one shared process for the
test session, see ``conftest.py``), and ``mcp-server-time`` (PyPI) over stdio (target
``time``). Clients: the official Python SDK, the MCP Inspector CLI, and a raw JSON-RPC
client (the SDK's 2.x types drop unknown fields, so field pass-through is compared on
the raw wire). One test adds a ten-line raw stdio server of ours, because no real peer
sends ``icons``, ``_meta`` or fields no revision defines.

No test sleeps to assert: every wait is for an event, bounded by a deadline, and every
"X must not arrive" is checked behind a barrier message that is ordered after X.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.e2e.conftest import HttpPeer, free_port, start_everything_http, stop_peer
from tests.support.clients import Answers, Inbox, kill_mid_call
from tests.support.conformance import node22_path, peers_dir, server_everything_cmd
from tests.support.gateway import Gateway, children_of, run_gateway

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

TIME_CMD = [str(Path(sys.executable).with_name("mcp-server-time")), "--local-timezone", "UTC"]
#: What the gateway's catalog session with any target declares; a direct client declaring
#: the same sees the same conditional tools (server-everything registers its
#: sampling/elicitation/roots tools only for clients that declare those capabilities).
GATEWAY_CAPS = {
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
    "roots": {"listChanged": True},
}
STATIC_DOC = "demo://resource/static/document/{}"
WAIT = 15.0


def everything_stdio_target(name: str = "everything") -> dict[str, Any]:
    cmd = server_everything_cmd("stdio")
    return {"name": name, "stdio": {"command": cmd[0], "args": cmd[1:]}}


def three_targets(web_url: str) -> list[dict[str, Any]]:
    return [
        everything_stdio_target(),
        {"name": "web", "http": {"url": web_url}},
        {"name": "time", "stdio": {"command": TIME_CMD[0], "args": TIME_CMD[1:]}},
    ]


@pytest.fixture(scope="module")
def gw(everything_http: HttpPeer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(
        {"targets": three_targets(everything_http.url)}, tmp_path_factory.mktemp("real-peers")
    ) as gateway:
        yield gateway


# ---------------------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session over streamable HTTP."""
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, **kwargs) as s,
    ):
        await s.initialize()
        yield s



def is_log(fragment: str) -> Callable[[Any], bool]:
    return lambda m: (
        isinstance(m, types.LoggingMessageNotification) and fragment in str(m.params.data)
    )


def is_updated(uri: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, types.ResourceUpdatedNotification) and str(m.params.uri) == uri


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


class RawHttp:
    """A JSON-RPC client on the wire (httpx): no model parsing, every field kept."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client
        self.session_id: str | None = None
        self.version = "2025-11-25"
        self._ids = iter(range(1, 1_000_000))

    def headers(self) -> dict[str, str]:
        h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
            h["MCP-Protocol-Version"] = self.version
        return h

    async def open(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        init = await self.request(
            "initialize",
            {
                "protocolVersion": self.version,
                "capabilities": capabilities or {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        )
        await self.notify("notifications/initialized")
        return init

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        resp = await self.client.post(self.url, json=msg, headers=self.headers())
        assert resp.status_code == 202, resp.text

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole response message (result or error)."""
        rid = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        async with self.client.stream("POST", self.url, json=msg, headers=self.headers()) as resp:
            assert resp.status_code == 200, (resp.status_code, await resp.aread())
            if method == "initialize":
                self.session_id = resp.headers.get("mcp-session-id")
            if resp.headers["content-type"].startswith("application/json"):
                return json.loads(await resp.aread())
            async for data in sse_data(resp):
                out = json.loads(data)
                if out.get("id") == rid and "method" not in out:
                    return out
        raise AssertionError(f"{method}: stream ended without a response")

    async def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = await self.request(method, params)
        assert "result" in resp, resp
        return resp["result"]

    async def list_all(self, method: str, key: str) -> list[dict[str, Any]]:
        """Every page, following nextCursor to the end."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):
            res = await self.result(method, {"cursor": cursor} if cursor else None)
            items.extend(res[key])
            cursor = res.get("nextCursor")
            if not cursor:
                return items
        raise AssertionError(f"{method} never stopped paginating")

    async def close(self) -> None:
        if self.session_id:
            await self.client.delete(self.url, headers=self.headers())


async def sse_data(resp: httpx.Response) -> AsyncIterator[str]:
    """The data of each SSE event of a streaming response."""
    data: list[str] = []
    async for line in resp.aiter_lines():
        if line == "":
            if any(data):  # a priming event has an empty data line
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


@contextlib.asynccontextmanager
async def raw_http(url: str, capabilities: dict[str, Any] | None = None) -> AsyncIterator[RawHttp]:
    async with httpx.AsyncClient(timeout=30) as client:
        raw = RawHttp(url, client)
        await raw.open(capabilities)
        try:
            yield raw
        finally:
            await raw.close()


class RawStdio:
    """A JSON-RPC client for a stdio server, on the wire (newline-delimited JSON)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ids = iter(range(1, 1_000_000))

    async def _write(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        await self.proc.stdin.drain()

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        await self._write(msg)
        assert self.proc.stdout is not None
        with anyio.fail_after(WAIT):
            while True:
                line = await self.proc.stdout.readline()
                assert line, "stdio server exited"
                out = json.loads(line)
                if "method" in out and "id" in out:  # roots/list and the like
                    await self._write({"jsonrpc": "2.0", "id": out["id"], "result": {"roots": []}})
                elif out.get("id") == rid and "method" not in out:
                    return out

    async def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = await self.request(method, params)
        assert "result" in resp, resp
        return resp["result"]

    async def list_all(self, method: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):
            res = await self.result(method, {"cursor": cursor} if cursor else None)
            items.extend(res[key])
            cursor = res.get("nextCursor")
            if not cursor:
                return items
        raise AssertionError(f"{method} never stopped paginating")


@contextlib.asynccontextmanager
async def raw_stdio(
    argv: list[str], capabilities: dict[str, Any] | None = None
) -> AsyncIterator[RawStdio]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    raw = RawStdio(proc)
    try:
        await raw.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities or {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        )
        await raw._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield raw
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def prefixed(items: list[dict[str, Any]], target: str, key: str) -> list[dict[str, Any]]:
    """What the gateway should show for a target's items: the key prefixed, nothing else."""
    sep = "+" if key in ("uri", "uriTemplate") else "_"
    return [{**item, key: f"{target}{sep}{item[key]}"} for item in items]


def owned(items: list[dict[str, Any]], target: str, key: str) -> list[dict[str, Any]]:
    sep = "+" if key in ("uri", "uriTemplate") else "_"
    return [i for i in items if i[key].startswith(f"{target}{sep}")]


# ------------------------------------------------------------- 1. tools and routing


async def test_tools_of_all_targets_are_listed_prefixed_and_routed(gw: Gateway) -> None:
    async with connect(gw.mcp_url) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        expected = {
            "everything_echo",
            "everything_get-sum",
            "everything_trigger-long-running-operation",
            "web_echo",
            "web_get-sum",
            "web_trigger-long-running-operation",
            "time_get_current_time",
            "time_convert_time",
        }
        assert expected <= names, sorted(names)
        # No unprefixed name leaks through with three targets configured.
        assert all(n.split("_", 1)[0] in ("everything", "web", "time") for n in names), sorted(
            names
        )

        stdio_echo = await s.call_tool("everything_echo", {"message": "via stdio"})
        http_echo = await s.call_tool("web_echo", {"message": "via http"})
        assert not stdio_echo.is_error and text_of(stdio_echo) == "Echo: via stdio"
        assert not http_echo.is_error and text_of(http_echo) == "Echo: via http"
        total = await s.call_tool("web_get-sum", {"a": 19, "b": 23})
        assert "42" in text_of(total)

        now = await s.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})
        assert not now.is_error, now
        assert now.structured_content is not None
        assert now.structured_content["timezone"] == "Europe/Paris"
        conv = await s.call_tool(
            "time_convert_time",
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        )
        assert not conv.is_error and "21:00" in text_of(conv), conv


# ------------------------------------------------- 2. prompts, resources, templates


async def test_prompts_resources_and_templates(gw: Gateway) -> None:
    async with connect(gw.mcp_url) as s:
        prompts = {p.name: p for p in (await s.list_prompts()).prompts}
        for target in ("everything", "web"):
            assert f"{target}_args-prompt" in prompts, sorted(prompts)
            got = await s.get_prompt(f"{target}_args-prompt", {"city": "Lyon", "state": "Rhone"})
            text = " ".join(
                m.content.text for m in got.messages if isinstance(m.content, types.TextContent)
            )
            assert "Lyon" in text and "Rhone" in text, got
            simple = await s.get_prompt(f"{target}_simple-prompt")
            assert simple.messages, simple

        resources = {str(r.uri): r for r in (await s.list_resources()).resources}
        for target in ("everything", "web"):
            uri = f"{target}+{STATIC_DOC.format('features.md')}"
            assert uri in resources, sorted(resources)
            read = await s.read_resource(uri)
            assert str(read.contents[0].uri) == uri
            assert isinstance(read.contents[0], types.TextResourceContents)
            assert "# Everything Server - Features" in read.contents[0].text

        templates = {t.uri_template for t in (await s.list_resource_templates()).resource_templates}
        for target in ("everything", "web"):
            tpl = f"{target}+demo://resource/dynamic/text/{{resourceId}}"
            assert tpl in templates, sorted(templates)
            # A URI the client builds from the exposed template reaches the right target.
            uri = tpl.replace("{resourceId}", "17")
            read = await s.read_resource(uri)
            assert str(read.contents[0].uri) == uri
            assert isinstance(read.contents[0], types.TextResourceContents)
            assert read.contents[0].text.startswith("Resource 17: This is a plaintext resource")
            blob = await s.read_resource(f"{target}+demo://resource/dynamic/blob/5")
            assert isinstance(blob.contents[0], types.BlobResourceContents)

        # completion/complete routed by its ref (prompt and resource template).
        done = await s.complete(
            types.PromptReference(type="ref/prompt", name="web_completable-prompt"),
            {"name": "department", "value": "En"},
        )
        assert "Engineering" in done.completion.values, done
        done = await s.complete(
            types.ResourceTemplateReference(
                type="ref/resource", uri="everything+demo://resource/dynamic/text/{resourceId}"
            ),
            {"name": "resourceId", "value": "7"},
        )
        assert done.completion.values == ["7"], done


# ----------------------------------------------------------------- 3. pagination


async def test_merged_resources_hold_every_page_of_every_target(
    gw: Gateway, everything_http: HttpPeer
) -> None:
    """Each target's resources, every upstream page followed, are all in the merged list.

    (server-everything 2026.8.31 answers resources/list in one page of 7; the direct
    side still follows cursors, so the test holds if a later version pages.)"""
    async with (
        raw_http(everything_http.url, GATEWAY_CAPS) as web,
        raw_stdio(server_everything_cmd("stdio"), GATEWAY_CAPS) as stdio,
        raw_http(gw.mcp_url) as merged,
    ):
        direct = {
            "everything": await stdio.list_all("resources/list", "resources"),
            "web": await web.list_all("resources/list", "resources"),
        }
        assert len(direct["web"]) >= 7, direct["web"]
        got = await merged.list_all("resources/list", "resources")
        for target, items in direct.items():
            assert owned(got, target, "uri") == prefixed(items, target, "uri")


async def test_paged_gateway_cursors_reach_the_end_without_duplicates(
    gw: Gateway, everything_http: HttpPeer, tmp_path: Path
) -> None:
    """``page_size: 7``: following nextCursor yields exactly the unpaged list (``gw``),
    in at least as many pages as the list needs. (These raw clients declare no
    capabilities, so they see the tools the server shows such a client.)"""
    config = {"targets": three_targets(everything_http.url), "limits": {"page_size": 7}}
    kinds = (
        ("tools/list", "tools", "name", 4),
        ("resources/list", "resources", "uri", 2),
        ("prompts/list", "prompts", "name", 2),
        ("resources/templates/list", "resourceTemplates", "uriTemplate", 1),
    )
    with run_gateway(config, tmp_path) as paged:
        async with raw_http(paged.mcp_url) as raw, raw_http(gw.mcp_url) as whole:
            for method, key, ident, min_pages in kinds:
                unpaged = await whole.result(method)
                assert "nextCursor" not in unpaged
                pages: list[list[dict[str, Any]]] = []
                cursor: str | None = None
                while True:
                    res = await raw.result(method, {"cursor": cursor} if cursor else None)
                    assert 0 < len(res[key]) <= 7, (method, len(res[key]))
                    pages.append(res[key])
                    cursor = res.get("nextCursor")
                    if not cursor:
                        break
                    assert len(pages) < 50, f"{method}: the gateway keeps returning cursors"
                union = [item for page in pages for item in page]
                ids = [item[ident] for item in union]
                assert len(ids) == len(set(ids)), f"{method}: duplicates across pages: {ids}"
                needed = max(min_pages, -(-len(unpaged[key]) // 7))
                assert len(pages) >= needed, (method, [len(p) for p in pages])
                assert union == unpaged[key], method
            # A cursor from another list kind, or garbage, is a clean error.
            bad = await raw.request("tools/list", {"cursor": "not-a-cursor"})
            assert bad["error"]["code"] == -32602, bad


# ------------------------------------------------------ 4. progress and cancellation


@pytest.mark.parametrize("target", ["everything", "web"])
async def test_progress_reaches_the_client(gw: Gateway, target: str) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with connect(gw.mcp_url) as s:
        res = await s.call_tool(
            f"{target}_trigger-long-running-operation",
            {"duration": 0.4, "steps": 4},
            progress_callback=on_progress,
        )
        assert not res.is_error, res
        assert "Long running operation completed" in text_of(res)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("target", ["everything", "web"])
async def test_cancelled_call_returns_control_and_the_gateway_keeps_serving(
    gw: Gateway, target: str
) -> None:
    started, ended = anyio.Event(), anyio.Event()
    outcome: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with connect(gw.mcp_url) as s:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def long_call() -> None:
                with scope:
                    await s.call_tool(
                        f"{target}_trigger-long-running-operation",
                        {"duration": 30, "steps": 60},
                        progress_callback=on_progress,
                    )
                    outcome.append("finished")  # pragma: no cover - the test fails then
                outcome.append("cancelled" if scope.cancelled_caught else "?")
                ended.set()

            tg.start_soon(long_call)
            with anyio.fail_after(WAIT):
                await started.wait()  # the call is running upstream (progress arrived)
            scope.cancel()  # the SDK sends notifications/cancelled
            with anyio.fail_after(5):
                await ended.wait()
        assert outcome == ["cancelled"]
        # The same session, and both targets, still answer.
        res = await s.call_tool(f"{target}_echo", {"message": "after cancel"})
        assert text_of(res) == "Echo: after cancel"
        other = "web" if target == "everything" else "everything"
        assert text_of(await s.call_tool(f"{other}_echo", {"message": "x"})) == "Echo: x"


@pytest.mark.parametrize("target", ["everything", "web"])
async def test_cancel_ends_the_call_stream_promptly(gw: Gateway, target: str) -> None:
    """On the wire: after notifications/cancelled the gateway closes the call's POST
    stream (the client is not held for the 30 s the target would take)."""
    async with httpx.AsyncClient(timeout=30) as client:
        raw = RawHttp(gw.mcp_url, client)
        await raw.open()
        msg = {
            "jsonrpc": "2.0",
            "id": "long-1",
            "method": "tools/call",
            "params": {
                "name": f"{target}_trigger-long-running-operation",
                "arguments": {"duration": 30, "steps": 60},
                "_meta": {"progressToken": "tok-1"},
            },
        }
        events: list[dict[str, Any]] = []
        with anyio.fail_after(WAIT):
            async with client.stream("POST", gw.mcp_url, json=msg, headers=raw.headers()) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                async for data in sse_data(resp):
                    event = json.loads(data)
                    events.append(event)
                    if event.get("method") == "notifications/progress" and len(events) == 1:
                        assert event["params"]["progressToken"] == "tok-1"
                        await raw.notify(
                            "notifications/cancelled", {"requestId": "long-1", "reason": "test"}
                        )
        # Whatever the gateway sent after the cancel, the stream ended well before 30 s,
        # and no successful result was delivered.
        assert not any("result" in e for e in events), events
        ping = await raw.request("ping")
        assert ping["result"] == {}
        await raw.close()


# --------------------------------------------------------------------- 5. logging


async def test_log_messages_follow_each_clients_level(gw: Gateway) -> None:
    """A (debug) gets the targets' logs; B (error) and C (no level) get none of A's.

    Deterministic log sources: server-everything logs at ``info`` when it receives
    ``resources/subscribe``, and ``toggle-simulated-logging`` sends one message at
    once. B's and C's barrier: a ``resources/updated`` of their own, on their own
    stream, ordered after A's logs.
    """
    a_box, b_box, c_box = Inbox(), Inbox(), Inbox()
    web_doc = f"web+{STATIC_DOC.format('how-it-works.md')}"
    stdio_doc = f"everything+{STATIC_DOC.format('how-it-works.md')}"
    barrier = f"web+{STATIC_DOC.format('startup.md')}"
    async with (
        connect(gw.mcp_url, message_handler=a_box) as a,
        connect(gw.mcp_url, message_handler=b_box) as b,
        connect(gw.mcp_url, message_handler=c_box) as c,
    ):
        await a.set_logging_level("debug")
        await b.set_logging_level("error")

        # Info-level logs caused by A's requests, one per target. For ``web`` this is A's
        # first request: its upstream session is opened by it, and the log, sent on that
        # session's GET stream right away, must not be lost.
        await a.subscribe_resource(web_doc)
        await a_box.wait_for(
            lambda m: (
                is_log(STATIC_DOC.format("how-it-works.md"))(m)
                and "from session" in str(m.params.data)
            )
        )
        await a.subscribe_resource(stdio_doc)
        await a_box.wait_for(is_log(f"for URI: {STATIC_DOC.format('how-it-works.md')} "))

        # A tool that logs, through the stdio and the http target.
        toggled = False
        try:
            await a.call_tool("everything_toggle-simulated-logging", {})
            toggled = True
            await a_box.wait_for(is_log("-level message"))
            await a.call_tool("web_toggle-simulated-logging", {})
            await a_box.wait_for(is_log("message - SessionId "))
        finally:
            if toggled:  # the stdio process is shared: switch its simulated logging off
                await a.call_tool("everything_toggle-simulated-logging", {})

        for client, box in ((b, b_box), (c, c_box)):
            await client.subscribe_resource(barrier)
            await client.call_tool("web_toggle-subscriber-updates", {})
            await box.wait_for(is_updated(barrier))

        b_levels = [p.level for p in b_box.logs()]
        assert all(level in ("error", "critical", "alert", "emergency") for level in b_levels), (
            b_levels
        )
        for box in (b_box, c_box):
            leaked = [p.data for p in box.logs() if "how-it-works" in str(p.data)]
            assert not leaked, leaked
        # C set no level: the stdio (shared) target's logs are not pushed to it at all.
        assert not [p for p in c_box.logs() if "session" not in str(p.data).lower()], c_box.logs()
        await a.unsubscribe_resource(stdio_doc)
        await a.unsubscribe_resource(web_doc)


# ------------------------------------------------------------ 7. resource updates


async def test_resource_updates_reach_only_subscribers(gw: Gateway) -> None:
    a_box, b_box = Inbox(), Inbox()
    doc = {t: f"{t}+{STATIC_DOC.format('architecture.md')}" for t in ("everything", "web")}
    b_doc = {t: f"{t}+{STATIC_DOC.format('extension.md')}" for t in ("everything", "web")}
    async with (
        connect(gw.mcp_url, message_handler=a_box) as a,
        connect(gw.mcp_url, message_handler=b_box) as b,
    ):
        caps = a.server_capabilities
        assert caps is not None and caps.resources is not None and caps.resources.subscribe
        for uri in doc.values():
            await a.subscribe_resource(uri)
        # B subscribes to other documents: its own updates are the barrier that proves
        # A's updates (sent before them on the same upstream stream) were not leaked.
        for uri in b_doc.values():
            await b.subscribe_resource(uri)
        toggled = False
        try:
            await a.call_tool("everything_toggle-subscriber-updates", {})
            toggled = True
            await a.call_tool("web_toggle-subscriber-updates", {})
            await b.call_tool("web_toggle-subscriber-updates", {})
            for uri in doc.values():
                await a_box.wait_for(is_updated(uri))
            for uri in b_doc.values():
                await b_box.wait_for(is_updated(uri))
        finally:
            if toggled:  # shared stdio process: switch its updates off again
                await a.call_tool("everything_toggle-subscriber-updates", {})
        assert set(a_box.updated()) == set(doc.values()), a_box.updated()
        assert set(b_box.updated()) == set(b_doc.values()), b_box.updated()
        for uri in doc.values():
            await a.unsubscribe_resource(uri)
        for uri in b_doc.values():
            await b.unsubscribe_resource(uri)


async def test_subscriptions_survive_a_restart_of_the_shared_process(tmp_path: Path) -> None:
    """A client with no capabilities follows a document through its capability set's
    shared process. That process is killed: the next call starts a new one, which the
    gateway subscribes again, so the client's updates keep coming without it asking."""
    with run_gateway({"prefix": "always", "targets": [everything_stdio_target()]}, tmp_path) as gateway:
        box = Inbox()
        uri = f"everything+{STATIC_DOC.format('architecture.md')}"
        async with connect(gateway.mcp_url, message_handler=box) as s:
            await s.subscribe_resource(uri)
            await s.call_tool("everything_echo", {"message": "up"})  # the set's process serves calls
            served = [c for c in gateway.targets()["everything"]["capabilitySets"] if c["live"]]
            assert len(served) == 1 and served[0]["restarts"] == 0, served
            os.kill(served[0]["pid"], signal.SIGKILL)
            toggled = None
            for _ in range(100):  # the first calls may still meet the dead process
                with contextlib.suppress(MCPError):
                    toggled = await s.call_tool("everything_toggle-subscriber-updates", {})
                    if not toggled.is_error:
                        break
                await asyncio.sleep(0.1)
            assert toggled is not None and not toggled.is_error, toggled
            status = gateway.targets()["everything"]["capabilitySets"]
            assert [c["restarts"] for c in status] == [1], status
            try:
                await box.wait_for(is_updated(uri))
            finally:
                await s.call_tool("everything_toggle-subscriber-updates", {})
            await s.unsubscribe_resource(uri)


async def test_first_message_on_a_new_upstream_session_is_not_lost(gw: Gateway) -> None:
    """server-everything logs on ``resources/subscribe`` via its GET stream and drops the
    message if that stream is not open yet: the gateway must open it before the first
    request of a fresh per-client upstream session. (Racy by nature: repeated.)"""
    uri = f"web+{STATIC_DOC.format('structure.md')}"
    for _ in range(15):
        box = Inbox()
        async with connect(gw.mcp_url, message_handler=box) as s:
            await s.subscribe_resource(uri)  # the first request to `web` of this session
            await box.wait_for(is_log(f"URI: {STATIC_DOC.format('structure.md')} from session"))


# ------------------------------------------------------- 6. sampling, elicitation



@pytest.mark.parametrize("target", ["everything", "web"])
async def test_sampling_and_elicitation_are_relayed(gw: Gateway, target: str) -> None:
    answers = Answers()
    async with connect(
        gw.mcp_url, sampling_callback=answers.sample, elicitation_callback=answers.elicit
    ) as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        assert f"{target}_trigger-sampling-request" in tools, sorted(tools)
        assert f"{target}_trigger-elicitation-request" in tools, sorted(tools)

        with anyio.fail_after(WAIT):
            res = await s.call_tool(
                f"{target}_trigger-sampling-request", {"prompt": "ping-the-llm", "maxTokens": 33}
            )
        assert not res.is_error, res
        assert "sampled-answer-4711" in text_of(res) and "test-model-x" in text_of(res)
        assert len(answers.sampling) == 1
        sent = answers.sampling[0]
        assert sent.max_tokens == 33
        assert "ping-the-llm" in str(sent.messages[0].content)

        with anyio.fail_after(WAIT):
            res = await s.call_tool(f"{target}_trigger-elicitation-request", {})
        assert not res.is_error, res
        assert "Name: Ada Lovelace" in text_of(res) and "Agreed to terms: true" in text_of(res)
        assert len(answers.elicitation) == 1
        assert "Please provide inputs" in answers.elicitation[0].message


async def test_server_request_of_a_shared_process_never_reaches_another_client(gw: Gateway) -> None:
    """stdio carries no link between a server->client request and the call that caused
    it. X has a call in flight on the shared ``everything`` process when Y's call makes
    it ask for sampling: X must not be asked (and see Y's prompt); Y gets its answer or a
    clean error, never X's answer."""
    x_answers, y_answers = Answers(), Answers()
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with (
        connect(gw.mcp_url, sampling_callback=x_answers.sample) as x,
        connect(gw.mcp_url, sampling_callback=y_answers.sample) as y,
    ):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def x_call() -> None:
                with scope:
                    await x.call_tool(
                        "everything_trigger-long-running-operation",
                        {"duration": 30, "steps": 60},
                        progress_callback=on_progress,
                    )

            tg.start_soon(x_call)
            with anyio.fail_after(WAIT):
                await started.wait()
            with anyio.fail_after(WAIT):
                res = await y.call_tool(
                    "everything_trigger-sampling-request", {"prompt": "for-y-only"}
                )
            scope.cancel()
        assert x_answers.sampling == [], "Y's sampling request was relayed to X"
        if not res.is_error:
            assert len(y_answers.sampling) == 1 and "sampled-answer-4711" in text_of(res), res


@pytest.mark.parametrize("target", ["everything", "web"])
async def test_client_without_sampling_gets_a_clean_error(gw: Gateway, target: str) -> None:
    async with connect(gw.mcp_url) as s:  # no callbacks: no sampling/elicitation capability
        for tool, args in (
            ("trigger-sampling-request", {"prompt": "nobody will answer"}),
            ("trigger-elicitation-request", {}),
        ):
            with anyio.fail_after(WAIT):
                try:
                    res = await s.call_tool(f"{target}_{tool}", args)
                except MCPError as exc:  # a JSON-RPC error is clean too
                    assert exc.error.code in (-32601, -32602, -32600, -32603), exc.error
                    continue
            assert res.is_error, res
        # And the session still works.
        assert text_of(await s.call_tool(f"{target}_echo", {"message": "ok"})) == "Echo: ok"


# ------------------------------------------------------- 8. fields pass through


async def _compare_target(
    merged: RawHttp,
    direct: RawHttp | RawStdio,
    target: str,
    calls: list[tuple[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Lists and call results via the gateway equal the target's own, modulo the prefix."""
    tools = await direct.list_all("tools/list", "tools")
    got = await merged.list_all("tools/list", "tools")
    assert owned(got, target, "name") == prefixed(tools, target, "name")
    for method, key, ident in (
        ("prompts/list", "prompts", "name"),
        ("resources/templates/list", "resourceTemplates", "uriTemplate"),
    ):
        try:
            theirs = await direct.list_all(method, key)
        except AssertionError:  # the target has no such capability
            continue
        assert owned(await merged.list_all(method, key), target, ident) == prefixed(
            theirs, target, ident
        )
    for name, args in calls:
        want = await direct.request("tools/call", {"name": name, "arguments": args})
        have = await merged.request("tools/call", {"name": f"{target}_{name}", "arguments": args})
        assert have.get("result") == want.get("result"), (name, have, want)
        assert have.get("error") == want.get("error"), (name, have, want)
    return tools


async def test_fields_pass_through_untouched(gw: Gateway, everything_http: HttpPeer) -> None:
    async with raw_http(gw.mcp_url, GATEWAY_CAPS) as merged:
        calls = [
            ("get-structured-content", {"location": "Chicago"}),
            ("get-annotated-message", {"messageType": "error", "includeImage": True}),
            ("get-tiny-image", {}),
            ("get-sum", {"a": 1.5, "b": 2}),
            ("get-resource-reference", {"resourceType": "blob", "resourceId": 3}),
            ("echo", {}),  # invalid arguments: the target's error result, as it gave it
        ]
        async with raw_http(everything_http.url, GATEWAY_CAPS) as web:
            web_tools = await _compare_target(merged, web, "web", calls)
        async with raw_stdio(server_everything_cmd("stdio"), GATEWAY_CAPS) as stdio:
            await _compare_target(merged, stdio, "everything", calls)
        async with raw_stdio(TIME_CMD) as time_direct:
            await _compare_target(
                merged,
                time_direct,
                "time",
                [
                    (
                        "convert_time",
                        {
                            "source_timezone": "UTC",
                            "time": "08:15",
                            "target_timezone": "America/New_York",
                        },
                    ),
                    ("get_current_time", {"timezone": "Not/AZone"}),
                ],
            )
        # The comparison covered the fields that matter (not a vacuous equality).
        by_name = {t["name"]: t for t in web_tools}
        assert "outputSchema" in by_name["get-structured-content"]
        assert by_name["get-structured-content"]["annotations"]["readOnlyHint"] is True
        assert by_name["simulate-research-query"]["execution"] == {"taskSupport": "required"}
        res = await merged.result(
            "tools/call",
            {"name": "web_get-structured-content", "arguments": {"location": "Chicago"}},
        )
        assert res["structuredContent"]["conditions"] == "Light rain / drizzle"
        res = await merged.result(
            "tools/call",
            {"name": "everything_get-annotated-message", "arguments": {"messageType": "success"}},
        )
        assert res["content"][0]["annotations"] == {"priority": 0.7, "audience": ["user"]}
        # A read's contents: only the URI is rewritten.
        uri = STATIC_DOC.format("startup.md")
        async with raw_http(everything_http.url) as web:
            want = await web.result("resources/read", {"uri": uri})
        have = await merged.result("resources/read", {"uri": f"web+{uri}"})
        assert have == {
            **want,
            "contents": [{**c, "uri": f"web+{c['uri']}"} for c in want["contents"]],
        }


#: A deliberately minimal stdio server (raw JSON lines, no SDK) whose answers carry
#: ``_meta``, ``icons`` and fields no revision defines: the SDK-based peers cannot send
#: unknown fields, and the gateway must forward them anyway.
FIELDS_SERVER = r"""
import json, sys
TOOL = {
    "name": "odd", "title": "Odd", "description": "fields galore",
    "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "outputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "annotations": {"readOnlyHint": True, "x-vendor-hint": [1, 2]},
    "icons": [{"src": "https://example.com/i.png", "mimeType": "image/png", "sizes": ["48x48"]}],
    "execution": {"taskSupport": "optional"},
    "_meta": {"com.example/owner": "team-a"},
    "x-future-field": {"nested": [True, None, 1.25]},
}
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method, rid, params = msg.get("method"), msg["id"], msg.get("params") or {}
    if method == "initialize":
        res = {"protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}},
               "serverInfo": {"name": "fields", "version": "1"}}
    elif method == "tools/list":
        res = {"tools": [TOOL], "_meta": {"com.example/list": 1}}
    elif method == "tools/call" and params.get("arguments", {}).get("n") == -1:
        print(json.dumps({"jsonrpc": "2.0", "id": rid, "error": {
            "code": -32602, "message": "n must be positive", "data": {"n": -1, "x-why": "test"}}}), flush=True)
        continue
    elif method == "tools/call":
        n = params.get("arguments", {}).get("n")
        res = {
            "content": [{"type": "text", "text": str(n), "annotations": {"priority": 0.25},
                         "_meta": {"com.example/c": "v"}, "x-content-extra": 7}],
            "structuredContent": {"n": n},
            "isError": False,
            "_meta": {"com.example/trace": "abc", "echoed": params.get("_meta")},
            "x-result-extra": "kept",
        }
    elif method == "ping":
        res = {}
    else:
        print(json.dumps({"jsonrpc": "2.0", "id": rid, "error": {
            "code": -32601, "message": "method not found"}}), flush=True)
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": rid, "result": res}), flush=True)
"""


async def test_unknown_fields_meta_and_icons_pass_through(tmp_path: Path) -> None:
    script = tmp_path / "fields_server.py"
    script.write_text(FIELDS_SERVER)
    argv = [sys.executable, str(script)]
    config = {
        "prefix": "always",
        "targets": [{"name": "fields", "stdio": {"command": argv[0], "args": argv[1:]}}],
    }
    with run_gateway(config, tmp_path) as fgw:
        async with raw_http(fgw.mcp_url) as merged, raw_stdio(argv) as direct:
            tools = await _compare_target(
                merged, direct, "fields", [("odd", {"n": 5}), ("odd", {"n": -1})]
            )
            assert tools[0]["icons"] and tools[0]["x-future-field"]
            have = await merged.result(
                "tools/call",
                {"name": "fields_odd", "arguments": {"n": 2}, "_meta": {"com.example/req": "r1"}},
            )
            assert have["x-result-extra"] == "kept"
            assert have["_meta"]["com.example/trace"] == "abc"
            # The request's own _meta reached the target too.
            assert have["_meta"]["echoed"] == {"com.example/req": "r1"}
            err = await merged.request("tools/call", {"name": "fields_odd", "arguments": {"n": -1}})
            assert err["error"]["data"] == {"n": -1, "x-why": "test"}


# ------------------------------------------------------- 9. MCP Inspector CLI


def inspector(url: str, *args: str) -> Any:
    """``mcp-inspector --cli URL --transport http ...`` (the package's own bin entry).

    Its ``cli.js`` re-spawns ``node`` from PATH, so Node 22 goes first on PATH.
    """
    node = node22_path()
    entry = peers_dir() / "node_modules/@modelcontextprotocol/inspector/cli/build/cli.js"
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(node), str(entry), "--cli", url, "--transport", "http", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (
        f"inspector {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(proc.stdout)


def test_inspector_cli_lists_and_calls_through_the_gateway(gw: Gateway) -> None:
    listed = inspector(gw.mcp_url, "--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    assert {"everything_echo", "web_echo", "time_get_current_time"} <= names, sorted(names)

    echoed = inspector(
        gw.mcp_url,
        "--method",
        "tools/call",
        "--tool-name",
        "web_echo",
        "--tool-arg",
        "message=from inspector",
    )
    assert echoed["content"][0]["text"] == "Echo: from inspector", echoed
    summed = inspector(
        gw.mcp_url,
        "--method",
        "tools/call",
        "--tool-name",
        "everything_get-sum",
        "--tool-arg",
        "a=2",
        "b=40",
    )
    assert "42" in summed["content"][0]["text"], summed
    now = inspector(
        gw.mcp_url,
        "--method",
        "tools/call",
        "--tool-name",
        "time_get_current_time",
        "--tool-arg",
        "timezone=UTC",
    )
    assert now["structuredContent"]["timezone"] == "UTC", now
    read = inspector(
        gw.mcp_url, "--method", "resources/read", "--uri", f"web+{STATIC_DOC.format('features.md')}"
    )
    assert read["contents"][0]["uri"] == f"web+{STATIC_DOC.format('features.md')}"


# ------------------------------------------------------------------ 10. restarts


def wait_restarted(
    gateway: Gateway, name: str, old_pid: int | None, timeout: float = 30
) -> dict[str, Any]:
    """The target is ready again, on a new process when it has one."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = gateway.targets()[name]
        if state["state"] == "ready" and state["restarts"] > 0 and state["pid"] != old_pid:
            return state
        time.sleep(0.05)
    raise AssertionError(f"target {name} did not come back: {state}\n{gateway.log()[-3000:]}")


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_stdio_target_killed_fails_the_call_clearly_and_comes_back(tmp_path: Path) -> None:
    config = {"prefix": "always", "targets": [everything_stdio_target()]}
    with run_gateway(config, tmp_path) as g:
        old_pid = g.targets()["everything"]["pid"]
        assert old_pid and pid_alive(old_pid)
        async with connect(g.mcp_url) as s:
            err = await kill_mid_call(
                s, "everything_trigger-long-running-operation", {"duration": 30, "steps": 60}, old_pid
            )
            assert err.error.code == -32001, err.error
            assert "everything" in err.error.message, err.error
            assert (err.error.data or {}).get("target") == "everything"

            new = await anyio.to_thread.run_sync(wait_restarted, g, "everything", old_pid)
            assert new["pid"] != old_pid and not pid_alive(old_pid)
            res = await s.call_tool("everything_echo", {"message": "back"})
            assert text_of(res) == "Echo: back"
        async with connect(g.mcp_url) as fresh:
            assert (
                text_of(await fresh.call_tool("everything_echo", {"message": "new"})) == "Echo: new"
            )


async def test_http_target_restart_is_transparent(tmp_path: Path) -> None:
    """The upstream restarts on the same port: its sessions are gone (server-everything
    answers an unknown session id with 400, the SDK servers with 404). The gateway opens
    a new upstream session, restores the client's state on it, and the call succeeds."""
    port = free_port()
    peer = start_everything_http(tmp_path / "peer1.log", port)
    try:
        config = {"prefix": "always", "targets": [{"name": "web", "http": {"url": peer.url}}]}
        with run_gateway(config, tmp_path) as g:
            box = Inbox()
            doc = f"web+{STATIC_DOC.format('features.md')}"
            async with connect(g.mcp_url, message_handler=box) as s:
                await s.set_logging_level("error")
                await s.subscribe_resource(doc)
                assert text_of(await s.call_tool("web_echo", {"message": "one"})) == "Echo: one"

                stop_peer(peer)
                peer = start_everything_http(tmp_path / "peer2.log", port)

                res = await s.call_tool("web_echo", {"message": "two"})
                assert not res.is_error and text_of(res) == "Echo: two"
                # The client's upstream state came back with the new session: its
                # subscription (updates arrive) and its log level (no info log on subscribe).
                await s.call_tool("web_toggle-subscriber-updates", {})
                await box.wait_for(is_updated(doc))
                assert not [p for p in box.logs() if p.level == "info"], box.logs()
            async with connect(g.mcp_url) as fresh:
                assert text_of(await fresh.call_tool("web_echo", {"message": "3"})) == "Echo: 3"
    finally:
        stop_peer(peer)


# ------------------------------------------------------------------- 11. leaks


async def test_no_process_or_upstream_session_outlives_its_owner(
    everything_http: HttpPeer, tmp_path: Path
) -> None:
    terminated = "Received session termination request"
    with run_gateway({"targets": three_targets(everything_http.url)}, tmp_path) as g:
        before = everything_http.log().count(terminated)
        async with connect(g.mcp_url) as s:
            for tool, args in (
                ("everything_echo", {"message": "x"}),
                ("web_echo", {"message": "x"}),
                ("time_get_current_time", {"timezone": "UTC"}),
            ):
                assert not (await s.call_tool(tool, args)).is_error
        # The client left (DELETE): its own upstream session on `web` is ended too.
        deadline = time.monotonic() + WAIT
        while everything_http.log().count(terminated) < before + 1:
            assert time.monotonic() < deadline, "the gateway did not DELETE its upstream session"
            await anyio.sleep(0.05)

        kids = children_of(g.proc.pid)
        targets = g.targets()
        stdio_pids = {targets["everything"]["pid"], targets["time"]["pid"]}
        assert stdio_pids <= set(kids), (stdio_pids, kids)
        assert all(pid_alive(p) for p in stdio_pids)
        gateway_proc = g.proc
    # run_gateway sent SIGTERM and waited: the gateway stopped by itself, not by SIGKILL...
    assert gateway_proc.returncode is not None and gateway_proc.returncode != -signal.SIGKILL
    # ...and took every process it started with it.
    deadline = time.monotonic() + WAIT
    while alive := [p for p in kids if pid_alive(p)]:
        assert time.monotonic() < deadline, f"processes outlived the gateway: {alive}"
        await anyio.sleep(0.05)
