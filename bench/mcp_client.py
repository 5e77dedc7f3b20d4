"""The benchmark's own MCP clients (aiohttp): session set-up, one-off calls, and the
two load shapes wrk cannot make (many sessions with open GET streams; stdio).

Only the harness uses these; the gateway's hot path is driven by wrk.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

ACCEPT = "application/json, text/event-stream"
JSON_VERSION = "2025-06-18"  # answers as plain JSON (the hot path)
SSE_VERSION = "2025-11-25"  # answers as SSE (priming event + message)


@dataclass
class McpSession:
    url: str
    sid: str
    version: str
    #: An ``Authorization`` header value, for a gateway with ``auth`` on.
    authorization: str | None = None

    def headers(self, accept: str = ACCEPT) -> dict[str, str]:
        h = {
            "Accept": accept,
            "Content-Type": "application/json",
            "Mcp-Session-Id": self.sid,
            "MCP-Protocol-Version": self.version,
        }
        if self.authorization:
            h["Authorization"] = self.authorization
        return h


class ClientError(Exception):
    pass


def parse_answer(ctype: str, raw: bytes) -> dict[str, Any]:
    """The JSON-RPC response in a JSON body or in the last SSE ``data:`` event."""
    if ctype.startswith("text/event-stream"):
        found: dict[str, Any] | None = None
        for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")
            )
            if data.strip():
                msg = orjson.loads(data)
                if isinstance(msg, dict) and ("result" in msg or "error" in msg):
                    found = msg
        if found is None:
            raise ClientError(f"no response in SSE body: {raw[:200]!r}")
        return found
    msg = orjson.loads(raw)
    if not isinstance(msg, dict):
        raise ClientError(f"not a JSON-RPC object: {raw[:200]!r}")
    return msg


async def open_session(
    http: aiohttp.ClientSession, url: str, version: str = JSON_VERSION, name: str = "mcpmux-bench",
    authorization: str | None = None,
) -> McpSession:
    """initialize + notifications/initialized; the session wrk (or a caller) then uses."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": name, "version": "1.0"},
        },
    }
    hdrs = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if authorization:
        hdrs["Authorization"] = authorization
    async with http.post(url, data=orjson.dumps(init), headers=hdrs) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise ClientError(f"initialize at {url}: HTTP {resp.status}: {raw[:300]!r}")
        sid = resp.headers.get("Mcp-Session-Id")
        answer = parse_answer(resp.headers.get("Content-Type", ""), raw)
    if not sid or "result" not in answer:
        raise ClientError(f"initialize at {url} gave no session: {answer}")
    session = McpSession(url, sid, answer["result"].get("protocolVersion", version), authorization)
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, data=orjson.dumps(note), headers=session.headers()) as resp:
        await resp.read()
        if resp.status not in (200, 202):
            raise ClientError(f"notifications/initialized at {url}: HTTP {resp.status}")
    return session


async def close_session(http: aiohttp.ClientSession, session: McpSession) -> None:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with http.delete(session.url, headers=session.headers()) as resp:
            await resp.read()


_ids = itertools.count(1)


async def request(
    http: aiohttp.ClientSession, session: McpSession, method: str, params: dict[str, Any] | None
) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
    if params is not None:
        msg["params"] = params
    async with http.post(session.url, data=orjson.dumps(msg), headers=session.headers()) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise ClientError(f"{method}: HTTP {resp.status}: {raw[:300]!r}")
        return parse_answer(resp.headers.get("Content-Type", ""), raw)


async def call_ok(
    http: aiohttp.ClientSession, session: McpSession, method: str, params: dict[str, Any] | None
) -> dict[str, Any]:
    """A request whose answer must be a JSON-RPC result (sanity check around wrk runs)."""
    answer = await request(http, session, method, params)
    if "result" not in answer:
        raise ClientError(f"{method} at {session.url}: {answer.get('error')}")
    result: dict[str, Any] = answer["result"]
    return result


# --------------------------------------------------------------- many sessions


@dataclass
class ManySessionsResult:
    sessions: int
    open_s: float
    streams_open: int
    calls: int
    errors: int
    stream_drops: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    #: latencies of every call but each session's first (which may open upstream state)
    later_ms: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.duration_s if self.duration_s else 0.0

    def pct(self, q: float, later: bool = False) -> float:
        data = sorted(self.later_ms if later else self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q / 100 * len(data)))]


async def many_sessions(
    url: str,
    *,
    sessions: int,
    duration: float,
    interval: float,
    body: dict[str, Any],
    on_loaded: Any = None,
    open_concurrency: int = 64,
) -> ManySessionsResult:
    """``sessions`` MCP sessions, each with an open GET stream, each calling every
    ~``interval`` s (uniform 0.5x-1.5x) for ``duration`` s. Bounded in time throughout.

    ``on_loaded`` (an async callable) runs once every session and stream is open, while
    calls are under way (the harness samples the gateway's RSS there).
    """
    connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    res = ManySessionsResult(sessions, 0.0, 0, 0, 0, 0, duration)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        sem = asyncio.Semaphore(open_concurrency)

        async def opener(i: int) -> McpSession | None:
            async with sem:
                try:
                    return await asyncio.wait_for(
                        open_session(http, url, JSON_VERSION, f"bench-{i}"), 30
                    )
                except (ClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    res.errors += 1
                    if len(res.first_errors) < 5:
                        res.first_errors.append(f"open: {exc!r}")
                    return None

        tasks: list[asyncio.Task[Any]] = []
        try:
            t0 = time.monotonic()
            opened = await asyncio.gather(*(opener(i) for i in range(sessions)))
            live = [s for s in opened if s is not None]
            streams_ready = 0
            all_streams = asyncio.Event()
            stop = asyncio.Event()

            async def stream(s: McpSession) -> None:
                nonlocal streams_ready
                hdrs = s.headers("text/event-stream")
                del hdrs["Content-Type"]
                try:
                    async with http.get(s.url, headers=hdrs) as resp:
                        if resp.status != 200:
                            raise ClientError(f"GET stream: HTTP {resp.status}")
                        streams_ready += 1
                        if streams_ready == len(live):
                            all_streams.set()
                        while not stop.is_set():
                            chunk = await resp.content.readany()
                            if not chunk:
                                raise ClientError("GET stream closed by the server")
                except (ClientError, aiohttp.ClientError, OSError) as exc:
                    if not stop.is_set():
                        res.stream_drops += 1
                        if len(res.first_errors) < 5:
                            res.first_errors.append(f"stream: {exc!r}")
                        if streams_ready < len(live):
                            streams_ready += 1  # count it so the start is not blocked
                            if streams_ready == len(live):
                                all_streams.set()

            stream_tasks = [asyncio.create_task(stream(s)) for s in live]
            tasks.extend(stream_tasks)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_streams.wait(), 60)
            res.open_s = time.monotonic() - t0
            res.streams_open = streams_ready - res.stream_drops

            async def caller(s: McpSession, end: float) -> None:
                await asyncio.sleep(random.uniform(0, interval))
                first = True
                while time.monotonic() < end:
                    t = time.perf_counter()
                    try:
                        answer = await asyncio.wait_for(request(http, s, "tools/call", body), 10)
                        if "result" not in answer or answer["result"].get("isError"):
                            raise ClientError(str(answer)[:200])
                        ms = (time.perf_counter() - t) * 1000
                        res.latencies_ms.append(ms)
                        if not first:
                            res.later_ms.append(ms)
                        res.calls += 1
                    except (ClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                        res.errors += 1
                        if len(res.first_errors) < 5:
                            res.first_errors.append(f"call: {exc!r}")
                    first = False
                    await asyncio.sleep(interval * random.uniform(0.5, 1.5))

            start = time.monotonic()
            end = start + duration
            callers = [asyncio.create_task(caller(s, end)) for s in live]
            tasks.extend(callers)
            if on_loaded is not None:
                await asyncio.sleep(min(duration / 2, 5))
                await on_loaded()
            await asyncio.wait(callers, timeout=duration + 15)
            res.duration_s = time.monotonic() - start
            for c in callers:
                c.cancel()
            stop.set()
            for t in stream_tasks:
                t.cancel()
            await asyncio.gather(*callers, *stream_tasks, return_exceptions=True)
            closer = asyncio.Semaphore(open_concurrency)

            async def close(s: McpSession) -> None:
                async with closer:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(close_session(http, s), 10)

            await asyncio.gather(*(close(s) for s in live))
        finally:  # also when the harness is interrupted: no task outlives the client
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return res


# -------------------------------------------------------------------- stdio


@dataclass
class StdioResult:
    calls: int
    errors: int
    duration_s: float
    latencies_ms: list[float]
    #: the client's own CPU per call (set by the harness)
    cpu_us: float = 0.0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.duration_s if self.duration_s else 0.0

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q / 100 * len(data)))] if data else float("nan")


class StdioClient:
    """A direct MCP client over a child's stdin/stdout (newline-delimited JSON-RPC)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, argv: list[str]) -> StdioClient:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=16 * 1024 * 1024,
            start_new_session=True,
        )
        client = cls(proc)
        await asyncio.wait_for(
            client.request(
                "initialize",
                {
                    "protocolVersion": JSON_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "mcpmux-bench", "version": "1.0"},
                },
            ),
            30,
        )
        client.notify("notifications/initialized")
        return client

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(msg, dict) and "id" in msg and "method" not in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ClientError("stdio server exited"))

    def notify(self, method: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"jsonrpc": "2.0", "method": method}) + b"\n")

    async def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.proc.stdin.write(orjson.dumps(msg) + b"\n")
        return await fut

    async def load(self, concurrency: int, duration: float, body: dict[str, Any]) -> StdioResult:
        lat: list[float] = []
        errors = 0
        end = time.monotonic() + duration

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < end:
                t = time.perf_counter()
                answer = await asyncio.wait_for(self.request("tools/call", body), 30)
                if "result" in answer:
                    lat.append((time.perf_counter() - t) * 1000)
                else:
                    errors += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return StdioResult(len(lat), errors, time.monotonic() - start, lat)

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
