"""Authentication and authorization through a real gateway subprocess (the Security issue).

One gateway is an OAuth 2.1 resource server for the test IdP (tests/support/idp.py) in
front of the demo stdio servers, a header-recording HTTP target (plain, with token
exchange, and one that answers 401) and the two era servers. Clients are httpx (to see
the wire) and, for the OAuth flow, the official MCP SDK. A second gateway checks what
depends on settings: forwarded headers trusted, the admin token, an unreachable JWKS,
and rules reloaded with the config file while sessions stay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from mcp.types import TextContent
from tests.e2e.conftest import free_port
from tests.support.eras import era_server
from tests.support.gateway import Gateway, free_config, run_gateway
from tests.support.idp import TOKEN_EXCHANGE, TestIdP
from tests.support.mcp_http import sse_messages
from tests.support.security import Background, Recorder, start_idp, start_recorder

from mcpmux.demo import demo_config

ACCEPT = "application/json, text/event-stream"
VERSION = "2025-11-25"
V2026 = "2026-07-28"
TE_AUDIENCE = "https://upstream.example.com"
GW_CLIENT_SECRET = "gw-secret-value-4f1d"
STATIC_UPSTREAM = "Bearer upstream-static-9c2e"
RULES = [
    'jwt.sub == "admin"',
    'mcp.target in ["rec", "xch", "deny", "modern", "legacy"] && !(has(mcp.tool) && mcp.tool.name == "secret")',
    'mcp.target == "clock" && has(mcp.tool) && mcp.tool.name == "now"',
    'mcp.target == "clock" && "ops" in jwt.groups',
    'mcp.target == "notes" && "writers" in jwt.groups',
]


@dataclass
class World:
    bg: Background
    idp: TestIdP
    rec: Recorder
    gw: Gateway
    url: str

    def token(self, sub: str, **claims: Any) -> str:
        return self.idp.issue(self.idp.claims(sub=sub, **claims))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("security")
    bg = Background()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    idp = start_idp(bg, url)
    idp.add_client("mcpmux-gw", GW_CLIENT_SECRET)
    rec = start_recorder(bg)
    try:
        with (
            era_server("modern", tmp / "modern.log") as modern,
            era_server("handshake", tmp / "legacy.log") as legacy,
        ):
            config = {
                "auth": {
                    "jwt": {"issuer": idp.issuer, "audiences": [url], "jwks_url": idp.jwks_url},
                    "scopes_supported": ["mcp:read", "mcp:write"],
                    "required_scopes": ["mcp:read"],
                },
                "authorization": {
                    "rules": RULES,
                    "rate_limits": [{"per": "tool", "tool": "rec_limited", "rate": 0.001, "burst": 2}],
                },
                "targets": [
                    *demo_config()["targets"],
                    {
                        "name": "rec",
                        "http": {"url": f"{rec.url}/rec/mcp",
                                 "headers": {"Authorization": STATIC_UPSTREAM, "X-Static": "static-value"}},
                        "headers_from_claims": {"X-User": "sub", "X-Groups": "groups"},
                    },
                    {
                        "name": "xch",
                        "http": {"url": f"{rec.url}/xch/mcp"},
                        "token_exchange": {"token_endpoint": idp.token_endpoint, "audience": TE_AUDIENCE,
                                           "client_id": "mcpmux-gw", "client_secret": GW_CLIENT_SECRET},
                    },
                    {"name": "deny", "http": {"url": f"{rec.url}/deny/mcp"}},
                    {"name": "modern", "http": {"url": modern}},
                    {"name": "legacy", "http": {"url": legacy}},
                ],
            }
            with run_gateway(config, tmp, port=port) as gw:
                assert gw.mcp_url == url
                yield World(bg, idp, rec, gw, url)
    finally:
        bg.run(rec.stop())
        bg.run(idp.stop())
        bg.close()


# -- a small wire-level client ---------------------------------------------------------------
def headers(token: str | None, sid: str | None = None, **extra: str) -> dict[str, str]:
    h = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if sid is not None:
        h["Mcp-Session-Id"] = sid
        h["MCP-Protocol-Version"] = VERSION
    h.update(extra)
    return h


def post(url: str, msg: dict[str, Any], token: str | None, sid: str | None = None, **extra: str) -> httpx.Response:
    return httpx.post(url, content=json.dumps(msg), headers=headers(token, sid, **extra), timeout=20)


def answer(resp: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message a POST got (JSON, or the last message of an SSE stream)."""
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        msgs = sse_messages(resp.text)
        assert msgs, resp.text
        return msgs[-1]
    data: dict[str, Any] = resp.json()
    return data


def initialize(url: str, token: str) -> str:
    resp = post(url, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "sec-test", "version": "0"}}}, token)
    assert resp.status_code == 200, resp.text
    sid = resp.headers["mcp-session-id"]
    assert post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, token, sid).status_code == 202
    return sid


def rpc(url: str, token: str, sid: str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = post(url, {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or {}}, token, sid)
    assert resp.status_code == 200, resp.text
    return answer(resp)


def call(url: str, token: str, sid: str, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return rpc(url, token, sid, "tools/call", {"name": tool, "arguments": args or {}})


def text(resp: dict[str, Any]) -> str:
    res = resp.get("result")
    assert isinstance(res, dict) and not res.get("isError"), resp
    return "".join(c["text"] for c in res["content"] if c.get("type") == "text")


def names(url: str, token: str, sid: str, kind: str) -> set[str]:
    resp = rpc(url, token, sid, f"{kind}/list")
    key = "uri" if kind == "resources" else "name"
    return {item[key] for item in resp["result"][kind]}


def sessions(gw: Gateway) -> int:
    return int(httpx.get(f"{gw.admin_url}/api/targets", timeout=5).json()["sessions"])


def challenge_params(value: str) -> dict[str, str]:
    assert value.startswith("Bearer "), value
    out = {}
    for part in value[len("Bearer "):].split(", "):
        k, _, v = part.partition("=")
        out[k] = v.strip('"')
    return out


# -- authentication at the door ----------------------------------------------------------------
def test_metadata_is_public_at_both_well_known_paths(world: World) -> None:
    base = world.url.removesuffix("/mcp")
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        resp = httpx.get(base + path, timeout=5)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.json() == {
            "resource": world.url,
            "authorization_servers": [world.idp.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["mcp:read", "mcp:write"],
        }


def test_no_token_gets_the_challenge_and_nothing_happens(world: World) -> None:
    before = sessions(world.gw)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
    resp = post(world.url, init, None)
    assert resp.status_code == 401
    base = world.url.removesuffix("/mcp")
    assert resp.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", scope="mcp:read"'
    )
    assert resp.json()["error"]["code"] == -32600 and "mcp-session-id" not in resp.headers
    # The same on a GET stream, a DELETE, /sse and /messages.
    assert httpx.get(world.url, headers={"Accept": "text/event-stream"}, timeout=5).status_code == 401
    assert httpx.delete(world.url, headers={"Mcp-Session-Id": "x"}, timeout=5).status_code == 401
    assert httpx.get(base + "/sse", timeout=5).status_code == 401
    r = httpx.post(base + "/messages?sessionId=abc", content=json.dumps(init),
                   headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 401 and "resource_metadata=" in r.headers["www-authenticate"]
    # The proxy headers are not trusted by this gateway: the URL stays its own.
    r = post(world.url, init, None, **{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert "evil.example" not in r.headers["www-authenticate"]
    assert sessions(world.gw) == before


def bad_tokens(idp: TestIdP) -> dict[str, str]:
    now = int(time.time())
    return {
        "expired": idp.issue(idp.claims(exp=now - 600, iat=now - 1200)),
        "not yet valid (nbf)": idp.issue(idp.claims(nbf=now + 600)),
        "wrong audience": idp.issue(idp.claims(aud="https://elsewhere.example.com/mcp")),
        "wrong issuer": idp.issue(idp.claims(iss="https://evil.example.com")),
        "unknown kid": idp.issue(key="rogue"),
        "alg none": idp.issue(alg="none"),
        "HMAC with the public key": idp.issue(key=idp.public_pem(), alg="HS256"),
        "garbage": "not-a-jwt-at-all",
        "three garbage parts": "eyJhbGciOi.eyJzdWIiOi.c2ln",
    }


def test_every_bad_token_is_refused_with_invalid_token(world: World) -> None:
    alice = world.token("alice")
    sid = initialize(world.url, alice)
    before_calls = len(world.rec.calls("rec"))
    before = sessions(world.gw)
    for kind, token in bad_tokens(world.idp).items():
        # On initialize (no session may come of it) and on a call in a live session.
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
        for resp in (
            post(world.url, init, token),
            post(world.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                             "params": {"name": "rec_whoami", "arguments": {}}}, token, sid),
        ):
            assert resp.status_code == 401, (kind, resp.status_code, resp.text)
            params = challenge_params(resp.headers["www-authenticate"])
            assert params["error"] == "invalid_token", (kind, params)
            assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")
            assert params["error_description"], kind
            assert token not in resp.text and token not in resp.headers["www-authenticate"]
    assert sessions(world.gw) == before
    assert len(world.rec.calls("rec")) == before_calls
    # The owner's session is untouched by all that.
    assert json.loads(text(call(world.url, alice, sid, "rec_whoami")))["x-user"] == "alice"


def test_a_token_in_the_query_string_is_refused(world: World) -> None:
    alice = world.token("alice")
    sid = initialize(world.url, alice)
    resp = httpx.post(f"{world.url}?access_token={alice}", content=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), headers=headers(None, sid), timeout=5)
    assert resp.status_code == 401
    assert challenge_params(resp.headers["www-authenticate"])["error"] == "invalid_request"
    # Even alongside a valid header.
    resp = httpx.post(f"{world.url}?access_token={alice}", content=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), headers=headers(alice, sid), timeout=5)
    assert resp.status_code == 401


def test_insufficient_scope_is_403_naming_the_scope(world: World) -> None:
    token = world.token("alice", scope="other")
    resp = post(world.url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}, token)
    assert resp.status_code == 403
    params = challenge_params(resp.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope" and params["scope"] == "mcp:read"
    assert "mcp:read" in resp.json()["error"]["message"]


# -- sessions belong to who opened them --------------------------------------------------------
def test_another_principal_cannot_use_a_session(world: World) -> None:
    alice, bob = world.token("alice"), world.token("bob")
    sid = initialize(world.url, alice)
    calls = len(world.rec.calls("rec"))
    msg = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "rec_whoami", "arguments": {}}}
    stolen = post(world.url, msg, bob, sid)
    unknown = post(world.url, msg, bob, "0" * 32)
    assert stolen.status_code == unknown.status_code == 404
    assert stolen.json() == unknown.json()  # nothing tells it exists
    get = httpx.get(world.url, headers={**headers(bob, sid), "Accept": "text/event-stream"}, timeout=5)
    assert get.status_code == 404
    delete = httpx.delete(world.url, headers=headers(bob, sid), timeout=5)
    assert delete.status_code == 404
    note = post(world.url, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": 1}}, bob, sid)
    assert note.status_code == 404
    assert len(world.rec.calls("rec")) == calls  # nothing forwarded
    # Alice's session is alive and still hers.
    assert json.loads(text(call(world.url, alice, sid, "rec_whoami")))["x-user"] == "alice"
    # A new token of the same principal (refreshed) keeps the session.
    again = world.idp.issue(world.idp.claims(sub="alice", jti="refreshed"))
    assert again != alice
    assert json.loads(text(call(world.url, again, sid, "rec_whoami")))["x-user"] == "alice"


def test_legacy_sse_stream_belongs_to_its_opener(world: World) -> None:
    alice, bob = world.token("alice"), world.token("bob")
    base = world.url.removesuffix("/mcp")
    calls = len(world.rec.calls("rec"))
    with httpx.Client(timeout=20) as http, http.stream(
        "GET", base + "/sse", headers={"Accept": "text/event-stream", "Authorization": f"Bearer {alice}"}
    ) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        endpoint = next(line[5:].strip() for line in lines if line.startswith("data:"))
        assert endpoint.startswith("/messages?sessionId=")
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
        json_h = {"Content-Type": "application/json"}
        # Bob, with his valid token, cannot post into Alice's stream: as if it did not exist.
        for msg in (init, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                           "params": {"name": "rec_whoami", "arguments": {}}}):
            r = http.post(base + endpoint, content=json.dumps(msg), headers={**json_h, "Authorization": f"Bearer {bob}"})
            assert r.status_code == 404, r.text
        r = http.post(base + endpoint, content=json.dumps(init), headers={**json_h, "Authorization": f"Bearer {alice}"})
        assert r.status_code == 202
        got = next(json.loads(line[5:]) for line in lines if line.startswith("data:"))
        assert got["id"] == 1 and "result" in got, got
        call_msg = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "rec_whoami", "arguments": {}}}
        r = http.post(base + endpoint, content=json.dumps(call_msg), headers={**json_h, "Authorization": f"Bearer {alice}"})
        assert r.status_code == 202
        got = next(json.loads(line[5:]) for line in lines if line.startswith("data:"))
        assert json.loads(got["result"]["content"][0]["text"])["x-user"] == "alice"
    assert len(world.rec.calls("rec")) == calls + 1


# -- authorization rules -----------------------------------------------------------------------
def test_rules_filter_lists_and_deny_like_unknown_names(world: World) -> None:
    alice, carol, admin = world.token("alice"), world.token("carol", groups=["writers"]), world.token("admin")
    a, c, ad = initialize(world.url, alice), initialize(world.url, carol), initialize(world.url, admin)
    tools = names(world.url, alice, a, "tools")
    assert {"clock_now", "rec_whoami", "rec_limited", "xch_whoami"} <= tools
    assert not tools & {"clock_add", "clock_sleep", "rec_secret", "notes_add_note", "notes_get_note"}
    assert {"notes_add_note", "notes_get_note"} <= names(world.url, carol, c, "tools")
    assert {"rec_secret", "clock_add", "notes_add_note"} <= names(world.url, admin, ad, "tools")
    # tools/call: denied exactly like an unknown tool, and not forwarded.
    secret_calls = len(world.rec.calls("rec", "secret"))
    denied, unknown = call(world.url, alice, a, "rec_secret"), call(world.url, alice, a, "rec_nope")
    assert denied["error"]["code"] == unknown["error"]["code"] == -32602
    assert denied["error"]["message"] == "unknown tool: rec_secret"
    assert unknown["error"]["message"] == "unknown tool: rec_nope"
    assert call(world.url, alice, a, "clock_add", {"a": 1, "b": 2})["error"]["message"] == "unknown tool: clock_add"
    assert len(world.rec.calls("rec", "secret")) == secret_calls
    assert text(call(world.url, admin, ad, "rec_secret"))
    assert len(world.rec.calls("rec", "secret")) == secret_calls + 1
    assert text(call(world.url, alice, a, "clock_now"))
    # prompts/get and resources/read (and their lists).
    assert "notes_summarize" not in names(world.url, alice, a, "prompts")
    assert "notes_summarize" in names(world.url, carol, c, "prompts")
    assert text(call(world.url, carol, c, "notes_add_note", {"title": "t1", "body": "hello"}))
    denied = rpc(world.url, alice, a, "prompts/get", {"name": "notes_summarize", "arguments": {"title": "t1"}})
    unknown = rpc(world.url, alice, a, "prompts/get", {"name": "notes_nope", "arguments": {}})
    assert denied["error"]["message"] == "unknown prompt: notes_summarize"
    assert denied["error"]["code"] == unknown["error"]["code"]
    assert "messages" in rpc(world.url, carol, c, "prompts/get",
                             {"name": "notes_summarize", "arguments": {"title": "t1"}})["result"]
    assert "notes+notes://all" not in names(world.url, alice, a, "resources")
    assert "notes+notes://all" in names(world.url, carol, c, "resources")
    denied = rpc(world.url, alice, a, "resources/read", {"uri": "notes+notes://all"})
    assert denied["error"] == {"code": -32602, "message": "unknown resource: notes+notes://all",
                               "data": {"uri": "notes+notes://all"}}
    assert "hello" in rpc(world.url, carol, c, "resources/read", {"uri": "notes+notes://all"})["result"]["contents"][0]["text"]
    # Methods that name nothing are open to any authenticated caller.
    assert rpc(world.url, alice, a, "ping") == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert rpc(world.url, alice, a, "logging/setLevel", {"level": "info"})["result"] == {}


def test_2026_lists_are_private_when_rules_filter_them(world: World) -> None:
    alice = world.token("alice")
    meta = {"io.modelcontextprotocol/protocolVersion": V2026, "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "x", "version": "1"}}
    resp = post(world.url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}, alice,
                **{"MCP-Protocol-Version": V2026, "Mcp-Method": "tools/list"})
    assert resp.status_code == 200, resp.text
    res = answer(resp)["result"]
    assert res["cacheScope"] == "private"
    tools = {t["name"] for t in res["tools"]}
    assert "clock_now" in tools and "clock_add" not in tools
    # Unauthenticated, a 2026 request is refused before anything else.
    assert post(world.url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}, None,
                **{"MCP-Protocol-Version": V2026, "Mcp-Method": "tools/list"}).status_code == 401


def test_rate_limit_per_principal_and_tool(world: World) -> None:
    dave, erin = world.token("dave"), world.token("erin")
    d, e = initialize(world.url, dave), initialize(world.url, erin)
    assert text(call(world.url, dave, d, "rec_limited")) and text(call(world.url, dave, d, "rec_limited"))
    before = len(world.rec.calls("rec", "limited"))
    over = call(world.url, dave, d, "rec_limited")
    assert over["error"]["code"] == -32000
    assert over["error"]["message"].startswith("rate limit exceeded: retry in ")
    assert over["error"]["data"]["retryAfter"] >= 1
    assert len(world.rec.calls("rec", "limited")) == before  # not forwarded
    assert text(call(world.url, dave, d, "rec_whoami"))  # other tools are not limited
    assert text(call(world.url, erin, e, "rec_limited"))  # other callers are unaffected


def test_request_state_is_bound_to_its_principal(world: World) -> None:
    alice, bob = world.token("alice"), world.token("bob")
    caps = {"elicitation": {"form": {}}, "sampling": {}}
    meta = {"io.modelcontextprotocol/protocolVersion": V2026, "io.modelcontextprotocol/clientCapabilities": caps,
            "io.modelcontextprotocol/clientInfo": {"name": "x", "version": "1"}}
    h = {"MCP-Protocol-Version": V2026, "Mcp-Method": "tools/call"}
    for target in ("modern", "legacy"):  # a sealed target state, and a held call
        tool = f"{target}_ask_name"
        first = answer(post(world.url, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": tool, "arguments": {}, "_meta": meta}}, alice, **h, **{"Mcp-Name": tool}))
        res = first["result"]
        assert res["resultType"] == "input_required", first
        ((key, _),) = res["inputRequests"].items()
        retry = {"name": tool, "arguments": {}, "_meta": meta, "requestState": res["requestState"]}
        stolen = answer(post(world.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            **retry, "inputResponses": {key: {"action": "accept", "content": {"name": "Mallory"}}}}},
            bob, **h, **{"Mcp-Name": tool}))
        assert stolen["error"]["code"] == -32602, stolen
        assert "not issued to this caller" in stolen["error"]["message"]
        done = answer(post(world.url, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            **retry, "inputResponses": {key: {"action": "accept", "content": {"name": "Ada"}}}}},
            alice, **h, **{"Mcp-Name": tool}))
        assert done["result"]["content"][0]["text"] == "Hello, Ada!", done


# -- what reaches targets ------------------------------------------------------------------------
def test_no_token_passthrough_static_and_claim_headers_arrive(world: World) -> None:
    alice = world.token("alice", groups=["ops", "dev"])
    sid = initialize(world.url, alice)
    seen = json.loads(text(call(world.url, alice, sid, "rec_whoami")))
    assert seen == {"authorization": STATIC_UPSTREAM, "x-static": "static-value",
                    "x-user": "alice", "x-groups": "ops,dev"}
    for entry in world.rec.seen:  # every request any target got, catalog sessions included
        assert alice not in json.dumps(entry["headers"])


def test_token_exchange_end_to_end(world: World) -> None:
    idp = world.idp
    alice, bob = world.token("alice"), world.token("bob")
    a, b = initialize(world.url, alice), initialize(world.url, bob)

    def exchanges(subject: str) -> int:
        return sum(1 for p, form in list(idp.requests)
                   if p == "/token" and form.get("grant_type") == TOKEN_EXCHANGE and form.get("subject_token") == subject)

    first = json.loads(text(call(world.url, alice, a, "xch_whoami")))["authorization"]
    second = json.loads(text(call(world.url, alice, a, "xch_whoami")))["authorization"]
    assert first == second and first.startswith("Bearer ") and alice not in first
    claims = idp.verify(first.removeprefix("Bearer "), audience=TE_AUDIENCE)
    assert claims["sub"] == "alice" and claims["act"] == {"sub": "mcpmux-gw"}
    assert exchanges(alice) == 1  # cached per principal until it expires
    # The gateway authenticated as its own client; its secret never went to a target.
    form = next(f for p, f in idp.requests if p == "/token" and f.get("subject_token") == alice)
    assert form["_authorization"].startswith("Basic ") and form["audience"] == TE_AUDIENCE
    theirs = json.loads(text(call(world.url, bob, b, "xch_whoami")))["authorization"]
    assert idp.verify(theirs.removeprefix("Bearer "), audience=TE_AUDIENCE)["sub"] == "bob"
    assert exchanges(bob) == 1
    for entry in world.rec.seen:
        flat = json.dumps(entry["headers"])
        assert alice not in flat and bob not in flat and GW_CLIENT_SECRET not in flat


def test_a_target_answering_401_is_a_json_rpc_error_naming_it(world: World) -> None:
    alice = world.token("alice")
    sid = initialize(world.url, alice)
    resp = post(world.url, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                            "params": {"name": "deny_whoami", "arguments": {}}}, alice, sid)
    assert resp.status_code == 200 and "www-authenticate" not in resp.headers
    err = answer(resp)["error"]
    assert err["code"] == -32001 and err["data"]["target"] == "deny"
    assert "'deny'" in err["message"] and "401" in err["message"]
    assert text(call(world.url, alice, sid, "rec_whoami"))  # the session goes on


def test_admin_api_prints_no_config_secret(world: World) -> None:
    admin = world.gw.admin_url
    for path in ("/api/targets", "/api/targets/xch", "/api/targets/rec", "/api/config/status", "/api/discovery"):
        body = httpx.get(admin + path, timeout=5).text
        assert GW_CLIENT_SECRET not in body and "upstream-static" not in body, path


# -- the official SDK's OAuth client, end to end --------------------------------------------------
async def test_sdk_oauth_client_through_the_gateway(world: World) -> None:
    redirect: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:
        async with httpx2.AsyncClient() as ua:
            resp = await ua.get(url)
        assert resp.status_code == 302, resp.text
        redirect.update({k: v[0] for k, v in parse_qs(urlsplit(resp.headers["location"]).query).items()})

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=redirect["code"], state=redirect.get("state"), iss=redirect.get("iss"))

    from tests.unit.test_auth_sdk import MemoryStorage

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=world.url,
        client_metadata=OAuthClientMetadata(
            client_name="mcpmux-e2e", redirect_uris=["http://127.0.0.1:1/callback"],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
        ),
        storage=storage, redirect_handler=redirect_handler, callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        transport = streamable_http_client(world.url, http_client=http)
        async with Client(transport, mode="legacy") as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "clock_now" in tools and "clock_add" not in tools
            result = await client.call_tool("clock_now", {"timezone": "UTC"})
            assert not result.is_error
            assert isinstance(result.content[0], TextContent) and "T" in result.content[0].text
    assert storage.tokens is not None
    authorize = next(q for p, q in world.idp.requests if p == "/authorize")
    assert authorize["resource"] == world.url and authorize["scope"] == "mcp:read"
    assert world.idp.verify(storage.tokens.access_token, audience=world.url)["sub"] == "alice"


# -- settings: forwarded headers, admin token, JWKS down, rules reloaded -----------------------------
@pytest.fixture(scope="module")
def world2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestIdP, Gateway, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("security2")
    bg = Background()
    public = "https://gw.example.com/mcp"
    idp = start_idp(bg, public)
    idp.fail_jwks = 503  # until the test lets it through
    config: dict[str, Any] = {
        "admin": {"token": "admin-token-1234"},
        "auth": {"jwt": {"issuer": idp.issuer, "audiences": [public], "jwks_url": idp.jwks_url,
                         "jwks_refetch_interval": 0},
                 "trust_forwarded_headers": True},
        "authorization": {"rules": ['mcp.tool.name == "now"']},
        "targets": [t for t in demo_config()["targets"] if t["name"] == "clock"],
    }
    try:
        with run_gateway(config, tmp, wait=False) as gw:
            yield idp, gw, config
    finally:
        bg.run(idp.stop())
        bg.close()


def test_forwarded_headers_when_trusted(world2: tuple[TestIdP, Gateway, dict[str, Any]]) -> None:
    _, gw, _ = world2
    fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "gw.example.com"}
    doc = httpx.get(gw.mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"),
                    headers=fwd, timeout=5).json()
    assert doc["resource"] == "https://gw.example.com/mcp"
    resp = post(gw.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, None, **fwd)
    assert resp.status_code == 401
    assert challenge_params(resp.headers["www-authenticate"])["resource_metadata"] == (
        "https://gw.example.com/.well-known/oauth-protected-resource/mcp"
    )
    # A value that is not a host cannot inject text into the URL.
    bad = post(gw.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, None,
               **{"X-Forwarded-Host": 'evil" , x="y'})
    assert "evil" not in bad.headers["www-authenticate"]


def test_admin_token(world2: tuple[TestIdP, Gateway, dict[str, Any]]) -> None:
    _, gw, _ = world2
    for path in ("/api/targets", "/api/targets/clock", "/api/config/status", "/api/discovery"):
        assert httpx.get(gw.admin_url + path, timeout=5).status_code == 401, path
        wrong = httpx.get(gw.admin_url + path, headers={"Authorization": "Bearer admin-token-123"}, timeout=5)
        assert wrong.status_code == 401
        ok = httpx.get(gw.admin_url + path, headers={"Authorization": "Bearer admin-token-1234"}, timeout=5)
        assert ok.status_code == 200, path
        assert "admin-token-1234" not in ok.text
    for path in ("/healthz", "/readyz"):  # probes cannot send tokens
        assert httpx.get(gw.admin_url + path, timeout=5).status_code in (200, 503)


def test_jwks_unavailable_is_503_then_recovers_and_rules_reload_live(
    world2: tuple[TestIdP, Gateway, dict[str, Any]],
) -> None:
    idp, gw, config = world2
    token = idp.issue()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
    resp = post(gw.mcp_url, init, token)
    assert resp.status_code == 503, resp.text
    assert "temporarily unavailable" in resp.json()["error"]["message"]
    assert "www-authenticate" not in resp.headers  # not a reason to sign in again
    idp.fail_jwks = None
    sid = initialize(gw.mcp_url, token)
    # One target: names are not prefixed.
    assert names(gw.mcp_url, token, sid, "tools") == {"now"}
    assert call(gw.mcp_url, token, sid, "add", {"a": 1, "b": 2})["error"]["message"] == "unknown tool: add"
    # Edit the rules in the watched file: the session stays, the new rules apply.
    edited = {**config, "authorization": {"rules": ['mcp.tool.name in ["now", "add"]']}}
    gw.config_path.write_text(json.dumps(free_config(edited)))
    deadline = time.monotonic() + 20
    while names(gw.mcp_url, token, sid, "tools") != {"now", "add"}:
        assert time.monotonic() < deadline, gw.log()[-2000:]
        time.sleep(0.1)
    assert text(call(gw.mcp_url, token, sid, "add", {"a": 1, "b": 2})) == "3"
