"""One shared session per client capability set: each client sees the server's own list.

Servers register some tools only for clients that declared ``sampling``,
``elicitation`` or ``roots``. The target's catalog session declares all three (so
capable clients find those tools), which shows them to every client too. So a
client is served lists, and on a shared stdio process its calls, from a session
opened with exactly its values of those three capabilities: one per distinct set,
started on first use and shared by every client of the set, at most ``MAX_SETS``
per target (the sets are counted gateway-wide, so views stay bounded as well).
A set past that bound, or a target that fails to open one, is served by the
catalog session, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

import orjson

from .jsonrpc import Message
from .multiplexer.catalog import TargetCatalog
from .protocol import CAPABILITY, KINDS, LIST_CHANGED, Kind
from .upstream.base import UpstreamError, UpstreamSession

log = logging.getLogger("mcpmux.variants")

#: Client capabilities that change what a server offers (and that the gateway relays).
RELEVANT = ("sampling", "elicitation", "roots")
#: Capability sets with a session of their own, per target (2^3: every combination).
MAX_SETS = 8


def capability_key(capabilities: dict[str, Any]) -> str:
    """The set a client belongs to: its values of the relevant capabilities, canonical."""
    return orjson.dumps({k: capabilities[k] for k in RELEVANT if k in capabilities},
                        option=orjson.OPT_SORT_KEYS).decode()


class Owner(Protocol):
    """What a target offers its capability-set sessions (target.py; no import back)."""

    name: str

    def new_session(self, listen: bool = True, era: str | None = None) -> UpstreamSession: ...

    async def list_items(self, session: UpstreamSession, kind: Kind) -> list[dict[str, Any]]: ...

    async def shared_message(self, msg: Message, session: UpstreamSession) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None: ...

    def variant_changed(self, kinds: set[Kind]) -> None: ...

    def resubscribe(self, session: UpstreamSession, scope: str) -> None: ...


class Variant:
    """A target's shared session for one capability set, and what it lists."""

    def __init__(self, capabilities: dict[str, Any]) -> None:
        self.capabilities = capabilities
        self.session: UpstreamSession | None = None
        self.catalog: TargetCatalog | None = None
        self.lock = asyncio.Lock()
        #: Times this set's session died and was opened again (on the next use).
        self.restarts = 0

    @property
    def live(self) -> bool:
        return self.session is not None and not self.session.closed.is_set()


class Variants:
    """The capability-set sessions of one target (not its catalog session)."""

    def __init__(self, target: Owner) -> None:
        self.target = target
        self.by_key: dict[str, Variant] = {}

    async def get(self, key: str, capabilities: dict[str, Any]) -> Variant:
        """The live session of this set and its catalog, opened (and listed) on first use
        or after it died. Raises UpstreamError when the target does not answer."""
        variant = self.by_key.get(key)
        if variant is None:
            variant = self.by_key[key] = Variant({k: capabilities[k] for k in RELEVANT if k in capabilities})
        if variant.live:
            return variant
        async with variant.lock:
            if variant.live:
                return variant
            target = self.target
            session = target.new_session()
            session.on_unsolicited = lambda msg, up: self._unsolicited(variant, msg, up)
            await session.open(variant.capabilities)
            try:
                caps = session.init_result.get("capabilities") or {}
                catalog = TargetCatalog(capabilities=caps if isinstance(caps, dict) else {})
                for kind in KINDS:
                    if CAPABILITY[kind] in catalog.capabilities:
                        catalog.items[kind] = await target.list_items(session, kind)
            except BaseException:
                await asyncio.shield(session.aclose("listing failed"))
                raise
            reopened = variant.catalog is not None
            variant.session, variant.catalog = session, catalog
            if reopened:  # it died and came back: views built from the old lists go
                variant.restarts += 1
                target.variant_changed(set())
                target.resubscribe(session, key)
            log.info("target '%s': session for capabilities %s open (%d tools)", target.name, key,
                     len(catalog.items["tools"]))
            return variant

    async def _unsolicited(self, variant: Variant, msg: Message, upstream: UpstreamSession) -> None:
        """list_changed re-lists this set's catalog; anything else is handled as on the
        target's shared session (its requests name no client)."""
        kind = LIST_CHANGED.get(msg.get("method", ""))
        if kind is None:
            await self.target.shared_message(msg, upstream)
        elif variant.session is upstream:
            # Not inline: the answer to the re-listing arrives through this very reader.
            self.target.spawn(self._relist(variant, upstream, kind), f"relist-{kind}")

    async def _relist(self, variant: Variant, upstream: UpstreamSession, kind: Kind) -> None:
        if variant.catalog is None:
            return
        kinds: list[Kind] = [kind]
        if kind in ("resources", "resourceTemplates"):
            kinds = [k for k in ("resources", "resourceTemplates") if CAPABILITY[k] in variant.catalog.capabilities]
        try:
            for k in kinds:
                variant.catalog.items[k] = await self.target.list_items(upstream, k)
        except UpstreamError as exc:
            log.warning("target '%s': re-listing %s failed: %s", self.target.name, kind, exc.reason)
            return
        self.target.variant_changed(set(kinds))

    def session_of(self, key: str) -> UpstreamSession | None:
        """The live session of a capability set, if it has one."""
        variant = self.by_key.get(key)
        return variant.session if variant is not None and variant.live else None

    def key_of(self, session: UpstreamSession) -> str | None:
        """The capability set ``session`` serves (None: not one of these sessions)."""
        return next((key for key, v in self.by_key.items() if v.session is session), None)

    def status(self) -> list[dict[str, Any]]:
        """Each set's session for ``/api/targets``: the capabilities it was opened with,
        its process (stdio) and how often it came back after dying."""
        return [{"capabilities": v.capabilities, "live": v.live, "pid": getattr(v.session, "pid", None),
                 "restarts": v.restarts} for v in self.by_key.values()]

    def processes(self) -> int:
        return sum(1 for v in self.by_key.values() if v.live)

    async def aclose(self) -> None:
        variants, self.by_key = self.by_key, {}
        await asyncio.gather(*(v.session.aclose("target stopped") for v in variants.values()
                               if v.session is not None), return_exceptions=True)
