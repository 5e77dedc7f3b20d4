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
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp

from .config import HttpSpec, SseSpec, StdioSpec, TargetConfig
from .jsonrpc import Message
from .multiplexer.catalog import CAPABILITY, CHANGED, KINDS, Kind, TargetCatalog
from .tasks import TaskOwner
from .upstream.base import UpstreamError, UpstreamSession
from .upstream.http import HttpSession
from .upstream.sse import SseSession
from .upstream.stdio import StdioSession

log = logging.getLogger("mcpmux.target")

State = Literal["connecting", "ready", "failed", "stopped"]

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
        on_change: Callable[[Target], None],
        on_message: Callable[[Target, Message, UpstreamSession], Awaitable[None]],
        source: str = "config",
    ) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        self.source = source
        self.state: State = "connecting"
        self.last_error: str | None = None
        self.catalog = TargetCatalog()
        self.session: UpstreamSession | None = None
        self.connected_at: float | None = None
        self.restarts = 0
        #: Calls in flight through any session of this target (the reconciler drains them).
        self.inflight = 0
        self.first_attempt = asyncio.Event()
        self._on_change = on_change
        self._on_message = on_message
        self._tasks = TaskOwner(f"target:{self.name}")
        self._refreshing: set[Kind] = set()
        self._http: aiohttp.ClientSession | None = None
        #: Gateway-side state for shared sessions: uri -> subscribed client session ids.
        self.subscribers: dict[str, set[str]] = {}
        self.upstream_log_level: str | None = None

    @property
    def shared(self) -> bool:
        return self.kind == "stdio"

    @property
    def ready(self) -> bool:
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

    def new_session(self, listen: bool = True) -> UpstreamSession:
        spec = self.config.spec
        if isinstance(spec, StdioSpec):
            return StdioSession(self.name, spec, self.config.timeout)
        if isinstance(spec, SseSpec):
            return SseSession(self.name, spec.url, spec.headers, self.http_client(), self.config.timeout)
        if self.config.openapi is not None:
            from .upstream.openapi import OpenApiSession

            # Answered in process; client sessions reuse the catalog session's loaded spec.
            return OpenApiSession(
                self.name, self.config.openapi, self.http_client(), self.config.timeout, self.session
            )
        assert isinstance(spec, HttpSpec)
        return HttpSession(
            self.name, spec.url, spec.headers, self.http_client(), self.config.timeout, listen
        )

    # -- supervision -----------------------------------------------------
    def start(self) -> None:
        self._tasks.spawn(self._supervise(), "supervisor")

    async def _supervise(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            session = self.new_session()
            session.on_unsolicited = self._unsolicited
            session.on_reopened = self._reopened
            self.state = "connecting"
            try:
                # Fix (real-peers e2e): the catalog session of http/sse targets declared no
                # capabilities, so servers that register tools only for clients able to
                # relay (server-everything's trigger-sampling/elicitation-request,
                # get-roots-list) hid them from the merged list, and clients that do declare
                # sampling could not call them ("unknown tool"). The gateway can relay all
                # three for any client that declares them, so every catalog session says so.
                await session.open(SHARED_CAPABILITIES)
                await self._fetch_catalog(session)
                self.session = session
                self.state = "ready"
                self.last_error = None
                self.connected_at = time.time()
                up_since = time.monotonic()
                log.info("target '%s': ready (%s)", self.name, self._summary())
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
            except Exception as exc:  # garbage from the target must not kill the supervisor
                log.exception("target '%s': unexpected error", self.name)
                error = f"{type(exc).__name__}: {exc}"
            error = _one_line(error)
            await session.aclose(error)
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
        self.catalog = catalog

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
            result = resp.get("result")
            page = result.get(key) if isinstance(result, dict) else None
            if not isinstance(page, list):
                raise UpstreamError(self.name, f"{method} answer has no '{key}' list")
            items.extend(i for i in page if isinstance(i, dict))
            cursor = result.get("nextCursor") if isinstance(result, dict) else None
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
            self._on_change(self)
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
        if self.session is not None:
            await self.session.aclose("target removed")
            self.session = None
        if self._http is not None:
            await self._http.close()
        self.state = "stopped"

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "state": self.state,
            "counts": self.catalog.counts() if self.ready else {k: 0 for k in KINDS},
            "server": self.catalog.server_info if self.ready else None,
            "protocolVersion": self.session.protocol_version if self.session else None,
            "lastError": self.last_error,
            "restarts": self.restarts,
            "pid": getattr(self.session, "pid", None),
        }


def _one_line(text: str, limit: int = 300) -> str:
    """``lastError`` lands in JSON, log lines and dashboards: one line, bounded length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


LIST_CHANGED: dict[str, Kind] = {
    "notifications/tools/list_changed": "tools",
    "notifications/prompts/list_changed": "prompts",
    "notifications/resources/list_changed": "resources",
}
assert set(LIST_CHANGED) <= set(CHANGED.values())
