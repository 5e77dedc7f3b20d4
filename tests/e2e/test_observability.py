"""Metrics, the access log and traces, seen from outside a running gateway.

* ``/metrics`` on the admin port: request counters and durations labelled by target,
  method and outcome, target state, restarts, sessions; label values never taken
  from what a client sent.
* ``--log-format json``: one JSON access line per request, without arguments.
* OpenTelemetry: a stand-in collector receives OTLP/HTTP protobuf (decoded with
  ``opentelemetry-proto``); a client's ``traceparent`` continues its trace, the
  upstream call is a child span, and an HTTP target receives ``traceparent`` for it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.gateway import Gateway, run_gateway
from tests.support.mcp_http import RawClient

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def _samples(gw: Gateway, name: str) -> list[tuple[dict[str, str], float]]:
    text = httpx.get(gw.admin_url + "/metrics", timeout=5).text
    return [(s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name]


def _value(gw: Gateway, name: str, **labels: str) -> float | None:
    for got, value in _samples(gw, name):
        if all(got.get(k) == v for k, v in labels.items()):
            return value
    return None


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPMUX_LOG_FORMAT", "json")


async def test_metrics_and_json_access_log(tmp_path: Path, json_logs: None) -> None:
    with run_gateway({"targets": [CLOCK]}, tmp_path) as gw:
        async with RawClient(gw.mcp_url) as c:
            await c.initialize()
            now = await c.rpc("tools/call", {"name": "now", "arguments": {}})
            assert "result" in now
            assert "result" in await c.rpc("tools/list")
            bad = await c.rpc("tools/call", {"name": "evil_label_injection", "arguments": {"secret": "hunter2"}})
            assert "error" in bad
            weird = await c.rpc("made/up-method-xyz")
            assert "error" in weird
            assert _value(gw, "mcpmux_sessions") == 1
        # With one target the prefix is off: "now" is clock's tool.
        assert _value(gw, "mcpmux_requests_total", target="clock", method="tools/call", outcome="ok") == 1
        assert _value(gw, "mcpmux_requests_total", target="-", method="tools/list", outcome="ok") == 1
        # An unlisted name goes to the only target, which refuses it: the label is the
        # target that answered (the dispatcher's routing), never the name the client sent.
        assert _value(gw, "mcpmux_requests_total", target="clock", method="tools/call", outcome="error") == 1
        assert _value(gw, "mcpmux_requests_total", target="-", method="other", outcome="error") == 1
        assert _value(gw, "mcpmux_request_duration_seconds_count", target="clock", method="tools/call") == 2
        assert _value(gw, "mcpmux_requests_total", target="-", method="initialize", outcome="ok") == 1
        assert _value(gw, "mcpmux_target_up", target="clock") == 1
        assert _value(gw, "mcpmux_upstream_restarts_total", target="clock") == 0
        assert _value(gw, "mcpmux_discovery_updates_total", source="config") == 1
        # Label values come from the config and a fixed table, never from the client.
        values = {v for labels, _ in _samples(gw, "mcpmux_requests_total") for v in labels.values()}
        assert not any("evil" in v or "made/up" in v for v in values), values

        lines = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
        assert lines, gw.log()[-2000:]
        access = [entry for entry in lines if entry.get("event") == "access"]
        call = next(a for a in access if a["method"] == "tools/call" and a["outcome"] == "ok")
        for key in ("time", "session", "principal", "method", "target", "tool", "outcome", "duration_ms", "bytes"):
            assert key in call, call
        assert call["target"] == "clock" and call["tool"] == "now"
        # The size the target sent (measured upstream, not serialised again): the
        # answer's but for its id and the sender's spacing.
        assert abs(call["bytes"] - len(json.dumps(now, separators=(",", ":")))) <= 8, (call, now)
        assert call["session"] and len(call["session"]) == 8
        opened = next(a for a in access if a["method"] == "initialize")
        assert opened["outcome"] == "ok" and opened["session"] == call["session"]
        assert "hunter2" not in gw.log()  # arguments are never logged by default
        assert all(entry.get("level") for entry in lines)


def test_a_removed_targets_series_go_with_it(tmp_path: Path) -> None:
    """Discovery may churn target names: a removed target leaves no series behind."""
    notes = next(t for t in demo_config()["targets"] if t["name"] == "notes")
    with run_gateway({"targets": [CLOCK, notes]}, tmp_path) as gw:
        assert _value(gw, "mcpmux_requests_total", target="notes", method="tools/call", outcome="ok") == 0
        assert _value(gw, "mcpmux_target_up", target="notes") == 1
        cfg = json.loads(gw.config_path.read_text())
        cfg["targets"] = [t for t in cfg["targets"] if t["name"] != "notes"]
        gw.config_path.write_text(json.dumps(cfg))
        gw.wait_target_gone("notes")
        assert not [labels for name in ("mcpmux_requests_total", "mcpmux_target_up")
                    for labels, _ in _samples(gw, name) if labels.get("target") == "notes"]
        assert _value(gw, "mcpmux_target_up", target="clock") == 1


# -- tracing ----------------------------------------------------------------------


class _Collector(ThreadingHTTPServer):
    spans: list[Any]


class _CollectorHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces", self.path
        assert self.headers["Content-Type"] == "application/x-protobuf"
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                self.server.spans.extend(ss.spans)  # type: ignore[attr-defined]
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_: object) -> None:
        pass


class _Target(ThreadingHTTPServer):
    calls: list[tuple[str, dict[str, str], dict[str, Any]]]


class _TargetHandler(BaseHTTPRequestHandler):
    """A minimal streamable-HTTP MCP server that records each request's headers."""

    def do_POST(self) -> None:
        msg = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.calls.append((msg.get("method"), dict(self.headers.items()), msg))  # type: ignore[attr-defined]
        if "id" not in msg:
            self._send(202, b"")
            return
        method, rid = msg["method"], msg["id"]
        if method == "initialize":
            res: Any = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                        "serverInfo": {"name": "recorder", "version": "0"}}
        elif method == "tools/list":
            res = {"tools": [{"name": "hello", "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            res = {"content": [{"type": "text", "text": "hi"}]}
        elif method == "ping":
            res = {}
        else:
            self._send(200, orjson.dumps({"jsonrpc": "2.0", "id": rid,
                                          "error": {"code": -32601, "message": "method not found"}}))
            return
        self._send(200, orjson.dumps({"jsonrpc": "2.0", "id": rid, "result": res}))

    def do_GET(self) -> None:
        self._send(405, b"")

    def do_DELETE(self) -> None:
        self._send(200, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Mcp-Session-Id", "recorder-session")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector(("127.0.0.1", 0), _CollectorHandler)
    server.spans = []
    yield from _serve(server)  # type: ignore[misc]


@pytest.fixture
def recorder() -> Iterator[_Target]:
    server = _Target(("127.0.0.1", 0), _TargetHandler)
    server.calls = []
    yield from _serve(server)  # type: ignore[misc]


async def test_traces_continue_the_client_trace_to_the_target(
    tmp_path: Path, collector: _Collector, recorder: _Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "mcpmux-test")
    url = f"http://127.0.0.1:{recorder.server_port}/mcp"
    targets = [CLOCK, {"name": "rec", "http": {"url": url}}]
    with run_gateway({"targets": targets}, tmp_path) as gw:
        assert httpx.get(gw.admin_url + "/api/overview").json()["tracing"] is True
        async with RawClient(gw.mcp_url) as c:
            await c.initialize()
            msg = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {"name": "rec_hello", "arguments": {}}}
            resp = await c.http.post(gw.mcp_url, content=orjson.dumps(msg),
                                     headers=c.headers(traceparent=f"00-{TRACE_ID}-{CLIENT_SPAN}-01"))
            assert "hi" in resp.text
            # A 2026-style _meta.traceparent continues a trace too (here on a stdio target).
            meta_trace = "11111111111111111111111111111111"
            got = await c.rpc("tools/call", {"name": "clock_now", "arguments": {},
                                             "_meta": {"traceparent": f"00-{meta_trace}-2222222222222222-01"}})
            assert "result" in got
            # No traceparent: a new trace, and the gateway's own catalog calls stay untraced.
            assert "result" in await c.rpc("tools/call", {"name": "clock_now", "arguments": {}})
        for _ in range(100):  # the batch processor exports every 100 ms (and on shutdown)
            if len([s for s in collector.spans if s.kind == 2]) >= 3:
                break
            await asyncio.sleep(0.1)
    spans = collector.spans
    server = [s for s in spans if s.kind == 2]  # SPAN_KIND_SERVER
    client = [s for s in spans if s.kind == 3]  # SPAN_KIND_CLIENT
    assert len(server) == 3, spans
    by_trace = {s.trace_id.hex(): s for s in server}
    call = by_trace[TRACE_ID]
    assert call.parent_span_id.hex() == CLIENT_SPAN
    assert call.name == "tools/call rec_hello"
    attrs = {a.key: a.value for a in call.attributes}
    assert attrs["mcp.method.name"].string_value == "tools/call"
    assert attrs["mcpmux.target"].string_value == "rec"
    up = next(s for s in client if s.trace_id.hex() == TRACE_ID)
    assert up.parent_span_id == call.span_id
    # The HTTP target saw the upstream span's traceparent, as a header and in _meta.
    _, headers, body = next(c for c in recorder.calls if c[0] == "tools/call")
    lower = {k.lower(): v for k, v in headers.items()}
    expected = f"00-{TRACE_ID}-{up.span_id.hex()}-01"
    assert lower["traceparent"] == expected
    assert body["params"]["_meta"]["traceparent"] == expected
    # The _meta-carried trace was continued on the stdio target's call.
    assert meta_trace in by_trace
    assert by_trace[meta_trace].parent_span_id.hex() == "2222222222222222"
    assert any(s.trace_id.hex() == meta_trace for s in client)
    # Upstream requests outside a client request (initialize, lists) carry no traceparent.
    assert all("traceparent" not in {k.lower() for k in h} for m, h, _ in recorder.calls if m != "tools/call")
