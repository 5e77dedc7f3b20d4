"""A test identity provider (OAuth 2.1 authorization server) on a loopback port.

Started in-process with aiohttp.web (``async with running_idp() as idp``). It has
an RSA and an EC signing key (published in ``/jwks.json``) and a third RSA key that
is *not* published until :meth:`TestIdP.publish_rogue` (for unknown-``kid`` tests).

Endpoints, shaped after what the MCP Python SDK's ``OAuthClientProvider`` (2.3.0)
asks for:

- ``/.well-known/oauth-authorization-server`` (RFC 8414) and
  ``/.well-known/openid-configuration``;
- ``/jwks.json``;
- ``/register``: dynamic client registration (RFC 7591); a client that does not ask
  for ``token_endpoint_auth_method: none`` gets a secret (``client_secret_basic`` by
  default, as RFC 7591 says);
- ``/authorize``: authorization code + PKCE (S256 only), auto-approved: redirects
  straight back with ``code``, ``state`` and ``iss`` (RFC 9207, advertised);
- ``/token``: ``authorization_code`` (PKCE checked, RFC 8707 ``resource`` becomes
  ``aud``), ``refresh_token``, and RFC 8693 token exchange for confidential clients.

:meth:`TestIdP.issue` mints tokens, including deliberately bad ones. Counters
(``jwks_requests``, ``token_requests`` …) and :attr:`TestIdP.requests` let tests
assert caching and rate limiting; ``fail_token`` makes ``/token`` fail.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DEFAULT_AUDIENCE = "https://mcp.example.com/mcp"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TestIdP:
    __test__ = False  # not a pytest test class

    def __init__(self, audience: str = DEFAULT_AUDIENCE) -> None:
        self.audience = audience
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kids = {"rsa": "rsa-1", "ec": "ec-1", "rogue": "rogue-1"}
        self.published = {"rsa", "ec"}
        self.issuer = ""  # set by start()
        self.port = 0
        # Counters and a log of (path, form or json) for assertions.
        self.jwks_requests = 0
        self.token_requests = 0
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.jwks_served = asyncio.Event()
        self.token_request_seen = asyncio.Event()  # set when /token is called
        # Knobs.
        self.fail_token: int | None = None  # HTTP status /token answers with, if set
        self.fail_jwks: int | None = None
        self.exchange_ttl = 300
        self.access_ttl = 300
        self.token_gate: asyncio.Event | None = None  # /token waits on it when set
        # Registered clients: client_id -> metadata (with client_secret if any).
        self.clients: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/oauth-authorization-server", self._as_metadata)
        app.router.add_get("/.well-known/openid-configuration", self._oidc_metadata)
        app.router.add_get("/jwks.json", self._jwks)
        app.router.add_post("/register", self._register)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.issuer = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks.json"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    def add_client(
        self, client_id: str, client_secret: str | None, **metadata: Any
    ) -> dict[str, Any]:
        """Register a client directly (for token exchange: a confidential client)."""
        info = {
            "client_id": client_id,
            "token_endpoint_auth_method": "client_secret_basic" if client_secret else "none",
            **metadata,
        }
        if client_secret:
            info["client_secret"] = client_secret
        self.clients[client_id] = info
        return info

    # -- keys and tokens -----------------------------------------------------------

    def _private(self, key: str) -> Any:
        return {"rsa": self.rsa_key, "ec": self.ec_key, "rogue": self.rogue_key}[key]

    def public_jwk(self, key: str) -> dict[str, Any]:
        priv = self._private(key)
        if key == "ec":
            jwk = ECAlgorithm.to_jwk(priv.public_key(), as_dict=True)
            jwk["alg"] = "ES256"
        else:
            jwk = RSAAlgorithm.to_jwk(priv.public_key(), as_dict=True)
        jwk["kid"] = self.kids[key]
        jwk["use"] = "sig"
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk(k) for k in sorted(self.published)]}

    def publish_rogue(self) -> None:
        """Start publishing the third key (as after a key rotation at the IdP)."""
        self.published.add("rogue")

    def public_pem(self, key: str = "rsa") -> bytes:
        return (
            self._private(key)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "alice",
            "iat": now,
            "exp": now + self.access_ttl,
            "scope": "mcp:read mcp:write",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def issue(
        self,
        claims: dict[str, Any] | None = None,
        key: str | bytes = "rsa",
        alg: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Mint a token. ``claims`` default to :meth:`claims` (pass a full dict to
        control every claim). ``key``: "rsa", "ec", "rogue" (unpublished), or bytes
        for HMAC (e.g. :meth:`public_pem`, for key-confusion tests). ``alg="none"``
        makes an unsigned token. ``headers`` are merged into the JOSE header (a
        ``kid: None`` entry removes the kid)."""
        payload = self.claims() if claims is None else claims
        if isinstance(key, bytes) or alg == "none" or (alg or "").startswith("HS"):
            return self._raw_token(payload, key, alg or "HS256", headers)
        alg = alg or ("ES256" if key == "ec" else "RS256")
        hdr: dict[str, Any] = {"kid": self.kids[key]}
        hdr.update(headers or {})
        hdr = {k: v for k, v in hdr.items() if v is not None}
        return jwt.encode(payload, self._private(key), algorithm=alg, headers=hdr)

    def _raw_token(
        self, payload: dict[str, Any], key: str | bytes, alg: str, headers: dict[str, Any] | None
    ) -> str:
        # PyJWT (rightly) refuses to HMAC with a PEM key, so attacks are built by hand.
        hdr: dict[str, Any] = {"alg": alg, "typ": "JWT", "kid": self.kids["rsa"]}
        hdr.update(headers or {})
        hdr = {k: v for k, v in hdr.items() if v is not None}
        signing_input = _b64(json.dumps(hdr).encode()) + "." + _b64(json.dumps(payload).encode())
        if alg == "none":
            return signing_input + "."
        secret = key if isinstance(key, bytes) else key.encode()
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        sig = hmac.new(secret, signing_input.encode(), digest).digest()
        return signing_input + "." + _b64(sig)

    def verify(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """Claims of a token this IdP signed (raises if it did not)."""
        kid = jwt.get_unverified_header(token).get("kid")
        name = next(k for k, v in self.kids.items() if v == kid and k in self.published)
        pub = self._private(name).public_key()
        return jwt.decode(
            token,
            pub,
            algorithms=["RS256", "ES256"],
            audience=audience,
            issuer=self.issuer,
            options={"verify_aud": audience is not None},
        )

    # -- metadata ------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": self.token_endpoint,
            "registration_endpoint": f"{self.issuer}/register",
            "jwks_uri": self.jwks_url,
            "scopes_supported": ["mcp:read", "mcp:write"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }

    async def _as_metadata(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, {}))
        return web.json_response(self.metadata())

    async def _oidc_metadata(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, {}))
        doc = self.metadata()
        doc.update(
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256", "ES256"],
        )
        return web.json_response(doc)

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        self.requests.append((request.path, {}))
        self.jwks_served.set()
        if self.fail_jwks is not None:
            return web.json_response({"error": "unavailable"}, status=self.fail_jwks)
        return web.json_response(self.jwks())

    # -- registration and authorization ----------------------------------------------

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if not isinstance(body, dict) or not body.get("redirect_uris"):
            return web.json_response(
                {"error": "invalid_redirect_uri", "error_description": "redirect_uris required"},
                status=400,
            )
        method = body.get("token_endpoint_auth_method") or "client_secret_basic"
        client_id = "client-" + secrets.token_hex(8)
        info = {
            **body,
            "client_id": client_id,
            "client_id_issued_at": int(time.time()),
            "token_endpoint_auth_method": method,
        }
        if method != "none":
            info["client_secret"] = secrets.token_urlsafe(24)
            info["client_secret_expires_at"] = 0
        self.clients[client_id] = info
        return web.json_response(info, status=201)

    async def _authorize(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.requests.append((request.path, q))
        client = self.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None or redirect_uri not in [str(u) for u in client.get("redirect_uris", [])]:
            return web.json_response({"error": "invalid_client"}, status=400)
        params: dict[str, str] = {"iss": self.issuer}
        if "state" in q:
            params["state"] = q["state"]
        if q.get("response_type") != "code":
            params["error"] = "unsupported_response_type"
        elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            params["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(24)
            self._codes[code] = {
                "client_id": client["client_id"],
                "redirect_uri": redirect_uri,
                "challenge": q["code_challenge"],
                "resource": q.get("resource"),
                "scope": q.get("scope"),
            }
            params["code"] = code
        sep = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(redirect_uri + sep + urlencode(params))

    # -- token endpoint ----------------------------------------------------------------

    def _client_auth(self, request: web.Request, form: dict[str, str]) -> dict[str, Any] | None:
        """The authenticated client (Basic or client_secret_post), or a public client
        identified by client_id; None if authentication fails."""
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                raw = base64.b64decode(header[6:].strip()).decode()
            except ValueError:
                return None
            cid, _, secret = raw.partition(":")
            cid, secret = unquote(cid), unquote(secret)
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(cid)
        if client is None:
            return None
        expected = client.get("client_secret")
        if expected is not None and not hmac.compare_digest(expected, secret):
            return None
        return client

    def _error(self, error: str, description: str, status: int = 400) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        self.token_request_seen.set()
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(
            (request.path, {**form, "_authorization": request.headers.get("Authorization")})
        )
        if self.token_gate is not None:
            await self.token_gate.wait()
        if self.fail_token is not None:
            return self._error("server_error", "token endpoint told to fail", self.fail_token)
        client = self._client_auth(request, form)
        if client is None:
            return self._error("invalid_client", "client authentication failed", 401)
        grant = form.get("grant_type")
        if grant == TOKEN_EXCHANGE:
            return self._exchange(client, form)
        if grant == "authorization_code":
            return self._code_grant(client, form)
        if grant == "refresh_token":
            data = self._refresh.pop(str(form.get("refresh_token")), None)
            if data is None or data["client_id"] != client["client_id"]:
                return self._error("invalid_grant", "unknown refresh token")
            return self._grant(client["client_id"], data["aud"], data["scope"])
        return self._error("unsupported_grant_type", f"grant_type {grant!r} not supported")

    def _exchange(self, client: dict[str, Any], form: dict[str, str]) -> web.Response:
        if client.get("client_secret") is None:
            return self._error("unauthorized_client", "token exchange needs a confidential client")
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            return self._error("invalid_request", "unsupported subject_token_type")
        try:
            subject = self.verify(form.get("subject_token", ""))
        except Exception:
            return self._error("invalid_grant", "subject_token is not valid")
        audience = form.get("audience")
        if not audience:
            return self._error("invalid_target", "audience required")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject["sub"],
            "iat": now,
            "exp": now + self.exchange_ttl,
            "act": {"sub": client["client_id"]},
            "scope": form.get("scope") or subject.get("scope", ""),
            "jti": secrets.token_hex(8),
        }
        return web.json_response(
            {
                "access_token": self.issue(claims),
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": self.exchange_ttl,
            }
        )

    def _code_grant(self, client: dict[str, Any], form: dict[str, str]) -> web.Response:
        data = self._codes.pop(form.get("code", ""), None)
        if data is None or data["client_id"] != client["client_id"]:
            return self._error("invalid_grant", "unknown or used authorization code")
        if form.get("redirect_uri") != data["redirect_uri"]:
            return self._error("invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier", "")
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        if not hmac.compare_digest(challenge, data["challenge"]):
            return self._error("invalid_grant", "PKCE verification failed")
        aud = form.get("resource") or data["resource"] or self.audience
        return self._grant(client["client_id"], aud, data["scope"] or "mcp:read mcp:write")

    def _grant(self, client_id: str, aud: str, scope: str) -> web.Response:
        refresh = secrets.token_urlsafe(24)
        self._refresh[refresh] = {"client_id": client_id, "aud": aud, "scope": scope}
        token = self.issue(self.claims(aud=aud, scope=scope, client_id=client_id))
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.access_ttl,
                "scope": scope,
                "refresh_token": refresh,
            }
        )


@asynccontextmanager
async def running_idp(audience: str = DEFAULT_AUDIENCE) -> AsyncIterator[TestIdP]:
    idp = TestIdP(audience)
    await idp.start()
    try:
        yield idp
    finally:
        await idp.stop()
