"""Per-request credentials for upstream targets: identity headers and token exchange.

:meth:`UpstreamCredentials.headers` returns the headers to *add* to a target's static
ones for one caller:

- ``headers_from_claims``: ``{header: claim}`` copies claims of the caller's token
  (lists joined with ``","``, dotted names reach into objects, e.g.
  ``realm_access.roles``). A value that is not header-safe (CR, LF or another
  control character, or a character outside latin-1) is refused with
  :class:`CredentialsError`; values are cut at :data:`MAX_HEADER_VALUE`. A missing
  claim sends no header.
- ``token_exchange``: the caller's token is exchanged (RFC 8693) for one meant for
  this target, sent as ``Authorization: Bearer …``. The caller's own token is never
  sent upstream (MCP forbids token passthrough): without ``token_exchange`` no
  ``Authorization`` header comes from here at all.

Exchanged tokens are cached per (target, audience, principal) until ``expires_in``
minus ``expiry_margin``, never past the caller's own token's expiry; concurrent
requests of one principal share one exchange. Errors name the target and never
contain the client secret or any token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from ..config import TargetConfig, TokenExchangeConfig
from ..policy.auth import Principal

__all__ = [
    "MAX_HEADER_VALUE",
    "CredentialsError",
    "TokenExchangeError",
    "UpstreamCredentials",
]

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
MAX_HEADER_VALUE = 4096
MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_LIFETIME = 60.0  # seconds, when the response has no expires_in
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class CredentialsError(Exception):
    """Upstream credentials could not be made for ``target``. ``status`` suggests the
    answer to the client: 401 when it should re-authenticate, 403 when its token
    cannot be used for this target, 502 when the authorization server failed."""

    def __init__(self, target: str, reason: str, status: int = 502) -> None:
        super().__init__(target, reason, status)
        self.target = target
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return f"target {self.target!r}: {self.reason}"


class TokenExchangeError(CredentialsError):
    """The RFC 8693 exchange failed; ``error`` is the authorization server's error code."""

    def __init__(self, target: str, reason: str, status: int = 502, error: str | None = None):
        super().__init__(target, f"token exchange failed: {reason}", status)
        self.error = error


def _claim(claims: dict[str, Any], name: str) -> Any:
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _header_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list):
        return ",".join(v for v in (_header_value(x) for x in value) if v is not None)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class UpstreamCredentials:
    """See the module docstring. ``clock`` is wall time (compared with ``exp``)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        max_entries: int = 10_000,
    ) -> None:
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()
        self._inflight: dict[tuple[str, str, str], asyncio.Future[tuple[str, float]]] = {}
        self._max = max_entries
        self.exchanges = 0  # exchanges attempted (for tests and metrics)

    async def aclose(self) -> None:
        for fut in self._inflight.values():
            fut.cancel()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def headers(
        self, target: TargetConfig, principal: Principal | None, token: str | None
    ) -> dict[str, str]:
        """Headers to add for this caller (never the target's static headers, never the
        caller's own token). Raises :class:`CredentialsError`."""
        out: dict[str, str] = {}
        if target.headers_from_claims and principal is not None:
            for header, claim in target.headers_from_claims.items():
                value = _header_value(_claim(principal.claims, claim))
                if value is None:
                    continue
                if _UNSAFE.search(value):
                    raise CredentialsError(
                        target.name,
                        f"claim {claim!r} for header {header!r} contains line breaks or "
                        "control characters",
                        403,
                    )
                value = value[:MAX_HEADER_VALUE]
                try:
                    value.encode("latin-1")
                except UnicodeEncodeError:
                    raise CredentialsError(
                        target.name,
                        f"claim {claim!r} for header {header!r} has characters an HTTP "
                        "header cannot carry",
                        403,
                    ) from None
                out[header] = value
        te = target.token_exchange
        if te is not None:
            if principal is None or not token:
                raise CredentialsError(
                    target.name, "token exchange needs an authenticated caller", 401
                )
            out["Authorization"] = "Bearer " + await self._exchanged(
                target.name, te, principal, token
            )
        return out

    async def _exchanged(
        self, name: str, te: TokenExchangeConfig, principal: Principal, token: str
    ) -> str:
        key = (name, te.audience, principal.key)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[1] > now:
                self._cache.move_to_end(key)
                return hit[0]
            del self._cache[key]
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._exchange(name, te, principal, token))
            self._inflight[key] = fut
            fut.add_done_callback(lambda f: self._finished(key, f))
        # Shielded: a cancelled caller must not cancel the exchange others wait on.
        access, _ = await asyncio.shield(fut)
        return access

    def _finished(self, key: tuple[str, str, str], fut: asyncio.Future[tuple[str, float]]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        if fut.cancelled() or fut.exception() is not None:
            return
        self._cache[key] = fut.result()
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    async def _exchange(
        self, name: str, te: TokenExchangeConfig, principal: Principal, token: str
    ) -> tuple[str, float]:
        self.exchanges += 1
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
            "audience": te.audience,
        }
        if te.resource:
            form["resource"] = te.resource
        if te.scope:
            form["scope"] = te.scope
        # RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
        basic = f"{quote(te.client_id, safe='')}:{quote(te.client_secret, safe='')}"
        headers = {
            "Authorization": "Basic " + base64.b64encode(basic.encode()).decode(),
            "Accept": "application/json",
        }
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                te.token_endpoint,
                data=form,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=te.timeout),
                allow_redirects=False,
            ) as resp:
                body = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenExchangeError(
                name, f"cannot reach the token endpoint ({type(exc).__name__})"
            ) from None
        data: Any = None
        if len(body) <= MAX_RESPONSE_BYTES:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
        if status != 200:
            code = data.get("error") if isinstance(data, dict) else None
            code = code if isinstance(code, str) and _ERROR_CODE.match(code) else None
            # invalid_grant: the caller's token was refused -> it should sign in again.
            hint = 401 if code == "invalid_grant" else 403 if code == "invalid_target" else 502
            raise TokenExchangeError(
                name, f"HTTP {status}" + (f" {code}" if code else ""), hint, code
            )
        if not isinstance(data, dict):
            raise TokenExchangeError(name, "the token endpoint's answer is not a JSON object")
        access = data.get("access_token")
        if not isinstance(access, str) or not _TOKEN.match(access) or len(access) > 16384:
            raise TokenExchangeError(name, "the token endpoint's answer has no usable access_token")
        token_type = data.get("token_type")
        if isinstance(token_type, str) and token_type.lower() not in ("bearer", "n_a"):
            raise TokenExchangeError(name, f"unsupported token_type {token_type[:20]!r}")
        expires_in = data.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else DEFAULT_LIFETIME
        )
        now = self._clock()
        expires_at = min(now + lifetime - te.expiry_margin, principal.expires_at)
        return access, expires_at
