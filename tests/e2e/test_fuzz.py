"""Property-based fuzzing of the listener and the router against one real gateway.

One ``mcpmux run`` subprocess per module (the demo config: stdio targets ``clock`` and
``notes``), driven with sync httpx by hypothesis. Every property is bounded
(``max_examples``) and derandomized, so CI replays the same inputs every run.

The oracle is the same everywhere: whatever comes in, the answer is a well-formed
HTTP response below 500 (JSON bodies are JSON-RPC messages whose id is the sender's
valid id or null, SSE bodies parse), the gateway never answers "internal gateway
error", and the process stays alive. A second property checks that one session's
traffic never reaches another session. The last test checks that nothing leaked.

What the fuzzing found is kept as plain regression tests at the end of the file.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from tests.support.gateway import Gateway, run_gateway
from tests.support.mcp_http import ACCEPT, sse_messages

from mcpmux.demo import demo_config

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
VERSION = "2025-11-25"
MODERN = "2026-07-28"
K_VERSION = "io.modelcontextprotocol/protocolVersion"
K_CAPS = "io.modelcontextprotocol/clientCapabilities"
JSON_HEADERS = {"Accept": ACCEPT, "Content-Type": "application/json"}
TIMEOUT = httpx.Timeout(15, connect=5)
LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
INTERNAL = "internal gateway error"

TOOLS = ["clock_now", "clock_add", "clock_sleep", "notes_add_note", "notes_list_notes", "notes_get_note"]
PROMPTS = ["notes_summarize"]
URIS = ["notes+notes://all", "clock+clock://zones", "notes+notes://note/x", "clock://zones",
        "notes://all", "notes://note/{title}", "notes://note/%7Btitle%7D"]
METHODS = [
    "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get",
    "resources/list", "resources/read", "resources/templates/list", "resources/subscribe",
    "resources/unsubscribe", "completion/complete", "logging/setLevel", "server/discover",
    "subscriptions/listen", "notifications/initialized", "notifications/cancelled",
    "notifications/progress", "notifications/roots/list_changed", "sampling/createMessage",
]


# --------------------------------------------------------------------------- fixtures


@dataclass
class Session:
    """An initialized 2025-11-25 session on a sync client of its own."""

    url: str
    sid: str
    http: httpx.Client
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def headers(self, **extra: str) -> dict[str, str]:
        return {**JSON_HEADERS, "Mcp-Session-Id": self.sid, "MCP-Protocol-Version": VERSION, **extra}

    def post(self, msg: Any) -> httpx.Response:
        return self.http.post(self.url, content=json.dumps(msg), headers=self.headers())

    def rpc(self, method: str, params: dict[str, Any] | None = None, rid: Any = None) -> list[dict[str, Any]]:
        """Every message of the answer (notifications first, the response last)."""
        rid = next(self.ids) if rid is None else rid
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        resp = self.post(msg)
        return check_answer(resp, msg, strict=True)

    def delete(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.http.delete(self.url, headers=self.headers())
        self.http.close()


def open_session(url: str, level: str | None = None) -> Session:
    http = httpx.Client(timeout=TIMEOUT)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}}
    resp = http.post(url, content=json.dumps(init), headers=JSON_HEADERS)
    assert resp.status_code == 200, resp.text
    s = Session(url, resp.headers["mcp-session-id"], http)
    ack = s.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert ack.status_code == 202, ack.text
    if level is not None:
        assert "result" in s.rpc("logging/setLevel", {"level": level})[-1]
    return s


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(demo_config(), tmp_path_factory.mktemp("fuzz")) as g:
        yield g


@pytest.fixture(scope="module")
def baseline(gw: Gateway) -> dict[str, int]:
    """Open fds and sessions before any fuzzing (after one warm-up session)."""
    s = open_session(gw.mcp_url)
    s.rpc("tools/list")
    s.delete()
    return {"fds": fd_count(gw.proc.pid), "sessions": int(admin(gw)["sessions"])}


@pytest.fixture(scope="module")
def victim(gw: Gateway, baseline: dict[str, int]) -> Iterator[Session]:
    """The session the request fuzzers send their garbage on."""
    s = open_session(gw.mcp_url)
    yield s
    s.delete()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT) as c:
        yield c


def admin(gw: Gateway) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{gw.admin_url}/api/targets", timeout=5).json()
    return data


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    """Open fds by kind (socket, pipe, anon_inode:[eventpoll], a file...): says what leaked."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kind = os.readlink(f"/proc/{pid}/fd/{fd}").split(":[")[0]
        except OSError:  # closed meanwhile
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


# --------------------------------------------------------------------------- the oracle


def valid_id(msg: Any) -> Any:
    """The id a JSON-RPC answer may echo (None: the answer's id must be null)."""
    rid = msg.get("id") if isinstance(msg, dict) else None
    return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None


def note(what: str) -> None:
    """Count outcomes (``--hypothesis-show-statistics``); outside a property, nothing."""
    with contextlib.suppress(InvalidArgument):
        event(what)


def check_answer(resp: httpx.Response, sent: Any, *, strict: bool = False) -> list[dict[str, Any]]:
    """Assert a well-formed answer; return its JSON-RPC messages.

    ``strict``: ``sent`` is a well-formed request, so the answer must carry its id.
    """
    where = f"HTTP {resp.status_code} to {str(sent)[:300]}: {resp.text[:500]}"
    note(f"HTTP {resp.status_code}")
    assert resp.status_code < 500, where
    if resp.status_code == 202:
        assert resp.content == b"", where
        assert not strict, where
        return []
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        msgs = [json.loads(resp.content)]
    elif ctype.startswith("text/event-stream"):
        msgs = sse_messages(resp.text)
    else:
        raise AssertionError(f"unexpected content-type {ctype!r}: {where}")
    for m in msgs:
        assert isinstance(m, dict) and m.get("jsonrpc") == "2.0", where
    answers = [m for m in msgs if "method" not in m]
    assert len(answers) == 1, where
    answer = answers[0]
    assert ("result" in answer) != ("error" in answer), where
    expected = valid_id(sent)
    if strict:
        assert answer["id"] == expected and expected is not None, where
    else:
        assert answer["id"] in (expected, None), where
    note("result" if "result" in answer else f"error {answer['error'].get('code')}")
    if "error" in answer:
        err = answer["error"]
        assert isinstance(err.get("code"), int) and isinstance(err.get("message"), str), where
        assert INTERNAL not in err["message"], where
    return msgs


def alive(gw: Gateway) -> None:
    assert gw.proc.poll() is None, gw.log()[-3000:]


# --------------------------------------------------------------------------- strategies

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
odd_ids = st.one_of(
    st.integers(-(2**70), 2**70), st.text(max_size=40), st.none(), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([2**63, -(2**63) - 1, 2**64, "", "0", "🦄"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
tricky_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="+_{}/:%?#.*\\ab- \u0000é🦄", max_size=60),
    st.builds(lambda p, s: p + s, st.sampled_from(["clock_", "notes_", "notes+", "clock+", "_", "+",
                                                   "notes+notes://note/", "{", "notes://note/{"]),
              st.text(max_size=40)),
    st.sampled_from(["", "x" * 5000, "{" * 300 + "}" * 300, "notes+" + "{a}" * 500,
                     "notes://note/" + "%" * 2000, "clock_" + "_" * 100, "+" * 1000]),
)
names = st.one_of(st.sampled_from(TOOLS + PROMPTS), tricky_text)
uris = st.one_of(st.sampled_from(URIS), tricky_text)
arguments = st.one_of(
    st.none(), json_value,
    st.dictionaries(st.sampled_from(["a", "b", "title", "body", "timezone", "seconds", "x"]), json_leaf, max_size=4),
)
cursors = st.one_of(st.none(), tricky_text, json_value, st.just(base64.b64encode(b'{"clock":0}').decode()))


def tame(params: Any) -> Any:
    """No fuzzed call may sleep long: the demo's ``sleep`` tool takes up to 30 s."""
    if isinstance(params, dict) and isinstance(params.get("arguments"), dict):
        secs = params["arguments"].get("seconds")
        if isinstance(secs, int | float) and not isinstance(secs, bool) and secs > 0.05:
            params = {**params, "arguments": {**params["arguments"], "seconds": 0.05}}
    return params


@st.composite
def routed_params(draw: st.DrawFn, method: str) -> dict[str, Any]:
    """Params for a method that names a tool, prompt, resource or cursor."""
    if method in ("tools/call", "prompts/get"):
        p: dict[str, Any] = {"name": draw(names)}
        if draw(st.booleans()):
            p["arguments"] = draw(arguments)
        return tame(p)
    if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        return {"uri": draw(uris)}
    if method == "completion/complete":
        ref = draw(st.one_of(
            st.fixed_dictionaries({"type": st.just("ref/prompt"), "name": names}),
            st.fixed_dictionaries({"type": st.just("ref/resource"), "uri": uris}),
            json_value,
        ))
        return {"ref": ref, "argument": draw(st.one_of(
            st.fixed_dictionaries({"name": st.text(max_size=10), "value": st.text(max_size=10)}), json_value))}
    cursor = draw(cursors)
    return {} if cursor is None else {"cursor": cursor}


ROUTED = ["tools/call", "prompts/get", "resources/read", "resources/subscribe", "resources/unsubscribe",
          "completion/complete", "tools/list", "prompts/list", "resources/list", "resources/templates/list"]


@st.composite
def rpcish(draw: st.DrawFn) -> Any:
    """Objects that look more or less like JSON-RPC messages."""
    msg: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        msg["jsonrpc"] = draw(st.sampled_from(["2.0"] * 8 + ["1.0", 2.0, None]))
    if draw(st.booleans()):
        msg["id"] = draw(st.one_of(st.integers(0, 100), odd_ids))
    kind = draw(st.integers(0, 9))
    if kind < 7:
        method = draw(st.one_of(st.sampled_from(METHODS + ROUTED), st.text(max_size=20), json_leaf))
        msg["method"] = method
        if draw(st.integers(0, 3)):
            if isinstance(method, str) and method in ROUTED and draw(st.booleans()):
                msg["params"] = draw(routed_params(method))
            elif method == "notifications/cancelled" and draw(st.booleans()):
                msg["params"] = {"requestId": draw(odd_ids), "reason": draw(json_value)}
            else:
                msg["params"] = tame(draw(json_value))
    elif kind < 9:
        msg["result" if draw(st.booleans()) else "error"] = draw(json_value)
    for key in draw(st.lists(st.text(max_size=6), max_size=2)):
        msg.setdefault(key, draw(json_value))
    return msg


def dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.builds(dumps, rpcish(), st.booleans()),
    st.builds(dumps, json_value, st.booleans()),
    st.builds(lambda m, cut: dumps(m, True)[:cut], rpcish(), st.integers(0, 60)),
    st.binary(max_size=200),
    st.sampled_from([b"", b"[]", b"[{}]", b"null", b"\xef\xbb\xbf{}", b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}',
                     b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}']),
)

# Header values as the wire carries them: bytes, decoded by the server as latin-1.
header_chars = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
header_text = st.text(alphabet=header_chars, max_size=40).map(lambda s: s.strip().encode("latin-1"))


def header_value(*known: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from([k.encode() for k in known]), header_text) if known else header_text


def mutations(sid: str) -> st.SearchStrategy[str]:
    return st.sampled_from([sid[:-1], sid + "0", sid.upper(), "x " + sid, sid[:16], sid[::-1], sid + ",",
                            sid.replace(sid[0], "g" if sid[0] != "g" else "h", 1), "0" * len(sid)])


# ------------------------------------------------------------------ property: POST /mcp


@FUZZ
@given(
    body=bodies,
    sid=st.sampled_from(["none", "victim", "garbage", "mutated"]),
    garbage_sid=header_text,
    data=st.data(),
)
def test_post_anything_is_never_5xx(
    gw: Gateway, http: httpx.Client, victim: Session, body: bytes, sid: str, garbage_sid: bytes, data: st.DataObject
) -> None:
    headers: dict[str, bytes] = {}
    if data.draw(st.integers(0, 4)):
        headers["Accept"] = data.draw(header_value(ACCEPT, "application/json", "text/event-stream", "*/*", ""))
    if data.draw(st.integers(0, 4)):
        headers["Content-Type"] = data.draw(header_value("application/json", "application/json; charset=utf-8", "text/plain"))
    if sid == "victim":
        headers["Mcp-Session-Id"] = victim.sid.encode()
    elif sid == "garbage":
        headers["Mcp-Session-Id"] = garbage_sid
    elif sid == "mutated":
        headers["Mcp-Session-Id"] = data.draw(mutations(victim.sid)).encode()
    if data.draw(st.booleans()):
        headers["MCP-Protocol-Version"] = data.draw(header_value(VERSION, MODERN, "2025-03-26", "1999-01-01"))
    for name in ("Mcp-Method", "Mcp-Name", "Last-Event-ID", "Origin"):
        if not data.draw(st.integers(0, 4)):
            headers[name] = data.draw(header_value("tools/call", "clock_now", "http://localhost"))
    resp = http.post(gw.mcp_url, content=body, headers=headers)
    try:
        sent: Any = json.loads(body)
    except ValueError:
        sent = None
    check_answer(resp, sent)
    new_sid = resp.headers.get("mcp-session-id")
    if new_sid and new_sid != victim.sid:  # a fuzzed initialize made a session: end it
        http.delete(gw.mcp_url, headers={"Mcp-Session-Id": new_sid})
    alive(gw)


NOTIFICATIONS = ["notifications/cancelled", "notifications/progress", "notifications/initialized",
                 "notifications/roots/list_changed", "notifications/message", "notifications/nope"]
notification_params = st.one_of(
    json_value,
    st.fixed_dictionaries({"requestId": odd_ids}, optional={"reason": json_value}),
    st.fixed_dictionaries({"requestId": st.one_of(st.integers(0, 5), odd_ids)}),
    st.fixed_dictionaries({"progressToken": odd_ids, "progress": json_leaf}),
)


@st.composite
def client_messages(draw: st.DrawFn) -> dict[str, Any]:
    """What a client may send that is not a request: notifications and responses."""
    if draw(st.booleans()):
        method = draw(st.sampled_from(["notifications/cancelled"] * 3 + NOTIFICATIONS))
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if draw(st.integers(0, 5)):
            msg["params"] = draw(notification_params)
        return msg
    msg = {"jsonrpc": "2.0", "id": draw(st.one_of(st.integers(0, 5), odd_ids))}
    if draw(st.booleans()):
        msg["result"] = draw(json_value)
    else:
        msg["error"] = draw(st.one_of(json_value, st.fixed_dictionaries({"code": json_leaf, "message": json_leaf})))
    return msg


@FUZZ
@given(msg=client_messages(), legacy_conn=st.booleans())
def test_notifications_and_responses_in_a_session_are_never_5xx(
    gw: Gateway, http: httpx.Client, victim: Session, legacy: LegacyConn, msg: dict[str, Any], legacy_conn: bool
) -> None:
    if legacy_conn:
        resp = http.post(legacy.endpoint, content=dumps(msg, True), headers={"Content-Type": "application/json"})
    else:
        resp = http.post(gw.mcp_url, content=dumps(msg, True), headers=victim.headers())
    check_answer(resp, msg)
    alive(gw)


# ------------------------------------------- property: names, URIs, cursors (session)


@FUZZ
@given(method=st.sampled_from(ROUTED), data=st.data(), rid=st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=30)))
def test_routed_requests_in_a_session_are_answered(
    gw: Gateway, victim: Session, method: str, data: st.DataObject, rid: Any
) -> None:
    params = data.draw(routed_params(method))
    victim.rpc(method, params, rid=rid)
    alive(gw)


# ------------------------------------------- property: names, URIs, cursors (2026)


def header_encode(value: Any) -> str | None:
    """Mcp-Name as a 2026 client sends it (printable ASCII as is, else the base64 sentinel)."""
    if not isinstance(value, str):
        return None
    if value and all(0x21 <= ord(c) <= 0x7E for c in (value[0], value[-1])) and all(
        0x20 <= ord(c) <= 0x7E for c in value) and not value.startswith("=?base64?"):
        return value
    return "=?base64?" + base64.b64encode(value.encode("utf-8", "surrogatepass")).decode() + "?="


@FUZZ
@given(
    method=st.sampled_from([*ROUTED, "server/discover", "ping", "initialize", "tools/nope"]),
    data=st.data(),
    rid=st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=30)),
    mismatch=st.sampled_from(["none"] * 6 + ["method", "name", "version", "missing"]),
    caps=st.one_of(st.just({}), st.just({}), st.just({"sampling": {}}), json_value),
)
def test_stateless_2026_requests_are_answered(
    gw: Gateway, http: httpx.Client, method: str, data: st.DataObject, rid: Any, mismatch: str, caps: Any
) -> None:
    params: dict[str, Any] = data.draw(routed_params(method)) if method in ROUTED else {}
    params["_meta"] = {K_VERSION: MODERN, K_CAPS: caps}
    msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
    headers: dict[str, str | bytes] = {**JSON_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
    name = header_encode(params.get(key)) if key else None
    if name is not None:
        headers["Mcp-Name"] = name
    if mismatch == "method":
        headers["Mcp-Method"] = data.draw(st.sampled_from(ROUTED))
    elif mismatch == "name":
        headers["Mcp-Name"] = data.draw(header_text)
    elif mismatch == "version":
        headers["MCP-Protocol-Version"] = data.draw(st.sampled_from([VERSION, "2026-07-29", ""]))
    elif mismatch == "missing":
        del headers[data.draw(st.sampled_from(["Mcp-Method", "MCP-Protocol-Version"]))]
    resp = http.post(gw.mcp_url, content=dumps(msg, True), headers=headers)
    check_answer(resp, msg, strict=True)
    alive(gw)


# ------------------------------------------------- property: GET and DELETE on /mcp


@pytest.fixture(scope="module")
def in_flight(gw: Gateway) -> Iterator[Session]:
    """A session with a slow call in flight, so its response stream is resumable
    (Last-Event-ID ``s1-N`` names a stream that really exists)."""
    s = open_session(gw.mcp_url)
    msg = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "clock_sleep", "arguments": {"seconds": 30}}}
    stop = threading.Event()

    def call() -> None:
        with contextlib.suppress(httpx.HTTPError), s.http.stream(
            "POST", s.url, content=json.dumps(msg), headers=s.headers()
        ) as r:
            for _ in r.iter_bytes():
                if stop.is_set():
                    return

    t = threading.Thread(target=call, daemon=True)
    t.start()
    time.sleep(0.3)
    yield s
    stop.set()
    s.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    t.join(1)
    s.delete()


# Last-Event-ID values that name the in-flight stream ("s1") or almost do.
event_ids = st.builds(
    lambda k, s: f"{k}-{s}".strip().encode("latin-1"),
    st.sampled_from(["s1", "s1", "s1", "s2", "s0", "", "s1-s1"]),
    st.one_of(
        st.integers(-5, 10**30).map(str),
        st.text(alphabet="0123456789-+ _x", max_size=8),
        # latin-1 superscript digits: str.isdigit() is true for them, int() refuses them
        st.text(alphabet="0123456789\xb2\xb3\xb9", min_size=1, max_size=3),
    ),
)


def check_first_event(resp: httpx.Response) -> None:
    """A live SSE stream: its first bytes (if any come soon) start an event or a comment.
    A resumed stream whose call is still running may stay silent: that is fine."""
    try:
        for chunk in resp.iter_bytes():
            if chunk:
                assert chunk.startswith((b":", b"id:", b"data:", b"event:", b"retry:")), chunk
                return
    except httpx.ReadTimeout:
        return


STREAM_TIMEOUT = httpx.Timeout(10, read=0.5)


@FUZZ
@given(
    sid=st.sampled_from(["none", "live", "garbage", "mutated"]),
    garbage_sid=header_text,
    accept=header_value("text/event-stream", "application/json", "*/*", "text/*", ""),
    last=st.one_of(st.none(), header_text, event_ids),
    version=st.one_of(st.none(), header_value(VERSION, MODERN, "2025-03-26")),
    verb=st.sampled_from(["GET", "GET", "DELETE"]),
    data=st.data(),
)
def test_get_and_delete_with_garbage_headers_are_never_5xx(
    gw: Gateway, http: httpx.Client, in_flight: Session, sid: str, garbage_sid: bytes, accept: bytes,
    last: bytes | None, version: bytes | None, verb: str, data: st.DataObject,
) -> None:
    headers: dict[str, bytes] = {"Accept": accept}
    if sid == "live":
        headers["Mcp-Session-Id"] = in_flight.sid.encode()
    elif sid == "garbage":
        headers["Mcp-Session-Id"] = garbage_sid
    elif sid == "mutated":
        headers["Mcp-Session-Id"] = data.draw(mutations(in_flight.sid)).encode()
    if last is not None:
        headers["Last-Event-ID"] = last
    if version is not None:
        headers["MCP-Protocol-Version"] = version
    if verb == "DELETE" and sid == "live":
        verb = "GET"  # the live session is deleted only by its fixture
    with http.stream(verb, gw.mcp_url, headers=headers, timeout=STREAM_TIMEOUT) as resp:
        assert resp.status_code < 500, (resp.status_code, headers, resp.read()[:300])
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            assert resp.status_code == 200
            check_first_event(resp)
        elif resp.status_code not in (200, 202, 204):
            body = json.loads(resp.read())
            assert body["jsonrpc"] == "2.0" and body["id"] is None and "error" in body, body
    alive(gw)


@FUZZ
@given(last=st.one_of(event_ids, header_text), version=st.sampled_from([None, VERSION.encode()]))
def test_last_event_id_on_a_live_session_is_never_5xx(
    gw: Gateway, http: httpx.Client, in_flight: Session, last: bytes, version: bytes | None
) -> None:
    """Resumption with ids that name (or nearly name) a stream that is still open."""
    headers = {"Accept": b"text/event-stream", "Mcp-Session-Id": in_flight.sid.encode(), "Last-Event-ID": last}
    if version is not None:
        headers["MCP-Protocol-Version"] = version
    with http.stream("GET", gw.mcp_url, headers=headers, timeout=STREAM_TIMEOUT) as resp:
        assert resp.status_code == 200, (resp.status_code, last, resp.read()[:300])
        assert resp.headers["content-type"].startswith("text/event-stream")
        check_first_event(resp)
    alive(gw)


# ------------------------------------------------------- property: legacy /sse + /messages


@dataclass
class LegacyConn:
    endpoint: str
    events: list[dict[str, Any]]
    errors: list[str]
    closer: httpx.Client


@pytest.fixture(scope="module")
def legacy(gw: Gateway) -> Iterator[LegacyConn]:
    """One 2024-11-05 connection: GET /sse read on a thread, initialized by POST."""
    base = gw.mcp_url.rsplit("/mcp", 1)[0]
    client = httpx.Client(timeout=httpx.Timeout(10, read=None))
    events: list[dict[str, Any]] = []
    errors: list[str] = []
    endpoint: list[str] = []
    got_endpoint = threading.Event()

    def read() -> None:
        try:
            with client.stream("GET", f"{base}/sse", headers={"Accept": "text/event-stream"}) as r:
                buf = ""
                for text in r.iter_text():
                    buf += text.replace("\r\n", "\n")
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        lines = block.split("\n")
                        data = "\n".join(ln[5:].lstrip(" ") for ln in lines if ln.startswith("data:"))
                        if "event: endpoint" in lines:
                            endpoint.append(base + data)
                            got_endpoint.set()
                        elif data:
                            try:
                                events.append(json.loads(data))
                            except ValueError:
                                errors.append(f"unparsable event {block[:200]!r}")
        except (httpx.HTTPError, RuntimeError) as exc:  # closed by the fixture
            errors.append(f"stream ended: {exc!r}")

    t = threading.Thread(target=read, daemon=True)
    t.start()
    assert got_endpoint.wait(10), errors
    conn = LegacyConn(endpoint[0], events, errors, client)
    init = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}}
    r = httpx.post(conn.endpoint, json=init, timeout=10)
    assert r.status_code == 202, r.text
    httpx.post(conn.endpoint, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout=10)
    yield conn
    client.close()  # the reader thread (a daemon) ends when the gateway stops


@FUZZ
@given(
    body=bodies,
    target=st.sampled_from(["live", "live", "garbage", "none"]),
    garbage=st.text(max_size=40),
    ctype=header_value("application/json", "application/json", "text/plain"),
)
def test_legacy_messages_are_never_5xx(
    gw: Gateway, http: httpx.Client, legacy: LegacyConn, body: bytes, target: str, garbage: str, ctype: bytes
) -> None:
    url = legacy.endpoint
    if target == "garbage":
        url = url.split("?")[0] + "?" + str(httpx.QueryParams({"sessionId": garbage}))
    elif target == "none":
        url = url.split("?")[0]
    resp = http.post(url, content=body, headers={"Content-Type": ctype})
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    if resp.status_code != 202:
        out = json.loads(resp.content)
        assert out["jsonrpc"] == "2.0" and "error" in out, out
        assert INTERNAL not in out["error"]["message"], out
    assert not [e for e in legacy.errors if e.startswith("unparsable")], legacy.errors
    alive(gw)


def test_legacy_stream_still_answers(legacy: LegacyConn) -> None:
    r = httpx.post(legacy.endpoint, json={"jsonrpc": "2.0", "id": "last", "method": "tools/list"}, timeout=10)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e.get("id") == "last" for e in legacy.events):
        time.sleep(0.05)
    answer = next(e for e in legacy.events if e.get("id") == "last")
    assert len(answer["result"]["tools"]) == len(TOOLS)
    for e in legacy.events:
        if "method" not in e and "error" in e:
            assert INTERNAL not in e["error"]["message"], e
    assert not legacy.errors, legacy.errors


# ------------------------------------------------------- property: no cross-session effect


A_TITLE = "a-only-note"
A_BODY = "A's note body"
A_LEVEL = "warning"
ALLOWED_ON_A_STREAM = {
    "notifications/tools/list_changed", "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
}


@dataclass
class Pair:
    gw: Gateway
    a: Session
    b: Session
    a_stream: list[dict[str, Any]]
    a_errors: list[str]


@pytest.fixture(scope="module")
def pair(gw: Gateway) -> Iterator[Pair]:
    a = open_session(gw.mcp_url, level=A_LEVEL)
    assert "result" in a.rpc("tools/call", {"name": "notes_add_note", "arguments": {"title": A_TITLE, "body": A_BODY}})[-1]
    b = open_session(gw.mcp_url)
    stream: list[dict[str, Any]] = []
    errors: list[str] = []
    reader = httpx.Client(timeout=httpx.Timeout(10, read=None))
    opened = threading.Event()

    def read() -> None:
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": a.sid, "MCP-Protocol-Version": VERSION}
        try:
            with reader.stream("GET", gw.mcp_url, headers=headers) as r:
                if r.status_code != 200:
                    errors.append(f"GET stream: HTTP {r.status_code}")
                    return
                buf = ""
                for text in r.iter_text():
                    opened.set()
                    buf += text.replace("\r\n", "\n")
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        stream.extend(sse_messages(block + "\n\n"))
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:
            errors.append(repr(exc))
        finally:
            opened.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    assert opened.wait(10), errors
    p = Pair(gw, a, b, stream, errors)
    yield p
    reader.close()  # the reader thread (a daemon) ends when the gateway stops
    a.delete()
    p.b.delete()


b_action = st.one_of(
    st.tuples(st.just("cancel"), st.one_of(st.integers(0, 8), odd_ids.filter(lambda v: not isinstance(v, list | dict)))),
    st.tuples(st.just("respond"), st.one_of(st.integers(0, 8), st.text(max_size=5)), st.booleans()),
    st.tuples(st.just("level"), st.one_of(st.sampled_from(LOG_LEVELS), json_leaf)),
    st.tuples(st.just("subscribe"), uris),
    st.tuples(st.just("unsubscribe"), uris),
    st.tuples(st.just("delete-a"), st.integers(0, 8)),
    st.tuples(st.just("call"), st.sampled_from(["sleep", "add", "note", "get-a", "log"]), st.integers(0, 8)),
    st.tuples(st.just("progress"), st.integers(0, 8)),
    st.tuples(st.just("restart")),
    st.tuples(st.just("raw"), rpcish()),
)


def run_b(p: Pair, action: tuple[Any, ...], a_sid: str) -> None:
    """One step of B's traffic; B's own answers are checked too."""
    b, kind = p.b, action[0]
    if kind == "cancel":
        b.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": action[1], "reason": "fuzz"}})
    elif kind == "respond":
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": action[1]}
        msg["result" if action[2] else "error"] = {} if action[2] else {"code": -1, "message": "no"}
        assert b.post(msg).status_code < 500
    elif kind == "level":
        level = {"jsonrpc": "2.0", "id": next(b.ids), "method": "logging/setLevel", "params": {"level": action[1]}}
        check_answer(b.post(level), level, strict=True)
    elif kind in ("subscribe", "unsubscribe"):
        b.rpc(f"resources/{kind}", {"uri": action[1]})
    elif kind == "delete-a":
        fake = [a_sid[:-1], a_sid + "0", a_sid.upper(), a_sid[1:], b.sid, "x " + a_sid,
                a_sid.replace(a_sid[-1], "g"), "", "0" * len(a_sid)][action[1]]
        if fake in (a_sid, b.sid):
            return
        r = b.http.delete(b.url, headers={**b.headers(), "Mcp-Session-Id": fake})
        assert r.status_code in (400, 404), (fake, r.status_code, r.text)
    elif kind == "call":
        what, token = action[1], action[2]
        params: dict[str, Any] = {
            "sleep": {"name": "clock_sleep", "arguments": {"seconds": 0.05}},
            "add": {"name": "clock_add", "arguments": {"a": token, "b": 1}},
            "note": {"name": "notes_add_note", "arguments": {"title": f"b-{token}", "body": "b"}},
            "get-a": {"name": "notes_get_note", "arguments": {"title": A_TITLE}},
            "log": {"name": "clock_sleep", "arguments": {"seconds": 0}},
        }[what]
        params["_meta"] = {"progressToken": token}  # the same tokens A uses
        b.rpc("tools/call", params, rid=token)  # ... and the same request ids
    elif kind == "progress":
        b.post({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": action[1], "progress": 1}})
    elif kind == "restart":
        b.delete()
        p.b = open_session(p.gw.mcp_url)
    elif kind == "raw":
        check_answer(b.post(action[1]), action[1])


a_call = st.one_of(
    st.tuples(st.just("add"), st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6)),
    st.tuples(st.just("sleep"), st.sampled_from([0, 0.05, 0.1])),
    st.tuples(st.just("get"), st.just(0)),
)


@FUZZ
@given(b_actions=st.lists(b_action, min_size=1, max_size=5), call=a_call, a_id=st.integers(0, 8), token=st.integers(0, 8))
def test_no_cross_session_effect(pair: Pair, b_actions: list[tuple[Any, ...]], call: tuple[Any, ...], a_id: int, token: int) -> None:
    a = pair.a
    kind = call[0]
    if kind == "add":
        params: dict[str, Any] = {"name": "clock_add", "arguments": {"a": call[1], "b": call[2]}}
    elif kind == "sleep":
        params = {"name": "clock_sleep", "arguments": {"seconds": call[1]}}
    else:
        params = {"name": "notes_get_note", "arguments": {"title": A_TITLE}}
    params["_meta"] = {"progressToken": token}
    result: list[list[dict[str, Any]]] = []
    failure: list[BaseException] = []

    def do_a() -> None:
        try:
            result.append(a.rpc("tools/call", params, rid=a_id))
        except BaseException as exc:
            failure.append(exc)

    t = threading.Thread(target=do_a)
    t.start()
    try:
        for action in b_actions:
            run_b(pair, action, a.sid)
    finally:
        t.join(30)
    assert not failure, failure
    msgs = result[0]
    answer = msgs[-1]
    assert "result" in answer, answer
    res = answer["result"]
    assert res.get("isError") is False, res
    if kind == "add":
        assert res["structuredContent"] == {"sum": call[1] + call[2]}, res
    elif kind == "sleep":
        assert res["content"][0]["text"] == f"slept {call[1]:g} s", res
    else:
        assert res["content"][0]["text"] == A_BODY, res
    for m in msgs[:-1]:
        method = m.get("method")
        if method == "notifications/progress":
            assert m["params"]["progressToken"] == token, m
            assert kind == "sleep" and call[1] > 0, m
        elif method == "notifications/message":
            assert LOG_LEVELS.index(m["params"]["level"]) >= LOG_LEVELS.index(A_LEVEL), m
        else:
            raise AssertionError(f"A's call stream got {m}")
    check_a_stream(pair)


def check_a_stream(p: Pair) -> None:
    assert not p.a_errors, p.a_errors
    for m in p.a_stream:
        if m.get("method") == "notifications/message":
            assert LOG_LEVELS.index(m["params"]["level"]) >= LOG_LEVELS.index(A_LEVEL), m
        else:
            assert m.get("method") in ALLOWED_ON_A_STREAM, f"A's GET stream got {m}"


def test_a_still_served_after_b(pair: Pair) -> None:
    out = pair.a.rpc("tools/call", {"name": "clock_add", "arguments": {"a": 2, "b": 3}})
    assert out[-1]["result"]["structuredContent"] == {"sum": 5}
    out = pair.a.rpc("tools/call", {"name": "notes_get_note", "arguments": {"title": A_TITLE}})
    assert out[-1]["result"]["content"][0]["text"] == A_BODY
    check_a_stream(pair)
    # DELETE works with A's own id, and only then.
    r = pair.a.http.delete(pair.a.url, headers=pair.a.headers())
    assert r.status_code in (200, 204), r.text
    r = pair.a.http.post(pair.a.url, content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}), headers=pair.a.headers())
    assert r.status_code == 404, r.text


# ------------------------------------------------------------------------ no leaks


def test_after_fuzzing_targets_ready_and_nothing_leaked(
    gw: Gateway, baseline: dict[str, int], victim: Session, in_flight: Session, legacy: LegacyConn, pair: Pair
) -> None:
    alive(gw)
    status = admin(gw)
    states = {t["name"]: t["state"] for t in status["targets"]}
    assert states == {"clock": "ready", "notes": "ready"}, status
    # Still open on purpose: victim, in_flight, legacy, B (A was deleted above).
    assert status["sessions"] <= baseline["sessions"] + 4, status
    # Sockets of the 4 sessions' clients and streams, plus slack for the pool's keep-alive.
    fds = fd_count(gw.proc.pid)
    assert fds <= baseline["fds"] + 20, (fds, baseline, fd_kinds(gw.proc.pid))
    assert "Traceback" not in gw.log(), gw.log()[-4000:]


# ------------------------------------------------- bugs the fuzzing found (regression tests)


def test_last_event_id_with_a_superscript_digit_is_not_500(gw: Gateway, in_flight: Session) -> None:
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": in_flight.sid.encode(),
               "MCP-Protocol-Version": VERSION.encode(), "Last-Event-ID": b"s1-\xb2"}  # "s1-²"
    with httpx.stream("GET", gw.mcp_url, headers=headers, timeout=10) as resp:
        assert resp.status_code < 500, resp.read()[:300]


def _post_raw(gw: Gateway, victim: Session, msg: Any) -> httpx.Response:
    return httpx.post(gw.mcp_url, content=json.dumps(msg), headers=victim.headers(), timeout=10)


def test_cancelled_with_list_params_is_not_500(gw: Gateway, victim: Session) -> None:
    resp = _post_raw(gw, victim, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": [1]})
    assert resp.status_code < 500, resp.text


def test_cancelled_with_unhashable_request_id_is_not_500(gw: Gateway, victim: Session) -> None:
    msg = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": [1]}}
    resp = _post_raw(gw, victim, msg)
    assert resp.status_code < 500, resp.text
