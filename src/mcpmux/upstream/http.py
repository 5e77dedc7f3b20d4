"""A target that speaks streamable HTTP (MCP 2025-03-26 and later)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from .. import era, jsonlines
from ..jsonrpc import Message, obj
from ..observability import tracing
from ..observability.tracing import add_trace_headers
from ..redact import redact
from ..sse import EventTooLarge, Parser
from . import h1
from .base import CallSink, UpstreamError, UpstreamSession

if TYPE_CHECKING:
    pass

log = logging.getLogger("mcpmux.upstream.http")

ACCEPT: Final = "application/json, text/event-stream"
#: How many times a broken response stream is resumed with Last-Event-ID.
MAX_RESUMES: Final = 5
#: How long a new session waits for its GET stream to open before serving requests.
GET_OPEN_WAIT: Final = 2.0
#: Characters of an error body kept for the error message (and all that is read of it).
ERROR_BODY_CHARS: Final = 300

# -- bounded reads -----------------------------------------------------------------
# ``resp.read()`` reads whole: a target answering with a 1 GB body drove the gateway to
# 3.1 GB. Every upstream answer is read incrementally and refused past the session's
# ``max_response_bytes`` (``limits.max_response_bytes``, or the target's own).


def upstream_error(target: str, text: str, status: int | None = None) -> UpstreamError:
    """An UpstreamError whose text is masked: it reaches lastError, logs and clients,
    and an upstream's text may quote our own credentials (a 401 echoing headers)."""
    return UpstreamError(target, redact(text), status)


def too_large(target: str, limit: int, what: str = "answer") -> UpstreamError:
    return UpstreamError(
        target, f"{what} larger than {limit} bytes (limits.max_response_bytes); refused"
    )


async def read_limited(resp: aiohttp.ClientResponse, limit: int, target: str) -> bytes:
    """The body, read chunk by chunk; past ``limit`` the connection is closed and an
    UpstreamError names the target and the limit."""
    if resp.content_length is not None and resp.content_length > limit:
        resp.close()
        raise too_large(target, limit)
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        if len(buf) + len(chunk) > limit:
            resp.close()
            raise too_large(target, limit)
        buf += chunk
    return bytes(buf)


def redirect_error(target: str, url: str, resp: aiohttp.ClientResponse) -> UpstreamError:
    """Redirects are never followed: a configured ``X-Api-Key`` or bearer token sent to
    the Location's origin would leak it (a target's cross-origin 307 did exactly that).
    The operator points the target at the final URL instead."""
    resp.close()
    return _redirect_error(target, url, resp.status, resp.headers.get("Location", ""))


def _redirect_error(target: str, url: str, status: int, location: str) -> UpstreamError:
    parts = urlsplit(urljoin(url, location))
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "(no Location)"
    return upstream_error(
        target,
        f"answered HTTP {status}, a redirect to {origin}; redirects are not followed "
        "(configured headers must not reach another origin): set the target's url to the final address",
        status,
    )


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
        era_hint: str | None = None,
        tool_schema: Callable[[Any], Any] | None = None,
        stream_client: aiohttp.ClientSession | None = None,
        max_response_bytes: int | None = None,
        pool: h1.Pool | None = None,
    ) -> None:
        super().__init__(target, timeout)
        if max_response_bytes is not None:
            self.max_response_bytes = max_response_bytes
        self.streams = stream_client or client
        #: Requests (POST) go through this keep-alive pool; aiohttp serves streams.
        self.pool = pool or h1.Pool(url, connect_timeout=timeout)
        self._own_pool = pool is None
        self._head_key: tuple[str | None, str | None] | None = None
        self._head = b""
        #: For a modern catalog session: the resource URIs to follow on subscriptions/listen.
        self.resource_uris: Callable[[], Any] | None = None
        self._listener: asyncio.Task[Any] | None = None
        #: What the live listen stream asked for, and what the target's acknowledgement
        #: said it honors (None: not acknowledged yet).
        self._asked: list[str] | None = None
        self._honored: frozenset[str] = frozenset()
        self._relisten_lock = asyncio.Lock()
        #: "modern", "handshake", or None (probe with server/discover first)
        self.era_hint = era_hint
        self.tool_schema = tool_schema
        self.url = url
        self.headers = headers
        self.client = client
        self.session_id: str | None = None
        self.listen = listen
        self._reinit_lock = asyncio.Lock()
        self._generation = 0

    @property
    def max_response(self) -> int:
        """Bytes one answer (JSON body or SSE event) may have."""
        return self.max_response_bytes

    def _headers(self, msg: Message | None = None) -> dict[str, str]:
        h = {"Accept": ACCEPT, "Content-Type": "application/json", **self.headers}
        if self.modern and msg is not None:
            return self._modern_headers(h, msg)
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
        if self.init_result:
            h["MCP-Protocol-Version"] = self.protocol_version
        return h

    async def _request_headers(self, msg: Message | None = None) -> dict[str, str]:
        """``_headers`` plus the caller's own (``header_provider``), computed per request
        because exchanged tokens expire."""
        h = self._headers(msg)
        if tracing.TRACER is not None:  # observability hook: W3C traceparent while tracing is on
            add_trace_headers(h)
        if self.header_provider is not None:
            h.update(await self.header_provider())
        return h

    async def _connect(self) -> None:
        self.session_id = None
        self.init_result = {}

    def _modern_headers(self, h: dict[str, str], msg: Message) -> dict[str, str]:
        """2026: every POST mirrors its version, method and name (and annotated arguments)."""
        method = msg.get("method", "")
        params = obj(msg.get("params"))
        h["MCP-Protocol-Version"] = era.LATEST_MODERN
        h["Mcp-Method"] = method
        key = era.NAME_PARAM.get(method)
        if key is not None and isinstance(params.get(key), str):
            h["Mcp-Name"] = era.encode_header(params[key])
        if method == "tools/call" and self.tool_schema is not None:
            h.update(era.param_headers(self.tool_schema(params.get("name")), params.get("arguments")))
        return h

    async def _handshake(self) -> None:
        if self.era_hint != "handshake" and await self._discover():
            self._generation += 1
            if self.listen:
                self._listener = self._tasks.spawn(self._listen_modern(), "subscriptions-listen")
            return
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

    def attach(
        self, capabilities: dict[str, Any], client_info: dict[str, Any], session_id: str,
        protocol_version: str, server_capabilities: dict[str, Any],
    ) -> None:
        """Continue a session another replica opened, without initialize: the target knows
        ``session_id``. If it does not any more (404), the usual re-initialize applies."""
        self._init_params = {"protocolVersion": protocol_version, "capabilities": capabilities,
                             "clientInfo": client_info}
        self.session_id = session_id
        self.protocol_version = protocol_version
        self.init_result = {"protocolVersion": protocol_version, "capabilities": server_capabilities}
        self._generation += 1
        if self.listen:
            self._tasks.spawn(self._listen(self._generation, asyncio.Event()), "get-stream")

    async def _discover(self) -> bool:
        """Probe for the 2026 protocol: ``server/discover``; anything else means handshake."""
        caps = self._init_params["capabilities"]
        params = {"_meta": {era.K_VERSION: era.LATEST_MODERN, era.K_CAPABILITIES: caps,
                            era.K_CLIENT_INFO: self._init_params["clientInfo"]}}
        msg = {"jsonrpc": "2.0", "id": self.next_id(), "method": "server/discover", "params": params}
        self.modern = True  # so _post sends the 2026 headers
        try:
            resp = await self._post(msg, None)
        except UpstreamError as exc:
            if self.era_hint == "modern":
                raise
            log.debug("target '%s': no server/discover (%s); using initialize", self.target, exc.reason)
            self.modern = False
            return False
        res = obj(resp.get("result"))
        versions = res.get("supportedVersions")
        if not isinstance(versions, list) or era.LATEST_MODERN not in versions:
            self.modern = False
            return False
        #: It speaks the handshake era too: handshake clients then get their own sessions.
        self.dual = any(v in era.HANDSHAKE_VERSIONS for v in versions)
        meta = obj(res.get("_meta"))
        self.protocol_version = era.LATEST_MODERN
        self.init_result = {
            "protocolVersion": era.LATEST_MODERN,
            "capabilities": res.get("capabilities") or {},
            "serverInfo": meta.get(era.K_SERVER_INFO) or {},
        }
        if isinstance(res.get("instructions"), str):
            self.init_result["instructions"] = res["instructions"]
        return True

    def _with_envelope(self, msg: Message) -> Message:
        """The gateway's own requests (lists, pings) to a modern target need an envelope too."""
        params = obj(msg.get("params"))
        meta = obj(params.get("_meta"))
        if era.K_VERSION in meta and era.K_CAPABILITIES in meta:
            return msg
        meta = {era.K_VERSION: era.LATEST_MODERN, era.K_CAPABILITIES: self._init_params["capabilities"],
                era.K_CLIENT_INFO: self._init_params["clientInfo"], **meta}
        return {**msg, "params": {**params, "_meta": meta}}

    async def notify(self, msg: Message) -> None:
        if self.modern:
            return  # 2026 HTTP has no client notifications: closing a stream cancels
        await super().notify(msg)

    def _wanted_uris(self) -> list[str]:
        return sorted(self.resource_uris()) if self.resource_uris is not None else []

    async def relisten(self) -> frozenset[str]:
        """The resource URIs to follow changed: open a ``subscriptions/listen`` asking for
        them and, once the target acknowledges it, drop the old stream (they overlap, so
        no change is missed in between). Returns the URIs the target honors, so a
        subscription is acknowledged only once the target follows it: an update in
        between is never lost. Calls are serialized:
        each reads the subscribers when it runs, so the last one leaves the stream asking
        for the current set; a call that finds the stream already asking for it returns
        at once."""
        if not (self.modern and self.listen) or self.is_closed:
            return frozenset()
        async with self._relisten_lock:
            live = self._listener is not None and not self._listener.done()
            if live and self._asked == self._wanted_uris():
                return self._honored
            acked: asyncio.Future[tuple[list[str], frozenset[str]]] = (
                asyncio.get_running_loop().create_future()
            )
            try:
                task = self._tasks.spawn(self._listen_modern(acked), "subscriptions-listen")
            except RuntimeError:  # closing: its tasks are being cancelled
                return frozenset()
            try:
                await asyncio.wait((acked, task), timeout=self.timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # whoever asked is gone: so is its stream
                task.cancel()
                raise
            if not acked.done():
                # Refused, or no acknowledgement in time: keep the stream we have (it
                # re-reads the URIs when it reconnects); the new URIs are not followed.
                task.cancel()
                acked.cancel()
                log.info("target '%s': subscriptions/listen for %s not acknowledged",
                         self.target, self._wanted_uris())
                return self._honored if live else frozenset()
            old, self._listener = self._listener, task
            self._asked, self._honored = acked.result()
            if old is not None:
                old.cancel()
            return self._honored

    async def _listen_modern(
        self, acked: asyncio.Future[tuple[list[str], frozenset[str]]] | None = None
    ) -> None:
        """The catalog's change feed from a 2026 target: ``subscriptions/listen`` with every
        list kind, plus the resource URIs the gateway's clients subscribed to. ``acked``
        (from ``relisten``) gets the first acknowledgement: (URIs asked, URIs honored)."""
        backoff = 1.0
        while not self.is_closed:
            wanted: dict[str, Any] = {"toolsListChanged": True, "promptsListChanged": True,
                                      "resourcesListChanged": True}
            uris = self._wanted_uris()
            if uris:
                wanted["resourceSubscriptions"] = uris
            msg = self._with_envelope({
                "jsonrpc": "2.0", "id": self.next_id(), "method": "subscriptions/listen",
                "params": {"notifications": wanted},
            })
            try:
                resp = await self.streams.post(
                    self.url, data=orjson.dumps(msg), headers=self._headers(msg),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
                    allow_redirects=False,
                )
                try:
                    ctype = resp.headers.get("Content-Type", "")
                    sse = ctype.startswith("text/event-stream")
                    if resp.status != 200 or not (sse or ctype.startswith("application/json")):
                        log.info("target '%s': no subscriptions/listen stream (HTTP %d)", self.target, resp.status)
                        return
                    backoff = 1.0
                    parser = Parser(self.max_response) if sse else jsonlines.LineParser(self.max_response)
                    async for chunk in resp.content.iter_any():
                        for data in _payloads(parser, chunk):
                            try:
                                note = orjson.loads(data)
                            except orjson.JSONDecodeError:
                                continue
                            if not (isinstance(note, dict) and "method" in note and "id" not in note):
                                continue
                            if note["method"] == "notifications/subscriptions/acknowledged":
                                self._acknowledged(note, uris, acked)
                                continue
                            await self.dispatch(_untagged(note))
                finally:  # not `async with`: docs/architecture.md, "Compiled modules"
                    resp.release()
            except EventTooLarge as big:  # one name per type (docs/architecture.md)
                log.warning("target '%s': listen stream dropped: %s", self.target, big)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.debug("target '%s': listen stream broke: %r", self.target, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def _acknowledged(
        self, note: Message, asked: list[str],
        acked: asyncio.Future[tuple[list[str], frozenset[str]]] | None,
    ) -> None:
        honored = obj(obj(note.get("params")).get("notifications")).get("resourceSubscriptions")
        got = frozenset(u for u in honored if isinstance(u, str)) if isinstance(honored, list) else frozenset()
        if acked is not None and not acked.done():
            acked.set_result((asked, got))
        elif asyncio.current_task() is self._listener:  # the live stream reconnected
            self._asked, self._honored = asked, got

    async def _request(self, msg: Message, sink: CallSink | None) -> Message:
        if self.modern:
            return await self._post(self._with_envelope(msg), sink)
        try:
            return await self._post(msg, sink)
        except SessionExpired:
            if msg.get("method") == "initialize":
                raise upstream_error(self.target, "initialize answered 404") from None
            if await self._reinitialize() and self.on_reopened is not None:
                await self.on_reopened(self)
            try:
                return await self._post(msg, sink)
            except SessionExpired:
                raise upstream_error(self.target, "session expired again after re-initialize") from None

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
                raise upstream_error(self.target, f"session expired and re-initialize failed: {reason}") from None
            return True

    def _request_head(self, msg: Message) -> bytes:
        """The POST's request line and headers, pre-encoded: rebuilt only when the session
        id or protocol version changes (2026 requests mirror each message: built per call)."""
        if self.modern:
            return self.pool.request_head("POST", h1.encode_headers(self._headers(msg)))
        key = (self.session_id, self.protocol_version if self.init_result else None)
        if key != self._head_key:
            self._head = self.pool.request_head("POST", h1.encode_headers(self._headers(msg)))
            self._head_key = key
        return self._head

    async def _post(self, msg: Message, sink: CallSink | None) -> Message:
        body = orjson.dumps(msg)
        try:
            # Per-request headers (trace context, per-user credentials) win over the
            # configured ones; without any, the pre-encoded header block is reused.
            extra: dict[str, str] = {}
            if tracing.TRACER is not None:
                add_trace_headers(extra)
            if self.header_provider is not None:
                extra.update(await self.header_provider())
            if extra:
                head = self.pool.request_head("POST", h1.encode_headers({**self._headers(msg), **extra}))
            else:
                head = self._request_head(msg)
        except ValueError as bad:
            raise upstream_error(self.target, str(bad)) from None
        try:
            resp = await self.pool.request(head, body)
        except (h1.H1Error, OSError) as exc:
            raise upstream_error(self.target, f"HTTP error: {_short(exc)}") from exc
        try:
            return await self._answer(resp, msg, sink)
        except h1.TooLarge as big:
            raise too_large(self.target, big.limit) from None
        except (h1.H1Error, OSError) as exc:
            raise upstream_error(self.target, f"HTTP error: {_short(exc)}") from exc
        finally:
            resp.release()

    async def _answer(self, resp: h1.Response, msg: Message, sink: CallSink | None) -> Message:
        status = resp.status
        if status != 200:
            if 300 <= status < 400:
                raise _redirect_error(self.target, self.url, status, resp.headers.get("location", ""))
            if status in (400, 404) and self.session_id and msg.get("method") != "initialize":
                text = await _h1_error(resp)
                if _session_unknown(status, text):
                    raise SessionExpired
                raise upstream_error(self.target, text, status)
        if "id" not in msg or "method" not in msg:
            if status >= 400:
                raise upstream_error(self.target, await _h1_error(resp), status)
            return {}
        if status >= 400:
            if self.modern and resp.content_type.startswith("application/json"):
                # 2026 answers protocol errors with 4xx and a JSON-RPC error: pass it on.
                with contextlib.suppress(ValueError):
                    data = orjson.loads(await resp.read(self.max_response))
                    if isinstance(data, dict) and "error" in data and data.get("id") == msg["id"]:
                        return data
            raise upstream_error(self.target, await _h1_error(resp), status)
        if msg["method"] == "initialize":
            sid = resp.headers.get("mcp-session-id")
            if sid:
                self.session_id = sid
        ctype = resp.content_type
        if ctype.startswith("text/event-stream"):
            return await self._read_stream(resp, msg["id"], sink)
        if ctype.startswith("application/json"):
            raw = await resp.read(self.max_response)
            try:
                found = jsonlines.messages(raw)
            except orjson.JSONDecodeError:
                raise upstream_error(self.target, "answered with invalid JSON") from None
            # One message, or (newline-delimited) notifications before the response.
            for data in found:
                if isinstance(data, dict) and data.get("id") == msg["id"] and "method" not in data:
                    if sink is not None:
                        sink.response_bytes = len(raw)
                    return data
                if isinstance(data, dict):
                    await self.dispatch(data, sink)
            raise upstream_error(self.target, "answered with a message that is not our response")
        raise upstream_error(
            self.target, f"answered with unexpected content type {ctype or '(none)'}"
        )

    async def _read_stream(self, resp: h1.Response, rid: Any, sink: CallSink | None) -> Message:
        parser = Parser(self.max_response)
        found = await self._consume(resp.iter_chunks(self.max_response), resp.close, parser, rid, sink)
        if found is not None:
            return found
        resumes = 0
        while True:
            # The stream ended before our response: resume it (2025-11-25 polling).
            if parser.last_event_id is None or resumes >= MAX_RESUMES:
                raise upstream_error(self.target, "response stream ended without a response")
            resumes += 1
            paused = getattr(sink, "paused", None)
            returned = await paused(parser.retry) if paused is not None else None
            # Resume when the target's retry delay is over, or as soon as our client comes
            # back (as it would come back to the target directly): it is waiting then.
            delay = (parser.retry or 0) / 1000
            if returned is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(returned.wait(), delay)
            headers = await self._request_headers()
            headers["Accept"] = "text/event-stream"
            headers["Last-Event-ID"] = parser.last_event_id
            try:
                again = await self.streams.get(self.url, headers=headers, allow_redirects=False)
            except aiohttp.ClientError as exc:
                raise upstream_error(self.target, f"HTTP error: {_short(exc)}") from exc
            if again.status != 200:
                again.release()
                raise upstream_error(self.target, f"resuming the response stream got HTTP {again.status}")
            try:
                found = await self._consume(again.content.iter_any(), again.close, parser, rid, sink)
            except aiohttp.ClientError as exc:
                raise upstream_error(self.target, f"HTTP error: {_short(exc)}") from exc
            finally:
                again.release()
            if found is not None:
                return found

    async def _consume(
        self, chunks: AsyncIterator[bytes], close: Callable[[], None], parser: Parser, rid: Any,
        sink: CallSink | None,
    ) -> Message | None:
        async for chunk in chunks:
            try:
                events = parser.feed(chunk)
            except EventTooLarge as exc:
                close()
                raise too_large(self.target, exc.limit, "SSE event") from None
            for ev in events:
                if not ev.data or ev.event != "message":
                    continue
                try:
                    msg = orjson.loads(ev.data)
                except orjson.JSONDecodeError:
                    log.warning("target '%s' sent invalid JSON in an SSE event", self.target)
                    continue
                if isinstance(msg, dict) and msg.get("id") == rid and "method" not in msg:
                    if sink is not None:
                        sink.response_bytes = len(ev.data)
                    return msg
                await self.dispatch(msg, sink)
        return None

    async def _listen(self, generation: int, opened: asyncio.Event) -> None:
        """The GET stream: server-initiated messages (list_changed, logs, roots/list...).

        ``opened`` is set once the first attempt has an answer (open, refused or failed).
        """
        backoff = 1.0
        parser = Parser(self.max_response)
        while not self.is_closed and generation == self._generation:
            try:
                headers = await self._request_headers()
                headers["Accept"] = "text/event-stream"
                del headers["Content-Type"]
                if parser.last_event_id:
                    headers["Last-Event-ID"] = parser.last_event_id
                resp = await self.streams.get(
                    self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=None),
                    allow_redirects=False,
                )
                try:
                    opened.set()
                    if resp.status == 405:
                        return  # the target offers no GET stream: fine
                    if resp.status == 404:
                        return  # session gone; the next request re-initializes
                    if resp.status == 409:
                        # Another connection holds the session's one stream (a replica
                        # continuing the same session): try again after the backoff.
                        raise aiohttp.ClientError("GET stream held elsewhere (HTTP 409)")
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
                finally:  # not `async with`: docs/architecture.md, "Compiled modules"
                    resp.release()
            except EventTooLarge as big:  # one name per type (docs/architecture.md)
                # The stream is dropped and reopened (after the backoff) with a new parser.
                log.warning("target '%s': GET stream dropped: %s", self.target, big)
                parser = Parser(self.max_response)
            except (aiohttp.ClientError, OSError, TimeoutError, UpstreamError) as exc:
                log.debug("target '%s': GET stream broke: %r", self.target, exc)
            opened.set()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _send(self, msg: Message) -> None:
        try:
            await self._post(msg, None)
        except SessionExpired:
            raise upstream_error(self.target, "session expired") from None

    async def _disconnect(self) -> None:
        if self._own_pool:
            await self.pool.aclose()
        if not self.session_id:
            return
        try:
            headers = await self._request_headers()
        except UpstreamError:  # no credentials any more: the DELETE is best effort anyway
            headers = self._headers()
        try:
            resp = await self.client.delete(
                self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=2), allow_redirects=False
            )
            resp.release()
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        self.session_id = None


async def _http_error(resp: aiohttp.ClientResponse) -> str:
    """``HTTP 500: <first 300 characters of the body>``, masked. Only that much is read
    (a 300 MB error body cost 651 MB to keep 300 characters); the rest is dropped with
    the connection."""
    return f"HTTP {resp.status}" + (f": {b}" if (b := await error_body(resp)) else "")


async def _h1_error(resp: h1.Response) -> str:
    """The same for an answer of the request client: only ERROR_BODY_CHARS are read."""
    try:
        raw = await resp.read_some(ERROR_BODY_CHARS * 4)
    except Exception:
        raw = b""
    b = redact(raw.decode("utf-8", "replace")[:ERROR_BODY_CHARS].strip())
    return f"HTTP {resp.status}" + (f": {b}" if b else "")


async def error_body(resp: aiohttp.ClientResponse, chars: int = ERROR_BODY_CHARS) -> str:
    want = chars * 4  # UTF-8: at most 4 bytes a character
    raw = bytearray()
    try:
        while len(raw) < want:
            chunk = await resp.content.read(want - len(raw))
            if not chunk:
                break
            raw += chunk
    except Exception:
        pass
    if not resp.content.is_eof():
        resp.close()
    return redact(raw.decode("utf-8", "replace")[:chars].strip())


def _payloads(parser: Parser | jsonlines.LineParser, chunk: bytes) -> list[bytes | str]:
    """The messages in a chunk of a stream: SSE events' data, or JSON lines."""
    if isinstance(parser, Parser):
        return [ev.data for ev in parser.feed(chunk) if ev.data]
    return list(parser.feed(chunk))


def _untagged(note: Message) -> Message:
    """A notification from our listen stream without the stream's subscription id: that
    id is the gateway's own request id upstream, meaningless to the clients it reaches
    (a 2026 listener's stream gets its own tag; a handshake session none)."""
    params = note.get("params")
    if not isinstance(params, dict):
        return note
    meta = params.get("_meta")
    if not isinstance(meta, dict) or era.K_SUBSCRIPTION not in meta:
        return note
    rest = {k: v for k, v in meta.items() if k != era.K_SUBSCRIPTION}
    params = {k: v for k, v in params.items() if k != "_meta"} | ({"_meta": rest} if rest else {})
    return {**note, "params": params}


def _short(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
