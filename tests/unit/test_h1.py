"""The upstream HTTP/1.1 client against small real servers on loopback: keep-alive
reuse, the pool's limit, chunked and gzip answers, size limits, broken servers and
header injection."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mcpmux.upstream import h1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A raw loopback server: each connection runs ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.peak = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self.handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            w.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/mcp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def read_request(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await r.readexactly(length)


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while True:
        _, body = await read_request(r)
        w.write(answer(body))
        await w.drain()


@pytest.fixture
async def pool_for() -> AsyncIterator[Callable[..., h1.Pool]]:
    pools: list[h1.Pool] = []

    def make(url: str, **kw: object) -> h1.Pool:
        pools.append(h1.Pool(url, **kw))  # type: ignore[arg-type]
        return pools[-1]

    yield make
    for p in pools:
        await p.aclose()


async def post(pool: h1.Pool, body: bytes, limit: int = 1 << 20) -> bytes:
    resp = await pool.request(pool.request_head("POST", h1.encode_headers({"Content-Type": "application/json"})),
                              body)
    try:
        return await resp.read(limit)
    finally:
        resp.release()


async def test_answers_come_back_over_one_kept_alive_connection(pool_for: Callable[..., h1.Pool]) -> None:
    async with Server(echo) as srv:
        pool = pool_for(srv.url)
        for i in range(5):
            assert await post(pool, b'{"n":%d}' % i) == b'{"n":%d}' % i
        assert srv.connections == 1


async def test_the_pool_never_opens_more_than_its_limit(pool_for: Callable[..., h1.Pool]) -> None:
    release = asyncio.Event()

    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(r)
            await release.wait()
            w.write(answer(body))
            await w.drain()

    async with Server(slow) as srv:
        pool = pool_for(srv.url, limit=2)
        calls = [asyncio.create_task(post(pool, b"%d" % i)) for i in range(6)]
        while srv.open < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # give a third connection the chance it must not get
        assert srv.open == 2
        release.set()
        assert sorted(await asyncio.gather(*calls)) == [b"%d" % i for i in range(6)]
        assert srv.peak == 2


async def test_slots_hand_over_in_order_and_survive_cancelled_waiters() -> None:
    slots = h1.Slots(1)
    assert slots.take() and not slots.take()
    a, b, c = (asyncio.ensure_future(slots.wait()) for _ in range(3))
    await asyncio.sleep(0)
    a.cancel()  # gave up while queued
    await asyncio.sleep(0)
    slots.release()  # skips a, hands the slot to b
    await asyncio.sleep(0)
    assert a.cancelled() and b.done() and not c.done()
    slots.release()  # to c ...
    c.cancel()  # ... which is cancelled before it runs: the slot must not be lost
    await asyncio.sleep(0)
    assert c.cancelled() and slots.free == 1 and not slots.waiters
    assert slots.take() and not slots.take()
    d = asyncio.ensure_future(slots.wait())
    await asyncio.sleep(0)
    d.cancel()
    slots.release()  # drops d's cancelled future before d's own clean-up runs
    await asyncio.sleep(0)
    assert d.cancelled() and slots.free == 1 and not slots.waiters


async def test_chunked_and_gzip_answers_are_decoded(pool_for: Callable[..., h1.Pool]) -> None:
    async def mixed(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"event: message\n", b"data: {}\n\n"):
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
        w.write(b"0\r\n\r\n")
        await read_request(r)
        w.write(answer(gzip.compress(b'{"zipped":true}'), b"Content-Encoding: gzip\r\n"))
        await w.drain()
        await r.read()

    async with Server(mixed) as srv:
        pool = pool_for(srv.url)
        resp = await pool.request(pool.request_head("POST", b""), b"{}")
        assert resp.content_type == "text/event-stream"
        assert b"".join([c async for c in resp.iter_chunks()]) == b"event: message\ndata: {}\n\n"
        resp.release()
        assert await post(pool, b"{}") == b'{"zipped":true}'
        assert srv.connections == 1  # the chunked answer was read to its end: reused


async def test_an_answer_past_the_limit_is_refused_and_its_connection_dropped(
        pool_for: Callable[..., h1.Pool]) -> None:
    async with Server(echo) as srv:
        pool = pool_for(srv.url)
        with pytest.raises(h1.TooLarge):
            await post(pool, b"x" * 5000, limit=4096)
        assert await post(pool, b"small") == b"small"
        assert srv.connections == 2


async def test_a_gzip_bomb_is_refused_by_its_decoded_size(pool_for: Callable[..., h1.Pool]) -> None:
    bomb = gzip.compress(b"0" * (50 << 20))  # 50 MiB that travel as ~50 kB

    async def send_bomb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer(bomb, b"Content-Encoding: gzip\r\n"))
        await w.drain()
        await r.read()

    async with Server(send_bomb) as srv:
        with pytest.raises(h1.TooLarge):
            await post(pool_for(srv.url), b"{}", limit=1 << 20)


async def test_a_server_that_hangs_up_mid_answer_is_an_error(pool_for: Callable[..., h1.Pool]) -> None:
    async def cut(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\"")
        await w.drain()

    async with Server(cut) as srv:
        with pytest.raises((h1.H1Error, ConnectionError)):
            await post(pool_for(srv.url), b"{}")


async def test_garbage_instead_of_http_is_an_error(pool_for: Callable[..., h1.Pool]) -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"\x00\xffnot http at all\r\n\r\n")
        await w.drain()
        await r.read()

    async with Server(garbage) as srv:
        with pytest.raises((h1.H1Error, ConnectionError)):
            await post(pool_for(srv.url), b"{}")


async def test_nobody_listening_is_a_clear_error(pool_for: Callable[..., h1.Pool]) -> None:
    async with Server(echo) as srv:
        url = srv.url
    with pytest.raises(h1.H1Error, match="cannot connect"):
        await post(pool_for(url), b"{}")


@pytest.mark.parametrize("name,value", [("X-Ok", "a\r\nInjected: 1"), ("Bad\nName", "v"), ("X", "nul\0")])
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        h1.encode_headers({name: value})
