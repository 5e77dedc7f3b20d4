"""A client session: what one connected client is, and how its requests travel.

Session state is plain data (era, capabilities, log level, subscriptions, the
ids it owes answers to) so that it can later move to a shared store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import era
from .jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    REQUEST_CANCELLED,
    TARGET_UNAVAILABLE,
    Message,
    RPCError,
    error,
    result,
)
from .listener.streams import ResponseStream, Send
from .mrtr import Continuation
from .multiplexer.catalog import LIST_METHODS, Route
from .upstream.base import UpstreamError, UpstreamSession

if TYPE_CHECKING:
    from .gateway import Gateway
    from .target import Target

log = logging.getLogger("mcpmux.session")

Emit = Callable[[Message], Awaitable[None]]

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LEVEL_RANK = {name: i for i, name in enumerate(LOG_LEVELS)}
#: Server->client requests and the client capability each needs.
NEEDS_CAPABILITY = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
OUTBOX_LIMIT = 1000
#: Methods that do not exist in the 2026 (stateless) protocol.
HANDSHAKE_ONLY = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
#: Calls a handshake-era target may interrupt with a server->client request.
HELD_METHODS = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})
MAX_INPUT_ROUNDS = 8
_tokens = itertools.count(1)


def _origin(method: str, route: Route) -> str:
    """What a requestState is bound to: the request that got it (method and upstream name)."""
    return f"{method} {route.original}"


class Call:
    """The sink for one forwarded request: its stream back to the client."""

    __slots__ = ("cancelled", "emit", "session", "target", "token")

    def __init__(self, session: ClientSession, target: str, emit: Emit | None, token: Any) -> None:
        self.session = session
        self.target = target
        self.emit = emit
        self.token = token
        self.cancelled = False

    async def notify(self, msg: Message) -> None:
        method = msg.get("method")
        if method == "notifications/progress":
            if self.token is None:
                return
            msg = {**msg, "params": {**msg.get("params", {}), "progressToken": self.token}}
        elif method == "notifications/message" and not self.session.admits(msg):
            return
        await self.session.send(msg, self.emit)

    @property
    def owner(self) -> object:
        return self.session

    def accepts(self, method: str) -> bool:
        needed = NEEDS_CAPABILITY.get(method)
        return needed is None or needed in self.session.capabilities

    async def server_request(self, msg: Message, upstream: UpstreamSession) -> None:
        await self.session.relay_request(msg, upstream, self.emit)

    async def paused(self, retry_ms: int | None) -> None:
        """The target closed its answer stream to be polled; let our client poll too."""
        pause = getattr(self.emit, "pause", None)
        if pause is not None:
            await pause(retry_ms)


class ClientSession:
    """A handshake-era session (``initialize``, ``Mcp-Session-Id``), or, with
    ``stateless=True``, the context of one 2026-07-28 request: same routing,
    state taken from the request's ``_meta`` and dropped after it."""

    def __init__(
        self,
        gateway: Gateway,
        sid: str,
        protocol_version: str,
        params: dict[str, Any],
        *,
        stateless: bool = False,
        log_level: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.id = sid
        self.protocol_version = protocol_version
        self.stateless = stateless
        caps = params.get("capabilities")
        self.capabilities: dict[str, Any] = caps if isinstance(caps, dict) else {}
        info = params.get("clientInfo")
        self.client_info: dict[str, Any] = info if isinstance(info, dict) else {}
        self.log_level: str | None = log_level
        self.subscriptions: set[str] = set()
        self.upstreams: dict[str, UpstreamSession] = {}
        self.outbox: asyncio.Queue[Message] = asyncio.Queue(OUTBOX_LIMIT)
        #: POST answer streams a client may still resume with Last-Event-ID.
        self.response_streams: dict[str, ResponseStream] = {}
        self._stream_ids = itertools.count(1)
        self.last_active = time.monotonic()
        self.closed = False
        #: GET streams open now: a session with one is not idle.
        self.streams = 0
        self._opening: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        #: our id -> (upstream session, the target's id) for requests relayed to the client,
        #: or the future awaiting the answer to a request the gateway itself asked
        self._owed: dict[int, tuple[UpstreamSession, Any] | asyncio.Future[Message]] = {}
        #: client request id -> (upstream, upstream id, task, call) while in flight
        self._inflight: dict[Any, tuple[UpstreamSession, int, asyncio.Task[Any] | None, Call]] = {}

    # -- outgoing --------------------------------------------------------
    def new_stream(self, send: Send, headers: list[tuple[bytes, bytes]], resumable: bool) -> ResponseStream:
        key = f"s{next(self._stream_ids)}"
        stream = ResponseStream(key, send, headers, resumable)
        if resumable:
            if len(self.response_streams) >= 64:  # only undelivered answers linger: rare
                now = time.monotonic()
                for k in [k for k, s in self.response_streams.items() if s.expired(now)]:
                    del self.response_streams[k]
            self.response_streams[key] = stream
        return stream

    def stream_done(self, stream: ResponseStream) -> None:
        """Forget a stream whose answer reached a live connection (the usual case)."""
        if stream.delivered:
            self.response_streams.pop(stream.key, None)

    async def send(self, msg: Message, emit: Emit | None = None) -> None:
        """On the stream of the call that caused it if there is one, else the GET stream."""
        if emit is not None:
            await emit(msg)
            return
        self.post(msg)

    def post(self, msg: Message) -> None:
        """Queue for the GET stream; when nobody reads it, the oldest is dropped."""
        if self.outbox.full():
            self.outbox.get_nowait()
            log.debug("session %s: outbox full, dropped the oldest message", self.id[:8])
        self.outbox.put_nowait(msg)

    def admits(self, msg: Message) -> bool:
        if self.log_level is None:
            return not self.stateless  # 2026: no log messages unless the request asked
        level = (msg.get("params") or {}).get("level")
        rank = LEVEL_RANK.get(level, len(LEVEL_RANK)) if isinstance(level, str) else len(LEVEL_RANK)
        return rank >= LEVEL_RANK[self.log_level]

    async def relay_request(
        self, msg: Message, upstream: UpstreamSession, emit: Emit | None
    ) -> None:
        """A target asks the client something: give it our id, remember whose it is."""
        needed = NEEDS_CAPABILITY.get(msg.get("method", ""))
        if needed is not None and needed not in self.capabilities:
            await upstream.respond(
                error(msg["id"], METHOD_NOT_FOUND, f"the client did not declare the '{needed}' capability")
            )
            return
        gid = next(self._ids)
        self._owed[gid] = (upstream, msg["id"])
        await self.send({**msg, "id": gid}, emit)

    # -- incoming --------------------------------------------------------
    async def on_response(self, msg: Message) -> bool:
        """The client answers a request we relayed; pass it to the target that asked."""
        entry = self._owed.pop(msg.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            return False
        if isinstance(entry, asyncio.Future):
            if not entry.done():
                entry.set_result(msg)
            return True
        upstream, upstream_id = entry
        try:
            await upstream.respond({**msg, "id": upstream_id})
        except UpstreamError as exc:
            log.warning("session %s: could not deliver an answer: %s", self.id[:8], exc)
        return True

    async def on_notification(self, msg: Message) -> None:
        method = msg["method"]
        params = msg.get("params") or {}
        if method == "notifications/cancelled":
            entry = self._inflight.get(params.get("requestId"))
            if entry is None:
                return
            upstream, rid, task, call = entry
            call.cancelled = True
            try:
                await upstream.notify(
                    {"jsonrpc": "2.0", "method": method, "params": {**params, "requestId": rid}}
                )
            except UpstreamError:
                pass
            upstream.cancel_pending(rid, "cancelled by the client")
            if task is not None and not task.done():
                task.cancel()
        elif method == "notifications/roots/list_changed":
            for upstream in list(self.upstreams.values()):
                try:
                    await upstream.notify(msg)
                except UpstreamError:
                    pass
        # notifications/initialized and anything else: nothing to forward.

    async def handle(self, msg: Message, emit: Emit | None) -> Message:
        """Answer one client request; intermediate messages go through ``emit``."""
        self.last_active = time.monotonic()
        method: str = msg["method"]
        rid = msg["id"]
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            return error(rid, INVALID_PARAMS, "params must be an object")
        params = params or {}
        try:
            if method == "ping" and not self.stateless:
                return result(rid, {})
            if self.stateless:
                if method == "server/discover":
                    return result(rid, self.gateway.discover())
                if method in HANDSHAKE_ONLY:
                    raise RPCError(METHOD_NOT_FOUND, f"{method} does not exist in protocol {self.protocol_version}")
            kind = LIST_METHODS.get(method)
            if kind is not None:
                return result(rid, await self.gateway.list_page(kind, params.get("cursor"), self.stateless))
            if method == "tools/call":
                route = self._route_name(params, self.gateway.view.tools, "tool")
                return await self._forward(route, msg, {**params, "name": route.original}, emit)
            if method == "prompts/get":
                route = self._route_name(params, self.gateway.view.prompts, "prompt")
                return await self._forward(route, msg, {**params, "name": route.original}, emit)
            if method == "resources/read":
                route = self._route_uri(params)
                resp = await self._forward(route, msg, {**params, "uri": route.original}, emit)
                return self._expose_contents(route, resp)
            if method in ("resources/subscribe", "resources/unsubscribe"):
                return await self._subscription(method, msg, params)
            if method == "completion/complete":
                return await self._complete(msg, params, emit)
            if method == "logging/setLevel":
                return await self._set_level(rid, params)
            if method == "initialize":
                raise RPCError(-32600, "this session is already initialized")
            sole = self.gateway.sole_route()
            if sole is not None:  # bridge mode hides nothing: the server answers what we don't know
                return await self._forward(sole, msg, params, emit)
            raise RPCError(METHOD_NOT_FOUND, f"method not found: {method}")
        except RPCError as exc:
            return exc.to_message(rid)

    # -- routing ---------------------------------------------------------
    def _route_name(self, params: dict[str, Any], table: dict[str, Route], what: str) -> Route:
        name = params.get("name")
        if not isinstance(name, str):
            raise RPCError(INVALID_PARAMS, f"params.name must be the {what}'s name")
        route = table.get(name)
        if route is None:
            route = self.gateway.unavailable_route(name, what)
        return route

    def _route_uri(self, params: dict[str, Any]) -> Route:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise RPCError(INVALID_PARAMS, "params.uri must be a string")
        route = self.gateway.view.route_uri(uri)
        if route is None:
            raise RPCError(INVALID_PARAMS, f"unknown resource: {uri}", {"uri": uri})
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

    async def upstream_for(self, target: Target) -> UpstreamSession:
        """The upstream session this client uses for ``target`` (opened on first use).
        A stateless (2026) request has no session of its own: it uses the target's."""
        if target.shared or self.stateless or target.session_era(False) == "modern":
            if target.session is None:
                raise UpstreamError(target.name, f"not ready ({target.last_error or target.state})")
            return target.session
        up = self.upstreams.get(target.name)
        if up is not None and not up.closed.is_set():
            return up
        lock = self._opening.setdefault(target.name, asyncio.Lock())
        async with lock:
            up = self.upstreams.get(target.name)
            if up is not None and not up.closed.is_set():
                return up
            if self.closed:
                raise UpstreamError(target.name, "client session closed")
            up = target.new_session(era=target.session_era(False))
            up.on_unsolicited = self._unsolicited
            up.on_reopened = self._restore
            await up.open(self.capabilities, self.client_info, self.protocol_version)
            if self.log_level is not None and "logging" in (up.init_result.get("capabilities") or {}):
                await up.request("logging/setLevel", {"level": self.log_level}, timeout=target.config.timeout)
            self.upstreams[target.name] = up
            return up

    async def _restore(self, upstream: UpstreamSession) -> None:
        """The target lost this client's session (it restarted) and a new one replaced it:
        put back what the client set up on the old one, its log level and subscriptions."""
        target = self.gateway.targets.get(upstream.target)
        timeout = target.config.timeout if target is not None else upstream.timeout
        try:
            if self.log_level is not None and "logging" in (upstream.init_result.get("capabilities") or {}):
                await upstream.request("logging/setLevel", {"level": self.log_level}, timeout=timeout)
            for uri in sorted(self.subscriptions):
                route = self.gateway.view.route_uri(uri)
                if route is not None and route.target == upstream.target:
                    await upstream.request("resources/subscribe", {"uri": route.original}, timeout=timeout)
        except UpstreamError as exc:
            log.warning("session %s: restoring state on '%s' failed: %s", self.id[:8], upstream.target, exc.reason)

    async def _forward(
        self, route: Route, msg: Message, params: dict[str, Any], emit: Emit | None
    ) -> Message:
        rid = msg["id"]
        method: str = msg["method"]
        target = self.gateway.targets.get(route.target)
        if target is None or not target.ready:
            state = "removed" if target is None else (target.last_error or target.state)
            return error(
                rid,
                TARGET_UNAVAILABLE,
                f"target '{route.target}' is unavailable: {state}",
                {"target": route.target},
            )
        token = None
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            token = meta["progressToken"]
            params = {**params, "_meta": {**meta, "progressToken": f"mcpmux-{next(_tokens)}"}}
        held = None
        if self.stateless and "requestState" in params:
            params, held = await self._resume(route, method, params)
        call = Call(self, route.target, emit, token)
        target.inflight += 1
        try:
            upstream = await self.upstream_for(target)
            if upstream.modern:
                params = self._envelope(params, upstream)
            elif self.stateless:
                # Fix (eras e2e): the client's 2026 envelope went on to handshake targets,
                # whose SDK refuses it on a handshake connection ("requests carrying the
                # 2026-07-28 envelope are not accepted"): no modern client could call a
                # tool of an SDK 2.x stdio server. The target knows it all from initialize.
                params = era.without_envelope(params)
                if method in HELD_METHODS:
                    # A handshake-era target may ask the client something mid-call: hold
                    # the call so the answer can arrive on a later request (MRTR translation).
                    if held is None:
                        held = self.gateway.continuations.start(target.name, upstream, method, params)
                        held.origin = _origin(method, route)
                    return await self._await_held(held, rid, emit, token)
            uid = upstream.next_id()
            self._inflight[rid] = (upstream, uid, asyncio.current_task(), call)
            try:
                resp = await upstream.request(method, params, call, id=uid)
                res = resp.get("result")
                if isinstance(res, dict) and res.get("resultType") == "input_required":
                    resp = await self._input_required(route, upstream, method, params, resp, call)
            finally:
                self._inflight.pop(rid, None)
        except UpstreamError as exc:
            return error(rid, TARGET_UNAVAILABLE, str(exc), {"target": route.target})
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not call.cancelled or task is None:
                raise
            task.uncancel()
            return error(rid, REQUEST_CANCELLED, "request cancelled by the client")
        finally:
            target.inflight -= 1
        out = dict(resp)
        out["id"] = rid
        return out

    def _envelope(self, params: dict[str, Any], upstream: UpstreamSession) -> dict[str, Any]:
        """A modern target needs the client's version, capabilities and info on every request."""
        meta = dict(params.get("_meta") or {})
        meta[era.K_VERSION] = upstream.protocol_version
        meta.setdefault(era.K_CAPABILITIES, self.capabilities)
        meta.setdefault(era.K_CLIENT_INFO, self.client_info or {"name": "mcpmux", "version": "0"})
        if self.log_level is not None:
            meta.setdefault(era.K_LOG_LEVEL, self.log_level)
        return {**params, "_meta": meta}

    async def _resume(
        self, route: Route, method: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], Continuation | None]:
        """A modern client's retry: unwrap our requestState, deliver its inputResponses."""
        params = dict(params)
        state = self.gateway.sealer.open(params.pop("requestState", None))
        responses = params.pop("inputResponses", None) or {}
        if not isinstance(responses, dict):
            raise RPCError(INVALID_PARAMS, "inputResponses must be an object")
        # Fix (eras e2e): only the target was checked, so a held call's state presented on
        # another tool of the same target resumed that call and answered with its result.
        if state.get("t") != route.target or state.get("o") != _origin(method, route):
            raise RPCError(INVALID_PARAMS, "requestState belongs to another tool, prompt or resource")
        if "c" not in state:  # a modern target's own state: give it back, untouched
            if state.get("s") is not None:
                params["requestState"] = state["s"]
            if responses:
                params["inputResponses"] = responses
            return params, None
        held = self.gateway.continuations.get(state["c"])
        if held is None:
            raise RPCError(INVALID_PARAMS, "requestState expired: send the request again without it")
        for key, value in responses.items():
            # Keys we did not ask (or already had answered) are ignored: mrtr.mdx says a
            # server SHOULD ignore what it does not recognize.
            await held.answer(key, value)
        return params, held

    async def _await_held(self, held: Continuation, rid: Any, emit: Emit | None, token: Any) -> Message:
        held.emit, held.token, held.log_level = emit, token, self.log_level
        if held.pending:
            # Fix (eras e2e): a retry that left a question unanswered waited for an event
            # that could not come (the target still waits for that answer). mrtr.mdx: ask
            # for the missing information again instead.
            return self._ask_input(held, rid)
        try:
            event = await held.next_event()
        except asyncio.CancelledError:
            # The client closed the stream of the request waiting on the call: in 2026 that
            # cancels it (streamable-http.mdx), so the target stops working on it too.
            await asyncio.shield(self.gateway.continuations.drop(held, "cancelled by the client"))
            raise
        if event is None:
            return error(rid, INVALID_PARAMS, "a newer request with this requestState took over the call")
        kind, value, upstream = event
        if kind != "request":
            await self.gateway.continuations.drop(held, "done")
            if kind == "error":
                return error(rid, TARGET_UNAVAILABLE, str(value), {"target": held.target})
            return {**value, "id": rid}
        assert upstream is not None
        needed = NEEDS_CAPABILITY.get(value.get("method", ""))
        if needed is not None and needed not in self.capabilities:
            await upstream.respond(
                error(value["id"], METHOD_NOT_FOUND, f"the client did not declare the '{needed}' capability")
            )
            await self.gateway.continuations.drop(held, f"client lacks {needed}")
            return error(
                rid,
                era.MISSING_CAPABILITY,
                f"this request needs the client capability '{needed}'",
                # A ClientCapabilities object (schema: MissingRequiredClientCapabilityError).
                {"requiredCapabilities": {needed: {}}},
            )
        key = f"r{next(held.keys)}"
        held.pending[key] = (upstream, value["id"])
        held.asked[key] = {"method": value["method"], "params": value.get("params") or {}}
        return self._ask_input(held, rid)

    def _ask_input(self, held: Continuation, rid: Any) -> Message:
        """The InputRequiredResult for what the held call still waits for."""
        state = self.gateway.sealer.seal({"t": held.target, "o": held.origin, "c": held.id})
        return result(
            rid, {"resultType": "input_required", "inputRequests": dict(held.asked), "requestState": state}
        )

    async def _input_required(
        self,
        route: Route,
        upstream: UpstreamSession,
        method: str,
        params: dict[str, Any],
        resp: Message,
        call: Call,
    ) -> Message:
        """A modern target wants input. A modern client gets it with the target's state
        sealed; a handshake client is asked with real requests and the call retried."""
        res = resp["result"]
        if self.stateless:
            origin = _origin(method, route)
            sealed = self.gateway.sealer.seal({"t": route.target, "o": origin, "s": res.get("requestState")})
            return {**resp, "result": {**res, "requestState": sealed}}
        for _ in range(MAX_INPUT_ROUNDS):
            answers: dict[str, Any] = {}
            for key, request in (res.get("inputRequests") or {}).items():
                answer = await self.ask(request, call.emit)
                if "error" in answer:
                    return {"jsonrpc": "2.0", "id": resp.get("id"), "error": answer["error"]}
                answers[key] = answer.get("result")
            retry = {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
            retry["inputResponses"] = answers
            if "requestState" in res:
                retry["requestState"] = res["requestState"]
            resp = await upstream.request(method, retry, call)
            res = resp.get("result")
            if not (isinstance(res, dict) and res.get("resultType") == "input_required"):
                return resp
        return error(resp.get("id"), TARGET_UNAVAILABLE, f"target '{route.target}' kept asking for input",
                     {"target": route.target})

    async def ask(self, request: Any, emit: Emit | None) -> Message:
        """Send the client a request of the gateway's own and wait for its answer."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return error(None, INVALID_PARAMS, "the target sent a malformed input request")
        needed = NEEDS_CAPABILITY.get(request["method"])
        if needed is not None and needed not in self.capabilities:
            return error(None, era.MISSING_CAPABILITY, f"the client did not declare '{needed}'",
                         {"requiredCapabilities": {needed: {}}})
        gid = next(self._ids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._owed[gid] = fut
        try:
            await self.send({"jsonrpc": "2.0", "id": gid, "method": request["method"],
                             "params": request.get("params") or {}}, emit)
            return await fut
        finally:
            self._owed.pop(gid, None)

    async def _subscription(self, method: str, msg: Message, params: dict[str, Any]) -> Message:
        route = self._route_uri(params)
        uri = params["uri"]
        target = self.gateway.targets.get(route.target)
        if target is not None and target.session_era(False) == "modern":
            # A modern-only target has no resources/subscribe: the gateway follows the URI
            # on its subscriptions/listen stream and routes updates to this session.
            if method == "resources/subscribe":
                if not await self.gateway.subscribe_shared(self.id, uri):
                    raise RPCError(INVALID_PARAMS, f"cannot subscribe to {uri}")
                self.subscriptions.add(uri)
            else:
                await self.gateway.unsubscribe_shared(self.id, uri)
                self.subscriptions.discard(uri)
            return result(msg["id"], {})
        if target is not None and target.shared:
            subs = target.subscribers.setdefault(route.original, set())
            first, last = not subs, False
            if method == "resources/subscribe":
                subs.add(self.id)
                self.subscriptions.add(uri)
            else:
                subs.discard(self.id)
                self.subscriptions.discard(uri)
                last = not subs
                if not subs:
                    target.subscribers.pop(route.original, None)
            if (method == "resources/subscribe" and first) or last:
                return await self._forward(route, msg, {**params, "uri": route.original}, None)
            return result(msg["id"], {})
        resp = await self._forward(route, msg, {**params, "uri": route.original}, None)
        if "result" in resp:
            if method == "resources/subscribe":
                self.subscriptions.add(uri)
            else:
                self.subscriptions.discard(uri)
        return resp

    async def _complete(self, msg: Message, params: dict[str, Any], emit: Emit | None) -> Message:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise RPCError(INVALID_PARAMS, "params.ref must be an object")
        view = self.gateway.view
        if ref.get("type") == "ref/prompt":
            route = self._route_name(ref, view.prompts, "prompt")
            new_ref = {**ref, "name": route.original}
        elif ref.get("type") == "ref/resource":
            uri = ref.get("uri")
            found = view.template_uris.get(uri) if isinstance(uri, str) else None
            route = found or self._route_uri(ref)
            new_ref = {**ref, "uri": route.original}
        else:
            raise RPCError(INVALID_PARAMS, "params.ref.type must be ref/prompt or ref/resource")
        return await self._forward(route, msg, {**params, "ref": new_ref}, emit)

    async def _set_level(self, rid: Any, params: dict[str, Any]) -> Message:
        level = params.get("level")
        if level not in LEVEL_RANK:
            raise RPCError(INVALID_PARAMS, f"level must be one of {', '.join(LOG_LEVELS)}")
        self.log_level = level
        for name, up in list(self.upstreams.items()):
            if "logging" in (up.init_result.get("capabilities") or {}):
                try:
                    await up.request("logging/setLevel", {"level": level}, timeout=10)
                except UpstreamError as exc:
                    log.info("session %s: setLevel on '%s' failed: %s", self.id[:8], name, exc.reason)
        await self.gateway.shared_log_levels()
        return result(rid, {})

    async def _unsolicited(self, msg: Message, upstream: UpstreamSession) -> None:
        """A message on this client's own upstream session that no call carried."""
        method = msg.get("method", "")
        target = self.gateway.targets.get(upstream.target)
        if "id" in msg:
            await self.relay_request(msg, upstream, None)
        elif method.endswith("/list_changed"):
            if target is not None:
                from .target import LIST_CHANGED

                kind = LIST_CHANGED.get(method)
                if kind is not None:
                    target.refresh(kind)
        elif method == "notifications/resources/updated":
            params = msg.get("params") or {}
            uri = params.get("uri")
            if isinstance(uri, str):
                exposed = self.gateway.view.expose_uri(upstream.target, uri)
                self.post({**msg, "params": {**params, "uri": exposed}})
        elif method == "notifications/message":
            if self.admits(msg):
                self.post(msg)
        elif method != "notifications/progress":
            self.post(msg)

    # -- end -------------------------------------------------------------
    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for _, _, task, call in list(self._inflight.values()):
            if task is not None and not task.done() and task is not asyncio.current_task():
                call.cancelled = True
                task.cancel()
        ups, self.upstreams = self.upstreams, {}
        await asyncio.gather(*(u.aclose("client session ended") for u in ups.values()))
        for target in list(self.gateway.targets.values()):
            emptied = False
            for uri, subs in list(target.subscribers.items()):
                if self.id in subs:
                    subs.discard(self.id)
                    if not subs:
                        del target.subscribers[uri]
                        if target.session is not None and target.session.modern:
                            emptied = True  # one new listen stream below, for all of them
                        elif target.session is not None:
                            try:
                                await target.session.request(
                                    "resources/unsubscribe", {"uri": uri}, timeout=target.config.timeout
                                )
                            except UpstreamError:
                                pass
            relisten = getattr(target.session, "relisten", None)
            if emptied and relisten is not None:
                await relisten()
