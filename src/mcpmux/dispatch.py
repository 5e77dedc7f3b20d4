"""The one request path: every listener hands each message here with its context.

    listener ─▶ RequestContext ─▶ Dispatcher.handle ─▶ route ─▶ policy.authorize
             ─▶ forward (upstream session, era translation) ─▶ target

A request is routed first (which target, which name there), then authorized,
then forwarded; lists are served from the merged view through the policy's
filter. The dispatcher also owns the client sessions of this process and what
the gateway tells them (list changes, updates, log lines of shared targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

import orjson

from .config import GatewayConfig, LimitsConfig
from .context import RequestContext, owner_key
from .era import Envelope, without_envelope
from .gateway import FULL_SET, Gateway
from .jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    RATE_LIMITED,
    REQUEST_CANCELLED,
    TARGET_UNAVAILABLE,
    Message,
    RPCError,
    error,
    result,
)
from .mrtr import Bridge, Continuation, check_input_responses, origin_of
from .multiplexer.catalog import Route, View
from .multiplexer.search import (
    CALL_TOOL,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SEARCH_DEFS,
    SEARCH_TOOLS,
    ToolIndex,
)
from .multiplexer.servers import VirtualServer, build_servers
from .multiplexer.tasks import BY_ID, BY_ID_2026, EXTENSION, TaskIds, scope_of, supports
from .multiplexer.tasks import extension as tasks_extension
from .observability.observer import Observer
from .policy import Action, AllowAll, Policy
from .policy.servers import EndpointScoped
from .protocol import (
    HANDSHAKE_ONLY,
    HANDSHAKE_VERSIONS,
    HELD_METHODS,
    K_CAPABILITIES,
    K_CLIENT_INFO,
    K_LOG_LEVEL,
    K_VERSION,
    LEVEL_RANK,
    LIST_CHANGED,
    LIST_METHODS,
    LOG_LEVELS,
    MISSING_CAPABILITY,
    Kind,
)
from .redact import redact
from .results import SCHEME as RESULTS_SCHEME
from .results import ResultStore
from .session import Call, ClientSession, Deadlines, Emit
from .sessions import Sessions, client_key
from .state import SessionRecord, SessionStore
from .target import Target
from .tasks import TaskOwner
from .upstream.base import UpstreamError, UpstreamSession
from .upstream.credentials import CredentialsError, UpstreamCredentials
from .variants import capability_key

log = logging.getLogger("mcpmux.dispatch")

REAP_INTERVAL: Final = 30.0
#: Pages of one target's tasks/list read for a merged list.
MAX_TASK_PAGES: Final = 50
#: Client capabilities a target may need a client's own session for.
RELAYED: Final[tuple[str, ...]] = ("sampling", "elicitation", "roots")
_tokens: Final = itertools.count(1)
#: What a denied or unknown name is called in the error (the same words for both).
_WHAT: Final = {"tools/call": "tool", "prompts/get": "prompt"}

#: Builds the policy for a config; given the current one, it may keep it (and its state).
PolicyFactory = Callable[[GatewayConfig, Policy | None], Policy]


def per_user_credentials(target: Target) -> bool:
    """Does this target need headers computed per caller (claims, token exchange)?"""
    return bool(target.config.headers_from_claims) or target.config.token_exchange is not None


class Dispatcher:
    """``policy``: a fixed policy, or ``policy_factory``: one built from the config and
    rebuilt when the config file is reloaded (sessions stay). ``credentials``: makes
    per-caller upstream headers (``headers_from_claims``, ``token_exchange``)."""

    def __init__(
        self,
        gateway: Gateway,
        policy: Policy | None = None,
        store: SessionStore | None = None,
        *,
        policy_factory: PolicyFactory | None = None,
        credentials: UpstreamCredentials | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        self.gateway = gateway
        self._policy_factory = policy_factory
        if policy is None and policy_factory is not None:
            policy = policy_factory(gateway.config, None)
        #: The configured policy behind the endpoint's subset (virtual servers).
        self.policy: Policy = EndpointScoped(policy or AllowAll())
        #: Virtual servers by name (``servers:``), rebuilt when the config is reloaded.
        self.servers: dict[str, VirtualServer] = build_servers(gateway.config.servers)
        #: Search index of each ``search: true`` server, rebuilt when its catalog changed.
        self._indexes: dict[str, ToolIndex] = {}
        self.credentials = credentials
        self.sessions = sessions if sessions is not None else Sessions(lambda: gateway.config.limits, store)
        self.bridge = Bridge()
        #: Whole results of tool calls cut at limits.max_result_bytes, behind their links.
        self.results = ResultStore(lambda: gateway.config.limits)
        self._tasks = TaskOwner("dispatcher")
        #: The loop it runs in (set by :meth:`start`): ``asyncio.current_task(loop)`` then
        #: skips ``get_running_loop``, a ``getpid`` system call per call on 3.11.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The deadlines of the calls in flight (call_timeout, tool_timeouts).
        self.deadlines = Deadlines()
        #: stdio targets whose client-process limit was reached (warned once).
        self._overflowed: set[str] = set()
        #: Metrics, access log and traces of each request (set by the CLI; None: off).
        self.observer: Observer | None = None
        gateway.on_list_changed = self.sessions.broadcast
        gateway.on_target_message = self._target_message
        gateway.on_target_removed = self._target_removed
        gateway.on_reload = self._reconfigure

    def _reconfigure(self, config: GatewayConfig) -> None:
        """The config file changed: virtual servers, rules and rate limits take effect
        for the next request."""
        servers = build_servers(config.servers)
        if [s.config for s in servers.values()] != [s.config for s in self.servers.values()]:
            self.servers = servers
            log.info("virtual servers reloaded: %s", ", ".join(servers) or "none")
            self._lists_changed()
        if self._policy_factory is None:
            return
        current = self.policy.inner if isinstance(self.policy, EndpointScoped) else self.policy
        try:
            policy = self._policy_factory(config, current)
        except ValueError as exc:  # validated when loaded; kept safe all the same
            log.error("authorization: keeping the previous rules: %s", exc)
            return
        if policy is current:
            return
        self.policy = EndpointScoped(policy)
        log.info("authorization: rules and rate limits reloaded")
        if getattr(getattr(current, "rules", None), "sources", None) != getattr(getattr(policy, "rules", None), "sources", None):
            self._lists_changed()

    def _lists_changed(self) -> None:
        """What each caller may see changed: tell clients to list again."""
        for kind in ("tools", "prompts", "resources"):
            self.sessions.broadcast(f"notifications/{kind}/list_changed")

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.gateway.start()
        self._tasks.spawn(self._reap(), "session-reaper")

    async def aclose(self) -> None:
        """Sessions first (their upstream DELETEs need the targets), then the gateway."""
        await self.bridge.aclose()
        await self._tasks.aclose()
        live, self.sessions.live = self.sessions.live, {}
        await asyncio.gather(*(s.aclose() for s in live.values()), return_exceptions=True)
        await self.gateway.aclose()
        self.results.close()
        self.deadlines.close()

    # -- sessions --------------------------------------------------------
    async def initialize(self, msg: Message, principal: Any = None, peer: str | None = None,
                         held: str | None = None, server: str | None = None) -> tuple[ClientSession, Message]:
        if self.observer is None:
            return await self._initialize(msg, principal, peer, held, server)
        start = time.perf_counter()
        try:
            session, resp = await self._initialize(msg, principal, peer, held, server)
        except BaseException as exc:
            self.observer.initialized(None, principal, exc, start)
            raise
        self.observer.initialized(session.id, principal, None, start)
        return session, resp

    async def _initialize(self, msg: Message, principal: Any, peer: str | None,
                          held: str | None, server: str | None = None) -> tuple[ClientSession, Message]:
        """Open a client session. ``peer``: the socket peer address, whose session slots it
        takes without authentication (``limits.max_sessions_per_client``); ``held``: a slot
        the listener already claimed for it (an /sse stream), which it takes over;
        ``server``: the virtual server whose endpoint it was opened on (only usable there)."""
        params = msg.get("params") or {}
        if not isinstance(params, dict):
            raise RPCError(INVALID_PARAMS, "initialize params must be an object")
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RPCError(INVALID_PARAMS, "initialize needs params.protocolVersion (a string)")
        version = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[0]
        if len(self.sessions) >= self.gateway.config.limits.max_sessions:
            raise RPCError(-32000, "too many sessions: the gateway is at its session limit")
        owner = owner_key(principal)
        client = client_key(owner, peer)
        if client != held:
            self.sessions.check(client)
        await self.gateway.wait_ready(self.gateway.config.limits.ready_grace)
        session = await self.sessions.open(owner, version, params, client, held, server)
        log.info("session %s: opened by %s (%s)", session.id[:8], session.client_info.get("name", "?"), version)
        return session, result(msg["id"], self.gateway.initialize_result(version))

    @staticmethod
    def stateless(env: Envelope, principal: Any = None) -> ClientSession:
        """The session of one 2026 request: its state is its envelope, gone after it."""
        owner = owner_key(principal)
        record = SessionRecord("", owner, env.version, env.capabilities, env.client_info, env.log_level)
        return ClientSession(record, stateless=True)

    async def close_session(self, sid: str, *, idle: bool = False) -> bool:
        """End a session (``idle``: it only leaves this process; replicas keep its record)."""
        session = await (self.sessions.retire(sid) if idle else self.sessions.remove(sid))
        if session is None:
            return False
        await session.aclose()
        await self.gateway.subscriptions.drop(sid, self.gateway.targets)
        log.info("session %s: closed", sid[:8])
        return True

    async def _reap(self) -> None:
        while True:
            limits = self.gateway.config.limits  # a reload may change them
            limit, unused = limits.session_idle_timeout, limits.unused_session_timeout
            for sid in self.sessions.idle(limit, unused):
                session = self.sessions.get(sid)
                if session is not None and not session.used:
                    log.info("session %s: no request within %g s of initialize; closing", sid[:8], unused)
                else:
                    log.info("session %s: idle for over %.0f s; closing", sid[:8], limit)
                await self.close_session(sid, idle=True)
            await self._reap_processes(limits.client_process_idle_timeout)
            await asyncio.sleep(self._reap_delay(limits))

    def _reap_delay(self, limits: LimitsConfig) -> float:
        """Sleep until the nearest expiry. Whatever starts or goes quiet meanwhile expires
        no sooner than the shortest timeout from now, so that bounds the sleep too."""
        now = time.monotonic()
        shortest = min(limits.session_idle_timeout, limits.unused_session_timeout,
                       limits.client_process_idle_timeout)
        deadlines = [now + min(REAP_INTERVAL, shortest)]
        first = self.sessions.next_expiry(limits.session_idle_timeout, limits.unused_session_timeout)
        if first is not None:
            deadlines.append(first)
        for session in self.sessions.live.values():
            for name, up in session.upstreams.items():
                target = self.gateway.targets.get(name)
                if target is not None and target.shared:
                    deadlines.append(up.last_used + limits.client_process_idle_timeout)
        # A deadline already past belongs to something busy (a call in flight): not a
        # reason to spin; it is looked at again within the shortest timeout. Each wake
        # scans every session, so wakes are at least a second apart (less only for
        # timeouts that short): many sessions expiring one by one cost one scan a second.
        return max(min(d for d in deadlines if d > now) - now, min(1.0, shortest / 4))

    async def _reap_processes(self, limit: float) -> None:
        """Stop clients' own processes of stdio targets that went unused for ``limit``
        seconds; a later call starts a new one."""
        now = time.monotonic()
        for session in list(self.sessions.live.values()):
            for name, up in list(session.upstreams.items()):
                target = self.gateway.targets.get(name)
                busy = any(entry[0] is up for entry in session.inflight.values())
                if target is not None and target.shared and not busy and now - up.last_used > limit:
                    log.info("session %s: its process of '%s' idle for %.0f s; stopping", session.id[:8],
                             name, now - up.last_used)
                    session.upstreams.pop(name, None)
                    await up.aclose("idle")

    # -- what clients send ----------------------------------------------------
    async def notification(self, ctx: RequestContext, msg: Message) -> None:
        method = msg["method"]
        if method == "notifications/cancelled":
            params = msg.get("params")
            await ctx.session.cancel(params if isinstance(params, dict) else {})
        elif method == "notifications/roots/list_changed":
            await ctx.session.to_own_upstreams(msg)
        # notifications/initialized and anything else: nothing to forward.

    async def response(self, ctx: RequestContext, msg: Message) -> None:
        await ctx.session.on_response(msg)

    async def handle(self, ctx: RequestContext, msg: Message) -> Message:
        """Answer one client request; intermediate messages go through ``ctx.emit``."""
        observer = self.observer
        if observer is None:
            return await self._handle(ctx, msg)
        # Observer.observe, inlined: one coroutine less per call.
        start = time.perf_counter()
        span = observer.begin(ctx, msg)
        try:
            resp = await self._handle(ctx, msg)
        except BaseException as exc:
            observer.failed(ctx, msg, exc, start, span)
            raise
        observer.done(ctx, msg, resp, start, span)
        return resp

    async def _handle(self, ctx: RequestContext, msg: Message) -> Message:
        session = ctx.session
        session.touch()
        session.used = True
        method: str = msg["method"]
        rid = msg["id"]
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            return error(rid, INVALID_PARAMS, "params must be an object")
        params = params or {}
        if ctx.principal is not None:
            # The latest credentials of the session's owner, for upstream headers made per
            # request (an exchanged token is re-made from the client's current token).
            session.caller = ctx.principal
            session.authorization = ctx.headers.get("authorization")
        name = params.get("name") if method == "tools/call" else None
        searching = ctx.server is not None and ctx.server.search and method == "tools/call" and name in (
            SEARCH_TOOLS, CALL_TOOL)
        if searching and name == CALL_TOOL:
            inner = params.get("arguments")
            name = inner.get("name") if isinstance(inner, dict) else None  # rate limits see the tool run
        wait = self.policy.throttle(ctx, method, name if isinstance(name, str) else None)
        if wait is not None:
            retry = max(1, math.ceil(wait))
            return error(rid, RATE_LIMITED, f"rate limit exceeded: retry in {retry} s", {"retryAfter": retry})
        try:
            if method == "ping" and not session.stateless:
                return result(rid, {})
            if session.stateless:
                if method == "server/discover":
                    return result(rid, self.gateway.discover())
                if method in HANDSHAKE_ONLY:
                    raise RPCError(METHOD_NOT_FOUND, f"{method} does not exist in protocol {session.protocol_version}")
            kind = LIST_METHODS.get(method)
            if kind is not None:
                return result(rid, await self.list_page(ctx, kind, params.get("cursor")))
            if searching:
                return await self._search_endpoint(ctx, msg, params)
            if method == "tools/call":
                route = self._route_name(ctx, method, params)
                forwarded = {**params, "name": route.original}
                if not self._has_tasks(route.target):
                    # A server without tasks processes a task-augmented call normally.
                    forwarded.pop("task", None)
                    return await self._forward(ctx, route, msg, forwarded, tasks=False)
                resp = await self._forward(ctx, route, msg, forwarded, tasks=True)
                return self._expose_tasks(ctx, route.target, resp)
            if method == "prompts/get":
                route = self._route_name(ctx, method, params)
                return await self._forward(ctx, route, msg, {**params, "name": route.original})
            if session.stateless and method in BY_ID_2026 and self._extension_here():
                if tasks_extension(session.capabilities) is None:
                    # SEP-2663: the tasks methods need the extension declared (-32021).
                    raise RPCError(MISSING_CAPABILITY, f"{method} needs the {EXTENSION} extension in the "
                                   "request's client capabilities",
                                   {"requiredCapabilities": {"extensions": {EXTENSION: {}}}})
                return await self._task_request(ctx, msg, params)
            if (method in BY_ID or method == "tasks/list") and self._tasks_here(session):
                if method == "tasks/list":
                    return result(rid, await self._task_list(ctx, msg))
                return await self._task_request(ctx, msg, params)
            if method == "resources/read":
                if str(params.get("uri", "")).startswith(RESULTS_SCHEME):
                    return await self._read_result(ctx, rid, params["uri"])
                route = self._route_uri(ctx, method, params)
                resp = await self._forward(ctx, route, msg, {**params, "uri": route.original})
                ctx.size = None  # URIs rewritten
                return self._expose_contents(route, resp)
            if method in ("resources/subscribe", "resources/unsubscribe"):
                return await self._subscription(ctx, method, msg, params)
            if method == "completion/complete":
                return await self._complete(ctx, msg, params)
            if method == "logging/setLevel":
                return await self._set_level(session, rid, params)
            if method == "initialize":
                raise RPCError(INVALID_REQUEST, "this session is already initialized")
            sole = self.gateway.sole_route()
            if sole is not None and self.policy.authorize(ctx, Action(method, sole.target)):
                # Bridge mode hides nothing: the server answers what we don't know.
                ctx.target = sole.target
                return await self._forward(ctx, sole, msg, params)
            raise RPCError(METHOD_NOT_FOUND, f"method not found: {method}")
        except RPCError as exc:
            return exc.to_message(rid)

    # -- lists -----------------------------------------------------------
    async def list_page(self, ctx: RequestContext, kind: Kind, cursor: Any) -> dict[str, Any]:
        if cursor is not None and not isinstance(cursor, str):
            raise RPCError(INVALID_PARAMS, "cursor must be a string")
        gateway = self.gateway
        await gateway.wait_ready(gateway.config.limits.ready_grace)
        if kind == "tools" and ctx.server is not None and ctx.server.search:
            return self._list_out(ctx, kind, list(SEARCH_DEFS), None)
        # What each server shows a client with these capabilities (see variants.py).
        view = await gateway.view_for(ctx.session.capabilities)
        groups = self._visible(ctx, kind, view) if self.policy.varies_per_caller or ctx.server else None
        items, next_cursor = view.page(kind, cursor, gateway.config.limits.page_size, groups)
        return self._list_out(ctx, kind, items, next_cursor)

    def _list_out(self, ctx: RequestContext, kind: Kind, items: list[Any], next_cursor: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {kind: items}
        if next_cursor:
            out["nextCursor"] = next_cursor
        if ctx.session.stateless:
            ttl, scope = self.gateway.cache_hint(kind)
            out["ttlMs"] = ttl
            out["cacheScope"] = "private" if self.policy.varies_per_caller else scope
        return out

    # -- tool search (``search: true`` servers) ---------------------------------
    def _index(self, server: VirtualServer) -> ToolIndex:
        """The server's index, rebuilt only when the tools list or the server changed."""
        view = self.gateway.view
        key = (view.digests.get("tools"), server.config)
        index = self._indexes.get(server.name)
        if index is None or index.key != key:
            tools = [t for _, items in view.lists["tools"] for t in items if server.admits("tools", t.get("name"))]
            index = ToolIndex(tools, key)
            self._indexes[server.name] = index
            log.info("server '%s': search index built over %d tools", server.name, len(tools))
        return index

    async def _search_endpoint(self, ctx: RequestContext, msg: Message, params: dict[str, Any]) -> Message:
        """``search_tools`` answers from the index; ``call_tool`` runs the named tool
        through the same routing and authorization as a direct call."""
        assert ctx.server is not None
        args = params.get("arguments")
        args = args if isinstance(args, dict) else {}
        if params.get("name") == CALL_TOOL:
            name, arguments = args.get("name"), args.get("arguments", {})
            if not isinstance(name, str):
                raise RPCError(INVALID_PARAMS, "call_tool needs arguments.name, a tool's name from search_tools")
            if not isinstance(arguments, dict):
                raise RPCError(INVALID_PARAMS, "call_tool: arguments.arguments must be an object")
            inner = {**params, "name": name, "arguments": arguments}
            route = self._route_name(ctx, "tools/call", inner)
            return await self._forward(ctx, route, msg, {**inner, "name": route.original})
        query, limit = args.get("query"), args.get("limit", DEFAULT_LIMIT)
        if not isinstance(query, str) or not query.strip():
            raise RPCError(INVALID_PARAMS, "search_tools needs arguments.query, the task in words")
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise RPCError(INVALID_PARAMS, f"search_tools: limit must be an integer from 1 to {MAX_LIMIT}")
        await self.gateway.wait_ready(self.gateway.config.limits.ready_grace)
        view = self.gateway.view

        def allowed(tool: dict[str, Any]) -> bool:
            route = view.tools.get(tool["name"])
            return route is not None and self.policy.visible(
                ctx, "tools", Action("tools/call", route.target, name=route.original, exposed=tool["name"]))

        found = self._index(ctx.server).search(query, limit, allowed)
        text = orjson.dumps({"tools": found}).decode()
        return result(msg["id"], {"content": [{"type": "text", "text": text}],
                                  "structuredContent": {"tools": found}, "isError": False})

    def _visible(self, ctx: RequestContext, kind: Kind, view: View) -> list[tuple[str, list[dict[str, Any]]]]:
        """The merged list as this caller may see it: the policy's filter step."""
        out = []
        for target, items in view.lists[kind]:
            shown = []
            for item in items:
                route = view.route_item(kind, item)
                if route is None:
                    continue
                if kind in ("tools", "prompts"):
                    action = Action("tools/call" if kind == "tools" else "prompts/get", target,
                                    name=route.original, exposed=item.get("name"))
                else:
                    exposed = item.get("uri" if kind == "resources" else "uriTemplate")
                    action = Action("resources/read", target, uri=route.original, exposed=exposed)
                if self.policy.visible(ctx, kind, action):
                    shown.append(item)
            out.append((target, shown))
        return out

    # -- routing (then the policy's authorize step) ---------------------------
    def _route_name(self, ctx: RequestContext, method: str, params: dict[str, Any], asked: str | None = None) -> Route:
        """Route a tool or prompt name (``method`` says which); ``asked`` is the method
        the policy is told about when it is not ``method`` (completion/complete)."""
        what = _WHAT[method]
        name = params.get("name")
        if not isinstance(name, str):
            raise RPCError(INVALID_PARAMS, f"params.name must be the {what}'s name")
        view = self.gateway.view
        route = (view.tools if method == "tools/call" else view.prompts).get(name)
        if route is None and not self.policy.varies_per_caller:
            # With authorization rules an unlisted name stays unknown here, so a denied
            # name and a missing one get the same answer (the target's would differ).
            route = self.gateway.unlisted_route(name, "tools" if method == "tools/call" else "prompts")
        if route is None:
            route = self.gateway.unavailable_route(name, what)
        action = Action(asked or method, route.target, name=route.original, arguments=params.get("arguments"),
                        exposed=name)
        if not self.policy.authorize(ctx, action):
            raise RPCError(INVALID_PARAMS, f"unknown {what}: {name}")
        ctx.target = route.target
        return route

    def _route_uri(self, ctx: RequestContext, method: str, params: dict[str, Any]) -> Route:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise RPCError(INVALID_PARAMS, "params.uri must be a string")
        view = self.gateway.view
        route = view.route_uri(uri)
        if route is None and not self.policy.varies_per_caller:
            route = self.gateway.unlisted_uri_route(uri)
        if route is None or not self.policy.authorize(
                ctx, Action(method, route.target, uri=route.original,
                            exposed=view.expose_uri(route.target, route.original))):
            raise RPCError(INVALID_PARAMS, f"unknown resource: {uri}", {"uri": uri})
        ctx.target = route.target
        return route

    def _expose_contents(self, route: Route, resp: Message) -> Message:
        view = self.gateway.view
        res = resp.get("result")
        if not view.prefixed or not isinstance(res, dict) or not isinstance(res.get("contents"), list):
            return resp
        contents = [
            {**c, "uri": view.expose_uri(route.target, c["uri"])}
            if isinstance(c, dict) and isinstance(c.get("uri"), str)
            else c
            for c in res["contents"]
        ]
        return {**resp, "result": {**res, "contents": contents}}

    async def _complete(self, ctx: RequestContext, msg: Message, params: dict[str, Any]) -> Message:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise RPCError(INVALID_PARAMS, "params.ref must be an object")
        view = self.gateway.view
        if ref.get("type") == "ref/prompt":
            route = self._route_name(ctx, "prompts/get", ref, "completion/complete")
            new_ref = {**ref, "name": route.original}
        elif ref.get("type") == "ref/resource":
            uri = ref.get("uri")
            found = view.template_uris.get(uri) if isinstance(uri, str) else None
            if found is not None and self.policy.authorize(
                    ctx, Action(msg["method"], found.target, uri=found.original, exposed=uri)):
                route = found
            else:
                route = self._route_uri(ctx, msg["method"], ref)
            new_ref = {**ref, "uri": route.original}
        else:
            raise RPCError(INVALID_PARAMS, "params.ref.type must be ref/prompt or ref/resource")
        return await self._forward(ctx, route, msg, {**params, "ref": new_ref})

    # -- tasks (2025-11-25, and the 2026 extension): carried from targets that have them
    @property
    def task_ids(self) -> TaskIds:
        return TaskIds(self.bridge.sealer)  # replicas swap in a shared sealer

    def _tasks_here(self, session: ClientSession) -> bool:
        """Are the 2025-11-25 tasks/* methods served? Only to handshake sessions (2026
        removed tasks/result and tasks/list) and only if some target has tasks; else
        they are unknown methods, as on a server without tasks."""
        return not session.stateless and any(
            isinstance(t.catalog.capabilities.get("tasks"), dict) for t in self.gateway.targets.values()
        )

    def _extension_here(self) -> bool:
        """Are the 2026 tasks methods served? When some ready target has the extension;
        else they are unknown methods, as on a server without it."""
        return any(t.ready and tasks_extension(t.catalog.capabilities) is not None
                   for t in self.gateway.targets.values())

    def _has_tasks(self, target: str, *path: str) -> bool:
        """Does ``target`` make tasks: the 2025 capability (``path`` in it), or, for
        ``tools/call``, the 2026 extension (the server decides which calls become tasks)."""
        t = self.gateway.targets.get(target)
        if t is None:
            return False
        caps = t.catalog.capabilities
        if "tasks" not in caps and "extensions" not in caps:  # most servers: no call more
            return False
        if not path and tasks_extension(caps) is not None:
            return True
        return supports(caps, *(path or ("requests", "tools", "call")))

    def _expose_tasks(self, ctx: RequestContext, target: str, resp: Message) -> Message:
        ctx.size = None  # task ids rewritten: not the size the target sent
        scope = scope_of(ctx.session.id, ctx.session.record.owner)
        return self.task_ids.expose(resp, target, scope)

    async def _task_request(self, ctx: RequestContext, msg: Message, params: dict[str, Any]) -> Message:
        """tasks/get, tasks/result, tasks/cancel (2026: tasks/update too): to the target
        whose sealed id it is."""
        scope = scope_of(ctx.session.id, ctx.session.record.owner)
        target, task_id = self.task_ids.open(params.get("taskId"), scope)
        if not self.policy.authorize(ctx, Action(msg["method"], target)):
            raise RPCError(INVALID_PARAMS, f"unknown task: {params.get('taskId')}")
        ctx.target = target
        resp = await self._forward(ctx, Route(target, ""), msg, {**params, "taskId": task_id})
        return self._expose_tasks(ctx, target, resp)

    async def _task_list(self, ctx: RequestContext, msg: Message) -> dict[str, Any]:
        """Every target's tasks of this caller, each target's pages read to the end. A
        target reached through a shared session is skipped: its list mixes callers."""
        tasks: list[Any] = []
        for name, target in list(self.gateway.targets.items()):
            if not (target.ready and self._has_tasks(name, "list")
                    and self.policy.authorize(ctx, Action("tasks/list", name))):
                continue
            up = ctx.session.upstreams.get(name)
            if up is None or not up.single_owner or up.is_closed:
                continue
            cursor: Any = None
            for _ in range(MAX_TASK_PAGES):
                page_params = {"cursor": cursor} if cursor is not None else {}
                resp = await self._forward(ctx, Route(name, ""), {**msg, "params": page_params}, page_params)
                page = self._expose_tasks(ctx, name, resp).get("result")
                if not isinstance(page, dict):
                    break
                tasks.extend(page.get("tasks") or [])
                cursor = page.get("nextCursor")
                if not isinstance(cursor, str):
                    break
        return {"tasks": tasks}

    # -- per-client state ------------------------------------------------
    async def _subscription(self, ctx: RequestContext, method: str, msg: Message, params: dict[str, Any]) -> Message:
        session = ctx.session
        route = self._route_uri(ctx, method, params)
        uri = params["uri"]
        subscribe = method == "resources/subscribe"
        target = self.gateway.targets.get(route.target)
        if target is not None and (target.session_era(False) == "modern"
                                   or (target.shared and not self._has_own(session, target))):
            # Followed on the shared session that serves the client's calls, counted across clients.
            registry = self.gateway.subscriptions
            if subscribe:
                resp = await self._follow_shared(session, target, route.original, session.id)
            else:
                resp = await registry.remove(target, route.original, session.id, self._scope(session, target))
            ok = "result" in resp
        else:
            resp = await self._forward(ctx, route, msg, {**params, "uri": route.original})
            ok = "result" in resp
        if ok or not subscribe:
            if subscribe:
                session.subscriptions.add(uri)
                if self.sessions.replica is not None and _per_replica(target):
                    session.record.holders[uri] = self.sessions.replica
            else:
                session.subscriptions.discard(uri)
                session.record.holders.pop(uri, None)
            await self.sessions.save(session)
        return {**resp, "jsonrpc": "2.0", "id": msg["id"]}

    async def resubscribe(self, session: ClientSession, uri: str) -> bool:
        """Follow ``uri`` here for ``session``: the replica that held the subscription (in
        its own stdio process or 2026 listen stream) is gone. Authorized when it was made."""
        route = self.gateway.view.route_uri(uri)
        target = self.gateway.targets.get(route.target) if route is not None else None
        if route is None or target is None or not target.ready:
            return False
        if target.session_era(False) == "modern" or (target.shared and not self._has_own(session, target)):
            resp = await self._follow_shared(session, target, route.original, session.id)
        else:
            try:
                up = await self.upstream_for(session, target)
                resp = await up.request("resources/subscribe", {"uri": route.original}, timeout=target.config.timeout)
            except UpstreamError as exc:
                log.warning("session %s: re-subscribing %s failed: %s", session.id[:8], uri, exc.reason)
                return False
        return "result" in resp

    async def _set_level(self, session: ClientSession, rid: Any, params: dict[str, Any]) -> Message:
        level = params.get("level")
        if level not in LEVEL_RANK:
            raise RPCError(INVALID_PARAMS, f"level must be one of {', '.join(LOG_LEVELS)}")
        session.record.log_level = level
        await self.sessions.save(session)
        for name, up in list(session.upstreams.items()):
            if "logging" in (up.init_result.get("capabilities") or {}):
                try:
                    await up.request("logging/setLevel", {"level": level}, timeout=10)
                except UpstreamError as exc:
                    log.info("session %s: setLevel on '%s' failed: %s", session.id[:8], name, exc.reason)
        return result(rid, {})

    # -- forwarding ------------------------------------------------------
    async def _forward(self, ctx: RequestContext, route: Route, msg: Message, params: dict[str, Any],
                       tasks: bool | None = None) -> Message:
        """Send a routed request to its target and return the answer for the client.
        ``tasks``: whether the target makes tasks, when the caller already asked."""
        session, emit = ctx.session, ctx.emit
        rid = msg["id"]
        method: str = msg["method"]
        target = self.gateway.targets.get(route.target)
        # ``target.ready`` spelled out: a property of an interpreted class is a Python call.
        if target is None or target.state != "ready" or target.session is None:
            state = "removed" if target is None else (target.last_error or target.state)
            return error(rid, TARGET_UNAVAILABLE, f"target '{route.target}' is unavailable: {state}",
                         {"target": route.target})
        token = None
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            token = meta["progressToken"]
            params = {**params, "_meta": {**meta, "progressToken": f"mcpmux-{next(_tokens)}"}}
        origin = origin_of(method, route.original)
        held: Continuation | None = None
        if session.stateless and "inputResponses" in params:
            check_input_responses(params["inputResponses"])
        if session.stateless and "requestState" in params:
            params, held = await self.bridge.resume(route.target, origin, params, session.record.owner)
        call = Call(session, route.target, emit, token)
        if tasks if tasks is not None else self._has_tasks(route.target):
            scope = scope_of(session.id, session.record.owner)
            call.expose = lambda m: self.task_ids.expose(m, route.target, scope)
        target.inflight += 1
        try:
            upstream = session.upstreams.get(target.name)  # the usual case, without a coroutine
            if upstream is not None and not upstream.is_closed:
                upstream.last_used = time.monotonic()
            else:
                upstream = await self.upstream_for(session, target)
            if upstream.modern:
                params = _envelope(session, params, upstream)
            elif session.stateless:
                # A handshake target learnt version and capabilities from initialize, and
                # servers of both eras refuse the 2026 envelope on a handshake connection.
                params = without_envelope(params)
                if method in HELD_METHODS:
                    # It may ask the client something mid-call: hold the call so the answer
                    # can arrive on a later request (MRTR translation).
                    if held is None:
                        held = self.bridge.hold(target.name, upstream, method, params, origin,
                                                session.record.owner)
                    resp = await self.bridge.await_held(session, held, rid, emit, token)
                    return self._limited(session, method, resp, held.response_bytes)
            uid = upstream.next_id()
            task = asyncio.current_task(self.loop)
            session.inflight[rid] = (upstream, uid, task, call)
            try:
                call.timeout = self._call_timeout(target, method, route.original)
                if not call.timeout or task is None:
                    resp = await upstream.request(method, params, call, id=uid)
                else:
                    self.deadlines.watch(call, task)
                    try:
                        resp = await upstream.request(method, params, call, id=uid)
                    except asyncio.CancelledError:
                        if not call.expired:
                            raise
                        task.uncancel()
                        return await self._timed_out(rid, route, upstream, uid, method, call.timeout)
                    finally:
                        self.deadlines.forget(call)
                res = resp.get("result")
                if isinstance(res, dict) and res.get("resultType") == "input_required":
                    resp = await self.bridge.input_required(session, route.target, origin, upstream,
                                                            method, params, resp, call)
            finally:
                session.inflight.pop(rid, None)
        except UpstreamError as exc:
            return error(rid, TARGET_UNAVAILABLE, redact(str(exc)), {"target": route.target})
        except asyncio.CancelledError:
            task = asyncio.current_task(self.loop)
            if not call.cancelled or task is None:
                raise
            task.uncancel()
            return error(rid, REQUEST_CANCELLED, "request cancelled by the client")
        finally:
            target.inflight -= 1
        out = dict(resp)
        out["id"] = rid
        limited = self._limited(session, method, out, call.response_bytes)
        if limited is out:
            ctx.size = call.response_bytes
        return limited

    # -- oversized results -------------------------------------------------
    def _limited(self, session: ClientSession, method: str, resp: Message, size: int | None) -> Message:
        """A tool result over limits.max_result_bytes, cut for the client (see results.py).
        ``size``: the answer's length as read upstream, so a normal result costs one
        comparison; the result is serialised only when it was not measured."""
        if method != "tools/call" or "result" not in resp:
            return resp
        res = resp["result"]
        cut = self.results.limit(res, size, _result_owner(session))
        return resp if cut is res else {**resp, "result": cut}

    async def _read_result(self, ctx: RequestContext, rid: Any, uri: str) -> Message:
        """``resources/read`` of a cut result's link: only its owner may read it, and
        everyone else is told what an unknown URI gets."""
        found = await self.results.read(uri, _result_owner(ctx.session))
        if found is None:
            raise RPCError(INVALID_PARAMS, f"unknown resource: {uri}", {"uri": uri})
        return result(rid, found)

    def _call_timeout(self, target: Target, method: str, original: str) -> float:
        """Seconds of silence a call may take: per tool, else per target, else the limit."""
        cfg = target.config
        if method == "tools/call" and original in cfg.tool_timeouts:
            return cfg.tool_timeouts[original]
        if cfg.call_timeout is not None:
            return cfg.call_timeout
        return self.gateway.config.limits.call_timeout

    async def _timed_out(
        self, rid: Any, route: Route, upstream: UpstreamSession, uid: int, method: str, timeout: float
    ) -> Message:
        """The target went silent on a call for too long: tell it to stop, tell the client."""
        with contextlib.suppress(UpstreamError):
            await upstream.notify({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                   "params": {"requestId": uid, "reason": f"no answer within {timeout:g} s"}})
        log.warning("target '%s': %s %s got no word for %g s; cancelled", route.target, method,
                    route.original, timeout)
        return error(rid, TARGET_UNAVAILABLE,
                     f"target '{route.target}' did not answer {method} within {timeout:g} s "
                     "(call_timeout; progress notifications keep a call alive)",
                     {"target": route.target, "timeout": timeout})

    async def upstream_for(self, session: ClientSession, target: Target) -> UpstreamSession:
        """The upstream session this client uses for ``target`` (opened on first use).

        http and sse targets give each client a session of its own; so does a stdio
        target to clients that may be asked something or want log lines (see
        ``_own_process``). Everyone else, and every stateless (2026) request, uses the
        target's shared session."""
        up = session.upstreams.get(target.name)
        if up is not None and not up.is_closed:
            up.last_used = time.monotonic()
            return up
        if (session.stateless or target.session_era(False) == "modern"
                or (target.shared and not self._own_process(session, target))):
            if per_user_credentials(target):
                # One session for every caller cannot carry one caller's identity, and
                # sending the call without it would act with the gateway's own.
                raise UpstreamError(
                    target.name,
                    "needs per-user credentials (headers_from_claims or token_exchange), which its "
                    "shared session cannot carry: use a handshake-era (2025) client, or a target "
                    "that speaks the handshake era",
                )
            if target.session is None:
                raise UpstreamError(target.name, f"not ready ({target.last_error or target.state})")
            return await self._shared_session(session, target)
        lock = session.opening.setdefault(target.name, asyncio.Lock())
        async with lock:
            up = session.upstreams.get(target.name)
            if up is not None and not up.is_closed:
                return up
            if session.closed:
                raise UpstreamError(target.name, "client session closed")
            up = target.new_session(era=target.session_era(False))
            up.single_owner = True
            up.last_used = time.monotonic()
            if per_user_credentials(target):
                up.header_provider = self._header_provider(session, target)
            up.on_unsolicited = lambda msg, upstream: self._unsolicited(session, msg, upstream)
            up.on_reopened = lambda upstream: self._restore(session, upstream)
            attach = getattr(up, "attach", None)
            recorded = await self.sessions.recorded_upstream(session, target.name) if attach else None
            if attach is not None and recorded is not None:
                # Another replica opened it: continue it, no initialize (a 404 re-opens it).
                attach(session.capabilities, session.client_info, *recorded, target.catalog.capabilities)
            else:
                await up.open(session.capabilities, session.client_info, session.protocol_version)
                if session.log_level is not None and "logging" in (up.init_result.get("capabilities") or {}):
                    await up.request("logging/setLevel", {"level": session.log_level}, timeout=target.config.timeout)
            session.upstreams[target.name] = up
            await self._record_upstream(session, up)
            return up

    async def _shared_session(self, session: ClientSession, target: Target) -> UpstreamSession:
        """The session a client shares with others on ``target``: the one of its capability
        set, so the server answers it as it would answer that client (see variants.py);
        a 2026 target needs none (capabilities travel with each request)."""
        assert target.session is not None
        key = self._scope(session, target)
        if not key:
            return target.session
        variant = await target.variants.get(key, session.capabilities)
        assert variant.session is not None
        return variant.session

    def _scope(self, session: ClientSession, target: Target) -> str:
        """Which of the target's shared sessions serves this client: "" for the catalog
        session (and a 2026 target), else its capability set's key (see variants.py)."""
        key = capability_key(session.capabilities)
        if key == FULL_SET or target.session_era(False) == "modern" or not self.gateway.admits(key):
            return ""
        return key

    async def _follow_shared(self, session: ClientSession, target: Target, uri: str, sid: str) -> Message:
        """Subscribe on the shared session that serves the client's calls: a server sends
        a process's updates from that process, not from the catalog session's."""
        scope = self._scope(session, target)
        try:
            upstream = await self._shared_session(session, target) if scope else None
        except UpstreamError as exc:
            return error(None, -32001, redact(str(exc)), {"target": target.name})
        return await self.gateway.subscriptions.add(target, uri, sid, scope, upstream)

    async def _record_upstream(self, session: ClientSession, up: UpstreamSession) -> None:
        """Keep the client's upstream session id in its record (another replica may continue it)."""
        upstream_id = getattr(up, "session_id", None)
        record = session.record
        if isinstance(upstream_id, str) and (record.upstream_ids.get(up.target) != upstream_id
                                             or record.upstream_versions.get(up.target) != up.protocol_version):
            record.upstream_ids[up.target] = upstream_id
            record.upstream_versions[up.target] = up.protocol_version
            await self.sessions.save(session)

    def _has_own(self, session: ClientSession, target: Target) -> bool:
        """Does this client use (or get, on its next call) a process of its own?"""
        up = session.upstreams.get(target.name)
        return (up is not None and not up.is_closed) or self._own_process(session, target)

    def _own_process(self, session: ClientSession, target: Target) -> bool:
        """Does this client get a process of its own on a stdio target?

        A shared process has one stream, and most of what it sends there names no call:
        a log line, a sampling, elicitation or roots request. Relayed to the wrong client,
        they show it another client's traffic and let it answer for it. So a client that
        can be asked something, or that set a log level, gets its own process, started on
        its first call with exactly its capabilities; at most ``limits.max_client_processes``
        per target, so the count is bounded by the config, never by the number of clients.
        Past that, the client shares the target's process and is asked nothing."""
        if not (session.log_level is not None or any(k in session.capabilities for k in RELAYED)):
            return False
        limit = self.gateway.config.limits.max_client_processes
        used = sum(1 for s in self.sessions.live.values()
                   if (u := s.upstreams.get(target.name)) is not None and not u.is_closed)
        if used < limit:
            return True
        if target.name not in self._overflowed:
            self._overflowed.add(target.name)
            log.warning("target '%s': %d client processes (limits.max_client_processes); further "
                        "clients share its process and get no server requests or log lines", target.name, used)
        return False
    def _header_provider(self, session: ClientSession, target: Target) -> Callable[[], Any]:
        """The caller's upstream headers for ``target``, made from the session owner's
        current token each time (cheap when cached; an exchanged token expires)."""
        config = target.config

        async def provide() -> dict[str, str]:
            if self.credentials is None:
                raise UpstreamError(config.name, "per-user credentials are not configured on this gateway")
            auth = session.authorization or ""
            scheme, _, token = auth.strip().partition(" ")
            bearer = token.strip() if scheme.lower() == "bearer" else None
            try:
                return await self.credentials.headers(config, session.caller, bearer)
            except CredentialsError as exc:
                raise UpstreamError(config.name, exc.reason, exc.status) from None

        return provide

    async def _restore(self, session: ClientSession, upstream: UpstreamSession) -> None:
        """The target lost this client's session (it restarted) and a new one replaced it:
        put back what the client set up on the old one, its log level and subscriptions."""
        target = self.gateway.targets.get(upstream.target)
        timeout = target.config.timeout if target is not None else upstream.timeout
        await self._record_upstream(session, upstream)
        try:
            if session.log_level is not None and "logging" in (upstream.init_result.get("capabilities") or {}):
                await upstream.request("logging/setLevel", {"level": session.log_level}, timeout=timeout)
            for uri in sorted(session.subscriptions):
                route = self.gateway.view.route_uri(uri)
                if route is not None and route.target == upstream.target:
                    await upstream.request("resources/subscribe", {"uri": route.original}, timeout=timeout)
        except UpstreamError as exc:
            log.warning("session %s: restoring state on '%s' failed: %s", session.id[:8], upstream.target, exc.reason)

    # -- what targets send on their own ---------------------------------------
    async def _unsolicited(self, session: ClientSession, msg: Message, upstream: UpstreamSession) -> None:
        """A message on this client's own upstream session that no call carried."""
        method = msg.get("method", "")
        if "id" in msg:
            await session.relay_request(msg, upstream, None)
        elif method.endswith("/list_changed"):
            target = self.gateway.targets.get(upstream.target)
            kind = LIST_CHANGED.get(method)
            if target is not None and kind is not None:
                target.refresh(kind)
        elif method == "notifications/resources/updated":
            params = msg.get("params") or {}
            uri = params.get("uri")
            if isinstance(uri, str):
                exposed = self.gateway.view.expose_uri(upstream.target, uri)
                session.post({**msg, "params": {**params, "uri": exposed}})
        elif method == "notifications/message":
            if session.admits(msg):
                session.post(msg)
        elif method != "notifications/progress":
            if self._has_tasks(upstream.target, "list") or self._has_tasks(upstream.target):
                msg = self.task_ids.expose(msg, upstream.target, scope_of(session.id, session.record.owner))
            session.post(msg)

    async def _target_message(self, target: Target, msg: Message, upstream: UpstreamSession) -> None:
        """An unsolicited message on a target's own session (shared, or the catalog session)."""
        method = msg.get("method", "")
        params = msg.get("params") or {}
        if "id" in msg:
            reply: Message
            if method == "roots/list":
                reply = result(msg["id"], {"roots": []})
            elif method == "ping":
                reply = result(msg["id"], {})
            else:
                reply = error(msg["id"], -32601, f"{method} cannot be relayed: this session is shared "
                              "and nothing ties the request to one client's call")
            try:
                await upstream.respond(reply)
            except UpstreamError:
                pass
            return
        if method == "notifications/resources/updated":
            uri = params.get("uri")
            if not isinstance(uri, str):
                return  # malformed: nobody subscribed to a non-URI (and "+None" is no URI)
            exposed = {**msg, "params": {**params, "uri": self.gateway.view.expose_uri(target.name, uri)}}
            scope = "" if upstream is target.session else target.variants.key_of(upstream)
            if scope is None:
                return  # a session the target no longer uses
            for sid in list(self.gateway.subscriptions.followers(target.name, uri, scope)):
                follower = self.sessions.follower(sid)
                if follower is not None:
                    follower.post(exposed)
        elif method == "notifications/message":
            # A shared session's log line names no call: it is nobody's to see.
            log.debug("target '%s': log line on its shared session not relayed", target.name)

    async def _target_removed(self, name: str) -> None:
        """A removed target's sessions of each client close with it."""
        for s in list(self.sessions.live.values()):
            up = s.upstreams.pop(name, None)
            s.record.upstream_ids.pop(name, None)
            s.record.upstream_versions.pop(name, None)
            if up is not None:
                await up.aclose("target removed")

    # -- 2026 subscriptions/listen ---------------------------------------------
    async def follow(self, listener: ClientSession, uri: str) -> bool:
        """A 2026 listener follows ``uri`` through its target's own session."""
        route = self.gateway.view.route_uri(uri)
        target = self.gateway.targets.get(route.target) if route is not None else None
        if route is None or target is None:
            return False
        resp = await self.gateway.subscriptions.add(target, route.original, listener.id)
        return "result" in resp

    async def unfollow_all(self, listener: ClientSession) -> None:
        await self.gateway.subscriptions.drop(listener.id, self.gateway.targets)


def _result_owner(session: ClientSession) -> str:
    """Who may read a cut result back: the 2025 session that got it; for a 2026 stateless
    request (no session), its principal (anonymous: the unguessable id alone)."""
    if session.stateless:
        return f"principal:{session.record.owner or ''}"
    return f"session:{session.id}"


def _per_replica(target: Target | None) -> bool:
    """Does a subscription on ``target`` live in one replica (its stdio processes, its
    2026 listen stream) rather than in the client's own upstream HTTP session?"""
    return target is not None and (target.shared or target.session_era(False) == "modern")


def _envelope(session: ClientSession, params: dict[str, Any], upstream: UpstreamSession) -> dict[str, Any]:
    """A modern target needs the client's version, capabilities and info on every request."""
    meta = dict(params.get("_meta") or {})
    meta[K_VERSION] = upstream.protocol_version
    meta.setdefault(K_CAPABILITIES, session.capabilities)
    meta.setdefault(K_CLIENT_INFO, session.client_info or {"name": "mcpmux", "version": "0"})
    if session.log_level is not None:
        meta.setdefault(K_LOG_LEVEL, session.log_level)
    return {**params, "_meta": meta}


__all__ = ["Dispatcher", "Emit", "RequestContext"]
