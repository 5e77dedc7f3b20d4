"""JwtAuthenticator against the test IdP: every kind of bad token, caching, JWKS pacing,
and the challenge / RFC 9728 metadata helpers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.idp import DEFAULT_AUDIENCE as AUD
from tests.support.idp import TestIdP, _b64, running_idp

from mcpmux.config import AuthConfig
from mcpmux.policy.auth import (
    AuthError,
    JwksUnavailable,
    JwtAuthenticator,
    metadata_paths,
    metadata_url,
    protected_resource_metadata,
    public_base_url,
    www_authenticate,
)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
async def idp() -> AsyncIterator[TestIdP]:
    async with running_idp() as server:
        yield server


def make_cfg(idp: TestIdP, **extra: Any) -> AuthConfig:
    jwt_cfg = {"issuer": idp.issuer, "audiences": [AUD], "jwks_url": idp.jwks_url}
    jwt_cfg.update(extra.pop("jwt", {}))
    return AuthConfig.model_validate({"jwt": jwt_cfg, "resource": AUD, **extra})


@pytest.fixture
async def auth(idp: TestIdP) -> AsyncIterator[JwtAuthenticator]:
    idp.fail_jwks = None
    a = JwtAuthenticator(make_cfg(idp), monotonic=Clock())
    yield a
    await a.aclose()


async def refused(a: JwtAuthenticator, header: str | None, qs: bytes = b"") -> AuthError:
    with pytest.raises(AuthError) as info:
        await a.authenticate(header, qs)
    return info.value


# ------------------------------------------------------------------ good tokens


async def test_good_rsa_token(idp: TestIdP, auth: JwtAuthenticator) -> None:
    before = idp.jwks_requests
    token = idp.issue(idp.claims(sub="bob", groups=["ops"]))
    p = await auth.authenticate(f"Bearer {token}")
    assert p.subject == "bob"
    assert p.key == f"{idp.issuer}|bob"
    assert p.scopes == frozenset({"mcp:read", "mcp:write"})
    assert p.claims["groups"] == ["ops"]
    assert p.expires_at > time.time()
    assert idp.jwks_requests == before + 1


async def test_good_ec_token_and_scheme_case(idp: TestIdP, auth: JwtAuthenticator) -> None:
    p = await auth.authenticate("bearer  " + idp.issue(key="ec"))
    assert p.subject == "alice"


async def test_token_without_kid_is_tried_against_fitting_keys(
    idp: TestIdP, auth: JwtAuthenticator
) -> None:
    p = await auth.authenticate("Bearer " + idp.issue(headers={"kid": None}))
    assert p.subject == "alice"


async def test_scp_list_claim_gives_scopes(idp: TestIdP, auth: JwtAuthenticator) -> None:
    p = await auth.authenticate("Bearer " + idp.issue(idp.claims(scope=None, scp=["a", "b"])))
    assert p.scopes == frozenset({"a", "b"})


async def test_within_leeway_is_accepted(idp: TestIdP, auth: JwtAuthenticator) -> None:
    now = int(time.time())
    p = await auth.authenticate("Bearer " + idp.issue(idp.claims(exp=now - 10, iat=now - 100)))
    assert p.subject == "alice"


# ------------------------------------------------------------------- bad tokens


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"exp": -100, "iat": -1000}, "expired"),
        ({"nbf": 300}, "not yet valid"),
        ({"aud": "https://other.example.com/mcp"}, "audience"),
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"exp": None}, "'exp'"),
        ({"sub": None}, "'sub'"),
    ],
)
async def test_bad_claims(
    idp: TestIdP, auth: JwtAuthenticator, overrides: dict[str, Any], words: str
) -> None:
    now = int(time.time())
    claims = idp.claims(**{k: (now + v if isinstance(v, int) else v) for k, v in overrides.items()})
    err = await refused(auth, "Bearer " + idp.issue(claims))
    assert (err.status, err.error) == (401, "invalid_token")
    assert words in err.description


async def test_tampered_payload_fails_signature(idp: TestIdP, auth: JwtAuthenticator) -> None:
    head, _, sig = idp.issue().split(".")
    forged = _b64(json.dumps(idp.claims(sub="root")).encode())
    err = await refused(auth, f"Bearer {head}.{forged}.{sig}")
    assert err.error == "invalid_token"
    assert "signature" in err.description


async def test_alg_none_is_refused(idp: TestIdP, auth: JwtAuthenticator) -> None:
    token = idp.issue(alg="none")
    assert token.endswith(".")  # really unsigned
    err = await refused(auth, f"Bearer {token}")
    assert err.error == "invalid_token"
    assert "'none'" in err.description


async def test_hmac_with_public_key_confusion_is_refused(
    idp: TestIdP, auth: JwtAuthenticator
) -> None:
    pem = idp.public_pem("rsa")
    token = idp.issue(key=pem, alg="HS256")  # kid names the RSA key
    # The attack token is well formed: its HMAC really is keyed with the public key.
    signing_input, _, sig = token.rpartition(".")
    assert sig == _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    err = await refused(auth, f"Bearer {token}")
    assert (err.status, err.error) == (401, "invalid_token")
    assert "HS256" in err.description


async def test_key_type_must_fit_algorithm(idp: TestIdP, auth: JwtAuthenticator) -> None:
    # Signed with RSA but claims to be the EC key: the EC key cannot verify RS256.
    err = await refused(auth, "Bearer " + idp.issue(headers={"kid": idp.kids["ec"]}))
    assert err.error == "invalid_token"


@pytest.mark.parametrize(
    "header", ["Bearer abc.def.ghi", "Bearer not a token", "Bearer !!!", "Bearer " + "a" * 20000]
)
async def test_garbage(auth: JwtAuthenticator, header: str) -> None:
    err = await refused(auth, header)
    assert (err.status, err.error) == (401, "invalid_token")


async def test_missing_header_has_no_error_code(auth: JwtAuthenticator) -> None:
    for header in (None, "", "   "):
        err = await refused(auth, header)
        assert (err.status, err.error) == (401, None)
        challenge = www_authenticate(
            err, "https://h/.well-known/oauth-protected-resource/mcp", None
        )
        assert "error=" not in challenge


@pytest.mark.parametrize("header", ["Basic YWxpY2U6c2VjcmV0", "Token abc", "Bearer", "Bearer   "])
async def test_wrong_scheme_or_empty(auth: JwtAuthenticator, header: str) -> None:
    err = await refused(auth, header)
    assert (err.status, err.error) == (401, "invalid_request")


@pytest.mark.parametrize("qs", [b"access_token=abc", b"x=1&access_token=", b"access%5Ftoken=abc"])
async def test_token_in_query_string_is_refused(
    idp: TestIdP, auth: JwtAuthenticator, qs: bytes
) -> None:
    # Refused even alongside a valid header: two methods at once is invalid too.
    err = await refused(auth, "Bearer " + idp.issue(), qs)
    assert (err.status, err.error) == (401, "invalid_request")
    assert "query" in err.description


async def test_required_scope_gives_403_with_scope(idp: TestIdP) -> None:
    a = JwtAuthenticator(make_cfg(idp, required_scopes=["mcp:read", "mcp:admin"]))
    try:
        weak = "Bearer " + idp.issue()
        err = await refused(a, weak)
        assert (err.status, err.error) == (403, "insufficient_scope")
        assert err.scope == "mcp:read mcp:admin"
        assert (await refused(a, weak)).status == 403  # also when served from the cache
        assert "mcp:admin" in err.description and "mcp:read" not in err.description
        challenge = www_authenticate(err, "https://h/.well-known/oauth-protected-resource", None)
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="mcp:read mcp:admin"' in challenge
        ok = await a.authenticate("Bearer " + idp.issue(idp.claims(scope="mcp:admin mcp:read")))
        assert ok.subject == "alice"
    finally:
        await a.aclose()


# --------------------------------------------------------------- cache and JWKS


async def test_cache_hit_does_not_verify_again(idp: TestIdP, auth: JwtAuthenticator) -> None:
    token = idp.issue()
    p1 = await auth.authenticate(f"Bearer {token}")
    count, fetches = auth.verifications, idp.jwks_requests
    p2 = await auth.authenticate(f"Bearer {token}")
    assert p2 is p1
    assert (auth.verifications, idp.jwks_requests) == (count, fetches)
    other = await auth.authenticate("Bearer " + idp.issue(idp.claims(sub="carol")))
    assert other.subject == "carol" and auth.verifications == count + 1


async def test_cache_entry_dropped_after_expiry_and_lru_bound(idp: TestIdP) -> None:
    clock = Clock(time.time())
    a = JwtAuthenticator(make_cfg(idp), clock=clock, cache_size=2)
    try:
        t1, t2, t3 = (idp.issue(idp.claims(sub=s)) for s in ("u1", "u2", "u3"))
        p1 = await a.authenticate(f"Bearer {t1}")
        await a.authenticate(f"Bearer {t1}")
        assert a.verifications == 1
        clock.t = p1.expires_at + a.cfg.leeway + 1  # (the IdP's token is still valid)
        await a.authenticate(f"Bearer {t1}")
        assert a.verifications == 2  # re-verified, not served stale
        clock.t = time.time()
        await a.authenticate(f"Bearer {t2}")
        await a.authenticate(f"Bearer {t3}")  # evicts t1 (size 2)
        assert a.verifications == 4
        await a.authenticate(f"Bearer {t3}")
        await a.authenticate(f"Bearer {t1}")
        assert a.verifications == 5
    finally:
        await a.aclose()


async def test_unknown_kid_refetches_once_then_is_rate_limited() -> None:
    async with running_idp() as idp:
        mono = Clock()
        a = JwtAuthenticator(make_cfg(idp), monotonic=mono)
        try:
            await a.authenticate("Bearer " + idp.issue())
            assert idp.jwks_requests == 1
            # Unknown kids right after a fetch are not worth a refetch; later they are.
            rogue = idp.issue(key="rogue")
            await refused(a, f"Bearer {rogue}")
            assert idp.jwks_requests == 1
            mono.t += a.cfg.jwt.jwks_refetch_interval + 0.1
            err = await refused(a, f"Bearer {rogue}")
            assert err.error == "invalid_token" and "unknown" in err.description
            assert idp.jwks_requests == 2  # re-fetched once for the unknown kid
            # A flood of unknown kids within the interval does not reach the IdP.
            for i in range(20):
                await refused(a, "Bearer " + idp.issue(key="rogue", headers={"kid": f"x{i}"}))
            assert idp.jwks_requests == 2
            # The IdP rotates; the interval passes; the new key is found.
            idp.publish_rogue()
            await refused(a, f"Bearer {rogue}")
            assert idp.jwks_requests == 2
            mono.t += a.cfg.jwt.jwks_refetch_interval + 0.1
            p = await a.authenticate(f"Bearer {rogue}")
            assert p.subject == "alice" and idp.jwks_requests == 3
        finally:
            await a.aclose()


async def test_concurrent_first_requests_share_one_fetch() -> None:
    async with running_idp() as idp:
        a = JwtAuthenticator(make_cfg(idp))
        try:
            tokens = [idp.issue(idp.claims(sub=f"u{i}")) for i in range(10)]
            results = await asyncio.gather(*(a.authenticate(f"Bearer {t}") for t in tokens))
            assert [p.subject for p in results] == [f"u{i}" for i in range(10)]
            assert idp.jwks_requests == 1
        finally:
            await a.aclose()


async def test_jwks_down_gives_503_and_is_not_hammered(idp: TestIdP) -> None:
    mono = Clock()
    a = JwtAuthenticator(make_cfg(idp), monotonic=mono)
    idp.fail_jwks = 500
    try:
        before = idp.jwks_requests
        for _ in range(5):
            with pytest.raises(JwksUnavailable) as info:
                await a.authenticate("Bearer " + idp.issue())
            assert info.value.status == 503
        assert idp.jwks_requests == before + 1
        idp.fail_jwks = None
        mono.t += a.cfg.jwt.jwks_refetch_interval + 0.1
        assert (await a.authenticate("Bearer " + idp.issue())).subject == "alice"
    finally:
        idp.fail_jwks = None
        await a.aclose()


async def test_jwks_file(idp: TestIdP, tmp_path: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(idp.jwks()))
    cfg = make_cfg(idp, jwt={"jwks_url": None, "jwks_file": str(path)})
    a = JwtAuthenticator(cfg)
    before = idp.jwks_requests
    try:
        assert (await a.authenticate("Bearer " + idp.issue(key="ec"))).subject == "alice"
        assert idp.jwks_requests == before
    finally:
        await a.aclose()


# ------------------------------------------------------- challenge and metadata


def test_www_authenticate_forms() -> None:
    url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    assert www_authenticate(None, url, None) == f'Bearer resource_metadata="{url}"'
    assert www_authenticate(None, url, "mcp:read") == (
        f'Bearer resource_metadata="{url}", scope="mcp:read"'
    )
    err = AuthError(401, "invalid_token", 'token "x" has expired\r\n')
    assert www_authenticate(err, url, "a b") == (
        f'Bearer resource_metadata="{url}", error="invalid_token", '
        'error_description="token x has expired", scope="a b"'
    )


def test_protected_resource_metadata_and_paths(idp: TestIdP) -> None:
    cfg = make_cfg(idp, scopes_supported=["mcp:read"])
    doc = protected_resource_metadata(cfg, "https://ignored.example.com")
    assert doc == {
        "resource": AUD,
        "authorization_servers": [idp.issuer],
        "scopes_supported": ["mcp:read"],
        "bearer_methods_supported": ["header"],
    }
    cfg2 = make_cfg(idp, resource=None, authorization_servers=["https://as.example.com"])
    doc2 = protected_resource_metadata(cfg2, "https://gw.example.com/")
    assert doc2["resource"] == "https://gw.example.com/mcp"
    assert doc2["authorization_servers"] == ["https://as.example.com"]
    assert "scopes_supported" not in doc2
    assert metadata_paths("https://host/mcp") == [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ]
    assert metadata_paths("https://host") == ["/.well-known/oauth-protected-resource"]
    assert metadata_paths("https://host/") == ["/.well-known/oauth-protected-resource"]
    assert metadata_url("https://gw.example.com", "https://gw.example.com/a/mcp") == (
        "https://gw.example.com/.well-known/oauth-protected-resource/a/mcp"
    )


def test_public_base_url_behind_proxy() -> None:
    fwd = {"x-forwarded-proto": "https", "x-forwarded-host": "mcp.example.com"}
    assert public_base_url(fwd, "http", "10.0.0.5:8080", False) == "http://10.0.0.5:8080"
    assert public_base_url(fwd, "http", "10.0.0.5:8080", True) == "https://mcp.example.com"
    assert (
        public_base_url({**fwd, "x-forwarded-port": "8443"}, "http", "gw", True)
        == "https://mcp.example.com:8443"
    )
    assert (
        public_base_url({**fwd, "x-forwarded-port": "443"}, "http", "gw", True)
        == "https://mcp.example.com"
    )
    # First hop of a list; RFC 7239 Forwarded wins.
    assert (
        public_base_url({"x-forwarded-host": "a.example, b.example"}, "http", "gw", True)
        == "http://a.example"
    )
    forwarded = {"forwarded": 'for=1.2.3.4;proto=https;host="edge.example:444", for=5.6.7.8'}
    assert public_base_url({**forwarded, **fwd}, "http", "gw", True) == "https://edge.example:444"
    # Injection attempts are ignored.
    evil = {"x-forwarded-host": 'evil.com/"x', "x-forwarded-proto": "javascript"}
    assert public_base_url(evil, "http", "gw:80", True) == "http://gw:80"
    assert public_base_url({}, "http", 'bad"host', False) == "http://localhost"
    assert public_base_url({}, "https", "[::1]:8443", False) == "https://[::1]:8443"
