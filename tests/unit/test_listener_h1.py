"""The listeners' HTTP/1.1 protocol (listener/h1.py) on the wire: uvicorn's server
with our protocol class and small ASGI apps, driven by raw sockets so that every
byte the client sends and reads is the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from mcpmux.fieldnames import header_lines
from mcpmux.listener.guard import HEADERS
from mcpmux.listener.h1 import CYCLE, Cycle, H1Protocol, protocol_class
from mcpmux.listener.http import headers_of

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Listener:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def protocols(self) -> list[H1Protocol]:
        return list(self.server.server_state.connections)  # type: ignore[arg-type]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def listening(app: App, keepalive: int = 5, header_timeout: float = 10.0,
                    max_header_bytes: int = 64 * 1024, max_connections: int = 100) -> AsyncIterator[Listener]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", loop="none", log_level="warning",
                            http=protocol_class(max_header_bytes, header_timeout, max_connections),
                            timeout_keep_alive=keepalive, proxy_headers=False, server_header=False,
                            date_header=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the listener did not start"
        await asyncio.sleep(0.005)
    listener = Listener(server, task)
    try:
        yield listener
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        # Nothing left behind: no connection, no request task.
        assert not server.server_state.connections
        assert not server.server_state.tasks


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the request's method, path, query and whole body."""
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    out = b"%s %s?%s %s" % (scope["method"].encode(), scope["path"].encode(), scope["query_string"], body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One response: status line, headers (lower-cased names), body (length or chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return lines[0], headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (EOF or reset) within 10 s."""
    try:
        return await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        return True


async def test_keep_alive_serves_requests_in_turn_on_one_connection() -> None:
    async with listening(echo) as lst:
        reader, writer = await lst.connect()
        for i in range(3):
            writer.write(b"POST /a%%20b?x=%d HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\nabc" % i)
            status, headers, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert body == b"POST /a b?x=%d abc" % i
            assert b"connection" not in headers
        assert len(lst.protocols) == 1
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    order: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.05)  # the second must still wait for the first's answer
        order.append(scope["path"])
        await echo(scope, receive, send)

    async with listening(app) as lst:
        reader, writer = await lst.connect()
        writer.write(b"POST /slow HTTP/1.1\r\nhost: h\r\ncontent-length: 1\r\n\r\n1"
                     b"POST /fast HTTP/1.1\r\nhost: h\r\ncontent-length: 1\r\n\r\n2"
                     b"GET /last HTTP/1.1\r\nhost: h\r\n\r\n")
        bodies = [(await read_response(reader))[2] for _ in range(3)]
        assert bodies == [b"POST /slow? 1", b"POST /fast? 2", b"GET /last? "]
        assert order == ["/slow", "/fast", "/last"]
        writer.close()


async def test_chunked_request_body_is_joined_and_a_streamed_answer_is_chunked() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            event = await receive()
            body += event["body"]
            if not event["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in body.split(b","):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with listening(app) as lst:
        reader, writer = await lst.connect()
        writer.write(b"POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab,\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"3\r\ncd,\r\n2\r\nef\r\n0\r\n\r\n")
        _status, headers, body = await read_response(reader)
        assert headers[b"transfer-encoding"] == b"chunked"
        assert body == b"abcdef"
        writer.close()
        # httpx (h11) agrees on the framing.
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"http://127.0.0.1:{lst.port}/", content=b"x,y,z")
            assert resp.text == "xyz"


async def test_expect_100_continue_is_answered_when_the_app_reads() -> None:
    async with listening(echo) as lst:
        reader, writer = await lst.connect()
        writer.write(b"POST /e HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        assert (await read_response(reader))[2] == b"POST /e? body"
        writer.close()


async def test_head_has_headers_and_no_body() -> None:
    async with listening(echo) as lst:
        reader, writer = await lst.connect()
        writer.write(b"HEAD /h HTTP/1.1\r\nhost: h\r\n\r\nGET /g HTTP/1.1\r\nhost: h\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"content-length: 9" in head
        # The next bytes are the second answer: the HEAD answer had no body.
        assert (await read_response(reader))[2] == b"GET /g? "
        writer.close()


async def test_http_1_0_closes_after_the_answer() -> None:
    async with listening(echo) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET /old HTTP/1.0\r\n\r\n")
        _status, headers, body = await read_response(reader)
        assert headers[b"connection"] == b"close"
        assert body == b"GET /old? "
        assert await closed(reader)


INJECTIONS = [(b"x-a", b"ok\r\nset-cookie: evil=1"), (b"x-a", b"ok\nset-cookie: evil=1"),
              (b"x-a", b"ok\rset-cookie: evil=1"), (b"x-a", b"ok\0"), (b"x-a\r\nset-cookie", b"evil=1")]


async def test_a_failing_app_gets_a_500_and_the_listener_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise ValueError("boom")
        if scope["path"] == "/silent":
            return  # never answers
        if scope["path"].startswith("/inject"):
            header = INJECTIONS[int(scope["path"][-1])]
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-ok", b"1"), header]})
        await echo(scope, receive, send)

    async with listening(app) as lst:
        for path in (b"/boom", b"/silent", *(b"/inject%d" % i for i in range(len(INJECTIONS)))):
            reader, writer = await lst.connect()
            writer.write(b"GET %s HTTP/1.1\r\nhost: h\r\n\r\n" % path)
            status, headers, body = await read_response(reader)
            assert status.startswith(b"HTTP/1.1 500"), path
            assert b"set-cookie" not in headers
            assert b"see the gateway log" in body
            assert await closed(reader)
        reader, writer = await lst.connect()
        writer.write(b"GET /fine HTTP/1.1\r\nhost: h\r\n\r\n")
        assert (await read_response(reader))[2] == b"GET /fine? "
        writer.close()
    assert "boom" in caplog.text and "without starting the response" in caplog.text
    assert "not allowed in HTTP" in caplog.text


async def direct(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Like ``echo``, through the cycle's own calls: the body taken whole when it came
    with the head (else received), the answer written in one call."""
    cycle: Cycle = scope[CYCLE]
    body = cycle.whole_body()
    how = b"whole"
    if body is None:
        how, body = b"received", b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
    extra = INJECTIONS[int(scope["path"][-1])] if scope["path"].startswith("/inject") else (b"x-ok", b"1")
    if scope["path"] == "/big":
        body = b"x" * 1_000_000
    if cycle.must_wait():
        await cycle.drained()
    cycle.answer(200, header_lines([(b"content-type", b"text/plain"), (b"x-how", how), extra]), body)


async def test_a_direct_answer_is_one_write_and_keeps_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    async with listening(direct) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET /warm HTTP/1.1\r\nhost: h\r\n\r\n")
        await read_response(reader)
        transport = lst.protocols[0].transport  # the server side of this connection
        write = transport.write
        monkeypatch.setattr(transport, "write", lambda data: (writes.append(bytes(data)), write(data))[1])
        for i in range(3):
            writer.write(b"POST /d HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nbody%d" % i)
            status, headers, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert (headers[b"x-how"], body, headers[b"content-length"]) == (b"whole", b"body%d" % i, b"5")
            assert b"connection" not in headers and b"transfer-encoding" not in headers
        assert len(writes) == 3 and all(w.endswith(b"\r\n\r\nbody%d" % i) for i, w in enumerate(writes))
        writer.close()


async def test_direct_answers_to_a_client_that_does_not_read_stall_its_pipeline() -> None:
    """``answer`` does not wait, so its callers wait while the client is not reading:
    pipelined requests then stall instead of their answers piling up in memory."""
    async with listening(direct) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET /big HTTP/1.1\r\nhost: h\r\n\r\n" * 200)  # 200 MB of answers
        await reader.readuntil(b"\r\n\r\n")
        proto = lst.protocols[0]
        await asyncio.sleep(0.5)  # the client reads nothing meanwhile
        assert proto.write_paused
        assert proto.transport.get_write_buffer_size() < 20_000_000
        assert len(proto.pipeline) > 150  # the rest wait, unanswered
        writer.close()


async def test_a_body_still_coming_is_received_and_close_is_honoured() -> None:
    async with listening(direct) as lst:
        reader, writer = await lst.connect()
        # Expect: 100-continue: nothing of the body is there until the app asks for it.
        writer.write(b"POST /d HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\nexpect: 100-continue\r\n"
                     b"connection: close\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"late")
        _status, headers, body = await read_response(reader)
        assert (headers[b"x-how"], body, headers[b"connection"]) == (b"received", b"late", b"close")
        assert await closed(reader)


def test_header_lines_are_checked_where_they_are_made() -> None:
    assert header_lines([(b"a", b"1"), (b"b-c", b"x y")]) == b"a: 1\r\nb-c: x y\r\n"
    for name, value in INJECTIONS:
        with pytest.raises(ValueError, match="not allowed in HTTP"):
            header_lines([(b"ok", b"1"), (name, value)])


async def test_a_direct_answer_refuses_header_injection_with_a_500(caplog: pytest.LogCaptureFixture) -> None:
    async with listening(direct) as lst:
        for i in range(len(INJECTIONS)):
            reader, writer = await lst.connect()
            writer.write(b"POST /inject%d HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n" % i)
            status, headers, _ = await read_response(reader)
            assert status.startswith(b"HTTP/1.1 500") and b"set-cookie" not in headers, i
            assert await closed(reader)
        reader, writer = await lst.connect()
        writer.write(b"POST /fine HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nok")
        assert (await read_response(reader))[2] == b"ok"
        writer.close()
    refused = [r for r in caplog.records if r.exc_info and "not allowed in HTTP" in str(r.exc_info[1])]
    assert len(refused) == len(INJECTIONS)


async def test_malformed_request_gets_a_400_naming_the_problem() -> None:
    async with listening(echo) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET / HTTP/1.1\r\nhost: h\r\nbad header\r\n\r\n")
        status, _headers, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 400")
        assert b"malformed HTTP request" in body
        assert await closed(reader)


SMUGGLING = {
    "length and chunked": b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
                          b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: h\r\n\r\n",
    "two lengths": b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde",
    "chunked not last": b"POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("raw", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_request_smuggling_framings_are_refused(raw: bytes) -> None:
    """Ambiguous framing (how a request smuggles another past a proxy) gets 400 and
    the connection closes: no app runs, nothing after it is read as a request."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await echo(scope, receive, send)

    async with listening(app) as lst:
        reader, writer = await lst.connect()
        writer.write(raw)
        status, _headers, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in body
        assert await closed(reader)
        assert seen == []


async def test_an_upgrade_request_is_answered_as_plain_http_then_closed() -> None:
    async with listening(echo) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
                     b"\x81\x85garbage")
        _status, headers, body = await read_response(reader)
        assert body == b"GET /ws? "
        assert headers[b"connection"] == b"close"
        assert await closed(reader)


async def test_idle_connection_closes_after_the_keep_alive_timeout() -> None:
    async with listening(echo, keepalive=1) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        await read_response(reader)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await closed(reader)
        assert 0.8 <= loop.time() - start < 5


async def test_a_busy_connection_outlives_both_timeouts() -> None:
    """A long call is the app's business: neither timer cuts it."""
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await echo(scope, receive, send)

    async with listening(app, keepalive=1, header_timeout=0.3) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET /long HTTP/1.1\r\nhost: h\r\n\r\n")
        with pytest.raises(TimeoutError):  # nothing, not even a close, for 1.5 s
            await asyncio.wait_for(reader.read(1), 1.5)
        release.set()
        assert (await read_response(reader))[2] == b"GET /long? "
        writer.close()


async def test_a_client_that_hangs_up_is_seen_by_receive() -> None:
    seen = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["more_body"] is False
        assert (await receive())["type"] == "http.disconnect"  # waits for the hang-up
        seen.set()

    async with listening(app) as lst:
        _reader, writer = await lst.connect()
        writer.write(b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nhi")
        await writer.drain()
        await asyncio.sleep(0.05)
        assert not seen.is_set()
        writer.close()
        await asyncio.wait_for(seen.wait(), 10)


async def test_an_early_answer_is_read_by_a_client_still_sending() -> None:
    """413 before the body was read: the client sees the answer, not a reset."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"7")]})
        await send({"type": "http.response.body", "body": b"too big"})

    async with listening(app) as lst, httpx.AsyncClient() as http:
        resp = await http.post(f"http://127.0.0.1:{lst.port}/", content=b"x" * 20_000_000)
        assert resp.status_code == 413 and resp.text == "too big"
        assert resp.headers["connection"] == "close"


async def test_a_client_that_does_not_read_stalls_the_app_not_memory() -> None:
    """A streamed answer to a client that stops reading: ``send`` waits for the
    socket to drain, so the write buffer stays near its high-water mark."""
    sent = 0
    peak = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent, peak
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        for _ in range(3000):  # 196 MB if nothing held it back
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
            for proto in lst.protocols:
                peak = max(peak, proto.transport.get_write_buffer_size())
        await send({"type": "http.response.body", "body": b""})

    async with listening(app) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.5)  # the client reads nothing meanwhile
        stalled = sent
        assert stalled < 20_000_000, stalled
        assert peak < 2_000_000, peak
        writer.close()


async def test_graceful_shutdown_lets_a_running_answer_finish() -> None:
    started = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started.set()
        await asyncio.sleep(0.2)
        await echo(scope, receive, send)

    async with listening(app) as lst:
        idle_reader, _idle_writer = await lst.connect()
        reader, writer = await lst.connect()
        writer.write(b"GET /last HTTP/1.1\r\nhost: h\r\n\r\n")
        await started.wait()
        lst.server.should_exit = True
        _status, headers, body = await read_response(reader)
        assert body == b"GET /last? " and headers[b"connection"] == b"close"
        assert await closed(idle_reader)


async def test_a_streamed_head_goes_out_before_its_first_chunk() -> None:
    """An SSE head is held only to share a write with the chunk that follows it; when
    none follows, the client still gets the head at once."""
    first = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await first.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n"})

    async with listening(app) as lst:
        reader, writer = await lst.connect()
        writer.write(b"GET /events HTTP/1.1\r\nhost: h\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"transfer-encoding: chunked" in head
        first.set()
        assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10) == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"
        writer.close()


async def test_requests_leave_no_reference_cycles() -> None:
    """A request's objects are freed when it ends, not left for the garbage collector
    (a cycle per request made every call measurably slower)."""
    async with listening(echo) as lst:
        reader, writer = await lst.connect()
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                writer.write(b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 1\r\n\r\n1")
                await read_response(reader)
            while lst.server.server_state.tasks:
                await asyncio.sleep(0)
            alive = [o for o in gc.get_objects() if isinstance(o, Cycle)]
            assert len(alive) <= 1, f"{len(alive)} request cycles still alive"  # the connection's last
        finally:
            gc.enable()
        writer.close()


def test_host_verdicts_are_remembered_but_bounded() -> None:
    """The Host check remembers verdicts for the values it sees again; a client
    sending endless distinct hosts cannot grow that memory, nor change a verdict."""
    from mcpmux.listener.guard import HostGuard

    guard = HostGuard(echo, "127.0.0.1", ["gw.example"], 65536)
    for _ in range(2):
        assert guard.allows("localhost:8080") and guard.allows("GW.example") and guard.allows("[::1]:80")
        assert not guard.allows("evil.example") and not guard.allows("evil.example:8080")
    for i in range(1000):
        assert not guard.allows(f"attacker-{i}.example")
    assert len(guard._seen) == 256
    assert not guard.allows("evil.example") and guard.allows("localhost")
    assert not guard.allows("attacker-999.example")  # past the bound: still checked


def test_accept_verdicts_are_remembered_but_bounded() -> None:
    from mcpmux.listener import http

    http._ACCEPTS.clear()
    for _ in range(2):
        assert http._accepts_both("application/json, text/event-stream")
        assert http._accepts_both("*/*")
        assert not http._accepts_both("application/json")
    for i in range(1000):
        assert not http._accepts_both(f"text/x-{i}")
    assert len(http._ACCEPTS) == 256
    assert not http._accepts_both("text/event-stream") and http._accepts_both("application/*, text/*")


async def test_an_unread_body_pauses_reading_at_the_high_water_mark() -> None:
    """A client sending faster than the app reads: the socket is not read past
    HIGH_WATER, and the body arrives whole once the app reads it."""
    from mcpmux.listener.h1 import HIGH_WATER

    go = asyncio.Event()
    got = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal got
        await go.wait()
        while True:
            event = await receive()
            got += len(event["body"])
            if not event["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    size = 8 * 1024 * 1024
    async with listening(app) as lst:
        reader, writer = await lst.connect()
        writer.write(b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size)
        [proto] = lst.protocols
        for _ in range(500):  # the client fills the buffer within a few ms
            if proto.read_paused:
                break
            await asyncio.sleep(0.01)
        assert proto.read_paused, f"still reading with {proto.current and proto.current.size} bytes unread"
        assert proto.current is not None
        buffered = proto.current.size
        await asyncio.sleep(0.2)  # the client keeps trying to send meanwhile
        assert proto.current.size == buffered <= HIGH_WATER + 256 * 1024  # + at most one read
        go.set()
        assert (await read_response(reader))[2] == b"ok"
        assert got == size
        writer.close()


async def test_headers_are_decoded_once_into_the_scope_as_the_fallback_would() -> None:
    """``mcpmux.headers`` (guard.HEADERS) is what ``headers_of`` would build from the
    ASGI list: lowercased names, stripped values, the last of a repeated name."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        await echo(scope, receive, send)

    async with listening(app) as srv:
        reader, writer = await srv.connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: Example.test\r\nX-Thing:   padded value  \r\n"
                     b"Accept: a\r\nACCEPT: b\r\n\r\n")
        status, _, _ = await read_response(reader)
        writer.close()
    assert status.startswith(b"HTTP/1.1 200")
    scope = seen[0]
    fields = scope.pop(HEADERS)
    assert fields == {"host": "Example.test", "x-thing": "padded value", "accept": "b"}
    assert headers_of(scope) == fields


async def test_a_head_over_the_limit_in_one_read_gets_431_and_no_app_runs() -> None:
    """The per-read count only sees a head still incomplete after a read (that path:
    test_hardening_listener.py, 100 MB of header); one that arrives whole is caught by
    the exact count when it is complete."""
    called: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        called.append(scope["path"])
        await echo(scope, receive, send)

    async with listening(app, max_header_bytes=1024) as srv:
        reader, writer = await srv.connect()
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n")
        status, _, body = await read_response(reader)
        writer.close()
    assert status.startswith(b"HTTP/1.1 431"), status
    assert b"max_header_bytes" in body
    assert not called
