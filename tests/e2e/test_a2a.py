"""The A2A side (issue 18) against a gateway subprocess and real agents built with the
official a2a-sdk (tests/peers/a2a_agent.py), reached with the a2a-sdk client; the MCP
side with the MCP SDK client."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from tests.e2e.conftest import free_port
from tests.peers.a2a_agent import AgentPeer, start_agent
from tests.support.gateway import Gateway, run_gateway
from tests.support.security import Background, start_idp


@pytest.fixture(scope="module")
def alpha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentPeer]:
    with start_agent("alpha", tmp_path_factory.mktemp("alpha") / "agent.log") as peer:
        yield peer


@pytest.fixture(scope="module")
def beta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentPeer]:
    with start_agent("beta", tmp_path_factory.mktemp("beta") / "agent.log") as peer:
        yield peer


def a2a_config(*agents: AgentPeer, **extra: Any) -> dict[str, Any]:
    return {"a2a": {"agents": [{"name": a.name, "url": a.url, **extra} for a in agents]}}


@pytest.fixture(scope="module")
def gw(alpha: AgentPeer, beta: AgentPeer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = a2a_config(alpha, beta)
    with run_gateway(config, tmp_path_factory.mktemp("a2a")) as gateway:
        gateway.wait_target("alpha")
        gateway.wait_target("beta")
        yield gateway


def request(text: str, context_id: str | None = None) -> SendMessageRequest:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if context_id:
        message.context_id = context_id
    return SendMessageRequest(message=message)


async def events(url: str, text: str, streaming: bool) -> AsyncIterator[tuple[float, StreamResponse]]:
    """Each event the a2a-sdk client yields, with when it arrived."""
    async with httpx.AsyncClient(timeout=30) as http:
        client = await create_client(url, ClientConfig(streaming=streaming, httpx_client=http))
        async for event in client.send_message(request(text)):
            yield time.monotonic(), event


def artifact_text(event: StreamResponse) -> str:
    return "".join(p.text for a in event.task.artifacts for p in a.parts)


def agents_status(gw: Gateway) -> dict[str, dict[str, Any]]:
    data = httpx.get(f"{gw.admin_url}/api/agents", timeout=5).json()
    return {a["name"]: a for a in data["agents"]}


def wait_agent(gw: Gateway, name: str, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = agents_status(gw).get(name, {})
        if last.get("state") == state:
            return last
        time.sleep(0.05)
    raise AssertionError(f"agent {name} not {state}: {last}\n{gw.log()[-3000:]}")


# ------------------------------------------------------------------ the A2A listener


async def test_card_resolved_through_gateway_points_at_gateway(gw: Gateway, alpha: AgentPeer) -> None:
    assert gw.a2a_url is not None
    async with httpx.AsyncClient(timeout=10) as http:
        card = await A2ACardResolver(http, f"{gw.a2a_url}/alpha").get_agent_card()
        raw = (await http.get(f"{gw.a2a_url}/alpha/.well-known/agent-card.json")).json()
    assert card.name == "alpha agent"
    urls = [i.url for i in card.supported_interfaces]
    assert urls and all(u.startswith(f"{gw.a2a_url}/alpha/") for u in urls), urls
    assert f"{gw.a2a_url}/alpha/jsonrpc" in urls and f"{gw.a2a_url}/alpha/rest" in urls
    # The card also advertises 0.3: its top-level url is rewritten too.
    assert raw["url"] == f"{gw.a2a_url}/alpha/jsonrpc"
    assert alpha.url not in json.dumps(raw)


async def test_send_message_plain(gw: Gateway, alpha: AgentPeer) -> None:
    got = [e async for _, e in events(f"{gw.a2a_url}/alpha", "hello", streaming=False)]
    assert len(got) == 1 and got[0].HasField("task")
    assert got[0].task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_text(got[0]) == "alpha echo: hello"
    # The version header the SDK client sent reached the agent.
    assert alpha.last_headers().get("a2a-version") == "1.0"


async def test_streamed_events_arrive_as_they_come(gw: Gateway) -> None:
    got = [x async for x in events(f"{gw.a2a_url}/alpha", "slow stream", streaming=True)]
    working = [(t, e) for t, e in got
               if e.HasField("status_update") and e.status_update.status.state == TaskState.TASK_STATE_WORKING]
    assert len(working) == 3, got
    # The agent sends them 0.4 s apart: buffered whole they would arrive together.
    assert working[-1][0] - working[0][0] > 0.6
    assert any(e.HasField("artifact_update") and e.artifact_update.artifact.parts[0].text == "alpha echo: slow stream"
               for _, e in got)
    assert got[-1][1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_get_task_and_cancel(gw: Gateway) -> None:
    task_id = ""
    async for _, event in events(f"{gw.a2a_url}/alpha", "hang", streaming=True):
        if event.HasField("status_update") and event.status_update.status.state == TaskState.TASK_STATE_WORKING:
            task_id = event.status_update.task_id
            break
    assert task_id
    async with httpx.AsyncClient(timeout=10) as http:
        client = await create_client(f"{gw.a2a_url}/alpha", ClientConfig(httpx_client=http))
        task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_WORKING
        cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_CANCELED


async def test_two_agents_side_by_side(gw: Gateway) -> None:
    a = [e async for _, e in events(f"{gw.a2a_url}/alpha", "one", streaming=False)]
    b = [e async for _, e in events(f"{gw.a2a_url}/beta", "two", streaming=False)]
    assert artifact_text(a[0]) == "alpha echo: one"
    assert artifact_text(b[0]) == "beta echo: two"


def test_unknown_agent_is_404(gw: Gateway) -> None:
    for resp in (httpx.get(f"{gw.a2a_url}/nope/.well-known/agent-card.json", timeout=5),
                 httpx.post(f"{gw.a2a_url}/nope/jsonrpc", json={}, timeout=5)):
        assert resp.status_code == 404
        assert "nope" in resp.json()["error"]["message"]


def test_version_header_and_both_versions_pass_through(gw: Gateway, alpha: AgentPeer) -> None:
    send = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "v1"}]}}}
    ok = httpx.post(f"{gw.a2a_url}/alpha/jsonrpc", json=send, headers={"A2A-Version": "1.0"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["result"]["task"]["artifacts"][0]["parts"][0]["text"] == "alpha echo: v1"
    assert alpha.last_headers()["a2a-version"] == "1.0"
    # Bodies are relayed as they come (not decompressed): the agent is asked for them plain.
    assert alpha.last_headers()["accept-encoding"] == "identity"
    # Without the header the agent treats the request as 0.3 and refuses the 1.0 name:
    # the gateway adds nothing of its own.
    refused = httpx.post(f"{gw.a2a_url}/alpha/jsonrpc", json=send, timeout=10).json()
    assert "error" in refused, refused
    assert "a2a-version" not in alpha.last_headers()
    # 0.3's method names pass through too.
    old = {"jsonrpc": "2.0", "id": 2, "method": "message/send",
           "params": {"message": {"messageId": "m2", "role": "user", "kind": "message",
                                  "parts": [{"kind": "text", "text": "v03"}]}}}
    answer = httpx.post(f"{gw.a2a_url}/alpha/jsonrpc", json=old, timeout=10).json()
    assert answer["result"]["artifacts"][0]["parts"][0]["text"] == "alpha echo: v03", answer


def test_rest_binding_passes_through(gw: Gateway) -> None:
    body = {"message": {"messageId": "r1", "role": "ROLE_USER", "parts": [{"text": "rest"}]}}
    resp = httpx.post(f"{gw.a2a_url}/beta/rest/message:send", json=body, headers={"A2A-Version": "1.0"},
                      timeout=10)
    assert resp.status_code == 200, resp.text
    task = resp.json()["task"]
    assert task["artifacts"][0]["parts"][0]["text"] == "beta echo: rest"
    got = httpx.get(f"{gw.a2a_url}/beta/rest/tasks/{task['id']}", headers={"A2A-Version": "1.0"}, timeout=10)
    assert got.status_code == 200 and got.json()["id"] == task["id"]


def test_admin_lists_agents(gw: Gateway) -> None:
    alpha = wait_agent(gw, "alpha", "ready")
    assert alpha["card"] == {"name": "alpha agent", "version": "1.2.3"}
    assert alpha["lastError"] is None
    assert set(agents_status(gw)) == {"alpha", "beta"}


async def test_agent_that_dies(alpha: AgentPeer, tmp_path: Path) -> None:
    with start_agent("gamma", tmp_path / "gamma.log") as gamma, \
            run_gateway(a2a_config(alpha, gamma), tmp_path) as gw:
        wait_agent(gw, "gamma", "ready")
        send = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                "params": {"message": {"messageId": "d1", "role": "ROLE_USER", "parts": [{"text": "die"}]}}}
        headers = {"A2A-Version": "1.0"}
        first = httpx.post(f"{gw.a2a_url}/gamma/jsonrpc", json=send, headers=headers, timeout=10)
        assert first.status_code == 502, first.text
        gamma.proc.wait(5)
        after = httpx.post(f"{gw.a2a_url}/gamma/jsonrpc", json=send, headers=headers, timeout=10)
        assert after.status_code == 502
        error = after.json()["error"]
        assert error["agent"] == "gamma" and "gamma" in error["message"]
        assert "Connection refused" in error["message"]
        down = wait_agent(gw, "gamma", "unreachable")
        assert "Connection refused" in down["lastError"]
        # The other agent is not affected.
        ok = [e async for _, e in events(f"{gw.a2a_url}/alpha", "still here", streaming=False)]
        assert artifact_text(ok[0]) == "alpha echo: still here"
        assert agents_status(gw)["alpha"]["state"] == "ready"


# ------------------------------------------------------------------ agents as MCP tools


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def test_mcp_lists_agents_as_tools(gw: Gateway) -> None:
    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        tools = {t.name: t for t in (await s.list_tools()).tools}
    assert {"alpha_send_message", "beta_send_message"} <= set(tools)
    tool = tools["alpha_send_message"]
    assert tool.description and "Echo: Repeats what alpha is told." in tool.description
    assert tool.input_schema["required"] == ["message"]
    assert set(tool.input_schema["properties"]) == {"message", "context_id"}


async def test_mcp_call_returns_reply_and_task(gw: Gateway) -> None:
    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        result = await s.call_tool("alpha_send_message", {"message": "via mcp"})
        assert not result.is_error, text_of(result)
        assert text_of(result) == "alpha echo: via mcp"
        task = (result.structured_content or {})["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        # The conversation goes on in the same context.
        again = await s.call_tool("alpha_send_message", {"message": "more", "context_id": task["contextId"]})
        assert (again.structured_content or {})["task"]["contextId"] == task["contextId"]
        plain = await s.call_tool("beta_send_message", {"message": "message only"})
        assert text_of(plain) == "beta says: message only"
        assert "message" in (plain.structured_content or {})


async def test_mcp_call_streams_progress(gw: Gateway) -> None:
    notes: list[tuple[float, str | None]] = []

    async def progress(_: float, __: float | None, message: str | None) -> None:
        notes.append((time.monotonic(), message))

    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        result = await s.call_tool("alpha_send_message", {"message": "slow mcp"}, progress_callback=progress)
    assert text_of(result) == "alpha echo: slow mcp"
    thinking = [m for _, m in notes if m and m.startswith("thinking about slow mcp")]
    assert thinking == [f"thinking about slow mcp ({i}/3)" for i in (1, 2, 3)], notes
    assert notes[2][0] - notes[0][0] > 0.6  # as they happened, not at the end


async def test_mcp_call_answers_over_the_size_limit_are_clear_errors(alpha: AgentPeer, tmp_path: Path) -> None:
    """``limits.max_response_bytes`` bounds what the tool reads from an agent: a whole
    answer, and each event of a streamed one (an agent flooding one event is cut)."""
    config = {**a2a_config(alpha), "limits": {"max_response_bytes": 300}}
    with run_gateway(config, tmp_path) as gateway:
        gateway.wait_target("alpha")
        async with streamable_http_client(gateway.mcp_url) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            whole = await s.call_tool("send_message", {"message": "big"})
            assert whole.is_error and "answer larger than 300 bytes" in text_of(whole), whole

            async def progress(_: float, __: float | None, message: str | None) -> None:
                pass

            streamed = await s.call_tool("send_message", {"message": "slow big"}, progress_callback=progress)
            assert streamed.is_error and "a stream event larger than 300 bytes" in text_of(streamed), streamed


async def test_mcp_call_to_dead_agent_is_error(alpha: AgentPeer, tmp_path: Path) -> None:
    with start_agent("gamma", tmp_path / "gamma.log") as gamma, \
            run_gateway(a2a_config(alpha, gamma), tmp_path) as gw:
        gw.wait_target("gamma")
        gamma.proc.kill()
        gamma.proc.wait(5)
        async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            result = await s.call_tool("gamma_send_message", {"message": "anyone?"})
            assert result.is_error
            assert "agent 'gamma'" in text_of(result) and "Connection refused" in text_of(result)
            ok = await s.call_tool("alpha_send_message", {"message": "fine"})
            assert text_of(ok) == "alpha echo: fine"


# ------------------------------------------------------------------ reload


async def test_reload_adds_an_agent(alpha: AgentPeer, beta: AgentPeer, tmp_path: Path) -> None:
    with run_gateway(a2a_config(alpha), tmp_path) as gw:
        wait_agent(gw, "alpha", "ready")
        assert httpx.get(f"{gw.a2a_url}/beta/.well-known/agent-card.json", timeout=5).status_code == 404
        config = json.loads(gw.config_path.read_text())
        config["a2a"]["agents"].append({"name": "beta", "url": beta.url})
        gw.config_path.write_text(json.dumps(config))
        wait_agent(gw, "beta", "ready")
        card = httpx.get(f"{gw.a2a_url}/beta/.well-known/agent-card.json", timeout=5).json()
        assert card["supportedInterfaces"][0]["url"] == f"{gw.a2a_url}/beta/jsonrpc"
        gw.wait_target("beta")
        async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
        assert {"alpha_send_message", "beta_send_message"} <= names
        # An invalid edit changes nothing.
        gw.config_path.write_text(json.dumps({**config, "a2a": {"agents": [{"name": "Bad_Name", "url": "x"}]}}))
        deadline = time.monotonic() + 10
        while httpx.get(f"{gw.admin_url}/api/config/status", timeout=5).json().get("valid", True):
            assert time.monotonic() < deadline, "the invalid edit was not noticed"
            time.sleep(0.05)
        assert set(agents_status(gw)) == {"alpha", "beta"}


# ------------------------------------------------------------------ Kubernetes


async def test_kubernetes_services_become_agents(alpha: AgentPeer, tmp_path: Path) -> None:
    from tests.support.fake_kube import ThreadedFakeKube

    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kagent", "namespace": "default",
                     "annotations": {"kgateway.dev/a2a-path": "/agent"}},
        "spec": {"clusterIP": "127.0.0.1",
                 "ports": [{"name": "a2a", "port": alpha.port, "appProtocol": "kgateway.dev/a2a"}]},
    }
    with ThreadedFakeKube() as tk:
        kubeconfig = tk.kube.kubeconfig(tmp_path / "kubeconfig")
        config = {"a2a": {}, "discovery": {"kubernetes": {"kubeconfig": str(kubeconfig), "address": "clusterIP"}}}
        with run_gateway(config, tmp_path) as gw:
            assert agents_status(gw) == {}
            tk.call(tk.kube.create_service, service)
            gw.wait_target("kagent")
            status = wait_agent(gw, "kagent", "ready")
            assert status["url"] == f"http://127.0.0.1:{alpha.port}/agent"
            got = [e async for _, e in events(f"{gw.a2a_url}/kagent", "from k8s", streaming=False)]
            assert artifact_text(got[0]) == "alpha echo: from k8s"
            async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
                await s.initialize()
                result = await s.call_tool("send_message", {"message": "k8s tool"})  # one target: no prefix
                assert text_of(result) == "alpha echo: k8s tool"
            tk.call(tk.kube.delete_service, "kagent", "default")
            gw.wait_target_gone("kagent")
            assert httpx.get(f"{gw.a2a_url}/kagent/.well-known/agent-card.json", timeout=5).status_code == 404


def test_push_notification_config_calls_pass_through(gw: Gateway) -> None:
    headers = {"A2A-Version": "1.0"}
    rpc = f"{gw.a2a_url}/alpha/jsonrpc"
    send = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": "p1", "role": "ROLE_USER", "parts": [{"text": "push"}]}}}
    task_id = httpx.post(rpc, json=send, headers=headers, timeout=10).json()["result"]["task"]["id"]
    create = {"jsonrpc": "2.0", "id": 2, "method": "CreateTaskPushNotificationConfig",
              "params": {"taskId": task_id, "id": "hook-1", "url": "https://hooks.example/a2a", "token": "t"}}
    created = httpx.post(rpc, json=create, headers=headers, timeout=10).json()
    assert created["result"]["url"] == "https://hooks.example/a2a", created
    get = {"jsonrpc": "2.0", "id": 3, "method": "GetTaskPushNotificationConfig",
           "params": {"taskId": task_id, "id": "hook-1"}}
    got = httpx.post(rpc, json=get, headers=headers, timeout=10).json()
    assert got["result"]["id"] == "hook-1" and got["result"]["taskId"] == task_id, got


def test_dot_segments_are_refused(gw: Gateway) -> None:
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(gw.a2a_url)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=10)
    try:
        conn.request("GET", "/alpha/../_debug/headers")  # sent as it is (httpx would resolve it)
        resp = conn.getresponse()
        assert resp.status == 400
        assert json.loads(resp.read())["error"]["code"] == "bad_path"
    finally:
        conn.close()


def test_an_agent_that_never_answers_times_out(alpha: AgentPeer, tmp_path: Path) -> None:
    with run_gateway(a2a_config(alpha, timeout=1), tmp_path) as gw:
        send = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                "params": {"message": {"messageId": "h1", "role": "ROLE_USER", "parts": [{"text": "hang"}]}}}
        started = time.monotonic()
        resp = httpx.post(f"{gw.a2a_url}/alpha/jsonrpc", json=send, headers={"A2A-Version": "1.0"}, timeout=30)
        assert resp.status_code == 504, resp.text
        assert "no answer within 1 s" in resp.json()["error"]["message"]
        assert time.monotonic() - started < 10


# ---------------------------------------------------------------- auth and rules (issue 13 on A2A)

A2A_RULES = [
    'jwt.sub == "admin"',
    'a2a.agent == "alpha" && a2a.method in ["GetAgentCard", "SendMessage", "message/send"]',
]


def test_a2a_listener_authenticates_and_applies_the_rules(alpha: AgentPeer, beta: AgentPeer,
                                                          tmp_path: Path) -> None:
    """With ``auth``, the A2A listener is a resource server like the MCP one: no token is
    401 with the metadata challenge (the metadata is served here too), a token is checked,
    and the rules decide per agent and method (JSON-RPC and REST alike). A refused request
    reaches no agent, and the client's token is never passed on."""
    bg = Background()
    port = free_port()
    mcp = f"http://127.0.0.1:{port}/mcp"
    idp = start_idp(bg, mcp)
    try:
        config = {**a2a_config(alpha, beta),
                  "auth": {"jwt": {"issuer": idp.issuer, "audiences": [mcp], "jwks_url": idp.jwks_url}},
                  "authorization": {"rules": A2A_RULES}}
        with run_gateway(config, tmp_path, port=port) as gw:
            base = gw.a2a_url
            assert base is not None
            bob = {"Authorization": f"Bearer {idp.issue(idp.claims(sub='bob'))}", "A2A-Version": "1.0"}
            admin = {"Authorization": f"Bearer {idp.issue(idp.claims(sub='admin'))}", "A2A-Version": "1.0"}
            send = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                    "params": {"message": {"messageId": "s1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}

            # No token, a forged one: 401 with the challenge; nothing reaches the agent.
            # (A marker version header shows whether a refused request reached the agent.)
            for hdrs in ({"A2A-Version": "9.9"}, {"Authorization": "Bearer not-a-jwt", "A2A-Version": "9.9"}):
                for resp in (httpx.get(f"{base}/alpha/.well-known/agent-card.json", headers=hdrs, timeout=10),
                             httpx.post(f"{base}/alpha/jsonrpc", json=send, headers=hdrs, timeout=10)):
                    assert resp.status_code == 401, resp.text
                    assert resp.headers["www-authenticate"].startswith("Bearer "), resp.headers
                    assert "resource_metadata=" in resp.headers["www-authenticate"]
            assert alpha.last_headers().get("a2a-version") != "9.9"
            meta = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=10)
            assert meta.status_code == 200 and meta.json()["authorization_servers"], meta.text

            # bob may read alpha's card and send it messages, nothing else.
            card = httpx.get(f"{base}/alpha/.well-known/agent-card.json", headers=bob, timeout=10)
            assert card.status_code == 200 and card.json()["supportedInterfaces"][0]["url"].startswith(base)
            ok = httpx.post(f"{base}/alpha/jsonrpc", json=send, headers=bob, timeout=10)
            assert ok.status_code == 200, ok.text
            task = ok.json()["result"]["task"]
            assert task["artifacts"][0]["parts"][0]["text"] == "alpha echo: hi"
            seen = alpha.last_headers()
            assert "authorization" not in seen, seen  # the client's token stays at the gateway
            get = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": task["id"]}}
            marked = {**bob, "A2A-Version": "9.9"}
            denied = [
                httpx.post(f"{base}/alpha/jsonrpc", json=get, headers=marked, timeout=10),
                httpx.get(f"{base}/beta/.well-known/agent-card.json", headers=marked, timeout=10),
                httpx.post(f"{base}/beta/jsonrpc", json=send, headers=marked, timeout=10),
                httpx.post(f"{base}/beta/rest/message:send", json={"message": send["params"]["message"]},
                           headers=marked, timeout=10),
            ]
            for resp in denied:
                assert resp.status_code == 403, resp.text
                assert resp.json()["error"]["code"] == "forbidden"
            assert [r.json()["error"]["method"] for r in denied] == [
                "GetTask", "GetAgentCard", "SendMessage", "SendMessage"]
            assert alpha.last_headers() == seen  # the refused GetTask never reached alpha
            assert beta.last_headers().get("a2a-version") != "9.9"

            # admin may do anything: the same requests go through.
            assert httpx.post(f"{base}/alpha/jsonrpc", json=get, headers=admin, timeout=10).json()[
                "result"]["id"] == task["id"]
            rest = httpx.post(f"{base}/beta/rest/message:send", json={"message": send["params"]["message"]},
                              headers=admin, timeout=10)
            assert rest.status_code == 200 and rest.json()["task"]["artifacts"][0]["parts"][0]["text"] == "beta echo: hi"
    finally:
        bg.run(idp.stop())
        bg.close()


def test_a2a_requests_draw_on_the_callers_rate_limit(alpha: AgentPeer, tmp_path: Path) -> None:
    """``authorization.rate_limits`` per principal cover the A2A listener too (without
    ``auth`` every caller is ``anonymous``): past the burst, 429 with Retry-After, and
    the refused request reaches no agent."""
    config = {**a2a_config(alpha),
              "authorization": {"rate_limits": [{"per": "principal", "rate": 0.001, "burst": 2}]}}
    send = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": "r1", "role": "ROLE_USER", "parts": [{"text": "n"}]}}}
    hdrs = {"A2A-Version": "1.0"}
    with run_gateway(config, tmp_path) as gw:
        for _ in range(2):
            ok = httpx.post(f"{gw.a2a_url}/alpha/jsonrpc", json=send, headers=hdrs, timeout=10)
            assert ok.status_code == 200, ok.text
        refused = httpx.post(f"{gw.a2a_url}/alpha/jsonrpc", json={**send, "id": 3},
                             headers={"A2A-Version": "9.9"}, timeout=10)  # a marker, if it got through
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert alpha.last_headers()["a2a-version"] == "1.0"
