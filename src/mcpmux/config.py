"""Gateway configuration: schema, YAML/JSON loading, env interpolation, readable errors.

Every model forbids unknown fields so a typo (``targts:``) is an error instead of a
silently ignored setting. Errors are collected into one :class:`ConfigError` whose
messages name the field path and the YAML line, so an operator can fix everything in
one pass.

``${VAR}`` / ``${VAR:-default}`` are expanded in scalar *values* after the YAML is
composed but before it is constructed and validated. Doing it per value (rather than
on the raw text) means comments are never expanded, a secret containing ``#``, ``: ``
or a newline cannot change the document's structure, and errors still carry exact
lines and field paths.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import redact

__all__ = [
    "A2aAgentConfig",
    "A2aConfig",
    "AdminConfig",
    "AuthConfig",
    "AuthorizationConfig",
    "ConfigError",
    "DiscoveryConfig",
    "GatewayConfig",
    "HttpSpec",
    "JwtConfig",
    "KubernetesDiscoveryConfig",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LimitsConfig",
    "ListenConfig",
    "NamespacesConfig",
    "OpenApiSpec",
    "PrefixMode",
    "RateLimitConfig",
    "ServerConfig",
    "SseSpec",
    "StdioSpec",
    "TargetConfig",
    "TargetKind",
    "TokenExchangeConfig",
    "ToolCuration",
    "ToolOverride",
    "UrlSpec",
    "config_from_dict",
    "interpolate",
    "load_config",
    "parse_config",
]

PrefixMode = Literal["conditional", "always", "never"]
TargetKind = Literal["stdio", "http", "sse", "openapi", "url", "a2a"]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DUPLICATE_NAME = "duplicate_target_name"


class ConfigError(Exception):
    """Every problem found in a configuration, so all of them can be fixed in one go.

    ``errors`` holds human-readable lines such as
    ``"targets[1].name: must be a DNS-1123 label (...) (line 7)"``; ``source`` is the
    file name or ``"<string>"``.
    """

    def __init__(self, errors: list[str], source: str = "<string>") -> None:
        # Masked: a message may quote a value that came from ${SECRET} (a token put in
        # the wrong field), and these lines reach the log and /api/config/status.
        self.errors = [redact.redact(e) for e in errors]
        self.source = source
        super().__init__(self.errors, source)  # args that rebuild it (pickle, copy)

    def __str__(self) -> str:
        lines = [f"{self.source}: {len(self.errors)} error(s)"]
        lines.extend(f"  - {e}" for e in self.errors)
        return "\n".join(lines)


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    """Base for all config models: unknown keys are errors; an empty YAML value
    (``args:`` with everything commented out) means "use the default"."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = _keys_of(cls)
            return {k: v for k, v in data.items() if v is not None or k not in known}
        return data


def _keys_of(cls: type[BaseModel]) -> list[str]:
    """The keys a model accepts in a file: a field's alias (``from``) when it has one."""
    return [f.alias or name for name, f in cls.model_fields.items()]


class ListenConfig(_Model):
    """Where the MCP endpoint listens. Port 0 asks the OS for a free port."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)


class AdminConfig(_Model):
    """The admin/health endpoint; loopback by default because it is unauthenticated."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=19000, ge=0, le=65535)
    enabled: bool = True
    # Bearer token required on admin requests (None: no token; keep it on loopback).
    token: str | None = Field(default=None, min_length=1)


def _check_header_map(value: dict[str, str]) -> dict[str, str]:
    # CR/LF would let a config value smuggle extra headers into upstream requests.
    for k, v in value.items():
        if not k or any(c in k for c in "\r\n: \t"):
            raise ValueError(f"invalid header name {k!r}")
        if "\r" in v or "\n" in v:
            raise ValueError(f"header {k!r}: value must not contain line breaks")
    # Header values carry API keys and tokens: never print them (see redact.py).
    redact.register_headers(value)
    return value


class StdioSpec(_Model):
    """A target started as a child process speaking MCP over stdin/stdout.

    Numbers in ``args``/``env`` are accepted and turned into strings, since
    ``args: [--port, 8080]`` is the natural way to write them in YAML.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    inherit_env: bool = True  # False: the child sees only `env` (plus PATH)

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not k or "=" in k or "\0" in k:
                raise ValueError(f"invalid environment variable name {k!r}")
        return v


class HttpSpec(_Model):
    """A remote target reached over MCP Streamable HTTP."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    url: str
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return _check_http_url(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_header_map(v)


class SseSpec(HttpSpec):
    """A remote target using the legacy HTTP+SSE transport (same fields as http)."""


class UrlSpec(HttpSpec):
    """A remote target given only by ``url:``: streamable HTTP is tried first (POST
    initialize); on an HTTP 4xx, legacy HTTP+SSE (GET expecting an ``endpoint`` event),
    as the spec's backwards-compatibility section describes. Built from the target's
    top-level ``url``, ``sse_url`` and ``headers``."""

    sse_url: str | None = None


def _check_http_url(v: str, problem: str = "must be an http:// or https:// URL with a host") -> str:
    if any(c.isspace() for c in v):
        raise ValueError(f"{problem}; it contains whitespace: {v!r}")
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"{problem}; could not parse {v!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{problem}, got {v!r}")
    return v


class OpenApiSpec(_Model):
    """A REST API described by an OpenAPI 3.0/3.1 or Swagger 2.0 document, served as
    MCP tools by the gateway itself: one tool per operation (see docs/openapi.md).

    ``timeout`` bounds each REST call; the target's own ``timeout`` bounds loading
    the document.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    # A file path (relative to the gateway's working directory) or an http(s) URL,
    # read when the target connects.
    spec: str
    # Overrides the document's servers[] (Swagger 2.0: schemes/host/basePath).
    base_url: str | None = None
    # Sent on every REST call (API keys, bearer tokens); header parameters with these
    # names are filled from here and hidden from the tools' input schemas.
    headers: dict[str, str] = Field(default_factory=dict)
    # operationIds (or tool names); shell-style wildcards allowed. Empty = all.
    include: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    exclude: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    timeout: float = Field(default=30.0, gt=0, allow_inf_nan=False)

    @field_validator("spec")
    @classmethod
    def _spec_location(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        if "://" in v:
            return _check_http_url(v, "must be a file path or an http:// or https:// URL")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        return v if v is None else _check_http_url(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_header_map(v)


# ------------------------------------------------------- security: auth, authz, upstream

# Asymmetric JWS algorithms only: `none` is no signature at all, and an HMAC algorithm
# verified against a JWKS key invites key confusion (the public key used as the secret).
JWT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
DEFAULT_JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")

# Headers a claim may not be copied into: the gateway sets these itself.
_RESERVED_UPSTREAM_HEADERS = frozenset(
    {
        "authorization", "host", "content-length", "content-type", "transfer-encoding",
        "connection", "cookie", "mcp-session-id", "mcp-protocol-version", "last-event-id",
    }
)  # fmt: skip


def _check_algorithm(value: str) -> str:
    if value in JWT_ALGORITHMS:
        return value
    if value.lower() == "none":
        raise ValueError("'none' (unsigned tokens) is never accepted")
    if value.upper().startswith("HS"):
        raise ValueError(
            f"{value!r} is an HMAC algorithm; with keys from a JWKS only asymmetric "
            f"algorithms are safe (one of: {', '.join(JWT_ALGORITHMS)})"
        )
    raise ValueError(f"unknown JWS algorithm {value!r} (one of: {', '.join(JWT_ALGORITHMS)})")


def _check_url(value: str) -> str:
    return _check_http_url(value)


def _check_scope_token(value: str) -> str:
    # RFC 6749 §3.3 scope-token: printable ASCII except space, '"' and '\'.
    if not value or any(not ("\x21" <= c <= "\x7e") or c in '"\\' for c in value):
        raise ValueError(f"{value!r} is not a valid OAuth scope (no spaces, quotes or backslashes)")
    return value


_HttpUrl = Annotated[str, AfterValidator(_check_url)]
_Scope = Annotated[str, AfterValidator(_check_scope_token)]


class JwtConfig(_Model):
    """How access tokens (JWTs) are verified: who issues them, for whom, with which keys.

    Keys come from ``jwks_url`` (fetched and cached; fetched again, at most once per
    ``jwks_refetch_interval`` seconds, when a token names an unknown ``kid``, and when the
    copy is older than ``jwks_max_age``) or from ``jwks_file`` (read from disk): exactly one.
    """

    issuer: str = Field(min_length=1)
    audiences: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    jwks_url: _HttpUrl | None = None
    jwks_file: str | None = Field(default=None, min_length=1)
    jwks_refetch_interval: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    jwks_max_age: float = Field(default=3600.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtConfig:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("set exactly one of 'jwks_url' and 'jwks_file'")
        return self


class AuthConfig(_Model):
    """OAuth 2.1 resource-server settings for the MCP endpoint (MCP authorization spec).

    ``resource`` is the MCP endpoint's canonical URL, published in the RFC 9728 Protected
    Resource Metadata (None: the request's public URL + ``/mcp``). ``authorization_servers``
    defaults to the JWT issuer. ``required_scopes`` are all needed on every token (else 403
    insufficient_scope). ``leeway`` is the clock skew allowed on ``exp``/``nbf``.
    ``trust_forwarded_headers``: build metadata URLs from X-Forwarded-Proto/-Host or
    Forwarded (only behind a proxy that sets them).
    """

    jwt: JwtConfig
    resource: _HttpUrl | None = None
    authorization_servers: list[_HttpUrl] = Field(default_factory=list)
    scopes_supported: list[_Scope] = Field(default_factory=list)
    required_scopes: list[_Scope] = Field(default_factory=list)
    leeway: float = Field(default=30.0, ge=0, le=600, allow_inf_nan=False)
    algorithms: list[Annotated[str, AfterValidator(_check_algorithm)]] = Field(
        default_factory=lambda: list(DEFAULT_JWT_ALGORITHMS), min_length=1
    )
    trust_forwarded_headers: bool = False

    @model_validator(mode="after")
    def _default_servers(self) -> AuthConfig:
        if not self.authorization_servers:
            self.authorization_servers = [self.jwt.issuer]
        return self


def _check_rule(source: str) -> str:
    from .policy.rules import compile_rule  # the CEL library loads only when rules are used

    compile_rule(source)  # raises ValueError naming the problem
    return source


def _check_glob(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class RateLimitConfig(_Model):
    """A token bucket: ``rate`` calls per second refilled, up to ``burst`` at once.

    ``per: principal`` counts every request of one principal; ``per: tool`` counts
    ``tools/call`` requests of one principal to tools whose (prefixed) name matches the
    shell-style glob ``tool``.
    """

    per: Literal["principal", "tool"]
    tool: Annotated[str, AfterValidator(_check_glob)] | None = None
    rate: float = Field(gt=0, allow_inf_nan=False)
    burst: float | None = Field(default=None, ge=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _tool_fits_per(self) -> RateLimitConfig:
        if self.per == "tool" and self.tool is None:
            raise ValueError("'per: tool' needs a 'tool' glob such as 'k8s_*'")
        if self.per == "principal" and self.tool is not None:
            raise ValueError("'tool' goes with 'per: tool', not 'per: principal'")
        if self.burst is None:
            self.burst = max(1.0, self.rate)
        return self


class AuthorizationConfig(_Model):
    """Who may do what. ``rules`` are CEL expressions over ``jwt`` (the token's claims)
    and ``mcp`` (method, target, tool/prompt/resource, arguments); a request is allowed
    when any rule is true (no rules: every authenticated request)."""

    rules: list[Annotated[str, AfterValidator(_check_rule)]] = Field(default_factory=list)
    rate_limits: list[RateLimitConfig] = Field(default_factory=list)


class TokenExchangeConfig(_Model):
    """RFC 8693 token exchange: the client's token is traded at ``token_endpoint`` for one
    meant for this target (``audience``, optional ``resource`` and ``scope``); the gateway
    authenticates with HTTP Basic ``client_id``/``client_secret``. The upstream's
    authorization server must trust the gateway's client and the client token's issuer.
    Results are cached until ``expires_in`` minus ``expiry_margin`` seconds."""

    token_endpoint: _HttpUrl
    audience: str = Field(min_length=1)
    resource: _HttpUrl | None = None
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    scope: str | None = Field(default=None, min_length=1)
    timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    expiry_margin: float = Field(default=30.0, ge=0, allow_inf_nan=False)


def _check_claim_headers(value: dict[str, str]) -> dict[str, str]:
    for header, claim in value.items():
        if not header or any(c in header for c in "\r\n: \t") or not header.isascii():
            raise ValueError(f"invalid header name {header!r}")
        if header.lower() in _RESERVED_UPSTREAM_HEADERS:
            raise ValueError(f"header {header!r} is set by the gateway and cannot come from a claim")
        if not claim.strip():
            raise ValueError(f"header {header!r}: the claim name must not be empty")
    return value


_Glob = Annotated[str, AfterValidator(_check_glob)]


class ToolOverride(_Model):
    """What replaces a tool's own words: its ``description``, its ``title``, and
    ``annotations`` merged over the ones it gives (``readOnlyHint: true``...)."""

    description: str | None = None
    title: str | None = None
    annotations: dict[str, Any] = Field(default_factory=dict)


class ToolCuration(_Model):
    """Which of a target's tools clients see, and under which name and words.

    Globs and keys are the tool names *the target* uses (before the prefix). A tool is
    shown when ``include`` is empty or matches it, and ``exclude`` does not; ``rename``
    gives it another name (still prefixed); ``override`` changes its description,
    title or annotations. Calls go back to the target under its own name."""

    include: list[_Glob] = Field(default_factory=list)
    exclude: list[_Glob] = Field(default_factory=list)
    rename: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    override: dict[str, ToolOverride] = Field(default_factory=dict)

    @field_validator("rename")
    @classmethod
    def _distinct(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for old, new in v.items():
            if new in seen:
                raise ValueError(f"'{old}' and '{seen[new]}' are both renamed to '{new}'")
            seen[new] = old
        return v


class ServerConfig(_Model):
    """A virtual server: its own MCP endpoint (``/mcp/{name}``, ``/sse/{name}``) that
    shows the subset of the merged catalog whose exposed names match its globs (a kind
    without globs shows nothing). ``search: true`` lists only ``search_tools`` and
    ``call_tool``, which find and run the subset's tools."""

    name: str
    tools: list[_Glob] = Field(default_factory=list)
    prompts: list[_Glob] = Field(default_factory=list)
    resources: list[_Glob] = Field(default_factory=list)
    search: bool = False

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if len(v) > 63 or not _DNS1123_LABEL.match(v):
            raise ValueError(
                "must be a DNS-1123 label (lower-case letters, digits, '-'; it is a URL path "
                f"segment), got {v!r}"
            )
        return v


class A2aAgentConfig(HttpSpec):
    """One A2A agent behind the gateway: served at ``/{name}/`` on the A2A listener and
    as the MCP tool ``send_message`` of a target of kind ``a2a`` with the same name.
    ``url`` is the agent's base URL (its card is at {url}/.well-known/agent-card.json);
    ``url`` and ``headers`` are checked as an http target's."""

    name: str
    # Seconds for the card fetch and for a non-streaming call (streams are not cut).
    timeout: float = Field(default=30.0, gt=0, allow_inf_nan=False)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        return _target_name(v)


class A2aListenConfig(_Model):
    """Where the A2A listener serves ``/{agent}/``."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=9090, ge=0, le=65535)


class A2aConfig(_Model):
    """The A2A side (docs/a2a.md): its listener, and the agents behind it."""

    listen: A2aListenConfig = Field(default_factory=A2aListenConfig)
    agents: list[A2aAgentConfig] = Field(default_factory=list)

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, v: list[A2aAgentConfig]) -> list[A2aAgentConfig]:
        seen: set[str] = set()
        for agent in v:
            if agent.name in seen:
                raise ValueError(f"duplicate agent name '{agent.name}'")
            seen.add(agent.name)
        return v


class TargetConfig(_Model):
    """One upstream MCP server. Its name becomes the tool/prompt prefix, hence the
    DNS-1123 restriction: it must be safe inside identifiers and URLs."""

    name: str
    stdio: StdioSpec | None = None
    http: HttpSpec | None = None
    sse: SseSpec | None = None
    openapi: OpenApiSpec | None = None
    # An A2A agent answered as MCP in process (made from `a2a.agents`, not written here).
    a2a: A2aAgentConfig | None = None
    # Only a URL: the transport is probed (streamable HTTP, else legacy SSE).
    url: str | None = None
    # With `url`: where legacy SSE is tried if streamable HTTP gets a 4xx (default: `url`).
    sse_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # Per-request upstream headers: header name <- claim of the caller's token (lists
    # joined with ","). Not for stdio targets.
    headers_from_claims: Annotated[dict[str, str], AfterValidator(_check_claim_headers)] = Field(
        default_factory=dict
    )
    # Trade the caller's token for one meant for this target (RFC 8693). Not for stdio.
    token_exchange: TokenExchangeConfig | None = None
    # Overrides limits.max_response_bytes for this target (a JSON answer, one SSE event).
    max_response_bytes: int | None = Field(default=None, gt=0)
    # Overrides limits.call_timeout for this target's calls (0: none).
    call_timeout: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    # Per tool (its name on this target): overrides call_timeout for tools/call (0: none).
    tool_timeouts: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)
    # Which tools clients see and how they are named and described (changes apply live).
    tools: ToolCuration = Field(default_factory=ToolCuration)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        return _target_name(v)

    @field_validator("url", "sse_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return v if v is None else _check_http_url(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_header_map(v)

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> TargetConfig:
        kinds = self._set_kinds()
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"target {self.name!r}: set exactly one of stdio, http, sse, openapi, url "
                f"(found: {found})"
            )
        if self.sse_url is not None and self.url is None:
            raise ValueError(f"target {self.name!r}: 'sse_url' goes with 'url'")
        if self.headers and self.url is None:
            raise ValueError(
                f"target {self.name!r}: top-level 'headers' go with 'url'; for {kinds[0]} "
                f"put them inside '{kinds[0]}:'"
            )
        return self

    @model_validator(mode="after")
    def _identity_needs_http(self) -> TargetConfig:
        kinds = self._set_kinds()
        if kinds == ["stdio"]:
            used = [k for k in ("headers_from_claims", "token_exchange") if getattr(self, k)]
            if used:
                raise ValueError(
                    f"target {self.name!r}: {' and '.join(used)} need an HTTP-based target "
                    "(http, sse, url or openapi), not stdio"
                )
        return self

    def _set_kinds(self) -> list[TargetKind]:
        kinds: list[TargetKind] = []
        if self.stdio is not None:
            kinds.append("stdio")
        if self.http is not None:
            kinds.append("http")
        if self.sse is not None:
            kinds.append("sse")
        if self.openapi is not None:
            kinds.append("openapi")
        if self.url is not None:
            kinds.append("url")
        if self.a2a is not None:
            kinds.append("a2a")
        return kinds

    @property
    def kind(self) -> TargetKind:
        """Which transport this target uses."""
        return self._set_kinds()[0]

    @property
    def spec(self) -> StdioSpec | HttpSpec | SseSpec | OpenApiSpec | UrlSpec | A2aAgentConfig:
        """The transport settings for :attr:`kind`."""
        if self.url is not None:
            return UrlSpec(url=self.url, headers=self.headers, sse_url=self.sse_url)
        spec = self.stdio or self.http or self.sse or self.openapi or self.a2a
        assert spec is not None  # guaranteed by _exactly_one_kind
        return spec


def _check_origin(origin: str) -> str:
    # Browsers send Origin as scheme://host[:port] with no path; anything else
    # (e.g. a trailing '/') would silently never match, so reject it here.
    if origin != "*":
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc or parts.path or parts.query:
            raise ValueError(
                f"{origin!r} is not an origin; use '*' or scheme://host[:port] "
                "(no path or trailing '/')"
            )
    return origin


class LimitsConfig(_Model):
    """Resource limits that keep one misbehaving client from exhausting the gateway."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    session_idle_timeout: float = Field(default=1800.0, gt=0, allow_inf_nan=False)
    max_sessions: int = Field(default=10000, gt=0)
    # Sessions one client may hold at once (initialized ones and /sse streams not yet
    # initialized): per principal with authentication, else per socket peer address.
    # One client cannot take every slot of max_sessions.
    max_sessions_per_client: int = Field(default=100, gt=0)
    # Seconds a session that never sent a request after initialize (and has no open
    # GET stream) is kept; an /sse stream that never initializes is closed after it too.
    unused_session_timeout: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    # Seconds initialize and lists wait for targets still on their first connection
    # attempt (at most each target's timeout); clients get list_changed when they arrive.
    ready_grace: float = Field(default=2.0, ge=0, allow_inf_nan=False)
    # Items per page of merged lists; 0 = the whole list in one page.
    page_size: int = Field(default=0, ge=0)
    # Seconds a removed target's in-flight calls may take to finish before it is closed.
    drain_timeout: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    # Targets connecting (process start, initialize, first listing) at the same time.
    connect_concurrency: int = Field(default=8, gt=0)
    # stdio targets: processes of their own for clients that can be asked something
    # (sampling, elicitation, roots) or that set a log level, per target; past it such
    # clients share the target's process and are asked nothing.
    max_client_processes: int = Field(default=8, ge=0)
    # Seconds a client's own process may stay unused before it is stopped.
    client_process_idle_timeout: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    # Seconds a call may go without a word from its target (an answer, progress, a log
    # line, a request) before it fails and is cancelled upstream; 0: never. Per target
    # `call_timeout`, per tool `tool_timeouts`.
    call_timeout: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    # Largest answer read from an upstream: a JSON body, one SSE event, an OpenAPI
    # response. Past it the call fails with an error naming the target and the limit.
    max_response_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Largest tool result a client gets whole; past it the client gets its first part
    # and a resource_link (mcpmux://results/{id}) to read the whole of it; 0 = off.
    max_result_bytes: int = Field(default=1024 * 1024, ge=0)
    # Seconds a cut result stays readable through its link.
    result_ttl: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    # Cut results kept in memory (bytes, all sessions); past it they go to a private
    # temporary directory, and past max_result_disk_bytes there the oldest are dropped.
    max_result_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    max_result_disk_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    # Largest resource URI a client may send (template routing is linear, but bounded).
    max_uri_bytes: int = Field(default=8 * 1024, gt=0)
    # Listeners: request line + headers of one request (431 past it).
    max_header_bytes: int = Field(default=64 * 1024, gt=0)
    # Seconds a client may take to send a request's headers (slowloris).
    header_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # Seconds an idle keep-alive connection is kept open.
    keepalive_timeout: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    # Open client connections per listener; past it new ones get 503.
    max_connections: int = Field(default=1000, gt=0)


def _check_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{url!r} is not a Redis URL: use redis://host:6379/0, rediss://… or unix:///path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{url!r} names no host: use redis://host:6379/0")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"{url!r}: the path must be a database number (/0)")
    return url


class StateConfig(_Model):
    """Where session records live. Absent: in this process (one replica). With
    ``redis_url``, in Redis or Valkey, shared by every replica (see docs/scaling.md)."""

    redis_url: Annotated[str, AfterValidator(_check_redis_url)] = Field(min_length=1)
    # Prefix of every key and channel (several gateways may share one Redis).
    key_prefix: str = Field(default="mcpmux", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")


class LabelSelectorRequirement(_Model):
    """One ``matchExpressions`` entry, with Kubernetes' semantics: ``NotIn`` and
    ``DoesNotExist`` also match a namespace that lacks the label."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs a non-empty 'values' list")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no 'values'")
        return self


class LabelSelector(_Model):
    """A Kubernetes label selector on namespace labels (as in a Gateway's
    ``allowedRoutes``): every ``matchLabels`` pair and every expression must hold.
    Keys are spelled as in Kubernetes manifests."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, populate_by_name=True)

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions"
    )


class NamespacesConfig(_Model):
    """Which namespaces' Services may become targets: ``All``, ``Same`` (the
    gateway's own namespace) or ``Selector`` (namespaces whose labels match
    ``selector``). ``selector`` is ignored unless ``from`` is ``Selector``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Literal["All", "Same", "Selector"] = Field(default="All", alias="from")
    selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _selector_given(self) -> NamespacesConfig:
        if self.from_ == "Selector" and self.selector is None:
            raise ValueError(
                "'from: Selector' needs a 'selector' (matchLabels and/or matchExpressions)"
            )
        return self


def _target_name(value: str) -> str:
    """A target's (or agent's) name: a DNS-1123 label, as Kubernetes Service names are."""
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label (lower-case letters, digits, '-'; "
            f"starting and ending with a letter or digit; at most 63 characters), got {value!r}"
        )
    return value


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(f"must be a DNS-1123 label (a Kubernetes namespace name), got {value!r}")
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not all(_DNS1123_LABEL.match(p) for p in value.split(".")):
        raise ValueError(f"must be a DNS name such as 'cluster.local', got {value!r}")
    return value


class KubernetesDiscoveryConfig(_Model):
    """Kubernetes Services whose ports carry an MCP ``appProtocol`` become targets."""

    # None: the in-cluster service account when running in a pod, else $KUBECONFIG,
    # else ~/.kube/config. A path: that kubeconfig file.
    kubeconfig: str | None = Field(default=None, min_length=1)
    # The gateway's own namespace (for `from: Same` and name clashes); None: the
    # service account's namespace file, else "default".
    namespace: Annotated[str, AfterValidator(_dns_label)] | None = None
    namespaces: NamespacesConfig = Field(default_factory=NamespacesConfig)
    address: Literal["dns", "clusterIP"] = "dns"
    cluster_domain: Annotated[str, AfterValidator(_dns_subdomain)] = "cluster.local"


class DiscoveryConfig(_Model):
    """Sources of targets besides the ``targets`` list."""

    kubernetes: KubernetesDiscoveryConfig | None = None


class GatewayConfig(_Model):
    """The whole gateway configuration (the top level of the YAML file)."""

    listen: ListenConfig = Field(default_factory=ListenConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    prefix: PrefixMode = "conditional"
    # Origins accepted besides loopback ones (DNS-rebinding protection); "*" = any.
    allowed_origins: list[Annotated[str, AfterValidator(_check_origin)]] = Field(
        default_factory=list
    )
    # Host header values accepted besides loopback names and the listen host (DNS-rebinding
    # protection); "*" = any. Bound to 0.0.0.0/:: with this empty, any host is accepted.
    allowed_hosts: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    targets: list[TargetConfig] = Field(default_factory=list)
    # Virtual servers: endpoints /mcp/{name} and /sse/{name} showing a subset.
    servers: list[ServerConfig] = Field(default_factory=list)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    # OAuth 2.1 resource server for the MCP endpoint (None: no authentication).
    auth: AuthConfig | None = None
    # Rules and rate limits applied to requests (None: everything allowed).
    authorization: AuthorizationConfig | None = None
    # Shared session state for replicas (None: records kept in this process).
    state: StateConfig | None = None
    # The A2A listener and its agents (None: no A2A listener).
    a2a: A2aConfig | None = None
    # The target that gets tool and prompt names and resource URIs no target lists, when
    # the naming gives no owner (a merged namespace; a prefix that is no target's).
    # Declared last: its check reads the targets, discovery and agents above.
    fallback_target: str | None = None

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, v: list[TargetConfig]) -> list[TargetConfig]:
        seen: dict[str, int] = {}
        for i, target in enumerate(v):
            if target.name in seen:
                raise PydanticCustomError(
                    _DUPLICATE_NAME,
                    "duplicate target name '{name}' (already used by targets[{first}])",
                    {"name": target.name, "first": seen[target.name], "index": i},
                )
            seen[target.name] = i
        return v

    @field_validator("servers")
    @classmethod
    def _unique_servers(cls, v: list[ServerConfig]) -> list[ServerConfig]:
        seen: set[str] = set()
        for server in v:
            if server.name in seen:
                raise ValueError(f"duplicate server name '{server.name}'")
            seen.add(server.name)
        return v

    @field_validator("fallback_target")
    @classmethod
    def _fallback_is_a_target(cls, name: str | None, info: ValidationInfo) -> str | None:
        discovery = info.data.get("discovery")
        if name is None or (discovery is not None and discovery.kubernetes is not None):
            return name  # discovered targets come later: any name may be one
        a2a = info.data.get("a2a")
        known = [t.name for t in info.data.get("targets", [])] + [a.name for a in (a2a.agents if a2a else [])]
        if name not in known:
            raise ValueError(f"{name!r} names no target (targets: {', '.join(known) or 'none'})")
        return name

    @model_validator(mode="after")
    def _identity_needs_auth(self) -> GatewayConfig:
        if self.auth is None:
            used = [t.name for t in self.targets if t.headers_from_claims or t.token_exchange]
            if used:
                raise ValueError(
                    f"target(s) {', '.join(repr(n) for n in used)}: headers_from_claims and "
                    "token_exchange take the caller's identity from its token: configure 'auth'"
                )
        return self

    @model_validator(mode="after")
    def _agents_apart_from_targets(self) -> GatewayConfig:
        if self.a2a is not None:
            names = {t.name for t in self.targets}
            clash = [a.name for a in self.a2a.agents if a.name in names]
            if clash:
                raise ValueError(
                    f"a2a agent(s) {', '.join(repr(n) for n in clash)}: an agent is also an MCP "
                    "target of that name; rename the agent or the target"
                )
        return self

    def target(self, name: str) -> TargetConfig | None:
        """The target called ``name``, or None."""
        return next((t for t in self.all_targets() if t.name == name), None)

    def all_targets(self) -> list[TargetConfig]:
        """``targets`` and, after them, one target of kind ``a2a`` per agent."""
        agents = self.a2a.agents if self.a2a is not None else []
        return [*self.targets, *(TargetConfig(name=a.name, a2a=a, timeout=a.timeout) for a in agents)]


# -------------------------------------------------------------------- interpolation

_REF = re.compile(r"\$\$\{|\$\{(?P<body>[^}\n]*)(?P<close>\})?")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>:-(?P<default>.*))?", re.DOTALL)


def _expand(
    text: str, env: Mapping[str, str], first_line: int, *, count_lines: bool = True
) -> tuple[str, list[str]]:
    """Expand references in ``text``; return the result and problems ending in "(line N)".

    With ``count_lines=False`` every problem is reported at ``first_line`` (for YAML
    scalars whose newlines were folded away, so offsets inside them mean nothing).
    """
    problems: list[str] = []

    def line_of(pos: int) -> int:
        return first_line + (text.count("\n", 0, pos) if count_lines else 0)

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        body = m.group("body")
        parsed = _BODY.fullmatch(body) if m.group("close") else None
        if parsed is None:
            problems.append(
                f"invalid variable reference '${{{body}{'}' if m.group('close') else ''}': "
                "use ${NAME} or ${NAME:-default}, or $${ for a literal '${' "
                f"(line {line_of(m.start())})"
            )
            return m.group(0)
        name = parsed.group("name")
        value = env.get(name)
        if parsed.group("sep") is not None:
            # Shell semantics: the default also applies when the variable is empty.
            if value:
                redact.register(value)
            return value if value else parsed.group("default")
        if value is None:
            problems.append(
                f"environment variable '{name}' is not set "
                f"(use ${{{name}:-default}} to make it optional) (line {line_of(m.start())})"
            )
            return m.group(0)
        # A value from the environment may be a secret wherever it lands: never print it.
        redact.register(value)
        return value

    return _REF.sub(replace, text), problems


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in ``text`` from ``env``.

    ``$${`` yields a literal ``${``. ``:-`` uses the default when the variable is
    unset *or empty*, as in the shell. Raises :class:`ConfigError` listing every unset
    variable (that has no default) and every malformed reference, with line numbers.
    """
    result, problems = _expand(text, env, 1)
    if problems:
        raise ConfigError(problems)
    return result


# ------------------------------------------------------------------ YAML handling


def _format_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _children(node: yaml.Node) -> Iterator[tuple[int | str, yaml.Node]]:
    """(path element, value node) pairs of a collection node."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield key.value, value
    elif isinstance(node, yaml.SequenceNode):
        yield from enumerate(node.value)


def _interpolate_tree(root: yaml.Node, env: Mapping[str, str]) -> list[str]:
    """Expand references in every scalar value of the tree, in place.

    Results stay strings (the scalar's tag is not re-resolved): a secret such as
    ``0755`` or ``yes`` must reach a string field verbatim, and pydantic still turns
    ``port: ${PORT:-8080}`` into an int. Keys are not expanded. Aliased nodes are
    visited once, so a ``$${`` escape is never expanded twice.
    """
    problems: list[str] = []
    seen: set[int] = set()

    def visit(node: yaml.Node, path: tuple[int | str, ...]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if "${" not in node.value:
                return
            if node.style == "|":
                # Literal block content starts on the line after the '|' indicator.
                value, found = _expand(node.value, env, node.start_mark.line + 2)
            else:
                value, found = _expand(node.value, env, node.start_mark.line + 1, count_lines=False)
            where = _format_path(path)
            problems.extend(f"{where}: {p}" if where else p for p in found)
            node.value = value
            return
        for part, child in _children(node):
            visit(child, (*path, part))

    visit(root, ())
    return problems


def _duplicate_keys(root: yaml.Node) -> list[str]:
    """YAML silently keeps the last of two equal keys; report them instead."""
    problems: list[str] = []
    seen: set[int] = set()

    def visit(node: yaml.Node, path: tuple[int | str, ...]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in keys:
                        where = _format_path((*path, key.value))
                        problems.append(
                            f"{where}: key appears more than once (line {key.start_mark.line + 1})"
                        )
                    keys.add(key.value)
        for part, child in _children(node):
            visit(child, (*path, part))

    visit(root, ())
    return problems


def _line_for(root: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """Line of the node at ``loc``, or of its nearest existing ancestor."""
    node = root
    line = root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):  # the last duplicate wins
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _yaml_error(exc: yaml.YAMLError, text: str) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark is None:
            return f"YAML syntax error: {what}"
        # An unquoted ${...} inside [...] or {...} is a YAML error (braces are flow
        # indicators there); say so, since the cause is not obvious from YAML's message.
        lines = text.splitlines()
        if 0 <= mark.line < len(lines) and "${" in lines[mark.line]:
            what += "; note: inside [...] or {...}, values using ${...} must be quoted"
        return f"YAML syntax error: {what} (line {mark.line + 1}, column {mark.column + 1})"
    return f"YAML syntax error: {exc}"


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        # YAML rejects tab indentation that JSON allows. Tabs in valid JSON can only be
        # whitespace (they must be escaped inside strings), so swapping them for spaces
        # is lossless and keeps line numbers.
        if "\t" in text:
            try:
                json.loads(text)
            except ValueError:
                pass
            else:
                return yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader)
        raise


# -------------------------------------------------------------- validation errors

_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _describe(value: Any) -> str:
    kind = _TYPE_NAMES.get(type(value))
    if kind is None or isinstance(value, dict | list):
        return kind or type(value).__name__
    text = repr(value)
    return f"{text[:57]}..." if len(text) > 60 else text


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model reached by ``loc`` (for "did you mean" hints)."""
    cls: Any = GatewayConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for name, f in cls.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return []
        ann: Any = field.annotation
        while True:
            origin = typing.get_origin(ann)
            if origin in (Union, types.UnionType):
                ann = next((a for a in typing.get_args(ann) if a is not type(None)), None)
            elif origin is list:
                ann = typing.get_args(ann)[0]
            else:
                break
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        cls = ann
    return _keys_of(cls)


def _message(err: Mapping[str, Any]) -> str:
    """Turn one pydantic error into a sentence an operator can act on."""
    kind: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    got = _describe(value)
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        loc = tuple(err["loc"])
        fields = _fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
        if close:
            return f"unknown field (did you mean '{close[0]}'?)"
        if fields:
            return f"unknown field (expected one of: {', '.join(fields)})"
        return "unknown field"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind == "string_type":
        hint = " (quote it)" if isinstance(value, bool) else ""
        return f"expected a string, got {got}{hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {got}"
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        bound = ctx.get(key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "greater than 0", not "greater than 0.0"
        return f"must be {words} {bound}, got {got}"
    if kind == "string_too_short":
        return "must not be empty"
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _error_lines(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    """Format every error; with a YAML tree, add lines and sort by them (file order)."""
    lines: list[tuple[int, str]] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == _DUPLICATE_NAME:
            loc = (*loc, ctx["index"], "name")
        text = _message(err)
        where = _format_path(loc)
        line = f"{where}: {text}" if where else text
        lineno = 0
        if root is not None:
            lineno = _line_for(root, loc)
            line += f" (line {lineno})"
        lines.append((lineno, line))
    lines.sort(key=lambda item: item[0])  # stable: same-line errors keep schema order
    return [line for _, line in lines]


# ------------------------------------------------------------------ entry points


def _validate(data: Any, source: str, root: yaml.Node | None) -> GatewayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = f" (line {root.start_mark.line + 1})" if root is not None else ""
        raise ConfigError(
            [f"the top level must be a mapping of settings, got {_describe(data)}{where}"],
            source,
        )
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_error_lines(exc, root), source) from None


def parse_config(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Parse YAML (or JSON) configuration text; ``env`` defaults to ``os.environ``.

    An empty document yields all defaults. Raises :class:`ConfigError`.
    """
    if env is None:
        env = os.environ
    try:
        root = _compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(exc, text)], source) from None
    if root is None:
        return GatewayConfig()
    problems = _duplicate_keys(root) + _interpolate_tree(root, env)
    if problems:
        raise ConfigError(problems, source)
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(exc, text)], source) from None
    finally:
        loader.dispose()
    return _validate(data, source, root)


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and parse the configuration file at ``path``. Raises :class:`ConfigError`."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8-sig") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(["configuration file not found"], source) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a configuration file"], source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not valid UTF-8 text ({exc.reason})"], source) from None
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror or exc}"], source) from None
    return parse_config(text, source)


def config_from_dict(data: dict[str, Any]) -> GatewayConfig:
    """Validate an in-memory config (e.g. the embedded demo); no interpolation is done.

    Raises :class:`ConfigError` with the same messages as files, minus line numbers.
    """
    return _validate(data, "<dict>", None)
