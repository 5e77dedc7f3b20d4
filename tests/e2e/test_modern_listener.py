"""The 2026-07-28 (stateless) protocol on ``/mcp``, byte by byte (issue 7).

Raw HTTP against a gateway fronting a 2026-07-28-only server (``modern``) and a
handshake-only server (``legacy``), both built on the official Python SDK
(``tests/peers/era_servers.py``): envelope and header validation with the 2026 error
codes and statuses, ``server/discover``, cache hints on merged lists, the
multi-round-trip flow (a tampered ``requestState``, a retry missing an answer, two
retries racing), cancellation by closing the stream, ``subscriptions/listen``,
request-scoped logging, and ``Mcp-Param-*`` headers regenerated for a renamed tool.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support.conformance import conformance_backend
from tests.support.eras import era_server
from tests.support.gateway import Gateway, run_gateway

V = "2026-07-28"
K_VERSION = "io.modelcontextprotocol/protocolVersion"
K_CAPS = "io.modelcontextprotocol/clientCapabilities"
K_INFO = "io.modelcontextprotocol/clientInfo"
K_LEVEL = "io.modelcontextprotocol/logLevel"
K_SUB = "io.modelcontextprotocol/subscriptionId"
NAME_KEY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
ALL_CAPS: dict[str, Any] = {"elicitation": {"form": {}}, "sampling": {}, "roots": {}}
#: Every wait is bounded: a missing event fails the test instead of hanging it.
TIMEOUT = httpx.Timeout(20.0)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("modern-listener")
    with (
        era_server("modern", tmp / "a.log", ttl_ms=60_000, cache_scope="public") as a,
        era_server("modern", tmp / "b.log", ttl_ms=5_000, cache_scope="public") as b,
        era_server("handshake", tmp / "legacy.log") as legacy,
    ):
        yield {"modern": a, "modern-b": b, "legacy": legacy}


@pytest.fixture(scope="module")
def gw(servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {"targets": [{"name": n, "http": {"url": servers[n]}} for n in ("modern", "legacy")]}
    with run_gateway(config, tmp_path_factory.mktemp("modern-listener-gw")) as g:
        yield g


# -- a tiny 2026 client ------------------------------------------------------------------
def envelope(
    caps: dict[str, Any] | None = None, level: str | None = None, version: str = V
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        K_VERSION: version,
        K_CAPS: {} if caps is None else caps,
        K_INFO: {"name": "raw-test", "version": "1"},
    }
    if level is not None:
        meta[K_LEVEL] = level
    return meta


def request(
    method: str,
    params: dict[str, Any] | None = None,
    *,
    id: Any = 1,
    meta: dict[str, Any] | None = None,
    headers: dict[str, str | None] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A modern request and the headers a conforming client sends with it; ``headers``
    overrides them (None removes one)."""
    body_params = dict(params or {})
    if meta is not None:
        body_params["_meta"] = meta
    msg = {"jsonrpc": "2.0", "id": id, "method": method, "params": body_params}
    h: dict[str, str] = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": str((meta or {}).get(K_VERSION, V)),
        "Mcp-Method": method,
    }
    key = NAME_KEY.get(method)
    if key is not None and isinstance(body_params.get(key), str):
        h["Mcp-Name"] = body_params[key]
    for k, v in (headers or {}).items():
        h.pop(k, None)
        if v is not None:
            h[k] = v
    return msg, h


def sse_messages(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(
            line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")
        )
        if data.strip():
            out.append(json.loads(data))
    return out


def post(
    url: str,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    id: Any = 1,
    meta: dict[str, Any] | None = None,
    headers: dict[str, str | None] | None = None,
) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """POST one request: (HTTP status, the response, what came before it on the stream)."""
    msg, h = request(
        method, params, id=id, meta=envelope() if meta is None else meta, headers=headers
    )
    return send(url, msg, h)


def send(
    url: str, msg: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    r = httpx.post(url, content=json.dumps(msg), headers=headers, timeout=TIMEOUT)
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        msgs = sse_messages(r.text)
        assert msgs, r.text
        return r.status_code, msgs[-1], msgs[:-1]
    return r.status_code, r.json(), []


def call(
    url: str, name: str, args: dict[str, Any] | None = None, **kw: Any
) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    params: dict[str, Any] = {"name": name, "arguments": args or {}}
    params.update(kw.pop("extra", {}))
    return post(url, "tools/call", params, **kw)


def text_of(resp: dict[str, Any]) -> str:
    res = resp.get("result")
    assert isinstance(res, dict) and not res.get("isError"), resp
    return "".join(c["text"] for c in res["content"] if c.get("type") == "text")


def stats(url: str, target: str) -> dict[str, int]:
    _, resp, _ = call(url, f"{target}_stats")
    return dict(json.loads(text_of(resp)))


@contextlib.contextmanager
def raw_post(url: str, msg: dict[str, Any], headers: dict[str, str]) -> Iterator[socket.socket]:
    """A POST on a bare socket, so the test decides when the connection closes (an HTTP
    client would wait for the response headers, which come with the answer)."""
    parts = urlsplit(url)
    body = json.dumps(msg).encode()
    head = "".join(
        f"{k}: {v}\r\n"
        for k, v in {**headers, "Host": parts.netloc, "Content-Length": str(len(body))}.items()
    )
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    try:
        sock.sendall(f"POST {parts.path} HTTP/1.1\r\n{head}\r\n".encode() + body)
        yield sock
    finally:
        sock.close()


def runs(url: str, target: str) -> int:
    return stats(url, target).get("ask_name", 0)


def wait_for(check: Any, what: str, timeout: float = 15) -> None:
    """Poll until ``check()`` holds (bounded): the wait is not the assertion, ``check`` is."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_error(status: int, resp: dict[str, Any], http: int, code: int) -> dict[str, Any]:
    assert status == http, (status, resp)
    assert "error" in resp, resp
    assert resp["error"]["code"] == code, resp
    return resp["error"]


# -- envelope and headers ----------------------------------------------------------------
def test_missing_meta_or_capabilities_is_invalid_params(gw: Gateway) -> None:
    status, resp, _ = post(gw.mcp_url, "tools/list", meta={})
    assert_error(status, resp, 400, -32602)
    msg, h = request("tools/list", meta=None)
    status, resp, _ = send(gw.mcp_url, msg, h)  # no _meta at all, 2026 header
    assert_error(status, resp, 400, -32602)
    no_caps = {K_VERSION: V, K_INFO: {"name": "x", "version": "1"}}
    status, resp, _ = post(gw.mcp_url, "tools/list", meta=no_caps)
    err = assert_error(status, resp, 400, -32602)
    assert K_CAPS in err["message"]
    assert resp["id"] == 1


def test_version_header_must_match_meta(gw: Gateway) -> None:
    status, resp, _ = post(gw.mcp_url, "tools/list", headers={"MCP-Protocol-Version": "2025-11-25"})
    assert_error(status, resp, 400, -32020)
    status, resp, _ = post(gw.mcp_url, "tools/list", headers={"MCP-Protocol-Version": None})
    assert_error(status, resp, 400, -32020)


def test_method_and_name_headers_must_match_the_body(gw: Gateway) -> None:
    status, resp, _ = call(
        gw.mcp_url, "modern_echo", {"text": "x"}, headers={"Mcp-Method": "tools/list"}
    )
    assert_error(status, resp, 400, -32020)
    status, resp, _ = call(gw.mcp_url, "modern_echo", {"text": "x"}, headers={"Mcp-Method": None})
    assert_error(status, resp, 400, -32020)
    status, resp, _ = call(
        gw.mcp_url, "modern_echo", {"text": "x"}, headers={"Mcp-Name": "legacy_echo"}
    )
    err = assert_error(status, resp, 400, -32020)
    assert "Mcp-Name" in err["message"]
    status, resp, _ = call(gw.mcp_url, "modern_echo", {"text": "x"}, headers={"Mcp-Name": None})
    assert_error(status, resp, 400, -32020)
    status, resp, _ = post(
        gw.mcp_url,
        "resources/read",
        {"uri": "modern+modern://info"},
        headers={"Mcp-Name": "legacy+legacy://info"},
    )
    assert_error(status, resp, 400, -32020)

    def b64(value: str) -> str:
        return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="

    # The base64 sentinel form is decoded before comparing: right name, right answer.
    status, resp, _ = call(
        gw.mcp_url, "modern_echo", {"text": "x"}, headers={"Mcp-Name": b64("modern_echo")}
    )
    assert status == 200 and text_of(resp) == "modern echo: x"
    status, resp, _ = call(
        gw.mcp_url, "legacy_echo", {"text": "y"}, headers={"Mcp-Name": b64("legacy_echo")}
    )
    assert status == 200 and text_of(resp) == "legacy echo: y"
    status, resp, _ = call(
        gw.mcp_url, "modern_echo", {"text": "x"}, headers={"Mcp-Name": b64("legacy_echo")}
    )
    assert_error(status, resp, 400, -32020)
    status, resp, _ = call(
        gw.mcp_url, "modern_echo", {"text": "x"}, headers={"Mcp-Name": "=?base64?!!not-base64!!?="}
    )
    assert_error(status, resp, 400, -32020)


def test_unsupported_version_names_the_supported_ones(gw: Gateway) -> None:
    status, resp, _ = post(gw.mcp_url, "tools/list", meta=envelope(version="2099-01-01"))
    err = assert_error(status, resp, 400, -32022)
    assert V in err["data"]["supported"]
    assert err["data"]["requested"] == "2099-01-01"


@pytest.mark.parametrize("method", ["initialize", "ping"])
def test_handshake_methods_do_not_exist_in_2026(gw: Gateway, method: str) -> None:
    params = {"protocolVersion": V, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}
    status, resp, _ = post(gw.mcp_url, method, params if method == "initialize" else None)
    assert_error(status, resp, 404, -32601)
    # also with only the header saying 2026 (no envelope): still the modern answer
    msg = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {}}
    status, resp, _ = send(gw.mcp_url, msg, request(method)[1])
    assert_error(status, resp, 404, -32601)
    assert resp["id"] == 7


def test_server_discover(gw: Gateway) -> None:
    status, resp, _ = post(gw.mcp_url, "server/discover")
    assert status == 200
    res = resp["result"]
    assert res["resultType"] == "complete"
    assert V in res["supportedVersions"] and "2025-11-25" in res["supportedVersions"]
    assert {"tools", "prompts", "resources"} <= set(res["capabilities"])
    assert res["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcpmux"
    assert isinstance(res["ttlMs"], int) and res["cacheScope"] in ("public", "private")


# -- lists and their cache hints ---------------------------------------------------------
LISTS = [("tools/list", "tools"), ("prompts/list", "prompts"), ("resources/list", "resources")]


def test_lists_carry_result_type_and_conservative_cache_hints(gw: Gateway) -> None:
    """A handshake target gives no hint, so it counts as ``ttlMs: 0``, ``private``."""
    for method, key in LISTS:
        status, resp, _ = post(gw.mcp_url, method)
        assert status == 200, resp
        res = resp["result"]
        assert res["resultType"] == "complete"
        assert (res["ttlMs"], res["cacheScope"]) == (0, "private"), method
        assert res[key], method


def test_cache_hints_are_the_most_conservative_of_modern_targets(
    servers: dict[str, str], tmp_path: Path
) -> None:
    config = {
        "targets": [
            {"name": "a", "http": {"url": servers["modern"]}},
            {"name": "b", "http": {"url": servers["modern-b"]}},
        ]
    }
    with run_gateway(config, tmp_path) as g:
        for method, _ in LISTS:
            _, resp, _ = post(g.mcp_url, method)
            assert (resp["result"]["ttlMs"], resp["result"]["cacheScope"]) == (5_000, "public"), (
                resp
            )


# -- multi-round-trip ------------------------------------------------------------------
def test_missing_capability_for_a_handshake_target_that_asks(gw: Gateway) -> None:
    status, resp, _ = call(gw.mcp_url, "legacy_ask_name", meta=envelope(caps={"sampling": {}}))
    err = assert_error(status, resp, 400, -32021)
    assert err["data"]["requiredCapabilities"] == {"elicitation": {}}


@pytest.mark.parametrize("target", ["modern", "legacy"])
def test_input_required_round_trip_and_tampered_state(gw: Gateway, target: str) -> None:
    meta = envelope(caps=ALL_CAPS)
    before = runs(gw.mcp_url, target)
    status, resp, _ = call(gw.mcp_url, f"{target}_ask_name", meta=meta, id="first")
    assert status == 200 and resp["id"] == "first"
    res = resp["result"]
    assert res["resultType"] == "input_required", res
    ((key, ask),) = res["inputRequests"].items()
    assert ask["method"] == "elicitation/create"
    assert ask["params"]["message"] == "What is your name?"
    state = res["requestState"]
    assert isinstance(state, str) and state
    assert runs(gw.mcp_url, target) == before + 1

    answer = {key: {"action": "accept", "content": {"name": "Mallory"}}}
    body, mac = state.split(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for bad in (f"{flipped}.{mac}", f"{body}.{mac[::-1]}", "not-a-state", state + "x"):
        status, resp, _ = call(
            gw.mcp_url,
            f"{target}_ask_name",
            meta=meta,
            id="evil",
            extra={"inputResponses": answer, "requestState": bad},
        )
        assert "error" in resp, (bad, resp)
        assert resp["error"]["code"] == -32602, resp
        assert "Mallory" not in json.dumps(resp)
    # nothing reached the target: the tool did not run again
    assert runs(gw.mcp_url, target) == before + 1

    answer = {key: {"action": "accept", "content": {"name": "Ada"}}}
    status, resp, _ = call(
        gw.mcp_url,
        f"{target}_ask_name",
        meta=meta,
        id="retry",
        extra={"inputResponses": answer, "requestState": state},
    )
    assert status == 200 and resp["id"] == "retry"
    assert text_of(resp) == "Hello, Ada!"
    assert resp["result"]["resultType"] == "complete"


@pytest.mark.parametrize("target", ["modern", "legacy"])
def test_request_state_is_bound_to_its_request(gw: Gateway, target: str) -> None:
    """A state is good only on a retry of the request that got it: not on another
    target's tool, nor on another tool of the same target (before, a held call's state
    on ``legacy_ask_model`` resumed ``ask_name`` and answered with its result)."""
    meta = envelope(caps=ALL_CAPS)
    _, first, _ = call(gw.mcp_url, f"{target}_ask_name", meta=meta)
    state = first["result"]["requestState"]
    ((key, _),) = first["result"]["inputRequests"].items()
    evil = {key: {"action": "accept", "content": {"name": "Eve"}}}
    other = "legacy" if target == "modern" else "modern"
    for name, args in ((f"{other}_ask_name", {}), (f"{target}_ask_model", {"question": "?"})):
        _, resp, _ = call(
            gw.mcp_url, name, args, meta=meta, extra={"inputResponses": evil, "requestState": state}
        )
        assert resp.get("error", {}).get("code") == -32602, (name, resp)
        assert "Eve" not in json.dumps(resp)
    # the misused state reached nothing: the call still waits for its own answer
    good = {key: {"action": "accept", "content": {"name": "Ada"}}}
    _, resp, _ = call(
        gw.mcp_url,
        f"{target}_ask_name",
        meta=meta,
        extra={"inputResponses": good, "requestState": state},
    )
    assert text_of(resp) == "Hello, Ada!"


def test_sampling_request_reaches_a_modern_client(gw: Gateway) -> None:
    meta = envelope(caps=ALL_CAPS)
    _, resp, _ = call(gw.mcp_url, "legacy_ask_model", {"question": "2+2?"}, meta=meta)
    res = resp["result"]
    assert res["resultType"] == "input_required"
    ((key, ask),) = res["inputRequests"].items()
    assert ask["method"] == "sampling/createMessage"
    assert ask["params"]["messages"][0]["content"]["text"] == "2+2?"
    reply = {"role": "assistant", "model": "m", "content": {"type": "text", "text": "4"}}
    _, resp, _ = call(
        gw.mcp_url,
        "legacy_ask_model",
        {"question": "2+2?"},
        meta=meta,
        extra={"inputResponses": {key: reply}, "requestState": res["requestState"]},
    )
    assert text_of(resp) == "model said: 4"


def test_retry_without_all_answers_is_asked_again(gw: Gateway) -> None:
    """mrtr.mdx: a retry missing an answer gets the question again (not a hang), and
    answers to questions never asked are ignored."""
    meta = envelope(caps=ALL_CAPS)
    _, resp, _ = call(gw.mcp_url, "legacy_ask_name", meta=meta)
    first = resp["result"]
    state = first["requestState"]
    for extra in (
        {"requestState": state},
        {"requestState": state, "inputResponses": {"nobody-asked": {"action": "decline"}}},
    ):
        status, resp, _ = call(gw.mcp_url, "legacy_ask_name", meta=meta, extra=extra)
        assert status == 200, resp
        assert resp["result"]["resultType"] == "input_required", resp
        assert resp["result"]["inputRequests"] == first["inputRequests"]
    ((key, _),) = first["inputRequests"].items()
    answer = {key: {"action": "accept", "content": {"name": "Ada"}}, "extra": {"ignored": True}}
    _, resp, _ = call(
        gw.mcp_url,
        "legacy_ask_name",
        meta=meta,
        extra={"requestState": resp["result"]["requestState"], "inputResponses": answer},
    )
    assert text_of(resp) == "Hello, Ada!"
    # the call is over: its state cannot be replayed
    _, resp, _ = call(
        gw.mcp_url,
        "legacy_ask_name",
        meta=meta,
        extra={"requestState": state, "inputResponses": answer},
    )
    assert resp["error"]["code"] == -32602


def test_a_newer_retry_takes_over_a_held_call(gw: Gateway) -> None:
    """Two retries of one held call in flight: the newer one gets the result, the older
    one is told it was superseded (before, whichever waited first took the result)."""
    meta = envelope(caps=ALL_CAPS)
    started = stats(gw.mcp_url, "legacy").get("slow_started", 0)
    _, resp, _ = call(gw.mcp_url, "legacy_slow", {"seconds": 2, "ask": True}, meta=meta)
    held = resp["result"]
    ((key, _),) = held["inputRequests"].items()
    answer = {key: {"action": "accept", "content": {"name": "Ada"}}}
    older: dict[str, Any] = {}

    def first_retry() -> None:
        older["resp"] = call(
            gw.mcp_url,
            "legacy_slow",
            {"seconds": 2, "ask": True},
            meta=meta,
            id="older",
            extra={"requestState": held["requestState"], "inputResponses": answer},
        )[1]

    thread = threading.Thread(target=first_retry)
    thread.start()
    wait_for(
        lambda: stats(gw.mcp_url, "legacy").get("slow_started", 0) > started,
        "the answer to reach the target",
    )
    _, newer, _ = call(
        gw.mcp_url,
        "legacy_slow",
        {"seconds": 2, "ask": True},
        meta=meta,
        id="newer",
        extra={"requestState": held["requestState"]},
    )
    thread.join(TIMEOUT.read)
    assert newer["id"] == "newer" and text_of(newer) == "slept 2 for Ada"
    assert older["resp"]["id"] == "older" and older["resp"]["error"]["code"] == -32602, older


@pytest.mark.parametrize("target", ["modern", "legacy"])
def test_closing_the_stream_cancels_the_call_upstream(gw: Gateway, target: str) -> None:
    """streamable-http.mdx: closing the response stream MUST be treated as cancellation.
    A modern target sees its own stream closed; a handshake target (a held call) gets
    ``notifications/cancelled``."""
    before = stats(gw.mcp_url, target)
    msg, h = request(
        "tools/call",
        {"name": f"{target}_slow", "arguments": {"seconds": 60}},
        meta=envelope(caps=ALL_CAPS),
    )
    with raw_post(gw.mcp_url, msg, h):
        wait_for(
            lambda: (
                stats(gw.mcp_url, target).get("slow_started", 0) > before.get("slow_started", 0)
            ),
            "the slow call to reach the target",
        )
    # the stream is closed: the target's run ends as cancelled, not finished
    wait_for(
        lambda: (
            stats(gw.mcp_url, target).get("slow_cancelled", 0) > before.get("slow_cancelled", 0)
        ),
        "the target to see the cancellation",
    )
    assert stats(gw.mcp_url, target).get("slow_finished", 0) == before.get("slow_finished", 0)


# -- logging ---------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["modern", "legacy"])
def test_log_messages_only_when_asked(gw: Gateway, target: str) -> None:
    status, resp, before = call(gw.mcp_url, f"{target}_log_levels")
    assert status == 200 and text_of(resp) == "logged"
    assert [m for m in before if m.get("method") == "notifications/message"] == []

    status, resp, before = call(gw.mcp_url, f"{target}_log_levels", meta=envelope(level="warning"))
    assert text_of(resp) == "logged"
    levels = [m["params"]["level"] for m in before if m.get("method") == "notifications/message"]
    assert levels == ["warning", "error"]


# -- subscriptions/listen ----------------------------------------------------------------
class Listen:
    """An open ``subscriptions/listen`` stream, read event by event (bounded waits)."""

    def __init__(self, url: str, rid: Any, notifications: dict[str, Any]) -> None:
        msg, h = request(
            "subscriptions/listen", {"notifications": notifications}, id=rid, meta=envelope()
        )
        self._client = httpx.Client(timeout=TIMEOUT)
        self._cm = self._client.stream("POST", url, content=json.dumps(msg), headers=h)
        self.response = self._cm.__enter__()
        self._lines = self.response.iter_lines()

    def next(self) -> dict[str, Any]:
        data: list[str] = []
        for line in self._lines:
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                return dict(json.loads("\n".join(data)))
        raise AssertionError("listen stream ended")

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self._client.close()


@pytest.mark.parametrize("target", ["modern", "legacy"])
def test_subscriptions_listen(gw: Gateway, target: str) -> None:
    rid = f"listen-{target}"
    listen = Listen(gw.mcp_url, rid, {"toolsListChanged": True})
    try:
        assert listen.response.status_code == 200
        assert listen.response.headers["content-type"].startswith("text/event-stream")
        ack = listen.next()
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["_meta"][K_SUB] == rid
        assert ack["params"]["notifications"] == {"toolsListChanged": True}

        new = f"fresh_{target}"
        _, resp, _ = call(gw.mcp_url, f"{target}_add_tool", {"name": new})
        assert text_of(resp) == f"added {new}"
        note = listen.next()
        assert note["method"] == "notifications/tools/list_changed", note
        assert note["params"]["_meta"][K_SUB] == rid
    finally:
        listen.close()
    _, resp, _ = post(gw.mcp_url, "tools/list")
    assert f"{target}_{new}" in {t["name"] for t in resp["result"]["tools"]}


# -- Mcp-Param-* -------------------------------------------------------------------------
def test_mcp_param_headers_validated_and_regenerated(tmp_path: Path) -> None:
    """The conformance backend's ``test_x_mcp_header`` mirrors ``region`` into
    ``Mcp-Param-Region``. Through a gateway that renames it (``conf_…``) the client's
    header is checked against the argument, and the target gets its own headers (its
    Mcp-Name is the original name) and validates them: the call succeeds."""
    with (tmp_path / "backend.log").open("w") as log, conformance_backend(stderr=log) as backend:
        config = {"prefix": "always", "targets": [{"name": "conf", "http": {"url": backend}}]}
        with run_gateway(config, tmp_path) as g:
            _, resp, _ = post(g.mcp_url, "tools/list")
            tool = next(t for t in resp["result"]["tools"] if t["name"] == "conf_test_x_mcp_header")
            assert tool["inputSchema"]["properties"]["region"]["x-mcp-header"] == "Region"

            name = "conf_test_x_mcp_header"
            status, resp, _ = call(
                g.mcp_url, name, {"region": "eu-west"}, headers={"Mcp-Param-Region": "eu-west"}
            )
            assert status == 200 and text_of(resp) == "region=eu-west"

            encoded = "=?base64?" + base64.b64encode("Zürich".encode()).decode() + "?="
            status, resp, _ = call(
                g.mcp_url, name, {"region": "Zürich"}, headers={"Mcp-Param-Region": encoded}
            )
            assert status == 200 and text_of(resp) == "region=Zürich"

            status, resp, _ = call(
                g.mcp_url, name, {"region": "eu-west"}, headers={"Mcp-Param-Region": "us-east"}
            )
            assert_error(status, resp, 400, -32020)
            status, resp, _ = call(g.mcp_url, name, {"region": "eu-west"})
            assert_error(status, resp, 400, -32020)
            # an argument the client left out needs no header
            status, resp, _ = call(g.mcp_url, name, {})
            assert status == 200 and text_of(resp) == "region=<none>"


async def test_a_2026_notification_is_accepted(gw: Gateway) -> None:
    """2026 HTTP defines no client notifications; one sent anyway gets 202, not a
    'missing Mcp-Session-Id' that would point the client at the handshake era."""
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(
            gw.mcp_url,
            headers={
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
                "MCP-Protocol-Version": "2026-07-28",
                "Mcp-Method": "notifications/cancelled",
            },
            json={"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        )
    assert resp.status_code == 202, resp.text
