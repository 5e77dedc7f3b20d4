"""The MCP Python SDK's OAuth client (OAuthClientProvider, 2.3.0) against a small
resource server built from mcpmux.policy.auth and the test IdP: discovery via the
401 challenge and RFC 9728 metadata, dynamic registration, authorization code with
PKCE, RFC 8707 resource as audience, then an accepted request. This checks that the
IdP stand-in and our challenge/metadata are what the real client expects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from aiohttp import web
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from tests.support.idp import TestIdP, running_idp

from mcpmux.config import AuthConfig
from mcpmux.policy.auth import (
    AuthError,
    JwtAuthenticator,
    metadata_paths,
    metadata_url,
    protected_resource_metadata,
    public_base_url,
    www_authenticate,
)


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class ResourceServer:
    """POST /mcp needs a bearer token; metadata at the RFC 9728 paths."""

    def __init__(self, idp: TestIdP) -> None:
        self.idp = idp
        self.runner: web.AppRunner | None = None
        self.auth: JwtAuthenticator | None = None
        self.resource = ""
        self.challenges: list[tuple[int, str]] = []

    async def start(self) -> None:
        app = web.Application()
        self.runner = web.AppRunner(app, access_log=None)
        app.router.add_post("/mcp", self.mcp)
        # Paths are only known once the port is; register both now, for "/mcp".
        for path in metadata_paths("http://x/mcp"):
            app.router.add_get(path, self.metadata)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.resource = f"http://127.0.0.1:{port}/mcp"
        self.cfg = AuthConfig.model_validate(
            {
                "jwt": {
                    "issuer": self.idp.issuer,
                    "audiences": [self.resource],
                    "jwks_url": self.idp.jwks_url,
                },
                "resource": self.resource,
                "scopes_supported": ["mcp:read"],
            }
        )
        self.auth = JwtAuthenticator(self.cfg)

    async def stop(self) -> None:
        if self.auth is not None:
            await self.auth.aclose()
        if self.runner is not None:
            await self.runner.cleanup()

    def base(self, request: web.Request) -> str:
        headers = {k.lower(): v for k, v in request.headers.items()}
        return public_base_url(headers, request.scheme, request.host, False)

    async def metadata(self, request: web.Request) -> web.Response:
        return web.json_response(protected_resource_metadata(self.cfg, self.base(request)))

    async def mcp(self, request: web.Request) -> web.Response:
        assert self.auth is not None
        try:
            principal = await self.auth.authenticate(
                request.headers.get("Authorization"), request.query_string.encode()
            )
        except AuthError as err:
            challenge = www_authenticate(
                err, metadata_url(self.base(request), self.resource), "mcp:read"
            )
            self.challenges.append((err.status, challenge))
            return web.json_response(
                {"error": err.error}, status=err.status, headers={"WWW-Authenticate": challenge}
            )
        return web.json_response({"sub": principal.subject, "aud": principal.claims["aud"]})


@pytest.fixture
async def servers() -> AsyncIterator[tuple[TestIdP, ResourceServer]]:
    async with running_idp() as idp:
        rs = ResourceServer(idp)
        await rs.start()
        try:
            yield idp, rs
        finally:
            await rs.stop()


async def test_sdk_oauth_client_end_to_end(servers: tuple[TestIdP, ResourceServer]) -> None:
    idp, rs = servers
    redirect: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:
        # The user agent: follow /authorize, which auto-approves and redirects back.
        async with httpx2.AsyncClient() as ua:
            resp = await ua.get(url)
        assert resp.status_code == 302, resp.text
        q = parse_qs(urlsplit(resp.headers["location"]).query)
        redirect.update({k: v[0] for k, v in q.items()})

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=redirect["code"], state=redirect.get("state"), iss=redirect.get("iss")
        )

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=rs.resource,
        client_metadata=OAuthClientMetadata(
            client_name="mcpmux-test",
            redirect_uris=["http://127.0.0.1:1/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as client:
        resp = await client.post(rs.resource, json={})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"sub": "alice", "aud": rs.resource}
        # The first attempt was challenged the way the spec describes.
        status, challenge = rs.challenges[0]
        assert status == 401
        assert challenge == (
            f'Bearer resource_metadata="{rs.resource.replace("/mcp", "")}'
            '/.well-known/oauth-protected-resource/mcp", scope="mcp:read"'
        )
        # The client registered, authorized with PKCE and asked for our resource.
        paths = [p for p, _ in idp.requests]
        assert "/register" in paths and "/authorize" in paths and "/token" in paths
        authorize = next(q for p, q in idp.requests if p == "/authorize")
        assert authorize["resource"] == rs.resource
        assert authorize["code_challenge_method"] == "S256"
        assert authorize["scope"] == "mcp:read"
        assert storage.tokens is not None
        # Later requests reuse the token; the authenticator's cache answers them.
        verified = rs.auth.verifications if rs.auth else 0
        for _ in range(3):
            assert (await client.post(rs.resource, json={})).status_code == 200
        assert rs.auth is not None and rs.auth.verifications == verified
        assert len(rs.challenges) == 1
