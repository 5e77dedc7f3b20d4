"""The per-request hook: metrics, the access log line and the request's span."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..context import owner_key
from ..jsonrpc import RATE_LIMITED, REQUEST_CANCELLED, TARGET_UNAVAILABLE, Message, RPCError
from . import access, tracing
from .metrics import NO_TARGET, GatewayMetrics, method_label

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..gateway import Gateway

_LIST_KINDS: Final = frozenset({"tools", "prompts", "resources"})
#: Longest tool name (client input) written to the access log.
_MAX_NAME: Final = 200


def outcome_of(resp: Message) -> str:
    err = resp.get("error")
    if err is None:
        res = resp.get("result")
        return "tool_error" if isinstance(res, dict) and res.get("isError") is True else "ok"
    code = err.get("code") if isinstance(err, dict) else None
    if code == TARGET_UNAVAILABLE:
        return "unavailable"
    if code == RATE_LIMITED:
        return "rate_limited"
    if code == REQUEST_CANCELLED:
        return "cancelled"
    return "error"


def milliseconds(seconds: float) -> float:
    """Milliseconds to 3 decimals, without ``round()``'s decimal conversion: the
    division's nearest double prints as exactly those decimals."""
    return int(seconds * 1_000_000 + 0.5) / 1000


class Observer:
    """Owns the gateway's metrics registry; the dispatcher calls :meth:`begin`, then
    :meth:`done` or :meth:`failed`, around every client request. ``access_log``:
    write the access line; ``bodies`` (debug): with the call's arguments and result."""

    def __init__(self, gateway: Gateway, sessions: Callable[[], int], *, access_log: bool = True,
                 bodies: bool = False, metrics: bool = True, log_format: str = "text") -> None:
        self.gateway = gateway
        self.metrics = GatewayMetrics(lambda: list(gateway.targets.values()), sessions)
        self.access_log = access_log
        #: Batched lines on the log stream (None: through ``logging``, e.g. in tests).
        self.lines = access.AccessLog.for_root_logger(log_format == "json") if access_log else None
        self.bodies = bodies
        #: Request counters and durations (target state is read at scrape time either way).
        self.count = metrics
        self.metrics.prepare(t.name for t in gateway.config.targets)
        broadcast = gateway.on_list_changed

        def list_changed(method: str) -> None:
            kind = method.split("/")[1] if method.count("/") == 2 else ""
            self.metrics.list_changed.labels(kind if kind in _LIST_KINDS else "other").inc()
            broadcast(method)

        gateway.on_list_changed = list_changed
        gateway.on_apply = self._applied
        removed = gateway.on_target_removed

        async def target_removed(name: str) -> None:
            self.metrics.forget(name)  # discovery may churn names: no series outlive theirs
            if removed is not None:
                await removed(name)

        gateway.on_target_removed = target_removed

    def _applied(self, source: str) -> None:
        self.metrics.discovery.labels(source).inc()

    @staticmethod
    def name_of(method: str, params: Any) -> str | None:
        """The tool or prompt name a request asked for (client input: cut to 200 chars)."""
        if (method == "tools/call" or method == "prompts/get") and isinstance(params, dict):
            name = params.get("name")
            if isinstance(name, str):
                return name[:_MAX_NAME]
        return None

    def begin(self, ctx: RequestContext, msg: Message) -> tracing.RequestSpan | None:
        """The request's span, when traces are on."""
        return self._span(ctx, msg["method"], msg.get("params")) if tracing.TRACER is not None else None

    def done(self, ctx: RequestContext, msg: Message, resp: Message, start: float,
             span: tracing.RequestSpan | None) -> None:
        self._record(ctx, msg["method"], msg.get("params"), outcome_of(resp), start, resp, span)

    def failed(self, ctx: RequestContext, msg: Message, exc: BaseException, start: float,
               span: tracing.RequestSpan | None) -> None:
        outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "exception"
        self._record(ctx, msg["method"], msg.get("params"), outcome, start, None, span)

    def initialized(self, session: str | None, principal: Any, error: BaseException | None,
                    start: float) -> None:
        """An ``initialize`` (it has no session and no context before it succeeds)."""
        elapsed = time.perf_counter() - start
        if error is None:
            outcome = "ok"
        elif isinstance(error, asyncio.CancelledError):
            outcome = "cancelled"
        else:
            outcome = "error" if isinstance(error, RPCError) else "exception"
        if self.count:
            self.metrics.stats(NO_TARGET, "initialize").record(outcome, elapsed)
        if self.access_log and access.log.isEnabledFor(logging.INFO):
            self._write({"event": "access", "session": session[:8] if session else None,
                         "principal": owner_key(principal), "transport": None,
                         "method": "initialize", "target": None, "tool": None, "outcome": outcome,
                         "duration_ms": milliseconds(elapsed), "bytes": 0})

    def _write(self, fields: dict[str, Any]) -> None:
        if self.lines is not None:
            self.lines.write(fields)
        else:
            access.write(fields)

    def _span(self, ctx: RequestContext, method: str, params: Any) -> tracing.RequestSpan:
        tool = self.name_of(method, params)
        parent = ctx.headers.get("traceparent")
        if parent is None and isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict):
                parent = meta.get("traceparent")
        attributes: dict[str, Any] = {"mcp.method.name": method, "network.transport": ctx.transport}
        if ctx.session.id:
            attributes["mcp.session.id"] = ctx.session.id[:8]
        if tool:
            attributes["gen_ai.tool.name" if method == "tools/call" else "gen_ai.prompt.name"] = tool
        return tracing.RequestSpan(method, tool, parent, attributes)

    def _record(self, ctx: RequestContext, method: str, params: Any, outcome: str, start: float,
                resp: Message | None, span: tracing.RequestSpan | None) -> None:
        elapsed = time.perf_counter() - start
        # The dispatcher's own routing (ctx.target) labels the request: always a target
        # the gateway has, never a string the client made up, and no second lookup.
        target, tool = ctx.target or NO_TARGET, self.name_of(method, params)
        if self.count:
            self.metrics.stats(target, method_label(method)).record(outcome, elapsed)
        if span is not None:
            err = resp.get("error") if resp is not None else None
            span.end(outcome, None if target == NO_TARGET else target,
                     err.get("message") if isinstance(err, dict) else None)
        if self.access_log and access.log.isEnabledFor(logging.INFO):
            session = ctx.session.id[:8] or None
            principal = owner_key(ctx.principal)
            named = None if target == NO_TARGET else target
            # Measured upstream when forwarded: a big answer is not serialised twice.
            size = ctx.size if ctx.size is not None else len(orjson.dumps(resp)) if resp is not None else 0
            lines = self.lines
            if lines is not None and not lines.json and not self.bodies:  # the usual line: no dict
                lines.text(session, principal, ctx.transport, method, named, tool, outcome,
                           milliseconds(elapsed), size)
                return
            fields: dict[str, Any] = {
                "event": "access",
                "session": session,
                "principal": principal,
                "transport": ctx.transport,
                "method": method,
                "target": named,
                "tool": tool,
                "outcome": outcome,
                "duration_ms": milliseconds(elapsed),
                "bytes": size,
            }
            if self.bodies:
                fields["arguments"] = params.get("arguments") if isinstance(params, dict) else None
                fields["result"] = resp.get("result") if resp is not None else None
            self._write(fields)

    def close(self) -> None:
        """Write what the access log still holds."""
        if self.lines is not None:
            self.lines.flush()
