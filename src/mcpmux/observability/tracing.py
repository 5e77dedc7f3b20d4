"""OpenTelemetry traces: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, exported as OTLP over HTTP/protobuf.

One SERVER span per client request; a CLIENT span per upstream call made while it
runs. A W3C ``traceparent`` from the client (the HTTP header, or ``_meta.traceparent``
of the request) continues its trace, and every upstream request carries the
``traceparent`` of its CLIENT span: in ``params._meta`` (any target), and as an HTTP
header for HTTP targets (:func:`add_trace_headers`, called by ``upstream/http.py``).

While tracing is off :data:`TRACER` is None, and the hooks cost one global read: the
OpenTelemetry SDK is not even imported.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Mapping
from contextvars import ContextVar
from typing import Any

log = logging.getLogger("mcpmux.tracing")

#: The tracer while tracing is on, else None (read by the hot-path hooks).
TRACER: Any = None
_provider: Any = None
#: The SERVER span of the client request this task is answering.
_request_span: ContextVar[Any] = ContextVar("mcpmux_request_span", default=None)
#: ``traceparent`` of the upstream call this task is making (for HTTP headers).
_upstream_traceparent: ContextVar[str | None] = ContextVar("mcpmux_upstream_traceparent", default=None)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(env: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on if the environment asks for it (the standard OTEL_* variables:
    endpoint, headers, timeout, ``OTEL_SERVICE_NAME``). Returns whether it is on."""
    global TRACER, _provider
    if not wanted(env) or TRACER is not None:
        return TRACER is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from .. import __version__

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "mcpmux",
                                "service.version": __version__})
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    TRACER = _provider.get_tracer("mcpmux", __version__)
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    log.info("tracing: exporting spans to %s (OTLP/HTTP protobuf)", endpoint)
    return True


def shutdown() -> None:
    """Flush what is buffered and stop exporting."""
    global TRACER, _provider
    if _provider is not None:
        _provider.shutdown()
    TRACER, _provider = None, None


def _parent(traceparent: Any) -> Any:
    if not isinstance(traceparent, str) or not _TRACEPARENT.match(traceparent):
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def traceparent_of(span: Any) -> str:
    sc = span.get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


class RequestSpan:
    """The SERVER span of one client request (made by the observer when tracing is on)."""

    __slots__ = ("span", "token")

    def __init__(self, method: str, tool: str | None, traceparent: Any, attributes: dict[str, Any]) -> None:
        from opentelemetry.trace import SpanKind

        name = f"{method} {tool}" if tool else method
        self.span = TRACER.start_span(name, context=_parent(traceparent), kind=SpanKind.SERVER,
                                      attributes=attributes)
        self.token = _request_span.set(self.span)

    def end(self, outcome: str, target: str | None, error: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self.span
        span.set_attribute("mcpmux.outcome", outcome)
        if target:
            span.set_attribute("mcpmux.target", target)
        if outcome not in ("ok", "tool_error"):
            span.set_attribute("error.type", outcome)
            span.set_status(Status(StatusCode.ERROR, error or outcome))
        span.end()
        _request_span.reset(self.token)


class UpstreamCall:
    """The CLIENT span of one upstream request, child of the current request's span."""

    __slots__ = ("span", "traceparent")

    def __init__(self, parent: Any, target: str, method: str) -> None:
        from opentelemetry.trace import SpanKind, set_span_in_context

        self.span = TRACER.start_span(f"{method} {target}", context=set_span_in_context(parent),
                                      kind=SpanKind.CLIENT,
                                      attributes={"mcp.method.name": method, "mcpmux.target": target})
        self.traceparent = traceparent_of(self.span)

    def with_meta(self, params: Any) -> Any:
        """``params`` whose ``_meta.traceparent`` names this span (a copy; never the client's)."""
        if params is None:
            return {"_meta": {"traceparent": self.traceparent}}
        if not isinstance(params, dict):
            return params
        meta = params.get("_meta")
        meta = {**meta, "traceparent": self.traceparent} if isinstance(meta, dict) else {"traceparent": self.traceparent}
        return {**params, "_meta": meta}

    async def run(self, call: Awaitable[Any]) -> Any:
        from opentelemetry.trace import Status, StatusCode

        token = _upstream_traceparent.set(self.traceparent)
        try:
            resp = await call
        except BaseException as exc:
            self.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            self.span.set_attribute("error.type", type(exc).__name__)
            raise
        else:
            if isinstance(resp, dict) and "error" in resp:
                self.span.set_status(Status(StatusCode.ERROR, "JSON-RPC error"))
                self.span.set_attribute("error.type", "jsonrpc_error")
            return resp
        finally:
            _upstream_traceparent.reset(token)
            self.span.end()


def upstream_call(target: str, method: str) -> UpstreamCall | None:
    """A span for an upstream request, when it is made on behalf of a traced client
    request (catalog lists and pings of the gateway's own are not traced)."""
    if TRACER is None:
        return None
    parent = _request_span.get()
    return UpstreamCall(parent, target, method) if parent is not None else None


def add_trace_headers(headers: dict[str, str]) -> None:
    """The hook for HTTP upstreams: ``traceparent`` of the upstream call being made."""
    if TRACER is not None:
        tp = _upstream_traceparent.get()
        if tp is not None:
            headers["traceparent"] = tp
