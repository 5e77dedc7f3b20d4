"""A2A pieces that need no network: card rewriting (1.0 and 0.3 cards), where a call
goes, the tool's description, and the ``a2a`` config section."""

from __future__ import annotations

import pytest

from mcpmux.a2a.agents import Agents
from mcpmux.a2a.card import jsonrpc_path, relative_path, rewrite_card, skills_text
from mcpmux.a2a.proxy import a2a_method
from mcpmux.config import ConfigError, parse_config
from mcpmux.redact import redact

AGENT = "http://alpha.internal:8000/agent"
PUBLIC = "http://gw:9090/alpha"


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env or {})
    return info.value.errors


# ------------------------------------------------------------------------ cards


def test_rewrites_a_1_0_card() -> None:
    card = {
        "name": "alpha",
        "supportedInterfaces": [
            {"url": f"{AGENT}/jsonrpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": f"{AGENT}/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
            {"url": "alpha.internal:50051", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
        ],
        "skills": [{"id": "s"}],
    }
    out = rewrite_card(card, AGENT, PUBLIC)
    assert [i["url"] for i in out["supportedInterfaces"]] == [f"{PUBLIC}/jsonrpc", f"{PUBLIC}/rest"]
    assert out["supportedInterfaces"][0]["protocolVersion"] == "1.0"  # the rest is kept
    assert out["skills"] == [{"id": "s"}]
    assert "url" not in out  # a 1.0-only card gets no 0.3 field
    assert card["supportedInterfaces"][0]["url"] == f"{AGENT}/jsonrpc"  # the cached card is untouched


def test_rewrites_a_0_3_card() -> None:
    card = {
        "name": "old",
        "protocolVersion": "0.3.0",
        "url": f"{AGENT}/",
        "preferredTransport": "JSONRPC",
        "additionalInterfaces": [
            {"url": f"{AGENT}/", "transport": "JSONRPC"},
            {"url": f"{AGENT}/v1", "transport": "HTTP+JSON"},
            {"url": "grpc://alpha.internal:50051", "transport": "GRPC"},
        ],
    }
    out = rewrite_card(card, AGENT, PUBLIC)
    assert out["url"] == PUBLIC
    assert out["additionalInterfaces"] == [
        {"url": PUBLIC, "transport": "JSONRPC"},
        {"url": f"{PUBLIC}/v1", "transport": "HTTP+JSON"},
    ]


def test_preferred_grpc_falls_back_to_jsonrpc() -> None:
    out = rewrite_card({"url": "grpc://x:1", "preferredTransport": "GRPC"}, AGENT, PUBLIC)
    assert out["preferredTransport"] == "JSONRPC"


def test_interface_named_differently_still_maps_to_the_agent() -> None:
    # The agent calls itself localhost; the gateway reaches it as alpha.internal.
    assert relative_path("http://localhost:8000/agent/jsonrpc", AGENT) == "jsonrpc"
    assert relative_path("http://localhost:8000/other/x", AGENT) == "other/x"
    assert relative_path(f"{AGENT}", AGENT) == ""
    assert relative_path("http://a/agentx/y", AGENT) == "agentx/y"  # not below /agent


def test_jsonrpc_path_from_either_card_version() -> None:
    assert jsonrpc_path({"supportedInterfaces": [
        {"url": f"{AGENT}/rest", "protocolBinding": "HTTP+JSON"},
        {"url": f"{AGENT}/rpc", "protocolBinding": "JSONRPC"},
    ]}, AGENT) == "rpc"
    assert jsonrpc_path({"url": f"{AGENT}/a2a"}, AGENT) == "a2a"
    assert jsonrpc_path({}, AGENT) == ""


def test_skills_text() -> None:
    card = {"skills": [{"id": "e", "name": "Echo", "description": "repeats"}, {"id": "plain"}]}
    assert skills_text(card) == "- Echo: repeats\n- plain"


# ------------------------------------------------------------------------ config


def test_a2a_section_defaults_and_agents() -> None:
    cfg = parse_config("a2a:\n  agents:\n    - {name: alpha, url: 'http://a:8000/'}\n")
    assert cfg.a2a is not None
    assert (cfg.a2a.listen.host, cfg.a2a.listen.port) == ("127.0.0.1", 9090)
    agent = cfg.a2a.agents[0]
    assert (agent.name, agent.url, agent.timeout) == ("alpha", "http://a:8000/", 30.0)
    targets = cfg.all_targets()
    assert [(t.name, t.kind) for t in targets] == [("alpha", "a2a")]
    assert parse_config("").a2a is None


def test_agent_headers_expanded_and_redacted() -> None:
    text = "a2a:\n  agents:\n    - name: alpha\n      url: http://a\n      headers: {Authorization: 'Bearer ${TOK}'}\n"
    cfg = parse_config(text, "t.yaml", {"TOK": "s3cret-a2a-token"})
    assert cfg.a2a is not None
    assert cfg.a2a.agents[0].headers == {"Authorization": "Bearer s3cret-a2a-token"}
    assert "s3cret-a2a-token" not in redact("sent Bearer s3cret-a2a-token")


def test_agent_status_never_shows_a_secret_in_its_url() -> None:
    text = "a2a:\n  agents:\n    - name: alpha\n      url: 'http://a/?key=${KEY}'\n"
    cfg = parse_config(text, "t.yaml", {"KEY": "s3cret-url-key"})
    assert cfg.a2a is not None
    status = Agents(cfg.a2a.agents).status()
    assert "s3cret-url-key" not in str(status) and status[0]["url"].startswith("http://a/?key="), status


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ("[{name: Bad_Name, url: 'http://a'}]", "DNS-1123"),
        ("[{name: a, url: 'ftp://a'}]", "http:// or https://"),
        ("[{name: a, url: 'http://a'}, {name: a, url: 'http://b'}]", "duplicate agent name 'a'"),
        ("[{name: a, url: 'http://a', headers: {'X Y': v}}]", "invalid header name"),
        ("[{name: a, url: 'http://a', timeout: 0}]", "greater than 0"),
        ("[{name: a, uri: 'http://a'}]", "uri"),
    ],
)
def test_invalid_agents_rejected(agents: str, expected: str) -> None:
    errors = errors_of(f"a2a:\n  agents: {agents}\n")
    assert any(expected in e for e in errors), errors


def test_agent_and_target_may_not_share_a_name() -> None:
    text = "targets:\n  - {name: alpha, url: 'http://m'}\na2a:\n  agents: [{name: alpha, url: 'http://a'}]\n"
    errors = errors_of(text)
    assert any("a2a agent(s) 'alpha'" in e for e in errors), errors


# ------------------------------------------------------------------------ tool results


def test_result_from_a_message() -> None:
    from mcpmux.a2a.tool import _result

    answer = {"message": {"role": "ROLE_AGENT", "parts": [{"text": "hi"}, {"data": {}}, {"text": "there"}]}}
    out = _result(answer)
    assert out["content"] == [{"type": "text", "text": "hi\nthere"}]
    assert out["structuredContent"] is answer and "isError" not in out


def test_result_from_a_task_prefers_artifacts_then_status() -> None:
    from mcpmux.a2a.tool import _result

    done = {"task": {"status": {"state": "TASK_STATE_COMPLETED", "message": {"parts": [{"text": "status"}]}},
                     "artifacts": [{"parts": [{"text": "a1"}]}, {"parts": [{"text": "a2"}]}]}}
    assert _result(done)["content"][0]["text"] == "a1\na2"
    waiting = {"task": {"status": {"state": "TASK_STATE_INPUT_REQUIRED",
                                   "message": {"parts": [{"text": "which city?"}]}}}}
    out = _result(waiting)
    assert out["content"][0]["text"] == "which city?" and "isError" not in out


def test_a_failed_task_is_an_error_result() -> None:
    from mcpmux.a2a.tool import _result

    failed = {"task": {"status": {"state": "TASK_STATE_FAILED", "message": {"parts": [{"text": "boom"}]}}}}
    out = _result(failed)
    assert out["isError"] is True
    assert out["content"][0]["text"] == "the agent's task ended TASK_STATE_FAILED: boom"


def test_a2a_error_answers_raise() -> None:
    from mcpmux.a2a.agents import AgentError
    from mcpmux.a2a.tool import _answer

    with pytest.raises(AgentError, match="A2A error -32001: Task not found"):
        _answer({"jsonrpc": "2.0", "id": 1, "error": {"code": -32001, "message": "Task not found"}})
    assert _answer({"jsonrpc": "2.0", "id": 1, "result": {"task": {}}}) == {"task": {}}


def test_a2a_method_names_for_the_rules() -> None:
    assert a2a_method("POST", "jsonrpc", b'{"jsonrpc":"2.0","id":1,"method":"message/send"}') == "message/send"
    assert a2a_method("POST", "rest/message:send", b'{"message":{}}') == "SendMessage"
    assert a2a_method("POST", "v1/message:stream", b"{}") == "SendStreamingMessage"
    assert a2a_method("GET", "v1/tasks/t1", b"") == "GetTask"
    assert a2a_method("GET", "tasks", b"") == "ListTasks"
    assert a2a_method("POST", "tasks/t1:cancel", b"") == "CancelTask"
    assert a2a_method("GET", "tasks/t1/pushNotificationConfigs/c1", b"") == "GetTaskPushNotificationConfig"
    assert a2a_method("DELETE", "tasks/t1/pushNotificationConfigs/c1", b"") == "DeleteTaskPushNotificationConfig"
    assert a2a_method("PUT", "other/thing", b"not json") == "PUT /other/thing"
