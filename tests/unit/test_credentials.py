"""UpstreamCredentials: RFC 8693 token exchange against the test IdP, and headers
from claims."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.idp import TestIdP, running_idp

from mcpmux.config import TargetConfig
from mcpmux.policy.auth import Principal
from mcpmux.upstream.credentials import (
    MAX_HEADER_VALUE,
    CredentialsError,
    TokenExchangeError,
    UpstreamCredentials,
)

SECRET = "s3cret-do-not-leak"


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
async def idp() -> AsyncIterator[TestIdP]:
    async with running_idp() as server:
        server.add_client("gateway", SECRET)
        yield server


@pytest.fixture
async def creds(idp: TestIdP) -> AsyncIterator[UpstreamCredentials]:
    idp.fail_token = None
    idp.token_gate = None
    idp.exchange_ttl = 300
    c = UpstreamCredentials()
    yield c
    await c.aclose()


def target(idp: TestIdP | None = None, **extra: Any) -> TargetConfig:
    data: dict[str, Any] = {"name": "k8s", "http": {"url": "http://127.0.0.1:9/mcp"}}
    if idp is not None:
        te = {
            "token_endpoint": idp.token_endpoint,
            "audience": "k8s-api",
            "client_id": "gateway",
            "client_secret": SECRET,
            "scope": "k8s:read",
        }
        te.update(extra.pop("te", {}))
        data["token_exchange"] = te
    data.update(extra)
    return TargetConfig.model_validate(data)


def principal_for(idp: TestIdP, sub: str = "alice", **claims: Any) -> tuple[Principal, str]:
    c = idp.claims(sub=sub, **claims)
    token = idp.issue(c)
    p = Principal(
        sub, c, frozenset(c.get("scope", "").split()), float(c["exp"]), f"{idp.issuer}|{sub}"
    )
    return p, token


# ---------------------------------------------------------------- token exchange


async def test_exchange_happy_path(idp: TestIdP, creds: UpstreamCredentials) -> None:
    p, token = principal_for(idp)
    before = idp.token_requests
    headers = await creds.headers(target(idp), p, token)
    assert set(headers) == {"Authorization"}
    scheme, _, exchanged = headers["Authorization"].partition(" ")
    assert scheme == "Bearer" and exchanged != token
    claims = idp.verify(exchanged, audience="k8s-api")
    assert claims["sub"] == "alice" and claims["act"] == {"sub": "gateway"}
    assert claims["scope"] == "k8s:read"
    assert idp.token_requests == before + 1
    path, form = idp.requests[-1]
    assert path == "/token"
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert form["subject_token"] == token
    assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert form["audience"] == "k8s-api" and form["scope"] == "k8s:read"
    assert "client_secret" not in form
    basic = base64.b64decode(form["_authorization"].removeprefix("Basic ")).decode()
    assert basic == f"gateway:{SECRET}"


async def test_exchange_is_cached_per_principal(idp: TestIdP, creds: UpstreamCredentials) -> None:
    t = target(idp)
    alice, alice_token = principal_for(idp, "alice")
    bob, bob_token = principal_for(idp, "bob")
    first = await creds.headers(t, alice, alice_token)
    count = idp.token_requests
    assert await creds.headers(t, alice, alice_token) == first
    assert idp.token_requests == count
    other = await creds.headers(t, bob, bob_token)
    assert other != first and idp.token_requests == count + 1
    # A target with another audience is another cache entry.
    t2 = target(idp, te={"audience": "other-api"})
    await creds.headers(t2, alice, alice_token)
    assert idp.token_requests == count + 2


async def test_refresh_after_expiry(idp: TestIdP) -> None:
    clock = Clock()
    c = UpstreamCredentials(clock=clock)
    try:
        idp.exchange_ttl = 120
        t = target(idp, te={"expiry_margin": 20})
        p, token = principal_for(idp)
        first = await c.headers(t, p, token)
        clock.t += 99  # within 120 - 20
        assert await c.headers(t, p, token) == first and c.exchanges == 1
        clock.t += 2  # past expires_in - margin
        second = await c.headers(t, p, token)
        assert second != first and c.exchanges == 2
    finally:
        idp.exchange_ttl = 300
        await c.aclose()


async def test_cache_never_outlives_the_callers_token(idp: TestIdP) -> None:
    clock = Clock()
    c = UpstreamCredentials(clock=clock)
    try:
        p, token = principal_for(idp)
        p = Principal(p.subject, p.claims, p.scopes, clock.t + 10, p.key)  # expires soon
        await c.headers(target(idp), p, token)
        clock.t += 11
        await c.headers(target(idp), p, token)
        assert c.exchanges == 2
    finally:
        await c.aclose()


async def test_concurrent_requests_share_one_exchange(
    idp: TestIdP, creds: UpstreamCredentials
) -> None:
    p, token = principal_for(idp, "dave")
    idp.token_gate = asyncio.Event()
    idp.token_request_seen.clear()
    before = idp.token_requests
    calls = [asyncio.create_task(creds.headers(target(idp), p, token)) for _ in range(5)]
    await idp.token_request_seen.wait()
    calls[0].cancel()  # a caller giving up does not cancel the others' exchange
    idp.token_gate.set()
    results = await asyncio.gather(*calls[1:])
    assert all(r == results[0] for r in results)
    assert idp.token_requests == before + 1 and creds.exchanges == 1


@pytest.mark.parametrize(
    ("setup", "status", "words"),
    [
        ({"fail_token": 500}, 502, "HTTP 500 server_error"),
        ({"te": {"client_secret": "wrong-" + SECRET}}, 502, "HTTP 401 invalid_client"),
        ({"forged": True}, 401, "HTTP 400 invalid_grant"),
    ],
)
async def test_failures_name_the_target_and_leak_nothing(
    idp: TestIdP, creds: UpstreamCredentials, setup: dict[str, Any], status: int, words: str
) -> None:
    idp.fail_token = setup.get("fail_token")
    p, token = principal_for(idp)
    if setup.get("forged"):
        token = idp.issue(idp.claims(), key="rogue")  # not a key the IdP trusts
    t = target(idp, te=setup.get("te", {}))
    with pytest.raises(TokenExchangeError) as info:
        await creds.headers(t, p, token)
    err = info.value
    text = f"{err} {err!r} {err.args}"
    assert "'k8s'" in str(err) and words in str(err)
    assert err.status == status
    assert SECRET not in text and token not in text
    # Failures are not cached: once the IdP recovers, the next call works.
    idp.fail_token = None
    if "fail_token" in setup:
        assert (await creds.headers(t, p, token))["Authorization"].startswith("Bearer ")


async def test_unreachable_token_endpoint(creds: UpstreamCredentials, idp: TestIdP) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    t = target(idp, te={"token_endpoint": f"http://127.0.0.1:{port}/token"})
    p, token = principal_for(idp)
    with pytest.raises(TokenExchangeError) as info:
        await creds.headers(t, p, token)
    assert "cannot reach" in str(info.value) and info.value.status == 502


async def test_exchange_needs_a_caller(idp: TestIdP, creds: UpstreamCredentials) -> None:
    with pytest.raises(CredentialsError) as info:
        await creds.headers(target(idp), None, None)
    assert info.value.status == 401


async def test_no_passthrough_without_exchange(idp: TestIdP, creds: UpstreamCredentials) -> None:
    p, token = principal_for(idp)
    t = target(headers_from_claims={"X-User": "sub"})
    headers = await creds.headers(t, p, token)
    assert headers == {"X-User": "alice"}
    assert all(token not in v for v in headers.values())
    assert await creds.headers(target(), p, token) == {}


# ------------------------------------------------------------- headers from claims


async def test_headers_from_claims_values(idp: TestIdP, creds: UpstreamCredentials) -> None:
    p, token = principal_for(
        idp,
        groups=["ops", "dev"],
        admin=True,
        level=3,
        realm_access={"roles": ["a", "b"]},
        name="José",
    )
    t = target(
        headers_from_claims={
            "X-User": "sub",
            "X-Groups": "groups",
            "X-Admin": "admin",
            "X-Level": "level",
            "X-Roles": "realm_access.roles",
            "X-Name": "name",
            "X-Missing": "nope",
        }
    )
    assert await creds.headers(t, p, token) == {
        "X-User": "alice",
        "X-Groups": "ops,dev",
        "X-Admin": "true",
        "X-Level": "3",
        "X-Roles": "a,b",
        "X-Name": "José",
    }


@pytest.mark.parametrize(
    "value",
    ["alice\r\nX-Admin: true", "alice\nX-Evil: 1", ["ok", "bad\r\nX: y"], "nul\x00byte"],
)
async def test_header_injection_is_refused(
    idp: TestIdP, creds: UpstreamCredentials, value: Any
) -> None:
    p, token = principal_for(idp, nick=value)
    t = target(headers_from_claims={"X-Nick": "nick"})
    with pytest.raises(CredentialsError) as info:
        await creds.headers(t, p, token)
    assert info.value.status == 403 and "'k8s'" in str(info.value)
    assert "X-Admin" not in str(info.value) and "X-Evil" not in str(info.value)


async def test_non_latin1_refused_and_long_values_cut(
    idp: TestIdP, creds: UpstreamCredentials
) -> None:
    p, token = principal_for(idp, nick="名前")
    with pytest.raises(CredentialsError):
        await creds.headers(target(headers_from_claims={"X-Nick": "nick"}), p, token)
    p, token = principal_for(idp, nick="x" * 100_000)
    headers = await creds.headers(target(headers_from_claims={"X-Nick": "nick"}), p, token)
    assert len(headers["X-Nick"]) == MAX_HEADER_VALUE
