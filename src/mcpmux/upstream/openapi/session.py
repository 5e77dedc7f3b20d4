"""A target that is a REST API: the gateway answers MCP for it, in process.

``_connect`` loads the OpenAPI document (a file, or an http(s) URL fetched with the
target's pooled client) and converts it in a worker thread; a document that cannot
be read or converted raises :class:`UpstreamError`, so the target is ``failed``
with a readable ``lastError`` while the others keep serving. After that the session
answers ``initialize``, ``ping``, ``tools/list`` and ``tools/call`` itself; a call is
one HTTP request to the API.

Client sessions reuse the document their target's catalog session loaded, so a
client sees exactly the tools the gateway listed and a URL is fetched once per
(re)connect, not once per client. REST failures (an error status, a timeout, a
refused connection) are tool results with ``isError``: the API being down does not
make the target's MCP side unhealthy.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from ... import __version__
from ...config import OpenApiSpec
from ...jsonrpc import Message
from ...redact import redact
from ..base import SUPPORTED_VERSIONS, CallSink, UpstreamError, UpstreamSession
from ..http import error_body
from .convert import Conversion, Operation, SpecError, convert, is_json_media, parse_document
from .request import ArgumentError, HttpRequest, build_request, pick_base_url

log = logging.getLogger("mcpmux.upstream.openapi")

#: Largest document accepted (bytes).
MAX_SPEC_BYTES = 64 * 1024 * 1024
#: Largest REST response relayed to the client (bytes).
#: Longest error body quoted in an ``isError`` result (characters).
MAX_ERROR_TEXT = 4000

_TEXT_TYPES = (
    "text/",
    "application/xml",
    "application/yaml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/x-yaml",
)


@dataclass(frozen=True)
class LoadedApi:
    """A converted document and where its calls go."""

    conversion: Conversion
    base_url: str | None  # None: the document names no usable server (calls fail clearly)
    source: str


def load_api(
    raw: bytes, spec: OpenApiSpec, source: str, spec_url: str | None, hint: str
) -> LoadedApi:
    """Parse and convert a document (CPU-bound: runs in a worker thread)."""
    doc = parse_document(raw, hint)
    conv = convert(doc, include=spec.include, exclude=spec.exclude, fixed_headers=spec.headers)
    base = spec.base_url or pick_base_url(conv.servers, spec_url)
    return LoadedApi(conv, base, source)


class OpenApiSession(UpstreamSession):
    kind = "openapi"

    def __init__(
        self,
        target: str,
        spec: OpenApiSpec,
        client: aiohttp.ClientSession,
        timeout: float,
        catalog: UpstreamSession | None = None,
    ) -> None:
        super().__init__(target, timeout)
        self.spec = spec
        self._pool = client
        self._http: aiohttp.ClientSession | None = None
        self.api: LoadedApi | None = catalog.api if isinstance(catalog, OpenApiSession) else None

    # -- loading -----------------------------------------------------------
    async def _connect(self) -> None:
        if self.api is not None:
            return
        source = self.spec.spec
        try:
            if "://" in source:
                raw, hint = await self._fetch(source)
                spec_url: str | None = source
            else:
                raw = await asyncio.to_thread(_read_file, source)
                hint, spec_url = source, None
            self.api = await asyncio.to_thread(load_api, raw, self.spec, source, spec_url, hint)
        except SpecError as exc:
            raise UpstreamError(self.target, f"OpenAPI document {source}: {exc}") from None
        for warning in self.api.conversion.warnings:
            log.warning("target '%s': %s", self.target, warning)
        conv = self.api.conversion
        log.info(
            "target '%s': %s %s (OpenAPI %s): %d tools from %d operations; calls go to %s",
            self.target,
            conv.title,
            conv.api_version,
            conv.version,
            len(conv.tools),
            conv.total_operations,
            self.api.base_url or "(no server: set openapi.base_url)",
        )

    async def _fetch(self, url: str) -> tuple[bytes, str]:
        # Leave room inside the target's timeout so the error says what timed out.
        margin = min(1.0, max(0.5, self.timeout * 0.1))
        budget = max(self.timeout - margin, self.timeout * 0.5)
        try:
            async with self._pool.get(
                url,
                headers={"Accept": "application/json, application/yaml;q=0.9, */*;q=0.5"},
                timeout=aiohttp.ClientTimeout(total=budget),
            ) as resp:
                if resp.status >= 400:
                    raise SpecError(
                        f"cannot fetch: HTTP {resp.status} {resp.reason or ''}".rstrip()
                    )
                raw = await _read_limited(resp, MAX_SPEC_BYTES)
                if raw is None:
                    raise SpecError(f"larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB")
                return raw, f"{resp.headers.get('Content-Type', '')} {url}"
        except TimeoutError:
            raise SpecError(f"cannot fetch: no answer within {budget:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise SpecError(f"cannot fetch: {_connect_reason(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SpecError(f"cannot fetch: {_short(exc)}") from None

    def _client(self) -> aiohttp.ClientSession:
        """The target's connection pool, without its cookie jar: cookies an API sets
        for one client must never be sent on another client's calls."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=self._pool.connector,
                connector_owner=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": f"mcpmux/{__version__}"},
            )
        return self._http

    async def _disconnect(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- MCP, answered here ------------------------------------------------------
    async def _request(self, msg: Message, sink: CallSink | None) -> Message:
        rid = msg.get("id")
        method = msg.get("method")
        found = msg.get("params")
        params: dict[str, Any] = found if isinstance(found, dict) else {}
        if self.api is None:
            raise UpstreamError(self.target, "the OpenAPI document is not loaded")
        if method == "initialize":
            result: dict[str, Any] = self._initialize(params)
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            result = {"tools": self.api.conversion.tools}
        elif method == "tools/call":
            name = params.get("name")
            op = self.api.conversion.operations.get(name) if isinstance(name, str) else None
            if op is None:
                return _error(rid, -32602, f"Unknown tool: {name}")
            arguments = params.get("arguments")
            if arguments is not None and not isinstance(arguments, dict):
                return _error(rid, -32602, "arguments must be an object")
            result = await self.call(op, arguments or {})
        else:
            return _error(rid, -32601, f"Method not found: {method}")
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _send(self, msg: Message) -> None:
        """Notifications (initialized, cancelled) need no answer; cancelling a call
        cancels the task that awaits its HTTP request."""

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.api is not None
        asked = params.get("protocolVersion")
        conv = self.api.conversion
        return {
            "protocolVersion": asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": conv.title, "version": conv.api_version},
        }

    async def call(self, op: Operation, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call one operation; every failure is an ``isError`` result naming it."""
        assert self.api is not None
        base = (
            self.spec.base_url
            or (pick_base_url(op.servers, self._spec_url()) if op.servers else None)
            or self.api.base_url
        )
        if base is None:
            return _failure(
                op,
                "the document names no absolute server URL; set 'base_url' in the target's openapi config",
            )
        headers = self.spec.headers
        if self.header_provider is not None:
            try:
                headers = {**headers, **await self.header_provider()}
            except UpstreamError as exc:
                return _failure(op, exc.reason)
        try:
            req = build_request(op, arguments, base, headers)
        except ArgumentError as exc:
            return _failure(op, f"invalid arguments: {exc}")
        except (TypeError, ValueError) as exc:  # a value that cannot be serialized
            return _failure(op, f"invalid arguments: {_short(exc)}")
        try:
            return await self._send_http(op, req)
        except TimeoutError:
            return _failure(
                op, f"no response within {self.spec.timeout:g} s ({req.method} {req.url})"
            )
        except aiohttp.ClientConnectorError as exc:
            return _failure(
                op, f"cannot connect to the API: {_connect_reason(exc)} ({req.method} {req.url})"
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return _failure(op, f"HTTP request failed: {_short(exc)} ({req.method} {req.url})")

    def _spec_url(self) -> str | None:
        return self.spec.spec if "://" in self.spec.spec else None

    async def _send_http(self, op: Operation, req: HttpRequest) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.spec.timeout)
        async with self._client().request(
            req.method,
            URL(req.url, encoded=True),
            headers=req.headers,
            data=req.body,
            timeout=timeout,
            # Never followed: the configured API key would go to the Location's origin.
            allow_redirects=False,
        ) as resp:
            if 300 <= resp.status < 400:
                where = URL(req.url).join(URL(resp.headers.get("Location", "")))
                return _failure(
                    op, f"HTTP {resp.status}: a redirect to {where.origin() if where.host else '(no Location)'} "
                    "is not followed (configured headers must not reach another origin)",
                )
            if resp.status >= 400:  # only as much of an error body as is kept
                raw = (await error_body(resp, MAX_ERROR_TEXT + 1)).encode()
            else:
                limit = self.max_response_bytes
                body = await _read_limited(resp, limit)
                if body is None:
                    resp.close()
                    return _failure(
                        op, f"HTTP {resp.status}: response larger than {limit} bytes (limits.max_response_bytes)"
                    )
                raw = body
            return _result(
                op, resp.status, resp.reason or "", resp.headers.get("Content-Type", ""), raw, req
            )


# ------------------------------------------------------------------------ results


def _result(
    op: Operation, status: int, reason: str, ctype: str, raw: bytes, req: HttpRequest
) -> dict[str, Any]:
    media = ctype.split(";", 1)[0].strip().lower()
    charset = _charset(ctype)
    data: Any = None
    is_json = False
    if raw and (is_json_media(media) or (not media and raw[:1] in (b"{", b"["))):
        try:
            data = orjson.loads(raw)
            is_json = True
        except orjson.JSONDecodeError:
            pass
    ok = 200 <= status < 300
    if not ok:
        text = raw.decode(charset, "replace") if raw else ""
        if len(text) > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + "…"
        head = f"{op.label}: HTTP {status}{' ' + reason if reason else ''}"
        return {
            "content": [{"type": "text", "text": redact(f"{head}\n{text}" if text else head)}],
            "isError": True,
        }
    out: dict[str, Any] = {"content": [_content(media, charset, raw, status, reason, req)]}
    if is_json and isinstance(data, dict):
        out["structuredContent"] = data
    elif op.structured:
        # The tool declares an outputSchema, so a success must carry structured content.
        what = (
            "JSON that is not an object" if is_json else (media or "a body without a content type")
        )
        if not raw:
            what = "an empty body"
        return _failure(
            op, f"HTTP {status} answered {what}, but the document promises a JSON object"
        )
    return out


def _content(
    media: str, charset: str, raw: bytes, status: int, reason: str, req: HttpRequest
) -> dict[str, Any]:
    if not raw:
        return {
            "type": "text",
            "text": f"HTTP {status}{' ' + reason if reason else ''} (no content)",
        }
    if media.startswith("image/"):
        return {"type": "image", "data": base64.b64encode(raw).decode(), "mimeType": media}
    if media.startswith("audio/"):
        return {"type": "audio", "data": base64.b64encode(raw).decode(), "mimeType": media}
    if (
        not media
        or is_json_media(media)
        or media.startswith(_TEXT_TYPES)
        or media.endswith(("+xml", "+yaml"))
    ):
        try:
            return {"type": "text", "text": raw.decode(charset)}
        except (UnicodeDecodeError, LookupError):
            if media:
                return {"type": "text", "text": raw.decode("utf-8", "replace")}
    return {
        "type": "resource",
        "resource": {
            "uri": req.url,
            "mimeType": media or "application/octet-stream",
            "blob": base64.b64encode(raw).decode(),
        },
    }


def _failure(op: Operation, reason: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": redact(f"{op.label}: {reason}")}], "isError": True}


def _error(rid: Any, code: int, message: str) -> Message:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _charset(ctype: str) -> str:
    for part in ctype.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


# ------------------------------------------------------------------------ I/O helpers


def _read_file(path: str) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB")
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise SpecError(f"file not found{where}") from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a file") from None
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror or exc}") from None


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if os_error is not None and os_error.errno:
        why = os.strerror(os_error.errno)  # "Connection refused", not asyncio's wording
    else:
        why = _short(os_error or exc)
    return f"{exc.host}:{exc.port}: {why}"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
