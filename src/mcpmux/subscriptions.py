"""Resource subscriptions held on a target's own session, for many clients at once.

A shared (stdio) process, a modern (2026) target and the catalog session that
2026 listeners ride on each have one upstream subscription per URI, however many
clients follow it: the registry counts them. The first follower subscribes
upstream (or, on a modern target, re-opens ``subscriptions/listen`` with the URI),
the last one unsubscribes. Updates are delivered to ``followers(target, uri, scope)``.

A target has several shared sessions: its catalog session (scope ``""``) and one
per client capability set (scope: the set's key, see variants.py). A client's
calls and its subscriptions go to the same one, since a server sends updates
only from the session (for stdio: the process) that subscribed, so subscriptions
are counted per scope.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .jsonrpc import INVALID_PARAMS, Message, error, result
from .redact import redact
from .upstream.base import UpstreamError, UpstreamSession

if TYPE_CHECKING:
    from .target import Target

log = logging.getLogger("mcpmux.subscriptions")

_OK: Message = result(None, {})


class SubscriptionRegistry:
    def __init__(self) -> None:
        #: (target name, scope) -> original URI -> ids of the sessions (or listeners) following it
        self._subs: dict[tuple[str, str], dict[str, set[str]]] = {}

    def uris(self, target: str, scope: str = "") -> list[str]:
        """What a target's session must follow (a modern target's listen stream asks)."""
        return list(self._subs.get((target, scope), ()))

    def followers(self, target: str, uri: str, scope: str = "") -> set[str]:
        return self._subs.get((target, scope), {}).get(uri, set())

    async def add(self, target: Target, uri: str, sid: str, scope: str = "",
                  upstream: UpstreamSession | None = None) -> Message:
        """Follow ``uri`` (as the target names it) for ``sid`` on the scope's session
        (``upstream``; the catalog session by default). The answer is the target's own to
        the first ``resources/subscribe``, else a plain success or -32602."""
        session = upstream or target.session
        if session is None or not (target.catalog.capabilities.get("resources") or {}).get("subscribe"):
            return error(None, INVALID_PARAMS, f"cannot subscribe to {uri}: target '{target.name}' "
                         "does not offer resource subscriptions")
        key = (target.name, scope)
        subs = self._subs.setdefault(key, {}).setdefault(uri, set())
        if session.modern:
            # No resources/subscribe in 2026: the URI is followed on the listen stream, and
            # the subscription counts once the target acknowledged a stream that names it.
            subs.add(sid)
            relisten = getattr(session, "relisten", None)
            honored = await relisten() if relisten is not None else frozenset()
            if uri in honored:
                return _OK
            self._discard(key, uri, sid)
            return error(None, INVALID_PARAMS, f"cannot subscribe to {uri}: target '{target.name}' refused it")
        if subs:
            subs.add(sid)
            return _OK
        try:
            resp = await session.request("resources/subscribe", {"uri": uri}, timeout=target.config.timeout)
        except UpstreamError as exc:
            self._discard(key, uri, sid)
            return error(None, -32001, redact(str(exc)), {"target": target.name})
        if "result" in resp:
            subs.add(sid)
        else:
            self._discard(key, uri, sid)
        return resp

    async def remove(self, target: Target, uri: str, sid: str, scope: str = "") -> Message:
        """Stop following ``uri`` for ``sid``; the last follower unsubscribes upstream."""
        if not self._discard((target.name, scope), uri, sid):
            return _OK
        return await self._unfollow(target, scope, [uri])

    async def drop(self, sid: str, targets: dict[str, Target]) -> None:
        """A session (or listener) ended: everything it followed, on every target."""
        for key, by_uri in list(self._subs.items()):
            emptied = [uri for uri, subs in list(by_uri.items()) if sid in subs and self._discard(key, uri, sid)]
            target = targets.get(key[0])
            if emptied and target is not None:
                await self._unfollow(target, key[1], emptied)

    def _discard(self, key: tuple[str, str], uri: str, sid: str) -> bool:
        """Remove one follower; True when it was the last."""
        by_uri = self._subs.get(key)
        subs = by_uri.get(uri) if by_uri is not None else None
        if subs is None or sid not in subs:
            return False
        subs.discard(sid)
        if subs:
            return False
        del by_uri[uri]  # type: ignore[union-attr]
        if not by_uri:
            del self._subs[key]
        return True

    async def _unfollow(self, target: Target, scope: str, uris: list[str]) -> Message:
        session = target.session if not scope else target.variants.session_of(scope)
        if session is None or session.closed.is_set():
            return _OK
        if session.modern:
            relisten = getattr(session, "relisten", None)
            if relisten is not None:
                await relisten()  # one new listen stream for all of them
            return _OK
        resp = _OK
        for uri in uris:
            try:
                resp = await session.request("resources/unsubscribe", {"uri": uri}, timeout=target.config.timeout)
            except UpstreamError as exc:
                log.info("target '%s': unsubscribing %s failed: %s", target.name, uri, exc.reason)
        return resp
