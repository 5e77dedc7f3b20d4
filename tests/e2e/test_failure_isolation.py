"""One broken server must not break the gateway (the article's complaint, proved fixed).

Every kind of bad target stands beside a healthy one (the ``clock`` demo): refusing
connections, accepting TCP and never answering, answering garbage, a stdio command
that does not exist, one that exits at start, one that crashes mid-call. Clients must
still initialize and list within a bounded time, see the healthy tools, get a clear
error naming the broken target when they call it, and watch it recover when its
server appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from tests.peers.bad_servers import (
    GarbageServer,
    HangingServer,
    free_port,
    late_http_server,
    refusing_url,
    stdio_target,
)
from tests.support.gateway import Gateway, children_of, run_gateway
from tests.support.mcp_http import RawClient

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
CLOCK_TOOLS = {"clock_now", "clock_add", "clock_sleep"}
BAD_TIMEOUT = 1.0
#: Client-side bound on any single request: generous, so a hang fails the test, never blocks it.
CLIENT_TIMEOUT = 20.0
TARGET_UNAVAILABLE = -32001

#: bad target name -> what its lastError must say
BAD_ERRORS: dict[str, str] = {
    "refuses": r"(?i)cannot connect|refused",
    "hangs": r"no initialize answer within 1 s",
    "html-500": r"HTTP 500",
    "text-200": r"unexpected content type text/plain",
    "bad-json": r"invalid JSON",
    "not-http": r"(?i)HTTP error|invalid|bad",
    "sse-refuses": r"(?i)cannot open SSE stream.*(connect|refused)",
    "sse-hangs": r"no initialize answer within 1 s",
    "sse-html-500": r"did not open an event stream \(HTTP 500\)",
    "missing": r"command not found: /nonexistent/mcp-server",
    "exits": r"exited with code 3",
    "stdio-garbage": r"no initialize answer within 1 s",
}


def _http(name: str, url: str, kind: str = "http") -> dict[str, Any]:
    return {"name": name, kind: {"url": url}, "timeout": BAD_TIMEOUT}


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, HangingServer]]:
    """One gateway: the healthy clock beside every kind of broken target at once."""
    with contextlib.ExitStack() as stack:
        hang = stack.enter_context(HangingServer())
        sse_hang = stack.enter_context(HangingServer())
        garbage = {
            m: stack.enter_context(GarbageServer(m))  # type: ignore[arg-type]
            for m in ("html-500", "text-200", "bad-json", "not-http")
        }
        targets = [
            CLOCK,
            _http("refuses", refusing_url()),
            _http("hangs", hang.url),
            *(_http(m, g.url) for m, g in garbage.items()),
            _http("sse-refuses", refusing_url("/sse"), "sse"),
            _http("sse-hangs", sse_hang.url.replace("/mcp", "/sse"), "sse"),
            _http("sse-html-500", garbage["html-500"].url.replace("/mcp", "/sse"), "sse"),
            {
                "name": "missing",
                "stdio": {"command": "/nonexistent/mcp-server"},
                "timeout": BAD_TIMEOUT,
            },
            stdio_target("exits", "exit-at-start", timeout=BAD_TIMEOUT),
            stdio_target("stdio-garbage", "garbage-stdio", timeout=BAD_TIMEOUT),
        ]
        assert {t["name"] for t in targets} == {"clock", *BAD_ERRORS}
        gw = stack.enter_context(
            run_gateway({"targets": targets}, tmp_path_factory.mktemp("bad"), wait=False)
        )
        gw.wait_target("clock", "ready")
        yield gw, hang


async def test_initialize_and_list_survive_every_bad_target(
    bad: tuple[Gateway, HangingServer],
) -> None:
    gw, hang = bad
    async with RawClient(gw.mcp_url, CLIENT_TIMEOUT) as c:
        init = await c.initialize()
        assert init["serverInfo"]["name"] == "mcpmux"
        # Broken targets contribute nothing; the healthy one everything, prefixed as usual.
        assert set(await c.tool_names()) == CLOCK_TOOLS
        resp = await c.call("clock_add", {"a": 2, "b": 40})
        assert resp["result"]["structuredContent"] == {"sum": 42}, resp
        for method in ("prompts/list", "resources/list", "resources/templates/list"):
            assert "result" in await c.rpc(method), method
    assert hang.accepted >= 1, "the hanging server was never contacted: the test proved nothing"


@pytest.mark.parametrize("name", sorted(BAD_ERRORS))
def test_admin_names_the_failed_target_and_cause(
    bad: tuple[Gateway, HangingServer], name: str
) -> None:
    gw, _ = bad
    status = _wait_status(gw, name, lambda s: s["state"] == "failed" and s["lastError"])
    assert re.search(BAD_ERRORS[name], status["lastError"]), status
    # One readable line (it lands in JSON, logs and dashboards), not a traceback-like blob.
    assert "\n" not in status["lastError"] and len(status["lastError"]) <= 300, status["lastError"]
    assert status["counts"]["tools"] == 0
    # The supervisor keeps retrying (with backoff), it does not give up or spin.
    _wait_status(gw, name, lambda s: s["restarts"] >= 2)
    clock = gw.targets()["clock"]
    assert clock["state"] == "ready" and clock["lastError"] is None, clock


@pytest.mark.parametrize("name", sorted(BAD_ERRORS))
async def test_call_to_failed_target_is_an_error_naming_it(
    bad: tuple[Gateway, HangingServer], name: str
) -> None:
    gw, _ = bad
    async with RawClient(gw.mcp_url, CLIENT_TIMEOUT) as c:
        await c.initialize()
        resp = await c.call(f"{name}_anything", {})
        err = resp.get("error")
        assert err is not None, resp
        assert err["code"] == TARGET_UNAVAILABLE, err
        assert err["data"] == {"target": name}, err
        assert f"'{name}'" in err["message"], err
        ok = await c.call("clock_add", {"a": 1, "b": 1})
        assert ok["result"]["structuredContent"] == {"sum": 2}, ok


def test_readyz_and_healthz_with_failed_targets(bad: tuple[Gateway, HangingServer]) -> None:
    gw, _ = bad
    for name in BAD_ERRORS:
        _wait_status(gw, name, lambda s: s["restarts"] >= 1)
    assert httpx.get(f"{gw.admin_url}/healthz", timeout=5).status_code == 200
    # Readiness is the gateway's: a broken backend must not take the endpoint out of
    # a load balancer (that would be the article's bug again, one level up).
    ready = httpx.get(f"{gw.admin_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True
    assert body["connecting"] == []
    assert set(body["unavailable"]) == set(BAD_ERRORS)
    one = httpx.get(f"{gw.admin_url}/api/targets/hangs", timeout=5).json()
    assert one["name"] == "hangs" and one["kind"] == "http"
    missing = httpx.get(f"{gw.admin_url}/api/targets/nope", timeout=5)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


async def test_initialize_is_bounded_while_a_target_is_on_its_first_attempt(tmp_path: Path) -> None:
    """The CLI waits at most 3 s before it reports; a 4 s hang outlives that, so the
    client's initialize meets the target still connecting, and must not wait past it."""
    with HangingServer() as hang:
        slow = {"name": "slow", "http": {"url": hang.url}, "timeout": 4.0}
        with run_gateway({"targets": [CLOCK, slow]}, tmp_path, wait=False) as gw:
            early = await asyncio.to_thread(httpx.get, f"{gw.admin_url}/readyz", timeout=5)
            async with RawClient(gw.mcp_url, CLIENT_TIMEOUT) as c:
                await c.initialize()
                assert set(await c.tool_names()) == CLOCK_TOOLS
            status = _wait_status(gw, "slow", lambda s: s["state"] == "failed")
            assert "within 4 s" in status["lastError"]
            late = await asyncio.to_thread(httpx.get, f"{gw.admin_url}/readyz", timeout=5)
    # Unready only while a first attempt is still under way; then ready, the target listed.
    if early.status_code == 503:
        assert early.json() == {"ready": False, "connecting": ["slow"], "unavailable": []}
    else:
        assert early.json()["unavailable"] == ["slow"]
    assert late.status_code == 200
    assert late.json() == {"ready": True, "connecting": [], "unavailable": ["slow"]}


# ----------------------------------------------------- stdio: hanging and crashing calls


@pytest.fixture
def crashy(tmp_path: Path) -> Iterator[Gateway]:
    targets = [CLOCK, stdio_target("crashy", "crashy", timeout=5.0)]
    with run_gateway({"targets": targets}, tmp_path) as gw:
        yield gw


async def test_healthy_calls_work_while_a_call_hangs_then_cancel(crashy: Gateway) -> None:
    async with RawClient(crashy.mcp_url, CLIENT_TIMEOUT) as c:
        await c.initialize()
        hung = asyncio.create_task(c.rpc("tools/call", {"name": "crashy_hang", "arguments": {}}))
        await asyncio.sleep(0.3)  # let it reach the target (not a timing assertion)
        assert not hung.done()
        for i in range(5):
            ok = await c.call("clock_add", {"a": i, "b": 1})
            assert ok["result"]["structuredContent"] == {"sum": i + 1}, ok
            # Even the same (shared) process keeps answering other calls.
            echo = await c.call("crashy_echo", {"text": f"hi {i}"})
            assert echo["result"]["content"][0]["text"] == f"hi {i}", echo
        assert not hung.done()
        # The hung request's id is 2 (initialize took 1).
        ack = await c.send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": 2, "reason": "test gave up"},
            }
        )
        assert ack.status_code == 202
        resp = await asyncio.wait_for(hung, CLIENT_TIMEOUT)
        assert "error" in resp, resp
        assert (await c.call("crashy_echo", {"text": "after"}))["result"]["content"][0][
            "text"
        ] == "after"


async def test_crash_mid_call_is_a_clear_error_and_the_process_restarts(crashy: Gateway) -> None:
    async with RawClient(crashy.mcp_url, CLIENT_TIMEOUT) as c:
        await c.initialize()
        first = await c.call("crashy_pid")
        pid1 = first["result"]["structuredContent"]["pid"]
        # This client (no capabilities) is served by its capability set's process.
        assert _serving(crashy)["pid"] == pid1
        hung = asyncio.create_task(c.call("crashy_hang"))
        await asyncio.sleep(0.3)
        crash = await c.call("crashy_crash")
        err = crash.get("error")
        assert err is not None, crash
        assert err["code"] == TARGET_UNAVAILABLE and err["data"] == {"target": "crashy"}, err
        assert "exited with code 7" in err["message"], err
        # A call that was waiting on the dead process fails too, instead of hanging forever.
        hung_resp = await asyncio.wait_for(hung, CLIENT_TIMEOUT)
        assert hung_resp.get("error", {}).get("data") == {"target": "crashy"}, hung_resp
        # The healthy target never noticed.
        assert (await c.call("clock_add", {"a": 1, "b": 2}))["result"]["structuredContent"] == {
            "sum": 3
        }
        # Restarted: later calls work and reach the new process, which the admin API shows.
        again = await _call_when_back(c, "crashy_pid")
        status = _serving(crashy)
        assert status["live"] and status["restarts"] >= 1, status
        assert again["result"]["structuredContent"]["pid"] == status["pid"] != pid1
        assert crashy.targets()["crashy"]["state"] == "ready"
        assert "crashy_echo" in await c.tool_names()
    assert pid1 not in children_of(crashy.proc.pid), "the crashed process was not reaped"


async def test_stdio_that_closes_stdout_but_lives_is_restarted(crashy: Gateway) -> None:
    """A wedged server (its stdout gone, its process alive) is as dead as a crashed one."""
    async with RawClient(crashy.mcp_url, 10) as c:  # the gateway needs ~3 s (TERMINATE_GRACE)
        await c.initialize()
        pid1 = (await c.call("crashy_pid"))["result"]["structuredContent"]["pid"]
        resp = await c.call("crashy_close_stdout")
        assert resp.get("error", {}).get("data") == {"target": "crashy"}, resp
        assert "stdout" in resp["error"]["message"], resp
        again = await _call_when_back(c, "crashy_pid")
        status = _serving(crashy)
        assert status["live"] and status["restarts"] >= 1, status
        assert again["result"]["structuredContent"]["pid"] == status["pid"] != pid1
    # Stopped like any closed session: SIGTERM, then SIGKILL after the 3 s grace.
    deadline = time.monotonic() + 10
    while pid1 in children_of(crashy.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid1 not in children_of(crashy.proc.pid), "the wedged process was not killed"


def test_crash_loop_backs_off_instead_of_restarting_at_full_speed(tmp_path: Path) -> None:
    """A server that comes up and dies at once must not reset the backoff each time it is
    briefly ready: the delays the supervisor announces keep growing."""
    targets = [CLOCK, stdio_target("flappy", "flappy", timeout=2.0)]
    with run_gateway({"targets": targets}, tmp_path, wait=False) as gw:
        gw.wait_target("clock")
        pattern = re.compile(r"target 'flappy': process exited with code 5; retrying in ([\d.]+) s")
        deadline = time.monotonic() + 30
        delays: list[float] = []
        while len(delays) < 4 and time.monotonic() < deadline:
            delays = [float(d) for d in pattern.findall(gw.log())]
            time.sleep(0.1)
        assert len(delays) >= 4, gw.log()[-3000:]
        # Backoff doubles from 0.5 s with up to 50 % jitter: the 4th wait is at least 4 s.
        assert delays[3] >= 4.0, delays
        assert gw.targets()["clock"]["state"] == "ready"


# ------------------------------------------------------------- recovery when a server appears


async def test_failed_target_recovers_when_its_server_appears(tmp_path: Path) -> None:
    port = free_port()
    late = {"name": "late", "http": {"url": f"http://127.0.0.1:{port}/mcp"}, "timeout": 2.0}
    with run_gateway({"targets": [CLOCK, late]}, tmp_path, wait=False) as gw:
        gw.wait_target("clock")
        failed = _wait_status(gw, "late", lambda s: s["state"] == "failed")
        assert re.search(r"(?i)cannot connect|refused", failed["lastError"]), failed
        async with RawClient(gw.mcp_url, CLIENT_TIMEOUT) as c:
            await c.initialize()
            assert set(await c.tool_names()) == CLOCK_TOOLS
            down = await c.call("late_greet", {"name": "x"})
            assert down["error"]["data"] == {"target": "late"}, down

            opened = asyncio.Event()
            changed = asyncio.create_task(
                c.listen(
                    lambda m: m.get("method") == "notifications/tools/list_changed",
                    within=45,
                    opened=opened,
                )
            )
            await asyncio.wait_for(opened.wait(), CLIENT_TIMEOUT)
            with late_http_server(port):
                await changed  # pushed on the GET stream when the target came up
                status = _wait_status(gw, "late", lambda s: s["state"] == "ready")
                assert status["restarts"] >= 1 and status["lastError"] is None, status
                assert status["counts"]["tools"] == 1
                assert set(await c.tool_names()) == CLOCK_TOOLS | {"late_greet"}
                resp = await c.call("late_greet", {"name": "world"})
                assert resp["result"]["content"][0]["text"] == "hello, world", resp


# --------------------------------------------------------------------------------- helpers


def _wait_status(gw: Gateway, name: str, ok: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = gw.targets()[name]
        if ok(status):
            return status
        time.sleep(0.05)
    raise AssertionError(
        f"target {name}: condition not met in {timeout} s: {status}\n{gw.log()[-3000:]}"
    )


def _serving(gw: Gateway) -> dict[str, Any]:
    """The crashy target's session for clients with no capabilities (RawClient's)."""
    sets = [s for s in gw.targets()["crashy"]["capabilitySets"] if s["capabilities"] == {}]
    assert len(sets) == 1, gw.targets()["crashy"]
    return sets[0]


async def _call_when_back(c: RawClient, name: str, tries: int = 50) -> dict[str, Any]:
    """The admin API may say ready an instant before the view is rebuilt; retry briefly."""
    resp: dict[str, Any] = {}
    for _ in range(tries):
        resp = await c.call(name)
        if "result" in resp:
            return resp
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never worked again: {resp}")


def test_start_up_is_bounded_by_connect_concurrency(tmp_path: Path) -> None:
    """Many stdio targets at once: at most `connect_concurrency` are starting at a time
    (read from the gateway's own log order), and every one of them becomes ready."""
    names = [f"c{i}" for i in range(6)]
    config = {
        "limits": {"connect_concurrency": 2},
        "targets": [
            {"name": n, "stdio": {"command": sys.executable, "args": ["-m", "mcpmux.demo.clock"]}}
            for n in names
        ],
    }
    with run_gateway(config, tmp_path) as gw:
        assert all(gw.targets()[n]["state"] == "ready" for n in names)
        starting = peak = 0
        for line in gw.log().splitlines():
            if "': started pid" in line:
                starting += 1
                peak = max(peak, starting)
            elif "': ready (" in line:
                starting -= 1
        assert peak == 2, gw.log()


async def test_a_client_that_stops_reading_does_not_stall_others(crashy: Gateway) -> None:
    """Client A starts a call that streams ~25 MB of progress to it, then never reads.
    The shared stdio target's reader must not wait on A: client B's calls to the same
    target still answer, and so does A's own call once its stream lags."""
    async with RawClient(crashy.mcp_url, 30) as a, RawClient(crashy.mcp_url, 30) as b:
        await a.initialize()
        await b.initialize()
        body = orjson.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "crashy_flood", "arguments": {"count": 400},
                       "_meta": {"progressToken": "p"}},
        })
        url = httpx.URL(crashy.mcp_url)
        head = (
            f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Mcp-Session-Id: {a.sid}\r\nMCP-Protocol-Version: {a.version}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        _reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(head + body)
            await writer.drain()  # ...and never read: the gateway's writes to A back up
            await asyncio.sleep(0.5)
            with anyio.fail_after(20):
                echoed = await b.call("crashy_echo", {"text": "still here"})
            assert echoed["result"]["content"][0]["text"] == "still here", echoed
            assert "not reading" in crashy.log()
        finally:
            writer.close()
