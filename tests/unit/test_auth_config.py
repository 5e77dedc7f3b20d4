"""Config for auth, authorization, admin token and per-target identity settings."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mcpmux
from mcpmux.config import (
    DEFAULT_JWT_ALGORITHMS,
    ConfigError,
    GatewayConfig,
    parse_config,
)

FULL = """
auth:
  jwt:
    issuer: https://idp.example.com
    audiences: ["https://mcp.example.com/mcp"]
    jwks_url: https://idp.example.com/.well-known/jwks.json
  resource: https://mcp.example.com/mcp
  authorization_servers: ["https://idp.example.com"]
authorization:
  rules:
    - 'jwt.sub == "alice"'
    - '"ops" in jwt.groups && mcp.target == "k8s"'
    - 'mcp.tool.name == "echo" && mcp.arguments.text.size() < 100'
  rate_limits:
    - {per: principal, rate: 10, burst: 20}
    - {per: tool, tool: "k8s_*", rate: 1, burst: 5}
admin:
  token: ${MCPMUX_ADMIN_TOKEN}
targets:
  - name: k8s
    http:
      url: https://k8s-mcp.internal/mcp
      headers: {X-Static: "1"}
    headers_from_claims: {X-User: sub, X-Groups: groups}
    token_exchange:
      token_endpoint: https://idp.example.com/token
      audience: k8s-api
      client_id: gateway
      client_secret: ${EXCHANGE_SECRET}
      scope: k8s:read
  - name: api
    openapi: {spec: api.yaml}
    headers_from_claims: {X-User: sub}
  - name: by-url
    url: https://x.example.com/mcp
    token_exchange: {token_endpoint: "https://idp.example.com/token", audience: x, client_id: g, client_secret: s}
"""
ENV = {"MCPMUX_ADMIN_TOKEN": "admintoken-0123456789", "EXCHANGE_SECRET": "xs"}


def errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), env=env or ENV)
    return info.value.errors


def test_full_example_and_defaults() -> None:
    cfg = parse_config(FULL, env=ENV)
    assert cfg.auth is not None and cfg.authorization is not None
    assert cfg.auth.leeway == 30
    assert cfg.auth.algorithms == list(DEFAULT_JWT_ALGORITHMS)
    assert cfg.auth.required_scopes == [] and cfg.auth.scopes_supported == []
    assert cfg.auth.trust_forwarded_headers is False
    assert cfg.auth.jwt.jwks_refetch_interval == 10
    assert cfg.admin.token == "admintoken-0123456789"
    assert [r.per for r in cfg.authorization.rate_limits] == ["principal", "tool"]
    k8s = cfg.target("k8s")
    assert k8s is not None and k8s.token_exchange is not None
    assert k8s.token_exchange.client_secret == "xs" and k8s.token_exchange.expiry_margin == 30
    assert k8s.headers_from_claims == {"X-User": "sub", "X-Groups": "groups"}
    assert GatewayConfig().auth is None and GatewayConfig().authorization is None
    assert GatewayConfig().admin.token is None


def test_authorization_servers_default_to_issuer() -> None:
    cfg = parse_config(
        "auth: {jwt: {issuer: 'https://i.example', audiences: [a], jwks_file: k.json}}"
    )
    assert cfg.auth is not None and cfg.auth.authorization_servers == ["https://i.example"]
    assert cfg.auth.resource is None


@pytest.mark.parametrize(
    ("alg", "words"),
    [("none", "'none'"), ("HS256", "HMAC"), ("RS1", "unknown JWS algorithm")],
)
def test_algorithms_refused(alg: str, words: str) -> None:
    (line,) = errors(
        f"""
        auth:
          jwt: {{issuer: 'https://i', audiences: [a], jwks_file: k.json}}
          algorithms: [RS256, {alg}]
        """
    )
    assert line.startswith("auth.algorithms[1]: ") and words in line and "(line 4)" in line


@pytest.mark.parametrize(
    ("jwt", "words"),
    [
        ("{issuer: 'https://i', audiences: [a]}", "exactly one of 'jwks_url' and 'jwks_file'"),
        (
            "{issuer: 'https://i', audiences: [a], jwks_file: k, jwks_url: 'https://i/j'}",
            "exactly one",
        ),
        ("{issuer: 'https://i', audiences: [], jwks_file: k}", "audiences"),
        ("{issuer: 'https://i', audiences: [a], jwks_url: 'ftp://x'}", "jwks_url"),
    ],
)
def test_jwt_errors(jwt: str, words: str) -> None:
    (line,) = errors(f"auth:\n  jwt: {jwt}\n")
    assert line.startswith("auth.jwt") and words in line


def test_auth_misc_errors() -> None:
    lines = errors(
        """
        auth:
          jwt: {issuer: 'https://i', audiences: [a], jwks_file: k}
          leeway: -1
          required_scopes: ["two words"]
          trust_forwarded_headers: maybe
          resource: not-a-url
        admin:
          token: ""
        """
    )
    text = "\n".join(lines)
    assert "auth.leeway: must be at least 0" in text
    assert "auth.required_scopes[0]: 'two words' is not a valid OAuth scope" in text
    assert "auth.trust_forwarded_headers: expected true or false" in text
    assert "auth.resource: must be an http:// or https:// URL" in text
    assert "admin.token: must not be empty" in text


def test_rate_limit_errors() -> None:
    lines = errors(
        """
        authorization:
          rate_limits:
            - {per: tool, rate: 1}
            - {per: principal, tool: x, rate: 1}
            - {per: user, rate: 1}
            - {per: principal, rate: 0}
        """
    )
    assert lines[0].startswith("authorization.rate_limits[0]: 'per: tool' needs a 'tool' glob")
    assert lines[1].startswith("authorization.rate_limits[1]: 'tool' goes with 'per: tool'")
    assert lines[2].startswith("authorization.rate_limits[2].per: must be one of")
    assert lines[3].startswith("authorization.rate_limits[3].rate: must be greater than 0")


def test_burst_defaults_to_rate_or_one() -> None:
    cfg = parse_config(
        "authorization: {rate_limits: [{per: principal, rate: 5}, {per: principal, rate: 0.5}]}"
    )
    assert cfg.authorization is not None
    assert [r.burst for r in cfg.authorization.rate_limits] == [5, 1]


def test_rule_errors_name_the_rule() -> None:
    lines = errors(
        """
        authorization:
          rules:
            - 'jwt.sub == "alice"'
            - 'jwt.sub == '
            - 'who.sub == "x"'
        """
    )
    assert lines[0].startswith("authorization.rules[1]: invalid CEL rule 'jwt.sub == ': syntax")
    assert lines[1].startswith("authorization.rules[2]: invalid CEL rule 'who.sub == \"x\"'")
    assert "unknown variable 'who'" in lines[1]


def test_identity_settings_not_for_stdio_and_headers_checked() -> None:
    lines = errors(
        """
        targets:
          - name: local
            stdio: {command: echo}
            headers_from_claims: {X-User: sub}
            token_exchange: {token_endpoint: "https://i/t", audience: a, client_id: c, client_secret: s}
          - name: h
            http: {url: "https://h/mcp"}
            headers_from_claims: {"Authorization": sub, "X-Bad Name": sub}
          - name: h2
            http: {url: "https://h/mcp"}
            headers_from_claims: {"X-Empty": ""}
            token_exchange: {token_endpoint: "https://i/t", audience: a, client_id: c}
        """
    )
    text = "\n".join(lines)
    assert (
        "target 'local': headers_from_claims and token_exchange need an HTTP-based target" in text
    )
    assert "targets[1].headers_from_claims: header 'Authorization' is set by the gateway" in text
    assert (
        "targets[2].headers_from_claims: header 'X-Empty': the claim name must not be empty" in text
    )
    assert "targets[2].token_exchange.client_secret: required field is missing" in text


def test_mcpmux_validate_reports_bad_rule(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(FULL.replace("${MCPMUX_ADMIN_TOKEN}", "t").replace("${EXCHANGE_SECRET}", "s"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("authorization:\n  rules: ['jwt.sub ==']\n")
    run = [sys.executable, "-m", "mcpmux", "validate"]
    # The mcpmux under test, whichever tree the venv's editable install points at.
    env = {**os.environ, "PYTHONPATH": str(Path(mcpmux.__file__).resolve().parents[1])}
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "valid (3 targets)" in ok.stdout
    no = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60, env=env)
    assert no.returncode == 1
    assert "authorization.rules[0]: invalid CEL rule 'jwt.sub =='" in no.stderr
    assert "(line 2)" in no.stderr
