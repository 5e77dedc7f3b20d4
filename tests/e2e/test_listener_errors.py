"""Bad input at the listener: the right status, a JSON-RPC error with a readable
message, and nothing changed (the gateway still serves the next client normally).

Raw httpx against ``/mcp`` so every status code and header is visible. Also the
``mcpmux validate`` command, which is the same promise for config files.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.support.gateway import Gateway, run_gateway
from tests.support.mcp_http import ACCEPT, RawClient

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
MAX_BODY = 4096
ALLOWED = "https://app.example"
JSON_HEADERS = {"Accept": ACCEPT, "Content-Type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "targets": [CLOCK],
        "allowed_origins": [ALLOWED],
        "limits": {"max_body_bytes": MAX_BODY},
    }
    with run_gateway(config, tmp_path_factory.mktemp("listener")) as g:
        yield g


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=20) as client:
        yield client


@pytest.fixture
async def session(gw: Gateway) -> Any:
    """An initialized session: (its id, its protocol version)."""
    async with RawClient(gw.mcp_url) as c:
        await c.initialize()
        yield c


def rpc_error(resp: httpx.Response, status: int, code: int | None = None) -> dict[str, Any]:
    """Assert an error response: status, JSON body, JSON-RPC error with a readable message."""
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert body.get("jsonrpc") == "2.0", body
    err = body["error"]
    assert isinstance(err["message"], str) and len(err["message"]) >= 10, err
    if code is not None:
        assert err["code"] == code, err
    return body


def sess_headers(c: RawClient, **extra: str) -> dict[str, str]:
    return c.headers(**extra)


# --------------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"not json",
        b"",
        b'{"jsonrpc": "2.0", "method": "ping", "id": 1,}',
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
    ],
    ids=["truncated", "text", "empty", "trailing-comma", "not-utf8", "too-deep"],
)
async def test_malformed_json_is_400_parse_error(
    gw: Gateway, http: httpx.AsyncClient, body: bytes
) -> None:
    resp = await http.post(gw.mcp_url, content=body[:MAX_BODY], headers=JSON_HEADERS)
    out = rpc_error(resp, 400, -32700)
    assert out["id"] is None


async def test_batch_is_400(gw: Gateway, http: httpx.AsyncClient) -> None:
    resp = await http.post(gw.mcp_url, content=orjson.dumps([PING, PING]), headers=JSON_HEADERS)
    out = rpc_error(resp, 400, -32600)
    assert "batch" in out["error"]["message"]


@pytest.mark.parametrize(
    "msg",
    [
        "hello",
        42,
        None,
        {},
        {"jsonrpc": "1.0", "method": "ping", "id": 1},
        {"method": "ping", "id": 1},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "method": 5, "id": 1},
        {"jsonrpc": "2.0", "method": "ping", "id": {"a": 1}},
        {"jsonrpc": "2.0", "method": "ping", "id": 1.5},
        {"jsonrpc": "2.0", "method": "ping", "id": True},
        {"jsonrpc": "2.0", "method": "ping", "id": None},
        {"jsonrpc": "2.0", "method": "ping", "params": "x", "id": 1},
    ],
    ids=[
        "string",
        "number",
        "null",
        "empty",
        "v1",
        "no-version",
        "no-method",
        "method-int",
        "id-object",
        "id-float",
        "id-bool",
        "id-null",
        "params-string",
    ],
)
async def test_not_a_json_rpc_message_is_400_invalid_request(
    session: RawClient, http: httpx.AsyncClient, msg: Any
) -> None:
    # Sent on a valid session, so only the message itself can be what is wrong with it.
    resp = await http.post(session.url, content=orjson.dumps(msg), headers=session.headers())
    out = rpc_error(resp, 400, -32600)
    assert out["error"]["message"].startswith("invalid request"), out
    # JSON-RPC: when the id cannot be trusted the error's id is null, never echoed junk.
    assert out["id"] is None or (
        isinstance(out["id"], int | str) and not isinstance(out["id"], bool)
    ), out


async def test_invalid_request_echoes_a_valid_id(gw: Gateway, http: httpx.AsyncClient) -> None:
    msg = {"jsonrpc": "2.0", "method": 5, "id": "req-7"}
    out = rpc_error(
        await http.post(gw.mcp_url, content=orjson.dumps(msg), headers=JSON_HEADERS), 400, -32600
    )
    assert out["id"] == "req-7"


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"]
)
async def test_wrong_content_type_is_415(gw: Gateway, http: httpx.AsyncClient, ctype: str) -> None:
    headers = {"Accept": ACCEPT}
    if ctype:
        headers["Content-Type"] = ctype
    resp = await http.post(gw.mcp_url, content=orjson.dumps(PING), headers=headers)
    out = rpc_error(resp, 415)
    assert "application/json" in out["error"]["message"]


async def test_content_type_parameters_are_fine(gw: Gateway, http: httpx.AsyncClient) -> None:
    init = _init_msg()
    headers = {"Accept": ACCEPT, "Content-Type": "Application/JSON; charset=utf-8"}
    resp = await http.post(gw.mcp_url, content=orjson.dumps(init), headers=headers)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("accept", ["", "application/json", "text/event-stream", "text/html"])
async def test_post_without_both_accept_types_is_406(
    gw: Gateway, http: httpx.AsyncClient, accept: str
) -> None:
    headers = {"Content-Type": "application/json", "Accept": accept}
    resp = await http.post(gw.mcp_url, content=orjson.dumps(_init_msg()), headers=headers)
    out = rpc_error(resp, 406)
    assert "Accept" in out["error"]["message"]


async def test_body_over_the_limit_is_413(gw: Gateway, http: httpx.AsyncClient) -> None:
    big = {**_init_msg(), "params": {**_init_msg()["params"], "pad": "x" * (MAX_BODY + 1)}}
    resp = await http.post(gw.mcp_url, content=orjson.dumps(big), headers=JSON_HEADERS)
    out = rpc_error(resp, 413)
    assert str(MAX_BODY) in out["error"]["message"]


async def test_chunked_body_over_the_limit_is_413(gw: Gateway, http: httpx.AsyncClient) -> None:
    """No Content-Length (chunked): the limit is enforced while reading."""

    async def chunks() -> Any:
        yield b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "'
        for _ in range(MAX_BODY // 512 + 2):
            yield b"x" * 512
        yield b'"}}'

    resp = await http.post(gw.mcp_url, content=chunks(), headers=JSON_HEADERS)
    rpc_error(resp, 413)


async def test_body_at_the_limit_is_accepted(gw: Gateway, http: httpx.AsyncClient) -> None:
    init = _init_msg()
    raw = orjson.dumps(init)
    init["params"]["clientInfo"]["pad"] = "x" * (MAX_BODY - len(raw) - len(',"pad":""'))
    body = orjson.dumps(init)
    assert len(body) == MAX_BODY
    resp = await http.post(gw.mcp_url, content=body, headers=JSON_HEADERS)
    assert resp.status_code == 200, resp.text


# ------------------------------------------------------------------- methods and paths


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS"])
async def test_other_methods_are_405_with_allow(
    gw: Gateway, http: httpx.AsyncClient, method: str
) -> None:
    resp = await http.request(method, gw.mcp_url, content=orjson.dumps(PING), headers=JSON_HEADERS)
    rpc_error(resp, 405)
    allow = {m.strip() for m in resp.headers["allow"].split(",")}
    assert {"GET", "POST", "DELETE"} <= allow


async def test_unknown_path_is_404(gw: Gateway, http: httpx.AsyncClient) -> None:
    url = gw.mcp_url.replace("/mcp", "/nope")
    resp = await http.post(url, content=orjson.dumps(PING), headers=JSON_HEADERS)
    assert resp.status_code == 404
    assert "/mcp" in resp.text


# ---------------------------------------------------------------------------- sessions


async def test_unknown_session_is_404(gw: Gateway, http: httpx.AsyncClient) -> None:
    headers = {**JSON_HEADERS, "Mcp-Session-Id": "0" * 32, "MCP-Protocol-Version": "2025-11-25"}
    rpc_error(await http.post(gw.mcp_url, content=orjson.dumps(PING), headers=headers), 404)
    get_headers = {"Accept": "text/event-stream", "Mcp-Session-Id": "0" * 32}
    rpc_error(await http.get(gw.mcp_url, headers=get_headers), 404)
    rpc_error(await http.delete(gw.mcp_url, headers={"Mcp-Session-Id": "0" * 32}), 404)


@pytest.mark.parametrize(
    "msg",
    [
        PING,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "result": {}},
    ],
    ids=["request", "notification", "response"],
)
async def test_missing_session_id_is_400(gw: Gateway, http: httpx.AsyncClient, msg: Any) -> None:
    out = rpc_error(
        await http.post(gw.mcp_url, content=orjson.dumps(msg), headers=JSON_HEADERS), 400
    )
    assert "Mcp-Session-Id" in out["error"]["message"]


async def test_get_without_session_is_400(gw: Gateway, http: httpx.AsyncClient) -> None:
    out = rpc_error(await http.get(gw.mcp_url, headers={"Accept": "text/event-stream"}), 400)
    assert "Mcp-Session-Id" in out["error"]["message"]


async def test_delete_without_session_is_400(gw: Gateway, http: httpx.AsyncClient) -> None:
    rpc_error(await http.delete(gw.mcp_url), 400)


async def test_get_without_event_stream_accept_is_406(
    session: RawClient, http: httpx.AsyncClient
) -> None:
    headers = sess_headers(session, Accept="application/json")
    rpc_error(await http.get(session.url, headers=headers), 406)


@pytest.mark.parametrize("version", ["1999-01-01", "latest", "", "2025-11-25, 2025-06-18"])
async def test_bad_protocol_version_is_400(
    session: RawClient, http: httpx.AsyncClient, version: str
) -> None:
    headers = sess_headers(session, **{"MCP-Protocol-Version": version})
    resp = await http.post(session.url, content=orjson.dumps(PING), headers=headers)
    out = rpc_error(resp, 400)
    assert "MCP-Protocol-Version" in out["error"]["message"]
    # The session itself is untouched.
    assert "result" in await session.rpc("ping")


async def test_absent_protocol_version_means_2025_03_26_and_is_accepted(
    session: RawClient, http: httpx.AsyncClient
) -> None:
    headers = sess_headers(session)
    del headers["MCP-Protocol-Version"]
    resp = await http.post(session.url, content=orjson.dumps(PING), headers=headers)
    assert resp.status_code == 200, resp.text


async def test_delete_ends_the_session(gw: Gateway, http: httpx.AsyncClient) -> None:
    c = RawClient(gw.mcp_url)
    await c.initialize()
    assert "result" in await c.rpc("ping")
    resp = await http.delete(gw.mcp_url, headers=c.headers())
    assert resp.status_code in (200, 204), resp.text
    after = await http.post(gw.mcp_url, content=orjson.dumps(PING), headers=c.headers())
    rpc_error(after, 404)
    rpc_error(await http.delete(gw.mcp_url, headers=c.headers()), 404)
    c.sid = None
    await c.__aexit__()


async def test_initialize_with_bad_params_is_an_error_not_a_session(
    gw: Gateway, http: httpx.AsyncClient
) -> None:
    for params in ({}, {"protocolVersion": 5}, None):
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "initialize"}
        if params is not None:
            msg["params"] = params
        resp = await http.post(gw.mcp_url, content=orjson.dumps(msg), headers=JSON_HEADERS)
        assert resp.status_code == 400, resp.text
        assert "mcp-session-id" not in resp.headers
        assert resp.json()["error"]["code"] == -32602


# ------------------------------------------------------------------------------ origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://evil.example:8443",
        "null",
        "http://127.0.0.1.evil.example",
        "http://localhost@evil.example",
        "https://app.example.evil",
        "http://[",
        "file://",
    ],
)
async def test_foreign_origin_is_403(gw: Gateway, http: httpx.AsyncClient, origin: str) -> None:
    headers = {**JSON_HEADERS, "Origin": origin}
    out = rpc_error(
        await http.post(gw.mcp_url, content=orjson.dumps(_init_msg()), headers=headers), 403
    )
    assert "Origin" in out["error"]["message"]
    get = await http.get(gw.mcp_url, headers={"Accept": "text/event-stream", "Origin": origin})
    assert get.status_code == 403


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost",
        "http://localhost:6274",
        "http://127.0.0.1:3000",
        "http://[::1]:8080",
        ALLOWED,
    ],
)
async def test_loopback_and_allowed_origins_pass(
    gw: Gateway, http: httpx.AsyncClient, origin: str
) -> None:
    headers = {**JSON_HEADERS, "Origin": origin}
    resp = await http.post(gw.mcp_url, content=orjson.dumps(_init_msg()), headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("mcp-session-id")


# ----------------------------------------------------------------------- still serving


async def test_gateway_still_serves_after_all_that(gw: Gateway) -> None:
    async with RawClient(gw.mcp_url) as c:
        await c.initialize()
        # One target, prefix "conditional": the server's own names.
        assert set(await c.tool_names()) == {"now", "add", "sleep"}
        resp = await c.call("add", {"a": 1, "b": 2})
        assert resp["result"]["structuredContent"] == {"sum": 3}
    assert gw.proc.poll() is None
    log = gw.log()
    assert "Traceback" not in log, log[-3000:]


# ------------------------------------------------------------------------ mcpmux validate


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcpmux", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_accepts_a_valid_file(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        "listen:\n  port: 8080\n"
        "targets:\n"
        "  - name: clock\n    stdio:\n      command: python\n      args: [-m, mcpmux.demo.clock]\n"
        "  - name: remote\n    http:\n      url: http://127.0.0.1:9000/mcp\n    timeout: 2\n"
    )
    out = _validate(cfg)
    assert out.returncode == 0, out.stderr
    assert "valid" in out.stdout and "2 targets" in out.stdout


def test_validate_rejects_an_invalid_file_naming_field_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "listen:\n  port: 8080\n"
        "targets:\n"
        "  - name: clock\n    stdio:\n      command: python\n"
        "  - name: Bad_Name\n"  # line 7
        "    http:\n      url: ftp://x\n"  # line 9
        "    timeout: -1\n"  # line 10
    )
    out = _validate(cfg)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "targets[1].name" in out.stderr and "(line 7)" in out.stderr, out.stderr
    assert "targets[1].http.url" in out.stderr and "(line 9)" in out.stderr, out.stderr
    assert "targets[1].timeout" in out.stderr and "(line 10)" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_validate_missing_file_and_broken_yaml(tmp_path: Path) -> None:
    out = _validate(tmp_path / "absent.yaml")
    assert out.returncode == 1 and "not found" in out.stderr, out.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("targets:\n  - name: a\n    stdio: {command: [unclosed\n")
    out = _validate(broken)
    assert out.returncode == 1 and "line" in out.stderr and "Traceback" not in out.stderr, (
        out.stderr
    )


# ------------------------------------------------------------------------------- helpers


def _init_msg() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "listener-tests", "version": "0"},
        },
    }
