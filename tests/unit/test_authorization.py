"""RulesPolicy: what the rules see for each action, and how a reload keeps state."""

from __future__ import annotations

from typing import Any

import pytest

from mcpmux.config import config_from_dict
from mcpmux.context import RequestContext
from mcpmux.dispatch import Dispatcher
from mcpmux.era import Envelope
from mcpmux.policy import Action, AllowAll
from mcpmux.policy.auth import Principal
from mcpmux.policy.authorization import ANONYMOUS, RulesPolicy, build_policy, principal_key


def ctx(sub: str | None, **claims: Any) -> RequestContext:
    principal = None
    if sub is not None:
        principal = Principal(sub, {"sub": sub, **claims}, frozenset(), 2e9, f"iss|{sub}")
    env = Envelope("2026-07-28", {}, {}, None)
    return RequestContext(Dispatcher.stateless(env, principal), "http", principal=principal)


def policy(rules: list[str], limits: list[dict[str, Any]] | None = None) -> RulesPolicy:
    cfg = config_from_dict({"authorization": {"rules": rules, "rate_limits": limits or []}})
    built = build_policy(cfg)
    assert isinstance(built, RulesPolicy)
    return built


def test_names_are_the_targets_own_and_each_kind_has_its_field() -> None:
    p = policy([
        'mcp.tool.name == "echo" && mcp.target == "a"',
        'mcp.prompt.name == "greet"',
        'mcp.resource.uri.startsWith("file:///pub/")',
        'has(mcp.arguments) && mcp.arguments.text == "magic"',
    ])
    c = ctx("alice")
    assert p.authorize(c, Action("tools/call", "a", name="echo"))
    assert not p.authorize(c, Action("tools/call", "b", name="echo"))
    assert p.authorize(c, Action("prompts/get", "a", name="greet"))
    assert p.authorize(c, Action("completion/complete", "a", name="greet"))  # a prompt's completion
    assert not p.authorize(c, Action("tools/call", "a", name="greet"))
    assert p.authorize(c, Action("resources/read", "a", uri="file:///pub/x"))
    assert not p.visible(c, "resources", Action("resources/read", "a", uri="file:///etc/passwd"))
    assert p.authorize(c, Action("tools/call", "z", name="any", arguments={"text": "magic"}))
    # A request that names nothing (a method forwarded in bridge mode) is allowed.
    assert p.authorize(c, Action("custom/thing", "a"))
    assert p.varies_per_caller


def test_rules_see_claims_and_without_a_principal_nothing() -> None:
    p = policy(['"ops" in jwt.groups'])
    action = Action("tools/call", "a", name="x")
    assert p.authorize(ctx("alice", groups=["ops"]), action)
    assert not p.authorize(ctx("bob", groups=["dev"]), action)
    assert not p.authorize(ctx("carol"), action)  # no groups claim: the rule fails closed
    assert not p.authorize(ctx(None), action)


def test_rate_limits_per_principal_and_tool() -> None:
    p = policy([], [{"per": "tool", "tool": "a_*", "rate": 0.001, "burst": 1}])
    assert not p.varies_per_caller  # limits do not change what anyone sees
    alice, bob = ctx("alice"), ctx("bob")
    assert p.throttle(alice, "tools/call", "a_x") is None
    wait = p.throttle(alice, "tools/call", "a_y")
    assert wait is not None and wait > 100
    assert p.throttle(alice, "tools/call", "b_x") is None
    assert p.throttle(alice, "tools/list", None) is None
    assert p.throttle(bob, "tools/call", "a_x") is None
    assert principal_key(ctx(None)) == ANONYMOUS


def test_build_policy_keeps_state_across_reloads() -> None:
    base = {"authorization": {"rules": ["true"], "rate_limits": [{"per": "principal", "rate": 1}]}}
    first = build_policy(config_from_dict(base))
    assert build_policy(config_from_dict(base), first) is first
    changed = build_policy(config_from_dict({"authorization": {**base["authorization"], "rules": ["false"]}}), first)
    assert isinstance(first, RulesPolicy) and isinstance(changed, RulesPolicy)
    assert changed is not first and changed.limiter is first.limiter  # buckets carry over
    assert isinstance(build_policy(config_from_dict({})), AllowAll)


def test_an_invalid_rule_is_a_config_error() -> None:
    with pytest.raises(Exception, match="rules"):
        config_from_dict({"authorization": {"rules": ["mcp.tool.name =="]}})


def test_per_user_credentials_need_auth() -> None:
    with pytest.raises(Exception, match="configure 'auth'"):
        config_from_dict({"targets": [{"name": "h", "http": {"url": "https://h/mcp"},
                                       "headers_from_claims": {"X-User": "sub"}}]})
