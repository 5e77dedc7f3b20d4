"""Token buckets per principal and per (principal, tool glob)."""

from __future__ import annotations

import pytest

from mcpmux.config import RateLimitConfig
from mcpmux.policy.ratelimit import RateLimiter


def limits(*items: dict) -> list[RateLimitConfig]:
    return [RateLimitConfig.model_validate(i) for i in items]


def test_no_limits_allows_everything() -> None:
    rl = RateLimiter([])
    assert not rl
    assert all(rl.check("p", "t", now=0.0) is None for _ in range(1000))


def test_principal_limit_burst_then_refill_and_others_unaffected() -> None:
    rl = RateLimiter(limits({"per": "principal", "rate": 2, "burst": 3}))
    assert [rl.check("alice", None, now=0.0) for _ in range(3)] == [None, None, None]
    wait = rl.check("alice", None, now=0.0)
    assert wait == pytest.approx(0.5)  # one token at 2/s
    # Another principal has its own bucket.
    assert rl.check("bob", None, now=0.0) is None
    # Refused requests are not charged: after 0.5 s exactly one more is allowed.
    assert rl.check("alice", None, now=0.5) is None
    assert rl.check("alice", None, now=0.5) == pytest.approx(0.5)
    # Long idle refills only up to the burst.
    assert [rl.check("alice", None, now=100.0) for _ in range(4)][-1] is not None


def test_tool_glob_limit_applies_per_principal_and_matching_tools_only() -> None:
    rl = RateLimiter(limits({"per": "tool", "tool": "k8s_*", "rate": 1, "burst": 2}))
    assert rl.check("alice", "k8s_delete", now=0.0) is None
    assert rl.check("alice", "k8s_get", now=0.0) is None  # same bucket: one glob
    assert rl.check("alice", "k8s_get", now=0.0) == pytest.approx(1.0)
    assert rl.check("alice", "echo", now=0.0) is None  # not matched
    assert rl.check("alice", None, now=0.0) is None  # not a tool call
    assert rl.check("bob", "k8s_get", now=0.0) is None  # other principal
    assert rl.check("alice", "k8s_get", now=1.0) is None


def test_both_limits_must_allow_and_refusal_charges_none() -> None:
    rl = RateLimiter(
        limits(
            {"per": "principal", "rate": 10, "burst": 3},
            {"per": "tool", "tool": "slow", "rate": 1, "burst": 1},
        )
    )
    assert rl.check("p", "slow", now=0.0) is None
    assert rl.check("p", "slow", now=0.0) == pytest.approx(1.0)  # tool bucket empty
    # The refused call did not take a principal token: two more calls fit.
    assert rl.check("p", "fast", now=0.0) is None
    assert rl.check("p", "fast", now=0.0) is None
    assert rl.check("p", "fast", now=0.0) == pytest.approx(0.1)


def test_buckets_are_bounded() -> None:
    rl = RateLimiter(limits({"per": "principal", "rate": 1, "burst": 1}), max_buckets=100)
    for i in range(1000):
        rl.check(f"p{i}", None, now=float(i))
    assert len(rl) == 100
    # The most recent principal is still limited (its bucket was kept).
    assert rl.check("p999", None, now=999.0) is not None


def test_clock_default_is_used() -> None:
    t = [0.0]
    rl = RateLimiter(limits({"per": "principal", "rate": 1}), clock=lambda: t[0])
    assert rl.check("p", None) is None
    assert rl.check("p", None) == pytest.approx(1.0)
    t[0] = 1.0
    assert rl.check("p", None) is None
