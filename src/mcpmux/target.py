"""A target: one configured server, its supervised connection and its catalog.

The supervisor keeps one gateway-owned session open (reconnecting with
backoff), fetches the catalog through it, and re-lists when the target says
``list_changed``. How clients reach the target depends on its kind:

* ``http`` / ``sse``: each client session gets its own upstream session, opened
  on its first call with exactly the client's capabilities, closed with it. The
  HTTP connection pool is shared, so sessions are cheap; isolation is exact.
* ``stdio``: one process per target, shared by every client. The gateway keeps
  the per-client state itself (ids, progress tokens, log levels, subscriptions).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Literal

import aiohttp

from .config import HttpSpec, SseSpec, StdioSpec, TargetConfig, UrlSpec
from .jsonrpc import Message, obj
from .multiplexer.catalog import TargetCatalog
from .protocol import CAPABILITY, KINDS, LIST_CHANGED, Kind
from .redact import redact
from .tasks import TaskOwner
from .upstream import h1
from .upstream.base import DEFAULT_MAX_RESPONSE, UpstreamError, UpstreamSession
from .upstream.http import HttpSession
from .upstream.sse import SseSession
from .upstream.stdio import StdioSession
from .variants import Variants

log = logging.getLogger("mcpmux.target")

State = Literal["connecting", "ready", "failed", "stopped"]
#: Builds a target's upstream sessions in place of the real transports (in-process tests).
SessionFactory = Callable[["Target", bool, "str | None"], UpstreamSession]

#: Client capabilities a shared session declares: everything the gateway can relay.
SHARED_CAPABILITIES = {
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
    "roots": {"listChanged": True},
}
LIST_KEYS: dict[Kind, tuple[str, str]] = {
    "tools": ("tools/list", "tools"),
    "prompts": ("prompts/list", "prompts"),
    "resources": ("resources/list", "resources"),
    "resourceTemplates": ("resources/templates/list", "resourceTemplates"),
}
#: A buggy target that keeps returning cursors must not make us loop forever.
MAX_PAGES = 1000
HEALTH_INTERVAL = 15.0
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
#: How long a connection must last before a failure retries at BACKOFF_MIN again.
STABLE_AFTER = HEALTH_INTERVAL


class Target:
    def __init__(
        self,
        config: TargetConfig,
        on_change: Callable[..., None],
        on_message: Callable[[Target, Message, UpstreamSession], Awaitable[None]],
        source: str = "config",
        connect_slots: asyncio.Semaphore | None = None,
        resource_uris: Callable[[str], Iterable[str]] | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        #: How the target is reached. For ``url:`` targets it is probed on connect
        #: (``http`` or ``sse``) and remembered; None until the first probe succeeds.
        self.transport: str | None = self.kind if self.kind in ("stdio", "http", "sse") else None
        self.source = source
        self.state: State = "connecting"
        self.last_error: str | None = None
        self.catalog = TargetCatalog()
        self.session: UpstreamSession | None = None
        self.connected_at: float | None = None
        self.restarts = 0
        #: "modern" (2026-07-28) or "handshake", once the first connection found out.
        self.era: str | None = None
        self.dual = False
        #: Calls in flight through any session of this target (the reconciler drains them).
        self.inflight = 0
        self.first_attempt = asyncio.Event()
        self._on_change = on_change
        self._slots = connect_slots or asyncio.Semaphore(1)
        self._on_message = on_message
        self._tasks = TaskOwner(f"target:{self.name}")
        self._refreshing: set[Kind] = set()
        self._http: aiohttp.ClientSession | None = None
        self._streams: aiohttp.ClientSession | None = None
        self._pool: h1.Pool | None = None
        #: The resource URIs clients follow through one of this target's shared sessions
        #: ("": the catalog session's, else a capability set's; the gateway's subscription
        #: registry answers; a modern target's listen stream and a restarted process ask).
        self._resource_uris: Callable[[str], Iterable[str]] = resource_uris or (lambda _scope: ())
        self._session_factory = session_factory
        #: limits.max_response_bytes (the gateway keeps it current across reloads).
        self.max_response_bytes = DEFAULT_MAX_RESPONSE
        #: Shared sessions per client capability set (lists and shared calls), see variants.py.
        self.variants = Variants(self)

    @property
    def shared(self) -> bool:
        return self.kind == "stdio"

    @property
    def ready(self) -> bool:
        # Dispatcher._forward spells this out per call (a property is a Python call
        # from compiled code): change both together.
        return self.state == "ready" and self.session is not None

    # -- sessions --------------------------------------------------------
    def http_client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.timeout),
                auto_decompress=True,
            )
        return self._http

    def request_pool(self, url: str) -> h1.Pool:
        """The keep-alive pool for this target's POSTs (256 connections, as before)."""
        if self._pool is None or self._pool.closed or self._pool.url != url:
            self._pool = h1.Pool(url, limit=256, connect_timeout=self.config.timeout)
        return self._pool

    def stream_client(self) -> aiohttp.ClientSession:
        """Long-lived streams (GET, subscriptions/listen, legacy SSE) get their own pool
        without a limit, so a thousand open streams never starve the requests' pool."""
        if self._streams is None or self._streams.closed:
            self._streams = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.timeout),
            )
        return self._streams

    def new_session(self, listen: bool = True, era: str | None = None) -> UpstreamSession:
        if self._session_factory is not None:
            return self._session_factory(self, listen, era)
        session = self._new_session(listen, era)
        session.max_response_bytes = self.config.max_response_bytes or self.max_response_bytes
        return session

    def _new_session(self, listen: bool, era: str | None) -> UpstreamSession:
        spec = self.config.spec
        if isinstance(spec, StdioSpec):
            return StdioSession(self.name, spec, self.config.timeout)
        if isinstance(spec, SseSpec):
            return SseSession(self.name, spec.url, spec.headers, self.http_client(), self.config.timeout, self.stream_client())
        if self.config.openapi is not None:
            from .upstream.openapi import OpenApiSession

            # Answered in process; client sessions reuse the catalog session's loaded spec.
            return OpenApiSession(
                self.name, self.config.openapi, self.http_client(), self.config.timeout, self.session
            )
        if self.config.a2a is not None:
            from .a2a.tool import A2aSession

            # Answered in process; client sessions reuse the catalog session's card.
            return A2aSession(self.name, self.config.a2a, self.http_client(), self.session)
        if isinstance(spec, UrlSpec) and self.transport == "sse":
            url = spec.sse_url or spec.url
            return SseSession(self.name, url, spec.headers, self.http_client(), self.config.timeout, self.stream_client())
        assert isinstance(spec, HttpSpec)
        return HttpSession(
            self.name, spec.url, spec.headers, self.http_client(), self.config.timeout, listen,
            era_hint=era or self.era, tool_schema=self._tool_schema, stream_client=self.stream_client(),
            pool=self.request_pool(spec.url),
        )

    async def _speaks_handshake(self) -> bool:
        """Does this modern target also accept ``initialize``? (``server/discover`` lists
        only modern versions on some dual-era servers, so ask.) Then handshake clients
        keep server->client requests, which need a session, instead of a translation."""
        if self.kind != "http":
            return False
        probe = self.new_session(listen=False, era="handshake")
        try:
            await probe.open(SHARED_CAPABILITIES)
            return not probe.modern
        except UpstreamError:
            return False
        finally:
            await probe.aclose("era probe done")

    def _tool_schema(self, name: Any) -> Any:
        for tool in self.catalog.items["tools"]:
            if tool.get("name") == name:
                return tool.get("inputSchema")
        return None

    @property
    def modern(self) -> bool:
        """The target speaks 2026-07-28: stateless, so every client can share one session."""
        return self.era == "modern"

    def session_era(self, client_modern: bool) -> str | None:
        """Which era a client's requests use upstream: the client's own when the target
        speaks both (nothing to translate), else the target's."""
        if self.dual:
            return "modern" if client_modern else "handshake"
        return self.era

    # -- supervision -----------------------------------------------------
    def start(self) -> None:
        self._tasks.spawn(self._supervise(), "supervisor")

    async def _supervise(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            session = self.new_session()
            session.on_unsolicited = self._unsolicited
            session.on_reopened = self._reopened
            if isinstance(session, HttpSession):
                session.resource_uris = lambda: self._resource_uris("")
            self.state = "connecting"
            try:
                # The catalog session declares every client capability the gateway can
                # relay: servers register some tools only for clients able to answer
                # sampling, elicitation or roots, and clients that can must find them.
                # Bounded start-up: dozens of children spawned at once mostly time out.
                async with self._slots:
                    session = await self._open(session)
                    self.era = "modern" if session.modern else "handshake"
                    self.dual = session.dual or (session.modern and await self._speaks_handshake())
                    await self._fetch_catalog(session)
                self.session = session
                self.state = "ready"
                self.last_error = None
                self.connected_at = time.time()
                up_since = time.monotonic()
                log.info("target '%s': ready (%s)", self.name, self._summary())
                self.resubscribe(session, "")
                self.first_attempt.set()
                self._on_change(self)
                await self._watch(session)
                error = session.close_reason or "connection lost"
                # Only a connection that lasted earns a fast retry: resetting on every
                # "ready" let a server that dies right after its catalog is listed
                # restart (and churn every client's list) at full speed forever.
                if time.monotonic() - up_since >= STABLE_AFTER:
                    backoff = BACKOFF_MIN
            except UpstreamError as exc:
                error = exc.reason
            except asyncio.CancelledError:
                # Stopped while listing (target removed, gateway stopping): a session that
                # never became self.session would otherwise keep its process running.
                await asyncio.shield(session.aclose("target stopped"))
                raise
            except Exception as exc:  # garbage from the target must not kill the supervisor
                log.exception("target '%s': unexpected error", self.name)
                error = f"{type(exc).__name__}: {exc}"
            error = _one_line(redact(error))
            await session.aclose(error)
            # Its capability-set sessions go down with it (calls on them fail naming the
            # target); they are opened again, and listed anew, on first use after.
            await self.variants.aclose()
            was_ready = self.session is session
            self.session = None
            self.state = "failed"
            self.last_error = error
            self.restarts += 1
            self.first_attempt.set()
            if was_ready:
                self._on_change(self)
            delay = backoff * (1 + random.random() / 2)
            log.warning("target '%s': %s; retrying in %.1f s", self.name, error, delay)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _open(self, session: UpstreamSession) -> UpstreamSession:
        """Open the catalog session. A ``url:`` target is probed on the way, as the spec's
        backwards-compatibility section says: POST initialize (streamable HTTP) first; on
        an HTTP 4xx, GET expecting an ``endpoint`` event (legacy HTTP+SSE). The answer is
        remembered for client sessions and reconnects; a 4xx on the remembered legacy
        transport makes the next attempt probe again (the server may have been upgraded)."""
        try:
            await session.open(SHARED_CAPABILITIES)
        except UpstreamError as exc:
            if self.kind != "url" or exc.status is None or not 400 <= exc.status < 500:
                raise
            if self.transport == "sse":
                self.transport = None
                raise
            self.transport = "sse"
            legacy = self.new_session()
            legacy.on_unsolicited = self._unsolicited
            legacy.on_reopened = self._reopened
            try:
                await legacy.open(SHARED_CAPABILITIES)
            except UpstreamError as exc2:
                self.transport = None
                raise UpstreamError(
                    self.name,
                    f"neither transport answered: streamable HTTP: {exc.reason}; legacy SSE: {exc2.reason}",
                    exc2.status,
                ) from None
            log.info("target '%s': POST initialize got HTTP %d; speaking legacy SSE", self.name, exc.status)
            return legacy
        if self.kind == "url" and self.transport is None:
            self.transport = "http"
            log.info("target '%s': streamable HTTP answered the probe", self.name)
        return session

    async def _watch(self, session: UpstreamSession) -> None:
        """Wait for the session to die; ping HTTP targets, whose death is silent."""
        while True:
            try:
                await asyncio.wait_for(session.closed.wait(), HEALTH_INTERVAL)
                return
            except TimeoutError:
                pass
            if self.kind == "stdio":
                continue
            try:
                await session.request("ping", None, timeout=self.config.timeout)
            except UpstreamError as exc:
                session.lost(exc.reason)
                return

    def _summary(self) -> str:
        c = self.catalog.counts()
        return f"{c['tools']} tools, {c['prompts']} prompts, {c['resources']} resources"

    async def _fetch_catalog(self, session: UpstreamSession) -> None:
        init = session.init_result
        caps = init.get("capabilities") or {}
        catalog = TargetCatalog(
            capabilities=caps if isinstance(caps, dict) else {},
            server_info=init.get("serverInfo") or {},
            instructions=init.get("instructions"),
        )
        lists = [k for k in KINDS if CAPABILITY[k] in catalog.capabilities]
        results = await asyncio.gather(*(self._list(session, k) for k in lists))
        for kind, items in zip(lists, results, strict=True):
            catalog.items[kind] = items
        catalog.cache = self.catalog.cache  # _list recorded the hints there
        self.catalog = catalog

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` for the target's life (cancelled when it stops)."""
        self._tasks.spawn(coro, name)

    async def shared_message(self, msg: Message, session: UpstreamSession) -> None:
        """A message on a shared session that is not a list change: the gateway's to handle."""
        await self._on_message(self, msg, session)

    def resubscribe(self, session: UpstreamSession, scope: str) -> None:
        """A shared session that came back (a new process) follows nothing: subscribe it
        again to what clients still follow through it (``scope``: see ``_resource_uris``).
        A 2026 session's listen stream asks for them itself."""
        uris = list(self._resource_uris(scope))
        if uris and not session.modern:
            self.spawn(self._resubscribe(session, uris), "resubscribe")

    async def _resubscribe(self, session: UpstreamSession, uris: list[str]) -> None:
        for uri in uris:
            try:
                resp = await session.request("resources/subscribe", {"uri": uri}, timeout=self.config.timeout)
            except UpstreamError as exc:
                log.warning("target '%s': subscribing again to %s failed: %s", self.name, uri, exc.reason)
                return
            if "error" in resp:
                log.warning("target '%s': subscribing again to %s refused: %s", self.name, uri, resp["error"])
        log.info("target '%s': subscribed again to %d resource(s) after a restart", self.name, len(uris))

    def variant_changed(self, kinds: set[Kind]) -> None:
        """A capability set's lists changed: clients re-list."""
        self._on_change(self, kinds)

    async def list_items(self, session: UpstreamSession, kind: Kind) -> list[dict[str, Any]]:
        """Every page of one list of ``session``."""
        return await self._list(session, kind)

    async def _list(self, session: UpstreamSession, kind: Kind) -> list[dict[str, Any]]:
        method, key = LIST_KEYS[kind]
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"cursor": cursor} if cursor else None
            resp = await session.request(method, params, timeout=self.config.timeout)
            if "error" in resp:
                err = resp["error"] if isinstance(resp["error"], dict) else {}
                if err.get("code") == -32601:
                    return items  # declared but not implemented: treat as empty
                raise UpstreamError(self.name, f"{method} failed: {err.get('message')}")
            result = obj(resp.get("result"))
            page = result.get(key)
            if not isinstance(page, list):
                raise UpstreamError(self.name, f"{method} answer has no '{key}' list")
            items.extend(i for i in page if isinstance(i, dict))
            if cursor is None and isinstance(result.get("ttlMs"), int):
                scope = result.get("cacheScope")
                self.catalog.cache[kind] = (result["ttlMs"], scope if scope in ("public", "private") else "private")
            cursor = result.get("nextCursor")
            if not cursor or not isinstance(cursor, str) or cursor in seen:
                return items
            seen.add(cursor)
        log.warning("target '%s': %s still paginating after %d pages", self.name, method, MAX_PAGES)
        return items

    def refresh(self, kind: Kind) -> None:
        """Re-list one kind after ``list_changed`` (coalesced: one refresh in flight per kind)."""
        if kind in self._refreshing or self.session is None:
            return
        self._refreshing.add(kind)
        self._tasks.spawn(self._refresh(kind), f"refresh-{kind}")

    async def _refresh(self, kind: Kind) -> None:
        try:
            session = self.session
            if session is None:
                return
            kinds: list[Kind] = [kind]
            if kind in ("resources", "resourceTemplates"):
                kinds = [k for k in ("resources", "resourceTemplates") if CAPABILITY[k] in self.catalog.capabilities]
            for k in kinds:
                self.catalog.items[k] = await self._list(session, k)
            # The target said it changed: pass that on even if our merged view looks the same.
            self._on_change(self, set(kinds))
        except UpstreamError as exc:
            log.warning("target '%s': re-listing %s failed: %s", self.name, kind, exc.reason)
        finally:
            self._refreshing.discard(kind)

    async def _reopened(self, session: UpstreamSession) -> None:
        """The target restarted under our session: what it offers may have changed too."""
        for kind in ("tools", "prompts", "resources"):
            if CAPABILITY[kind] in self.catalog.capabilities:
                self.refresh(kind)

    async def _unsolicited(self, msg: Message, session: UpstreamSession) -> None:
        method = msg.get("method", "")
        kind = LIST_CHANGED.get(method)
        if kind is not None:
            self.refresh(kind)
            return
        await self._on_message(self, msg, session)

    # -- shutdown --------------------------------------------------------
    async def aclose(self) -> None:
        await self._tasks.aclose()
        await self.variants.aclose()
        if self.session is not None:
            await self.session.aclose("target removed")
            self.session = None
        for client in (self._http, self._streams):
            if client is not None:
                await client.close()
        if self._pool is not None:
            await self._pool.aclose()
        self.state = "stopped"

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "transport": self.transport,
            "source": self.source,
            "state": self.state,
            "counts": self.catalog.counts() if self.ready else {k: 0 for k in KINDS},
            "server": self.catalog.server_info if self.ready else None,
            "protocolVersion": self.session.protocol_version if self.session else None,
            "era": self.era,
            "eras": (["2026-07-28", "handshake"] if self.dual else [self.era]) if self.era else [],
            "lastError": self.last_error,
            "restarts": self.restarts,
            "pid": getattr(self.session, "pid", None),
            # The sessions opened per client capability set (variants.py), beside the catalog's.
            "capabilitySets": self.variants.status(),
        }


def _one_line(text: str, limit: int = 300) -> str:
    """``lastError`` lands in JSON, log lines and dashboards: one line, bounded length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

