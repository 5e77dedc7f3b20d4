"""A target that speaks the legacy HTTP+SSE transport (MCP 2024-11-05).

GET opens an event stream whose first ``endpoint`` event names the URL to POST
messages to; every answer then comes back on that one stream.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from ..jsonrpc import Message
from ..redact import redact
from ..sse import EventTooLarge, Parser
from .base import UpstreamSession
from .http import error_body, redirect_error, upstream_error

log = logging.getLogger("mcpmux.upstream.sse")


class SseSession(UpstreamSession):
    kind = "sse"

    def __init__(
        self,
        target: str,
        url: str,
        headers: dict[str, str],
        client: aiohttp.ClientSession,
        timeout: float,
        stream_client: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(target, timeout)
        self.url = url
        self.headers = headers
        self.client = client
        self.streams = stream_client
        self.endpoint: str | None = None
        self._resp: aiohttp.ClientResponse | None = None

    async def _connect(self) -> None:
        headers = {"Accept": "text/event-stream", **self.headers}
        if self.header_provider is not None:
            headers.update(await self.header_provider())
        try:
            resp = await (self.streams or self.client).get(
                self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout),
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise upstream_error(self.target, f"cannot open SSE stream: {exc or type(exc).__name__}") from exc
        if 300 <= resp.status < 400:
            raise redirect_error(self.target, self.url, resp)
        if resp.status != 200 or not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
            resp.release()
            raise upstream_error(
                self.target, f"GET {self.url} did not open an event stream (HTTP {resp.status})", resp.status
            )
        self._resp = resp
        endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tasks.spawn(self._read(resp, endpoint), "sse-stream")
        path = await endpoint
        url = urljoin(self.url, path)
        if urlsplit(url).netloc != urlsplit(self.url).netloc:
            raise upstream_error(self.target, f"endpoint event names another origin: {url}")
        self.endpoint = url

    async def _read(self, resp: aiohttp.ClientResponse, endpoint: asyncio.Future[str]) -> None:
        parser = Parser(self.max_response_bytes)
        try:
            async for chunk in resp.content.iter_any():
                for ev in parser.feed(chunk):
                    if ev.event == "endpoint":
                        if not endpoint.done():
                            endpoint.set_result(ev.data.strip())
                        continue
                    if ev.event != "message" or not ev.data:
                        continue
                    try:
                        msg = orjson.loads(ev.data)
                    except orjson.JSONDecodeError:
                        log.warning("target '%s' sent invalid JSON on its SSE stream", self.target)
                        continue
                    try:
                        await self.dispatch(msg, None, len(ev.data))
                    except Exception:
                        log.exception("target '%s': failed to route a message", self.target)
        except EventTooLarge as exc:
            # One endless line must not be buffered forever: the stream (the session) is
            # dropped, and the supervisor reconnects.
            reason = f"SSE event larger than {exc.limit} bytes (limits.max_response_bytes); stream dropped"
            resp.close()
        except (aiohttp.ClientError, OSError) as exc:
            reason = redact(f"SSE stream broke: {exc or type(exc).__name__}")
        else:
            reason = "SSE stream closed by the target"
        finally:
            resp.release()
        if not endpoint.done():
            endpoint.set_exception(upstream_error(self.target, reason))
        self.lost(reason)

    async def _send(self, msg: Message) -> None:
        if self.endpoint is None:
            raise upstream_error(self.target, "not connected")
        headers = {"Content-Type": "application/json", **self.headers}
        if self.header_provider is not None:
            headers.update(await self.header_provider())
        try:
            async with self.client.post(
                self.endpoint,
                data=orjson.dumps(msg),
                headers=headers,
                allow_redirects=False,
            ) as resp:
                if 300 <= resp.status < 400:
                    raise redirect_error(self.target, self.endpoint, resp)
                if resp.status >= 400:
                    body = await error_body(resp)
                    raise upstream_error(self.target, f"POST answered HTTP {resp.status}: {body}")
        except (aiohttp.ClientError, OSError) as exc:
            raise upstream_error(self.target, f"POST failed: {exc or type(exc).__name__}") from exc

    async def _disconnect(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
