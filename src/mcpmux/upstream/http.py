"""A target that speaks streamable HTTP (MCP 2025-03-26 and later)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import orjson

from ..jsonrpc import Message
from ..sse import Parser
from .base import CallSink, UpstreamError, UpstreamSession

log = logging.getLogger("mcpmux.upstream.http")

ACCEPT = "application/json, text/event-stream"
#: How many times a broken response stream is resumed with Last-Event-ID.
MAX_RESUMES = 5
#: How long a new session waits for its GET stream to open before serving requests.
GET_OPEN_WAIT = 2.0


class SessionExpired(Exception):
    """The target no longer knows our session id: it restarted or dropped us.

    The spec's answer is 404; servers built on a session map in front of the SDK
    transport (server-everything among them) answer 400 "No valid session ID".
    """


def _session_unknown(status: int, body: str) -> bool:
    """Does this error answer to a request carrying our session id mean "no such session"?"""
    return status == 404 or (status == 400 and "session" in body.lower())


class HttpSession(UpstreamSession):
    kind = "http"

    def __init__(
        self,
        target: str,
        url: str,
        headers: dict[str, str],
        client: aiohttp.ClientSession,
        timeout: float,
        listen: bool = True,
    ) -> None:
        super().__init__(target, timeout)
        self.url = url
        self.headers = headers
        self.client = client
        self.session_id: str | None = None
        self.listen = listen
        self._reinit_lock = asyncio.Lock()
        self._generation = 0

    def _headers(self) -> dict[str, str]:
        h = {"Accept": ACCEPT, "Content-Type": "application/json", **self.headers}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
        if self.init_result:
            h["MCP-Protocol-Version"] = self.protocol_version
        return h

    async def _connect(self) -> None:
        self.session_id = None
        self.init_result = {}

    async def _handshake(self) -> None:
        await super()._handshake()
        self._generation += 1
        if self.listen:
            # Servers drop what they send while no GET stream is open (the TypeScript SDK
            # does), and a request often causes exactly that (a log line on subscribe, a
            # list_changed): so the first request waits until the stream is open or refused.
            opened = asyncio.Event()
            self._tasks.spawn(self._listen(self._generation, opened), "get-stream")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(opened.wait(), min(self.timeout, GET_OPEN_WAIT))

    async def _request(self, msg: Message, sink: CallSink | None) -> Message:
        try:
            return await self._post(msg, sink)
        except SessionExpired:
            if msg.get("method") == "initialize":
                raise UpstreamError(self.target, "initialize answered 404") from None
            if await self._reinitialize() and self.on_reopened is not None:
                await self.on_reopened(self)
            try:
                return await self._post(msg, sink)
            except SessionExpired:
                raise UpstreamError(self.target, "session expired again after re-initialize") from None

    async def _reinitialize(self) -> bool:
        """The target restarted: open a fresh session once, however many calls noticed.

        True for the one caller that did it (and so restores the session's state).
        """
        generation = self._generation
        async with self._reinit_lock:
            if generation != self._generation:
                return False
            log.warning("target '%s': session expired; re-initializing", self.target)
            await self._tasks.aclose()
            self._tasks = type(self._tasks)(f"upstream:{self.target}")
            self.session_id = None
            self.init_result = {}
            try:
                await asyncio.wait_for(self._handshake(), self.timeout)
            except (UpstreamError, TimeoutError) as exc:
                # Without a session this object is useless: mark it lost so its owner
                # opens a fresh one next time instead of reusing a broken one.
                reason = exc.reason if isinstance(exc, UpstreamError) else "re-initialize timed out"
                self.lost(f"re-initialize failed: {reason}")
                raise UpstreamError(self.target, f"session expired and re-initialize failed: {reason}") from None
            return True

    async def _post(self, msg: Message, sink: CallSink | None) -> Message:
        body = orjson.dumps(msg)
        try:
            async with self.client.post(self.url, data=body, headers=self._headers()) as resp:
                if resp.status in (400, 404) and self.session_id and msg.get("method") != "initialize":
                    text = await _http_error(resp)
                    if _session_unknown(resp.status, text):
                        raise SessionExpired
                    raise UpstreamError(self.target, text)
                if "id" not in msg or "method" not in msg:
                    if resp.status >= 400:
                        raise UpstreamError(self.target, await _http_error(resp))
                    return {}
                if resp.status >= 400:
                    text = await _http_error(resp)
                    raise UpstreamError(self.target, text)
                if msg["method"] == "initialize":
                    sid = resp.headers.get("Mcp-Session-Id")
                    if sid:
                        self.session_id = sid
                ctype = resp.headers.get("Content-Type", "")
                if ctype.startswith("text/event-stream"):
                    return await self._read_stream(resp, msg["id"], sink)
                if ctype.startswith("application/json"):
                    raw = await resp.read()
                    try:
                        data = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        raise UpstreamError(self.target, "answered with invalid JSON") from None
                    if isinstance(data, dict) and data.get("id") == msg["id"]:
                        return data
                    raise UpstreamError(self.target, "answered with a message that is not our response")
                raise UpstreamError(
                    self.target, f"answered with unexpected content type {ctype or '(none)'}"
                )
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(self.target, f"HTTP error: {_short(exc)}") from exc

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, rid: Any, sink: CallSink | None
    ) -> Message:
        parser = Parser()
        resumes = 0
        while True:
            found = await self._consume(resp, parser, rid, sink)
            if found is not None:
                return found
            # The stream ended before our response: resume it (2025-11-25 polling).
            if parser.last_event_id is None or resumes >= MAX_RESUMES:
                raise UpstreamError(self.target, "response stream ended without a response")
            resumes += 1
            paused = getattr(sink, "paused", None)
            if paused is not None:
                await paused(parser.retry)
            await asyncio.sleep((parser.retry or 0) / 1000)
            headers = self._headers()
            headers["Accept"] = "text/event-stream"
            headers["Last-Event-ID"] = parser.last_event_id
            resp = await self.client.get(self.url, headers=headers)
            if resp.status != 200:
                resp.release()
                raise UpstreamError(self.target, f"resuming the response stream got HTTP {resp.status}")

    async def _consume(
        self, resp: aiohttp.ClientResponse, parser: Parser, rid: Any, sink: CallSink | None
    ) -> Message | None:
        try:
            async for chunk in resp.content.iter_any():
                for ev in parser.feed(chunk):
                    if not ev.data or ev.event != "message":
                        continue
                    try:
                        msg = orjson.loads(ev.data)
                    except orjson.JSONDecodeError:
                        log.warning("target '%s' sent invalid JSON in an SSE event", self.target)
                        continue
                    if isinstance(msg, dict) and msg.get("id") == rid and "method" not in msg:
                        return msg
                    await self.dispatch(msg, sink)
        finally:
            resp.release()
        return None

    async def _listen(self, generation: int, opened: asyncio.Event) -> None:
        """The GET stream: server-initiated messages (list_changed, logs, roots/list...).

        ``opened`` is set once the first attempt has an answer (open, refused or failed).
        """
        backoff = 1.0
        parser = Parser()
        while not self.closed.is_set() and generation == self._generation:
            headers = self._headers()
            headers["Accept"] = "text/event-stream"
            del headers["Content-Type"]
            if parser.last_event_id:
                headers["Last-Event-ID"] = parser.last_event_id
            try:
                async with self.client.get(
                    self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
                ) as resp:
                    opened.set()
                    if resp.status == 405:
                        return  # the target offers no GET stream: fine
                    if resp.status == 404:
                        return  # session gone; the next request re-initializes
                    if resp.status != 200:
                        log.info("target '%s': GET stream refused (HTTP %d)", self.target, resp.status)
                        return
                    backoff = 1.0
                    async for chunk in resp.content.iter_any():
                        for ev in parser.feed(chunk):
                            if ev.data and ev.event == "message":
                                try:
                                    msg = orjson.loads(ev.data)
                                except orjson.JSONDecodeError:
                                    continue
                                await self.dispatch(msg)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.debug("target '%s': GET stream broke: %r", self.target, exc)
            opened.set()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _send(self, msg: Message) -> None:
        try:
            await self._post(msg, None)
        except SessionExpired:
            raise UpstreamError(self.target, "session expired") from None

    async def _disconnect(self) -> None:
        if not self.session_id:
            return
        headers = self._headers()
        try:
            async with self.client.delete(
                self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=2)
            ):
                pass
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        self.session_id = None


async def _http_error(resp: aiohttp.ClientResponse) -> str:
    try:
        body = (await resp.read())[:300].decode("utf-8", "replace").strip()
    except Exception:
        body = ""
    return f"HTTP {resp.status}" + (f": {body}" if body else "")


def _short(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
