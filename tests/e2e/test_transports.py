"""Every transport on both sides (issue 3), against peers nobody here wrote.

Client side: the legacy HTTP+SSE listener (``/sse`` + ``/messages``) next to ``/mcp``,
driven by the MCP Inspector CLI (the article's command, verbatim but for ``npx``), the
official Python SDK (``sse_client`` and ``streamable_http_client``) and a raw httpx
client for the wire details; ``mcpmux stdio`` driven by the SDK's ``stdio_client`` and
by a raw pipe. Upstream: ``@modelcontextprotocol/server-everything`` in each of its
three modes (``stdio``, ``sse``, ``streamableHttp``), the HTTP ones given only as
``url:`` so the transport is probed. ``mcpmux bridge``: the sidecar pattern, one stdio
server exposed unchanged over ``/mcp`` and ``/sse``. stdio targets: env, cwd, stderr,
SIGTERM-then-SIGKILL, no process left behind.

No test sleeps to assert: every wait is for an event, bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.e2e.conftest import HttpPeer, free_port, stop_peer
from tests.support.clients import Answers, Inbox, kill_mid_call
from tests.support.conformance import node22_path, peers_dir, server_everything_cmd
from tests.support.gateway import Gateway, children_of, run_gateway, stop_process
from tests.support.mcp_http import RawClient

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

WAIT = 20.0
#: What the gateway's catalog session declares: a direct client declaring the same
#: sees the same conditional tools of server-everything.
GATEWAY_CAPS = {
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
    "roots": {"listChanged": True},
}
STATIC_DOC = "demo://resource/static/document/{}"
PROBE = peers_dir() / "stdio_probe.py"
SSE_READY = "Server is running on port"


# ---------------------------------------------------------------------------- peers


def everything_stdio(name: str = "std") -> dict[str, Any]:
    cmd = server_everything_cmd("stdio")
    return {"name": name, "stdio": {"command": cmd[0], "args": cmd[1:]}}


def start_everything_sse(log_path: Path, timeout: float = 30) -> HttpPeer:
    """server-everything in legacy ``sse`` mode (GET /sse, POST /message)."""
    port = free_port()
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            server_everything_cmd("sse"),
            stdout=logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PORT": str(port)},
            start_new_session=True,
        )
    peer = HttpPeer(port, proc, log_path)
    deadline = time.monotonic() + timeout
    while f"{SSE_READY} {port}" not in peer.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_peer(peer)
            raise RuntimeError(f"server-everything sse did not start:\n{peer.log()}")
        time.sleep(0.05)
    return peer


def sse_url_of(peer: HttpPeer) -> str:
    return f"http://127.0.0.1:{peer.port}/sse"


@pytest.fixture(scope="module")
def everything_sse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpPeer]:
    peer = start_everything_sse(tmp_path_factory.mktemp("everything-sse") / "peer.log")
    try:
        yield peer
    finally:
        stop_peer(peer)


@pytest.fixture(scope="module")
def gw(
    everything_http: HttpPeer, everything_sse: HttpPeer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """std: server-everything over stdio; web and old: only a URL each (probed)."""
    config = {
        "targets": [
            everything_stdio("std"),
            {"name": "web", "url": everything_http.url},
            {"name": "old", "url": sse_url_of(everything_sse)},
        ]
    }
    with run_gateway(config, tmp_path_factory.mktemp("transports")) as gateway:
        yield gateway


def sse_url(g: Gateway) -> str:
    return g.mcp_url.removesuffix("/mcp") + "/sse"


def base_url(g: Gateway) -> str:
    return g.mcp_url.removesuffix("/mcp")


# -------------------------------------------------------------------------- clients


@contextlib.asynccontextmanager
async def connect_sse(url: str, **kwargs: Any) -> AsyncIterator[ClientSession]:
    async with sse_client(url) as (read, write), ClientSession(read, write, **kwargs) as s:
        await s.initialize()
        yield s


@contextlib.asynccontextmanager
async def connect_http(url: str, **kwargs: Any) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, **kwargs) as s,
    ):
        await s.initialize()
        yield s


def connect(
    kind: str, g: Gateway, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[ClientSession]:
    return connect_sse(sse_url(g), **kwargs) if kind == "sse" else connect_http(g.mcp_url, **kwargs)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))



def inspector(*args: str, check: bool = True) -> Any:
    """The Inspector CLI as ``npx @modelcontextprotocol/inspector ARGS`` runs it, from the
    pinned package (its ``cli.js`` re-spawns ``node`` from PATH: Node 22 goes first)."""
    node = node22_path()
    entry = peers_dir() / "node_modules/@modelcontextprotocol/inspector/cli/build/cli.js"
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(node), str(entry), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    assert proc.returncode == 0 or not check, (
        f"inspector {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(proc.stdout) if check else proc


class RawSse:
    """The legacy transport on the wire: one GET stream, POSTs to its endpoint."""

    def __init__(self, client: httpx.AsyncClient, url: str, resp: httpx.Response) -> None:
        self.client = client
        self.url = url
        self.resp = resp
        self._lines = resp.aiter_lines()
        self.endpoint = ""
        self.other: list[dict[str, Any]] = []
        self._ids = iter(range(1, 1_000_000))

    async def event(self) -> tuple[str, str]:
        """The next event (type, data); comments (keep-alives) skipped."""
        name, data = "message", []
        with anyio.fail_after(WAIT):
            while True:
                line = await self._lines.__anext__()
                if line == "":
                    if data:
                        return name, "\n".join(data)
                    name = "message"
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))

    async def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return await self.client.post(self.endpoint, content=content, headers=headers, **kwargs)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        resp = await self.post(msg)
        assert resp.status_code == 202, (resp.status_code, resp.text)
        while True:
            kind, data = await self.event()
            assert kind == "message", (kind, data)
            out = json.loads(data)
            if out.get("id") == rid and "method" not in out:
                return out
            self.other.append(out)

    async def open(self) -> dict[str, Any]:
        init = await self.request(
            "initialize",
            {
                "protocolVersion": "2024-11-05",
                "capabilities": {},
                "clientInfo": {"name": "raw-sse", "version": "0"},
            },
        )
        resp = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert resp.status_code == 202, resp.text
        return init


@contextlib.asynccontextmanager
async def raw_sse(url: str) -> AsyncIterator[RawSse]:
    async with (
        httpx.AsyncClient(timeout=WAIT) as client,
        client.stream("GET", url, headers={"Accept": "text/event-stream"}) as resp,
    ):
        assert resp.status_code == 200, resp.status_code
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = RawSse(client, url, resp)
        kind, data = await raw.event()
        assert kind == "endpoint", (kind, data)
        raw.endpoint = httpx.URL(url).join(data).__str__()
        yield raw


def pid_alive(pid: int) -> bool:
    """Running (a zombie is not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def reaped(pid: int) -> bool:
    """Gone entirely: not running and not a zombie waiting for its parent."""
    return not Path(f"/proc/{pid}").exists()


async def wait_until(pred: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await anyio.sleep(0.05)


def sessions(g: Gateway) -> int:
    return int(httpx.get(f"{g.admin_url}/api/targets", timeout=5).json()["sessions"])


# ----------------------------------------------------- 1. the article's command, /sse


def test_url_targets_are_probed_and_the_transport_is_shown(gw: Gateway) -> None:
    targets = gw.targets()
    assert (targets["web"]["kind"], targets["web"]["transport"]) == ("url", "http"), targets["web"]
    assert (targets["old"]["kind"], targets["old"]["transport"]) == ("url", "sse"), targets["old"]
    assert (targets["std"]["kind"], targets["std"]["transport"]) == ("stdio", "stdio")
    assert "speaking legacy SSE" in gw.log()


def test_the_articles_inspector_command_lists_all_targets_through_sse(gw: Gateway) -> None:
    """``npx @modelcontextprotocol/inspector --cli http://localhost:8080/sse --method tools/list``
    with our port: no ``--transport`` (the Inspector picks SSE from the ``/sse`` path)."""
    port = httpx.URL(gw.mcp_url).port
    listed = inspector("--cli", f"http://localhost:{port}/sse", "--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    for target in ("std", "web", "old"):
        assert {f"{target}_echo", f"{target}_get-sum"} <= names, sorted(names)


@pytest.mark.parametrize("path", ["/sse", "/mcp"])
def test_inspector_calls_every_target_over_both_listeners(gw: Gateway, path: str) -> None:
    url = base_url(gw) + path
    transport = "sse" if path == "/sse" else "http"
    for target in ("std", "web", "old"):
        echoed = inspector(
            "--cli",
            url,
            "--transport",
            transport,
            "--method",
            "tools/call",
            "--tool-name",
            f"{target}_echo",
            "--tool-arg",
            f"message=via {path} to {target}",
        )
        assert echoed["content"][0]["text"] == f"Echo: via {path} to {target}", echoed
    doc = f"old+{STATIC_DOC.format('features.md')}"
    read = inspector(
        "--cli", url, "--transport", transport, "--method", "resources/read", "--uri", doc
    )
    assert read["contents"][0]["uri"] == doc


# ------------------------------------------------------------- 2. SDK clients, both


@pytest.mark.parametrize("client", ["sse", "http"])
async def test_sdk_client_lists_and_calls_every_target(gw: Gateway, client: str) -> None:
    async with connect(client, gw) as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        for target in ("std", "web", "old"):
            assert f"{target}_echo" in tools, sorted(tools)
            res = await s.call_tool(f"{target}_echo", {"message": client})
            assert text_of(res) == f"Echo: {client}", res
            res = await s.call_tool(f"{target}_get-sum", {"a": 40, "b": 2})
            assert "42" in text_of(res), res
        prompts = {p.name for p in (await s.list_prompts()).prompts}
        assert {"std_simple-prompt", "old_simple-prompt"} <= prompts, sorted(prompts)
        doc = f"web+{STATIC_DOC.format('architecture.md')}"
        read = await s.read_resource(doc)
        assert str(read.contents[0].uri) == doc


@pytest.mark.parametrize("target", ["std", "web", "old"])
async def test_progress_over_sse(gw: Gateway, target: str) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with connect_sse(sse_url(gw)) as s:
        res = await s.call_tool(
            f"{target}_trigger-long-running-operation",
            {"duration": 0.4, "steps": 4},
            progress_callback=on_progress,
        )
        assert "Long running operation completed" in text_of(res), res
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("client", ["sse", "http"])
@pytest.mark.parametrize("target", ["std", "web", "old"])
async def test_sampling_and_elicitation(gw: Gateway, client: str, target: str) -> None:
    answers = Answers()
    async with connect(
        client, gw, sampling_callback=answers.sample, elicitation_callback=answers.elicit
    ) as s:
        with anyio.fail_after(WAIT):
            res = await s.call_tool(
                f"{target}_trigger-sampling-request", {"prompt": "ping-the-llm", "maxTokens": 33}
            )
        assert "sampled-answer-4711" in text_of(res) and "test-model-x" in text_of(res), res
        assert [p.max_tokens for p in answers.sampling] == [33]
        with anyio.fail_after(WAIT):
            res = await s.call_tool(f"{target}_trigger-elicitation-request", {})
        assert "Name: Ada Lovelace" in text_of(res), res
        assert len(answers.elicitation) == 1


async def test_logs_reach_an_sse_client_at_its_level(gw: Gateway) -> None:
    """server-everything logs at info when it gets resources/subscribe: through the shared
    stdio target and through the client's own legacy-SSE upstream session."""
    for target in ("std", "old"):
        box = Inbox()
        async with connect_sse(sse_url(gw), message_handler=box) as s:
            await s.set_logging_level("debug")
            doc = f"{target}+{STATIC_DOC.format('how-it-works.md')}"
            await s.subscribe_resource(doc)
            await box.wait_for(
                lambda m: (
                    isinstance(m, types.LoggingMessageNotification)
                    and STATIC_DOC.format("how-it-works.md") in str(m.params.data)
                )
            )
            await s.unsubscribe_resource(doc)


async def test_requests_on_one_sse_stream_are_answered_concurrently(gw: Gateway) -> None:
    """A slow call must not hold up a quick one behind it on the same stream."""
    order: list[str] = []
    async with connect_sse(sse_url(gw)) as s:

        async def slow() -> None:
            await s.call_tool("old_trigger-long-running-operation", {"duration": 3, "steps": 3})
            order.append("slow")

        async def quick() -> None:
            await s.call_tool("std_echo", {"message": "quick"})
            order.append("quick")

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                await anyio.sleep(0.2)  # not an assertion: just lets the slow call go first
                tg.start_soon(quick)
    assert order == ["quick", "slow"]


# ------------------------------------------------------------- 3. /sse on the wire


async def test_endpoint_event_first_then_answers_as_message_events(gw: Gateway) -> None:
    async with raw_sse(sse_url(gw)) as raw:
        assert re.fullmatch(r".*/messages\?sessionId=[0-9a-f]{32}", raw.endpoint), raw.endpoint
        init = await raw.open()
        assert init["result"]["protocolVersion"] == "2024-11-05"
        assert init["result"]["serverInfo"]["name"] == "mcpmux"
        listed = await raw.request("tools/list")
        assert "old_echo" in {t["name"] for t in listed["result"]["tools"]}
        unknown = await raw.request("tools/call", {"name": "nope_nothing", "arguments": {}})
        assert unknown["error"]["code"] == -32602, unknown


async def test_bad_posts_get_readable_http_errors(gw: Gateway) -> None:
    base = base_url(gw)
    async with raw_sse(sse_url(gw)) as raw, httpx.AsyncClient(timeout=WAIT) as http:
        before_init = await raw.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert before_init.status_code == 400 and "initialize first" in before_init.text
        await raw.open()
        cases = [
            (await raw.post(b"{not json"), 400, "parse error"),
            (await raw.post([{"jsonrpc": "2.0", "id": 2, "method": "ping"}]), 400, "batches"),
            (await raw.post({"id": 3, "method": "ping"}), 400, "jsonrpc"),
            (
                await raw.post(b"{}", headers={"Content-Type": "text/plain"}),
                415,
                "application/json",
            ),
            (await raw.post(b"x" * (4 * 1024 * 1024 + 1)), 413, "too large"),
            (await http.post(f"{base}/messages", json={}), 400, "missing sessionId"),
            (await http.post(f"{base}/messages?sessionId=feed", json={}), 404, "GET /sse"),
            (await http.get(raw.endpoint), 405, "POST"),
            (await http.post(f"{base}/sse", json={}), 405, "GET"),
        ]
        for resp, status, fragment in cases:
            assert resp.status_code == status, (status, resp.status_code, resp.text)
            assert fragment in resp.json()["error"]["message"], resp.text
        foreign = await http.get(f"{base}/sse", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        # After all that the session still answers.
        assert "result" in await raw.request("ping")


async def test_closing_the_stream_closes_the_session_and_its_upstreams(
    gw: Gateway, everything_sse: HttpPeer
) -> None:
    disconnected = "Client Disconnected"
    base_sessions = sessions(gw)
    before = everything_sse.log().count(disconnected)
    async with raw_sse(sse_url(gw)) as raw:
        await raw.open()
        echoed = await raw.request(
            "tools/call", {"name": "old_echo", "arguments": {"message": "x"}}
        )
        assert echoed["result"]["content"][0]["text"] == "Echo: x"
        assert sessions(gw) == base_sessions + 1
        endpoint = raw.endpoint
    await wait_until(lambda: sessions(gw) == base_sessions, "the gateway to close the session")
    # The client's own upstream session on `old` (one SSE stream of its own) ended too.
    await wait_until(
        lambda: everything_sse.log().count(disconnected) > before, "upstream SSE closed"
    )
    gone = httpx.post(endpoint, json={"jsonrpc": "2.0", "method": "x"}, timeout=5)
    assert gone.status_code == 404


# ------------------------------------------------- 4. explicit kinds, and the probe


async def test_explicit_sse_and_http_kinds(
    everything_http: HttpPeer, everything_sse: HttpPeer, tmp_path: Path
) -> None:
    config = {
        "targets": [
            {"name": "a", "sse": {"url": sse_url_of(everything_sse)}},
            {"name": "b", "http": {"url": everything_http.url}},
        ]
    }
    with run_gateway(config, tmp_path) as g:
        assert {n: t["transport"] for n, t in g.targets().items()} == {"a": "sse", "b": "http"}
        async with connect_sse(sse_url(g)) as s:
            for target in ("a", "b"):
                assert text_of(await s.call_tool(f"{target}_echo", {"message": "k"})) == "Echo: k"


async def test_url_target_on_a_gateways_own_sse_listener(gw: Gateway, tmp_path: Path) -> None:
    """A gateway behind a gateway: ``url:`` naming mcpmux's /sse (POST there is 405) is
    probed as legacy SSE, its /mcp as streamable HTTP."""
    config = {
        "targets": [{"name": "viasse", "url": sse_url(gw)}, {"name": "viamcp", "url": gw.mcp_url}]
    }
    with run_gateway(config, tmp_path) as g:
        assert {n: t["transport"] for n, t in g.targets().items()} == {
            "viasse": "sse",
            "viamcp": "http",
        }
        async with connect_http(g.mcp_url) as s:
            res = await s.call_tool("viasse_old_echo", {"message": "two hops"})
            assert text_of(res) == "Echo: two hops"
            res = await s.call_tool("viamcp_std_echo", {"message": "two hops"})
            assert text_of(res) == "Echo: two hops"


def test_url_target_that_speaks_neither_names_both_attempts(tmp_path: Path) -> None:
    config = {"targets": [{"name": "nothing", "url": "http://127.0.0.1:9/sse", "timeout": 2}]}
    with run_gateway(config, tmp_path, wait=False) as g:
        state = g.wait_target("nothing", "failed")
        assert state["transport"] is None
        assert state["lastError"], state


# ----------------------------------------------------------------- 5. mcpmux stdio


def demo_file(tmp_path: Path, **extra: Any) -> Path:
    from mcpmux.demo import demo_config

    cfg = {**demo_config(), **extra}
    path = tmp_path / "mcpmux.json"
    path.write_text(json.dumps(cfg))
    return path


async def test_stdio_front_with_the_sdk_stdio_client(tmp_path: Path) -> None:
    cfg = demo_file(tmp_path)
    ready = tmp_path / "ready.json"
    errlog = tmp_path / "stderr.log"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcpmux", "stdio", "-c", str(cfg), "--ready-file", str(ready)],
        env=dict(os.environ),
        cwd=str(tmp_path),
    )
    with open(errlog, "w") as err:
        async with (
            stdio_client(params, errlog=err) as (read, write),
            ClientSession(read, write) as s,
        ):
            init = await s.initialize()
            assert init.server_info.name == "mcpmux"
            tools = {t.name for t in (await s.list_tools()).tools}
            assert {"clock_now", "clock_add", "notes_add_note", "notes_get_note"} <= tools, tools
            assert (await s.call_tool("clock_add", {"a": 2, "b": 40})).structured_content == {
                "sum": 42
            }
            await s.call_tool("notes_add_note", {"title": "t", "body": "across targets"})
            got = await s.call_tool("notes_get_note", {"title": "t"})
            assert "across targets" in text_of(got)
            seen: list[float] = []

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                seen.append(progress)

            await s.call_tool("clock_sleep", {"seconds": 0.3}, progress_callback=on_progress)
            assert seen, "no progress arrived over stdio"
            info = json.loads(ready.read_text())
            assert info["mcp"] is None and info["admin"] is None  # no listeners by default
            pid = info["pid"]
            kids = children_of(pid)
            assert len(kids) >= 2, kids
    await wait_until(lambda: reaped(pid) and not any(pid_alive(k) for k in kids), "no process left")
    assert "serving MCP on stdin/stdout" in errlog.read_text()


async def test_stdio_front_on_a_raw_pipe_exits_cleanly_on_eof(tmp_path: Path) -> None:
    """stdout carries JSON-RPC lines only; bad lines get errors; EOF ends it with code 0
    and takes the targets with it. Here the config enables the admin listener explicitly."""
    cfg = demo_file(tmp_path, admin={"enabled": True, "host": "127.0.0.1", "port": 0})
    ready = tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcpmux",
        "stdio",
        "-c",
        str(cfg),
        "--ready-file",
        str(ready),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    lines = [
        {"jsonrpc": "2.0", "id": 0, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "clock_add", "arguments": {"a": 1, "b": 2}},
        },
    ]
    payload = (
        b"".join(json.dumps(m).encode() + b"\n" for m in lines) + b"this is not json\n[1, 2]\n"
    )
    proc.stdin.write(payload)
    await proc.stdin.drain()
    out: dict[Any, dict[str, Any]] = {}
    with anyio.fail_after(WAIT):
        while len(out) < 5:
            line = await proc.stdout.readline()
            assert line, (await proc.stderr.read()).decode()
            msg = json.loads(line)  # every stdout line is JSON-RPC
            out[msg.get("id", "none") if msg.get("id") is not None else f"null{len(out)}"] = msg
    assert "not initialized" in out[0]["error"]["message"]
    assert out[1]["result"]["serverInfo"]["name"] == "mcpmux"
    assert out[2]["result"]["structuredContent"] == {"sum": 3}
    nulls = sorted(m["error"]["code"] for k, m in out.items() if str(k).startswith("null"))
    assert nulls == [-32700, -32600], out
    info = json.loads(ready.read_text())
    assert info["admin"], info
    status = httpx.get(f"{info['admin']}/api/targets", timeout=5).json()
    assert {t["name"]: t["state"] for t in status["targets"]} == {
        "clock": "ready",
        "notes": "ready",
    }
    kids = children_of(proc.pid)
    proc.stdin.close()
    with anyio.fail_after(WAIT):
        code = await proc.wait()
    assert code == 0, (await proc.stderr.read()).decode()
    assert not [k for k in kids if pid_alive(k)]


# ------------------------------------------------------------------- 6. bridge mode


@dataclass
class Bridge:
    gw: Gateway
    command: list[str]

    @property
    def pid(self) -> int:
        return int(self.gw.targets()["everything"]["pid"])


@contextlib.contextmanager
def run_bridge(tmp_path: Path, command: list[str], name: str = "everything") -> Iterator[Bridge]:
    """``mcpmux bridge --port 0 --admin-port 0 --name NAME -- COMMAND...``"""
    stamp = time.monotonic_ns()
    ready, log_path = tmp_path / f"ready-{stamp}.json", tmp_path / f"bridge-{stamp}.log"
    argv = [
        sys.executable,
        "-m",
        "mcpmux",
        "bridge",
        "--port",
        "0",
        "--admin-port",
        "0",
        "--name",
        name,
        "--ready-file",
        str(ready),
        "--log-level",
        "debug",
        "--",
        *command,
    ]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, (
                f"bridge exited with {proc.returncode}:\n{log_path.read_text()}"
            )
            assert time.monotonic() < deadline, f"bridge did not start:\n{log_path.read_text()}"
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert info["sse"] == info["mcp"].removesuffix("/mcp") + "/sse"
        g = Gateway(info["mcp"], info["admin"], proc, log_path, Path(argv[0]))
        g.wait_target(name)
        yield Bridge(g, command)
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    with run_bridge(tmp_path_factory.mktemp("bridge"), server_everything_cmd("stdio")) as b:
        yield b


async def direct_stdio(
    command: list[str], *requests: tuple[str, dict[str, Any] | None], capabilities: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Talk to the stdio server itself (initialize with ``capabilities``, by default the
    gateway's, then ``requests``); the whole response messages."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdin and proc.stdout
    out: list[dict[str, Any]] = []
    try:
        calls = [
            (
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": GATEWAY_CAPS if capabilities is None else capabilities,
                    "clientInfo": {"name": "direct", "version": "0"},
                },
            ),
            *requests,
        ]
        for i, (method, params) in enumerate(calls):
            msg: dict[str, Any] = {"jsonrpc": "2.0", "id": i, "method": method}
            if params is not None:
                msg["params"] = params
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
            await proc.stdin.drain()
            with anyio.fail_after(WAIT):
                while True:
                    got = json.loads(await proc.stdout.readline())
                    if "method" in got and "id" in got:  # roots/list
                        proc.stdin.write(
                            json.dumps(
                                {"jsonrpc": "2.0", "id": got["id"], "result": {"roots": []}}
                            ).encode()
                            + b"\n"
                        )
                    elif got.get("id") == i and "method" not in got:
                        out.append(got)
                        break
            if i == 0:  # after the answer, as a client must: it registers tools on it
                proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    return out


async def test_bridge_shows_the_server_as_itself(bridged: Bridge) -> None:
    """serverInfo, instructions and capabilities are the server's own (listChanged added:
    the gateway sends it); every tool, unprefixed; ``tasks/list`` (from the server's
    ``tasks`` capability) is answered with this caller's tasks: none yet, as directly.
    The gateway serves it itself (task ids are sealed per caller, and the list of a
    process shared by several clients is not read: it would mix their tasks)."""
    # The raw client declares no capabilities: the list is the one the server shows such a client.
    direct = await direct_stdio(bridged.command, ("tools/list", None), ("tasks/list", None), capabilities={})
    d_init, d_tools, d_tasks = (m["result"] for m in direct)
    async with RawClient(bridged.gw.mcp_url) as c:
        init = await c.initialize()
        tools = await c.tool_names()
        tasks = await c.rpc("tasks/list")
    assert init["serverInfo"] == d_init["serverInfo"]
    assert init["instructions"] == d_init["instructions"]
    expected = json.loads(json.dumps(d_init["capabilities"]))
    for key in ("tools", "prompts", "resources"):
        if key in expected:
            expected[key]["listChanged"] = True
    assert init["capabilities"] == expected
    assert sorted(tools) == sorted(t["name"] for t in d_tools["tools"])
    assert tasks["result"]["tasks"] == d_tasks["tasks"] == [], tasks


async def test_bridge_over_sse_with_the_sdk_and_the_inspector(bridged: Bridge) -> None:
    url = sse_url(bridged.gw)
    answers = Answers()
    async with connect_sse(url, sampling_callback=answers.sample) as s:
        assert text_of(await s.call_tool("echo", {"message": "bridged"})) == "Echo: bridged"
        res = await s.call_tool("trigger-sampling-request", {"prompt": "p", "maxTokens": 5})
        assert "sampled-answer-4711" in text_of(res)
    listed = inspector("--cli", url, "--method", "tools/list")
    assert {"echo", "get-sum", "trigger-long-running-operation"} <= {
        t["name"] for t in listed["tools"]
    }
    summed = inspector(
        "--cli",
        bridged.gw.mcp_url,
        "--transport",
        "http",
        "--method",
        "tools/call",
        "--tool-name",
        "get-sum",
        "--tool-arg",
        "a=2",
        "b=40",
    )
    assert "42" in summed["content"][0]["text"]


def retry_delays(log: str, name: str) -> list[float]:
    return [float(x) for x in re.findall(rf"target '{name}': .*; retrying in ([0-9.]+) s", log)]


async def test_killing_the_bridged_server(tmp_path: Path) -> None:
    """The call in flight fails naming the target; a call while it is down gets the same
    clear error (not "unknown tool"); it is restarted with backoff; later calls work."""
    with run_bridge(tmp_path, server_everything_cmd("stdio")) as b:
        g = b.gw
        old_pid = b.pid
        async with connect_http(g.mcp_url) as s:
            err = await kill_mid_call(
                s, "trigger-long-running-operation", {"duration": 30, "steps": 60}, old_pid
            )
            assert err.error.code == -32001, err
            assert "everything" in err.error.message
            assert (err.error.data or {}).get("target") == "everything"

            await wait_until(lambda: g.targets()["everything"]["state"] != "ready", "target down")
            with pytest.raises(MCPError) as down:
                await s.call_tool("echo", {"message": "while down"})
            assert down.value.error.code == -32001, down.value.error
            assert "unavailable" in down.value.error.message

            await wait_until(lambda: g.targets()["everything"]["state"] == "ready", "restart", 30)
            assert text_of(await s.call_tool("echo", {"message": "back"})) == "Echo: back"
            second_pid = b.pid
            assert second_pid != old_pid and not pid_alive(old_pid)

            # Killed again soon after: the next restart waits longer (backoff, not a loop).
            os.kill(second_pid, signal.SIGKILL)
            await wait_until(lambda: len(retry_delays(g.log(), "everything")) >= 2, "second retry")
            await wait_until(lambda: g.targets()["everything"]["state"] == "ready", "restart", 30)
            first, second = retry_delays(g.log(), "everything")[:2]
            assert 0.5 <= first < 1.0 <= second, (first, second)
        async with connect_sse(sse_url(g)) as fresh:
            assert text_of(await fresh.call_tool("echo", {"message": "new"})) == "Echo: new"
        kids = children_of(g.proc.pid)
    assert not [k for k in kids if pid_alive(k)], "processes outlived the bridge"


def test_bridge_needs_a_command_and_a_valid_name(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "mcpmux", "bridge", "--port", "0"]
    none = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert none.returncode == 2 and "COMMAND" in none.stderr, none.stderr
    bad = subprocess.run(
        [*run, "--name", "Not_OK", "--", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 1 and "DNS-1123" in bad.stderr and "--name" in bad.stderr, bad.stderr


# ------------------------------------------------------ 7. stdio target processes


def probe_target(name: str, *args: str, **stdio: Any) -> dict[str, Any]:
    return {
        "name": name,
        "stdio": {"command": sys.executable, "args": [str(PROBE), *args], **stdio},
    }


async def test_stdio_target_env_cwd_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPMUX_TEST_INHERITED", "from-the-gateway")
    work = tmp_path / "work dir"
    work.mkdir()
    config = {
        "targets": [
            probe_target("clean", env={"ONLY_THIS": "1"}, inherit_env=False, cwd=str(work)),
            probe_target("inherits", env={"EXTRA": "2"}),
        ]
    }
    with run_gateway(config, tmp_path) as g:
        async with connect_http(g.mcp_url) as s:
            clean = (await s.call_tool("clean_whoami", {})).structured_content
            inherits = (await s.call_tool("inherits_whoami", {})).structured_content
        assert clean and inherits
        assert Path(clean["cwd"]) == work
        assert set(clean["env"]) - {"LC_CTYPE"} == {"ONLY_THIS", "PATH"}, clean["env"]
        assert inherits["env"]["MCPMUX_TEST_INHERITED"] == "from-the-gateway"
        assert inherits["env"]["EXTRA"] == "2"
        assert inherits["cwd"] == os.getcwd()
        for name, info in (("clean", clean), ("inherits", inherits)):
            line = f"mcpmux.target.{name}: stdio-probe: started pid {info['pid']}"
            assert line in g.log(), g.log()[-2000:]


async def test_stdio_target_removed_or_stopped_is_terminated_without_leftovers(
    tmp_path: Path,
) -> None:
    """SIGTERM to the group, SIGKILL after the grace period for one that ignores it; the
    child is reaped (no zombie) and its grandchildren go with it; on removal and on stop."""
    config = {"targets": [probe_target("stubborn", "--stubborn"), probe_target("polite")]}
    with run_gateway(config, tmp_path) as g:
        async with connect_http(g.mcp_url) as s:
            stubborn = (await s.call_tool("stubborn_whoami", {})).structured_content["pid"]
            grandchild = (await s.call_tool("stubborn_spawn", {})).structured_content["pid"]
            polite = (await s.call_tool("polite_whoami", {})).structured_content["pid"]
            polite_grandchild = (await s.call_tool("polite_spawn", {})).structured_content["pid"]
        assert all(pid_alive(p) for p in (stubborn, grandchild, polite, polite_grandchild))

        removed = json.loads(g.config_path.read_text())
        removed["targets"] = [t for t in removed["targets"] if t["name"] != "stubborn"]
        g.config_path.write_text(json.dumps(removed))
        await wait_until(lambda: "stubborn" not in g.targets(), "the target to be removed")
        await wait_until(lambda: reaped(stubborn), "SIGKILL and reap after the grace period", 15)
        await wait_until(lambda: not pid_alive(grandchild), "the grandchild to be stopped")
        assert re.search(rf"target 'stubborn': process {stubborn} stopped \(code -9\)", g.log()), (
            g.log()[-2000:]
        )
        assert pid_alive(polite)
        gateway_proc = g.proc
    assert gateway_proc.returncode == 0
    await wait_until(
        lambda: not pid_alive(polite) and not pid_alive(polite_grandchild), "stop on shutdown"
    )


async def test_target_still_connecting_at_shutdown_leaves_no_process(tmp_path: Path) -> None:
    """A server that never answers initialize (and ignores SIGTERM): stopping the gateway
    while the supervisor still waits for it must not orphan the process."""
    hang = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('hanging', file=sys.stderr, flush=True); time.sleep(1000)"
    )
    config = {
        "targets": [
            {
                "name": "hang",
                "timeout": 60,
                "stdio": {"command": sys.executable, "args": ["-c", hang]},
            }
        ]
    }
    with run_gateway(config, tmp_path, wait=False) as g:
        await wait_until(lambda: "mcpmux.target.hang: hanging" in g.log(), "the child to start")
        kids = children_of(g.proc.pid)
        assert kids
    await wait_until(lambda: not any(pid_alive(k) for k in kids), "the child to be killed")


async def test_sse_url_fallback_reaches_the_articles_sse_server(
    everything_sse: HttpPeer, tmp_path: Path
) -> None:
    """What Kubernetes discovery emits for the article's `kgateway.dev/mcp` Service with no
    path annotation: streamable HTTP at /mcp (server-everything in `sse` mode has none,
    a 4xx), then legacy SSE at `sse_url`. The server is reached and its tools listed."""
    base = f"http://127.0.0.1:{everything_sse.port}"
    config = {"targets": [{"name": "standard", "url": f"{base}/mcp", "sse_url": f"{base}/sse"}]}
    with run_gateway(config, tmp_path) as g:
        status = g.targets()["standard"]
        assert (status["kind"], status["transport"], status["state"]) == ("url", "sse", "ready"), status
        assert status["counts"]["tools"] > 0
