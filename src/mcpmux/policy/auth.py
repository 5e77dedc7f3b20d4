"""Bearer-token authentication for the MCP endpoint (an OAuth 2.1 resource server).

:class:`JwtAuthenticator` turns an ``Authorization`` header into a :class:`Principal`
or raises :class:`AuthError`; :func:`www_authenticate` renders the challenge for a
401/403 (RFC 6750 §3 with RFC 9728's ``resource_metadata``, as the MCP authorization
spec 2025-11-25 requires); :func:`protected_resource_metadata`, :func:`metadata_paths`
and :func:`public_base_url` serve the RFC 9728 document at the right URL, also
behind a reverse proxy.

JWT library: PyJWT (``pyjwt[crypto]``) rather than joserfc. It is already installed
with the MCP SDK (same ``cryptography`` backend), it makes the caller pass the
algorithm allow-list on every decode, it checks ``exp``/``nbf``/``iat``/``iss``/``aud``
with leeway and ``require``d claims, and its HMAC algorithm refuses PEM/public keys.
We do not use its ``PyJWKClient`` (blocking urllib): keys are fetched with aiohttp,
and each token is verified with a *key object* and ``algorithms=[alg]`` after our own
check that the header's ``alg`` is allowed and fits the key's type and curve, so the
key type (RSA/EC/OKP), not the token, decides what can verify.

Validated tokens are cached (SHA-256 of the token -> Principal, bounded LRU) until
they expire, so a repeat request costs a hash and a dict lookup. A key removed from
the JWKS therefore stays trusted for tokens already seen until they expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import jwt
from jwt.api_jwk import PyJWK

from ..config import JWT_ALGORITHMS, AuthConfig

__all__ = [
    "AuthError",
    "JwksUnavailable",
    "JwtAuthenticator",
    "Principal",
    "metadata_paths",
    "metadata_url",
    "protected_resource_metadata",
    "public_base_url",
    "www_authenticate",
]

log = logging.getLogger("mcpmux.auth")

WELL_KNOWN_PRM: Final = "/.well-known/oauth-protected-resource"
MAX_TOKEN_LENGTH: Final = 16 * 1024
MAX_JWKS_BYTES: Final = 1024 * 1024
_B64TOKEN: Final = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_EC_CURVES: Final = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``key`` (``"<iss>|<sub>"``) identifies it stably, e.g.
    to tie a session to its owner. ``claims`` must be treated as read-only."""

    subject: str
    claims: dict[str, Any] = field(hash=False, compare=False)
    scopes: frozenset[str]
    expires_at: float
    key: str


class AuthError(Exception):
    """A refused request: ``status`` 401 (no/bad token) or 403 (insufficient scope).

    ``error`` is the RFC 6750 code (``invalid_request``, ``invalid_token``,
    ``insufficient_scope``) or None when the request carried no credentials at all
    (RFC 6750 §3.1: then no error code is sent). ``scope`` is the scope needed, for
    the challenge. The description never contains the token.
    """

    def __init__(
        self, status: int, error: str | None, description: str, scope: str | None = None
    ) -> None:
        super().__init__(status, error, description, scope)
        self.status = status
        self.error = error
        self.description = description
        self.scope = scope

    def __str__(self) -> str:
        return f"{self.status} {self.error or 'unauthorized'}: {self.description}"


class JwksUnavailable(AuthError):
    """The signing keys could not be loaded, so no token can be checked: answer 503
    (not 401, which would send the client to re-authenticate in a loop)."""

    def __init__(self, description: str) -> None:
        super().__init__(503, "temporarily_unavailable", description)


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any  # a cryptography public key object

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        if self.kty == "RSA":
            return alg[:2] in ("RS", "PS")
        if self.kty == "EC":
            return _EC_CURVES.get(self.crv or "") == alg
        if self.kty == "OKP":
            return alg == "EdDSA" and self.crv in ("Ed25519", "Ed448")
        return False


def _parse_jwks(data: Any) -> list[_Key]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWK Set (no 'keys' list)")
    keys: list[_Key] = []
    for jwk in data["keys"]:
        if not isinstance(jwk, dict):
            continue
        kty, alg, use = jwk.get("kty"), jwk.get("alg"), jwk.get("use")
        if kty not in ("RSA", "EC", "OKP") or use not in (None, "sig"):
            continue  # symmetric ("oct") and encryption keys never verify tokens here
        if alg is not None and alg not in JWT_ALGORITHMS:
            continue
        kid = jwk.get("kid")
        try:
            parsed = PyJWK(jwk)
        except Exception as exc:
            log.warning("ignoring JWKS key %r: %s", kid, exc)
            continue
        if hasattr(parsed.key, "private_bytes"):
            continue  # a private key published by mistake: refuse to use it
        keys.append(
            _Key(kid if isinstance(kid, str) else None, kty, jwk.get("crv"), alg, parsed.key)
        )
    return keys


def _scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` (RFC 8693/9068: space-separated) or ``scp`` (list or string)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return frozenset(found)


_JWT_ERRORS: Final[list[tuple[type[Exception], str]]] = [
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not yet valid"),
    (jwt.InvalidAudienceError, "token is not meant for this resource (audience)"),
    (jwt.InvalidIssuerError, "token issuer is not trusted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm does not fit its key"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.DecodeError, "token is malformed"),
]


def _describe(exc: Exception) -> str:
    for kind, text in _JWT_ERRORS:
        if isinstance(exc, kind):
            if isinstance(exc, jwt.MissingRequiredClaimError):
                return f"token lacks the required claim '{exc.claim}'"
            return text
    return "token is invalid"


class JwtAuthenticator:
    """Validates bearer JWTs against ``cfg`` (see :class:`~mcpmux.config.AuthConfig`).

    ``session``: an aiohttp session for JWKS requests (one is created, and closed by
    :meth:`aclose`, if not given). ``clock`` gives wall time for cache expiry;
    ``monotonic`` paces JWKS refetches. Counters for tests and metrics:
    ``jwks_fetches`` (attempts), ``verifications`` (signature checks done).
    """

    def __init__(
        self,
        cfg: AuthConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self._session = session
        self._own_session = session is None
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._monotonic = monotonic
        self._algorithms = frozenset(cfg.algorithms)
        self._required = frozenset(cfg.required_scopes)
        self._required_text = " ".join(cfg.required_scopes) or None
        self._keys: list[_Key] | None = None
        self._keys_loaded_at = 0.0
        self._last_fetch: float | None = None  # monotonic time of the last attempt
        self._lock = asyncio.Lock()
        self.jwks_fetches = 0
        self.verifications = 0

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- the request path ------------------------------------------------------

    async def authenticate(self, authorization: str | None, query_string: bytes = b"") -> Principal:
        """The caller behind ``authorization`` (the header's value), or AuthError."""
        if query_string and any(
            k == "access_token" for k, _ in parse_qsl(query_string.decode("latin-1"), True)
        ):
            raise AuthError(
                401, "invalid_request", "access tokens are not accepted in the URL query"
            )
        if authorization is None or not authorization.strip():
            raise AuthError(401, None, "authentication required")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise AuthError(401, "invalid_request", "use the Bearer authorization scheme")
        if not token:
            raise AuthError(401, "invalid_request", "the Bearer token is missing")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(401, "invalid_token", "token is malformed")

        digest = hashlib.sha256(token.encode()).digest()
        principal = self._cache.get(digest)
        if principal is not None:  # the same token was well-formed and valid before
            if principal.expires_at + self.cfg.leeway > self._clock():
                self._cache.move_to_end(digest)
                return self._check_scopes(principal)
            del self._cache[digest]
        if not _B64TOKEN.match(token):
            raise AuthError(401, "invalid_token", "token is malformed")
        principal = await self._verify(token)
        self._cache[digest] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return self._check_scopes(principal)

    def _check_scopes(self, principal: Principal) -> Principal:
        if self._required and not self._required <= principal.scopes:
            missing = " ".join(sorted(self._required - principal.scopes))
            raise AuthError(
                403,
                "insufficient_scope",
                f"token lacks the scope(s): {missing}",
                scope=self._required_text,
            )
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(401, "invalid_token", "token is malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError(
                401, "invalid_token", f"token algorithm {str(alg)[:20]!r} is not allowed"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError(401, "invalid_token", "token is malformed")

        candidates = await self._candidates(kid, alg)
        claims: dict[str, Any] | None = None
        failure: Exception | None = None
        for key in candidates[:8]:
            self.verifications += 1
            try:
                claims = jwt.decode(
                    token,
                    key=key.key,
                    algorithms=[alg],
                    audience=self.cfg.jwt.audiences,
                    issuer=self.cfg.jwt.issuer,
                    leeway=self.cfg.leeway,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
                break
            except jwt.InvalidSignatureError as wrong_key:
                failure = wrong_key  # try the next key (tokens without kid)
            except jwt.PyJWTError as exc:
                raise AuthError(401, "invalid_token", _describe(exc)) from None
        if claims is None:
            raise AuthError(401, "invalid_token", _describe(failure or jwt.InvalidSignatureError()))
        sub = claims.get("sub")
        exp = claims.get("exp")
        if not isinstance(sub, str) or not sub:
            raise AuthError(401, "invalid_token", "token 'sub' must be a non-empty string")
        if not isinstance(exp, (int, float)):
            raise AuthError(401, "invalid_token", "token 'exp' must be a number")
        return Principal(
            subject=sub,
            claims=claims,
            scopes=_scopes_of(claims),
            expires_at=float(exp),
            key=f"{claims['iss']}|{sub}",
        )

    # -- keys --------------------------------------------------------------------

    def _matching(self, kid: str | None, alg: str) -> list[_Key]:
        keys = self._keys or []
        if kid is not None:
            return [k for k in keys if k.kid == kid and k.fits(alg)]
        return [k for k in keys if k.fits(alg)]

    async def _candidates(self, kid: str | None, alg: str) -> list[_Key]:
        if (
            self._keys is None
            or self._monotonic() - self._keys_loaded_at > self.cfg.jwt.jwks_max_age
        ):
            await self._refresh(reason="initial" if self._keys is None else "max_age")
        if self._keys is None:
            raise JwksUnavailable("the token signing keys are unavailable; try again later")
        found = self._matching(kid, alg)
        if not found and kid is not None and not any(k.kid == kid for k in self._keys):
            # An unknown kid may mean the IdP rotated its keys: fetch again, but at most
            # once per jwks_refetch_interval whatever tokens arrive.
            await self._refresh(reason="unknown_kid")
            found = self._matching(kid, alg)
        if not found:
            raise AuthError(401, "invalid_token", "token signing key is unknown")
        return found

    async def _refresh(self, reason: str) -> None:
        seen = self._last_fetch
        async with self._lock:
            if self._last_fetch != seen:
                return  # another request fetched while this one waited
            now = self._monotonic()
            if (
                self._last_fetch is not None
                and now - self._last_fetch < self.cfg.jwt.jwks_refetch_interval
            ):
                return
            self._last_fetch = now
            self.jwks_fetches += 1
            try:
                keys = await self._load()
            except Exception as exc:
                log.warning("loading the JWKS (%s) failed: %s", reason, exc)
                if self._keys is not None:
                    self._keys_loaded_at = now  # keep using the old keys for a while
                return
            self._keys = keys
            self._keys_loaded_at = now
            log.debug("JWKS loaded (%s): %d key(s)", reason, len(keys))

    async def _load(self) -> list[_Key]:
        jcfg = self.cfg.jwt
        if jcfg.jwks_file is not None:
            raw = await asyncio.to_thread(Path(jcfg.jwks_file).read_bytes)
            return _parse_jwks(json.loads(raw))
        assert jcfg.jwks_url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=10)
        resp = await self._session.get(jcfg.jwks_url, timeout=timeout, headers={"Accept": "application/json"})
        try:  # released in a plain finally, not `async with` (compiled: docs/architecture.md)
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            body = await resp.content.read(MAX_JWKS_BYTES + 1)
        finally:
            resp.release()
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        return _parse_jwks(json.loads(body))


# ------------------------------------------------------------------ challenges


def _quoted(value: str) -> str:
    # RFC 6750 §3: error_description and scope use %x20-21 / %x23-5B / %x5D-7E.
    cleaned = "".join(c for c in value if " " <= c <= "~" and c not in '"\\')
    return f'"{cleaned}"'


def www_authenticate(err: AuthError | None, metadata_url: str, scope: str | None) -> str:
    """The ``WWW-Authenticate`` value for a 401/403: ``Bearer resource_metadata="…"``
    plus ``error``, ``error_description`` and ``scope`` when there is something to say.
    ``scope`` is used unless the error names the scope it needs."""
    parts = [f"resource_metadata={_quoted(metadata_url)}"]
    if err is not None and err.error:
        parts.append(f"error={_quoted(err.error)}")
        if err.description:
            parts.append(f"error_description={_quoted(err.description)}")
    chosen = err.scope if err is not None and err.scope else scope
    if chosen:
        parts.append(f"scope={_quoted(chosen)}")
    return "Bearer " + ", ".join(parts)


# ---------------------------------------------------------------- RFC 9728 metadata


def protected_resource_metadata(cfg: AuthConfig, base_url: str) -> dict[str, Any]:
    """The RFC 9728 Protected Resource Metadata document. ``base_url`` is the public
    ``scheme://host`` (see :func:`public_base_url`); the resource defaults to
    ``base_url + "/mcp"`` when ``auth.resource`` is not set."""
    doc: dict[str, Any] = {
        "resource": cfg.resource or base_url.rstrip("/") + "/mcp",
        "authorization_servers": list(cfg.authorization_servers),
        "bearer_methods_supported": ["header"],
    }
    if cfg.scopes_supported:
        doc["scopes_supported"] = list(cfg.scopes_supported)
    return doc


def metadata_paths(resource: str) -> list[str]:
    """Paths at which to serve the metadata for ``resource``: the root well-known path
    and, when the resource has a path, the path-specific one (RFC 9728 §3.1), e.g.
    ``/.well-known/oauth-protected-resource/mcp`` for ``https://host/mcp``."""
    path = urlsplit(resource).path.rstrip("/")
    paths = [WELL_KNOWN_PRM]
    if path:
        paths.append(WELL_KNOWN_PRM + path)
    return paths


def metadata_url(base_url: str, resource: str) -> str:
    """The URL for ``resource_metadata`` in challenges: the most specific path."""
    return base_url.rstrip("/") + metadata_paths(resource)[-1]


_HOST: Final = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def _forwarded(value: str) -> tuple[str | None, str | None]:
    """proto and host of the first (client-side) element of an RFC 7239 Forwarded."""
    proto = host = None
    for pair in _first(value).split(";"):
        name, _, v = pair.strip().partition("=")
        v = v.strip().strip('"')
        if name.lower() == "proto":
            proto = v
        elif name.lower() == "host":
            host = v
    return proto, host


def public_base_url(
    scope_headers: Mapping[str, str], scheme: str, host: str, trust_forwarded: bool
) -> str:
    """``scheme://host`` as clients see the gateway. ``scope_headers`` maps lower-case
    header names to values. With ``trust_forwarded`` (only behind a proxy that sets
    them), ``Forwarded`` or ``X-Forwarded-Proto``/``-Host``/``-Port`` win; values that
    are not a plain scheme or host[:port] are ignored, so no header can inject text
    into the metadata URL."""
    if trust_forwarded:
        fwd = scope_headers.get("forwarded")
        f_proto, f_host = _forwarded(fwd) if fwd else (None, None)
        proto = f_proto or _first(scope_headers.get("x-forwarded-proto", "")) or None
        fhost = f_host or _first(scope_headers.get("x-forwarded-host", "")) or None
        if proto and proto.lower() in ("http", "https"):
            scheme = proto.lower()
        if fhost and _HOST.match(fhost):
            host = fhost
            port = _first(scope_headers.get("x-forwarded-port", ""))
            if not f_host and port.isdigit() and ":" not in host.rsplit("]", 1)[-1]:
                if (scheme, port) not in (("http", "80"), ("https", "443")):
                    host = f"{host}:{port}"
    scheme = scheme.lower() if scheme.lower() in ("http", "https") else "http"
    if not _HOST.match(host):
        host = "localhost"
    return f"{scheme}://{host}"
