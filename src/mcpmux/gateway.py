"""The gateway: the targets, their merged view, and the sources that change them.

It owns every target supervisor; closing it closes them all. The reconciler
entry point ``apply`` is how any source of targets (the config file, the
embedded demo, Kubernetes) changes the running set. Clients are not its
business: the dispatcher (``dispatch.py``) serves them and listens to the
gateway through three hooks (a list changed, a target spoke on its own
session, a target was removed).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from . import __version__, era
from .config import GatewayConfig, TargetConfig
from .jsonrpc import INVALID_PARAMS, Message, RPCError
from .multiplexer.catalog import Route, View, build_view
from .multiplexer.curation import admits
from .multiplexer.tasks import EXTENSION as TASKS_EXTENSION
from .multiplexer.tasks import extension as tasks_extension
from .multiplexer.tasks import merge_capability
from .protocol import CHANGED, KINDS, Kind
from .subscriptions import SubscriptionRegistry
from .target import SHARED_CAPABILITIES, SessionFactory, Target
from .tasks import TaskOwner
from .upstream.base import UpstreamError, UpstreamSession
from .variants import MAX_SETS, capability_key

#: The capability set of targets' catalog sessions: its clients are served the main view.
FULL_SET = capability_key(SHARED_CAPABILITIES)

log = logging.getLogger("mcpmux.gateway")

TargetMessage = Callable[[Target, Message, UpstreamSession], Awaitable[None]]


class Gateway:
    def __init__(self, config: GatewayConfig, session_factory: SessionFactory | None = None) -> None:
        self.config = config
        self.targets: dict[str, Target] = {}
        self.view = View()
        #: Resource subscriptions held on targets' own sessions, for every client.
        self.subscriptions = SubscriptionRegistry()
        self._tasks = TaskOwner("gateway")
        self._session_factory = session_factory
        #: The hooks the dispatcher sets (see the module docstring).
        self.on_list_changed: Callable[[str], None] = _ignore
        self.on_target_message: TargetMessage | None = None
        self.on_target_removed: Callable[[str], Awaitable[None]] | None = None
        #: Called with the new config after a reload (the dispatcher rebuilds its policy).
        self.on_reload: Callable[[GatewayConfig], None] | None = None
        #: Called with the source's name each time a source's desired set is applied (metrics).
        self.on_apply: Callable[[str], None] | None = None
        self._sources: dict[str, asyncio.Task[Any]] = {}
        #: What each source last asked for (name -> config), for clashes that clear.
        self._desired: dict[str, dict[str, TargetConfig]] = {}
        #: Removed targets finishing their in-flight calls.
        self._draining: set[Target] = set()
        #: Discovery sources' own state, for /api/discovery.
        self.source_status: dict[str, Callable[[], dict[str, Any]]] = {}
        #: How many targets may be connecting (spawning, initializing, listing) at once.
        self._connect_slots = asyncio.Semaphore(config.limits.connect_concurrency)
        self.started_at = time.time()
        #: Where the config came from ("config", "demo"); shown as each target's source.
        self.config_source = "config"
        #: Set by the config-file watcher: whether the last edit was valid, and why not.
        self.config_status: dict[str, Any] = {"valid": True, "errors": [], "watching": False}
        #: Bridge mode (``mcpmux bridge``): one target, shown as itself. initialize answers
        #: with its serverInfo, instructions and capabilities, and requests the gateway does
        #: not know are forwarded to it instead of refused.
        self.transparent = False
        #: Views of each client capability set other than FULL_SET (dropped on any change),
        #: and the sets admitted (at most MAX_SETS, the catalog's included).
        self._views: dict[str, View] = {}
        self._sets: set[str] = {FULL_SET}
        self._generation = 0

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        await self.apply(self.config.all_targets(), source=self.config_source)
        self._start_discovery()

    async def aclose(self) -> None:
        await self._tasks.aclose()
        targets, self.targets = self.targets, {}
        # Targets still draining when we stop are closed too (their drain was cancelled).
        closing = [*targets.values(), *self._draining]
        self._draining.clear()
        await asyncio.gather(*(t.aclose() for t in closing), return_exceptions=True)

    async def apply(self, desired: list[TargetConfig], source: str) -> None:
        """Reconcile the running targets of ``source`` with the desired list.

        New targets connect; changed ones are replaced; removed ones leave the
        catalog at once (clients get list_changed) and drain: calls in flight
        may finish within ``limits.drain_timeout``, then the target is closed.
        """
        if self.on_apply is not None:
            self.on_apply(source)
        wanted = {t.name: t for t in desired}
        for name, target in list(self.targets.items()):
            if target.source != source:
                continue
            if name in wanted and wanted[name] != target.config and _only_curation(wanted[name], target.config):
                # Which tools are shown, and how: the view changes, the connection stays.
                target.config = wanted[name]
                log.info("target '%s': tool curation changed", name)
                continue
            if name not in wanted or wanted[name] != target.config:
                del self.targets[name]
                self._draining.add(target)
                self._tasks.spawn(self._drain(target), f"drain-{name}")
                log.info("target '%s': %s", name, "removed" if name not in wanted else "changed; reconnecting")
        self._desired[source] = wanted
        # Every source's wish, this one's first: a name another source held until now
        # (a clash, reported when it happened) is taken up as soon as it is free.
        for src in (source, *(s for s in self._desired if s != source)):
            for name, cfg in self._desired[src].items():
                if name in self.targets:
                    if self.targets[name].source != src and src == source:
                        log.error("target '%s' from %s clashes with one from %s; ignored until that one leaves",
                                  name, src, self.targets[name].source)
                    continue
                target = Target(cfg, self._catalog_changed, self._target_message, src, self._connect_slots,
                                resource_uris=self._uris_of(name), session_factory=self._session_factory)
                target.max_response_bytes = self.config.limits.max_response_bytes
                self.targets[name] = target
                target.start()
        self._catalog_changed(None)

    async def _drain(self, target: Target) -> None:
        deadline = time.monotonic() + self.config.limits.drain_timeout
        while target.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if target.inflight:
            log.warning("target '%s': %d calls still in flight after the drain timeout; closing",
                        target.name, target.inflight)
        if self.on_target_removed is not None and self.targets.get(target.name) is not target:
            await self.on_target_removed(target.name)
        await target.aclose()
        self._draining.discard(target)

    async def reload(self, config: GatewayConfig) -> None:
        """Apply an edited config file: targets, prefix, limits and authorization live;
        listeners (``listen``, ``admin``, ``auth``) need a restart."""
        old = self.config
        for section in ("listen", "admin", "auth"):
            if getattr(old, section) != getattr(config, section):
                log.warning("config: '%s' changed; it takes effect on restart", section)
        config = config.model_copy(update={"listen": old.listen, "admin": old.admin, "auth": old.auth})
        self.config = config
        for target in self.targets.values():
            target.max_response_bytes = config.limits.max_response_bytes
        if self.on_reload is not None:
            self.on_reload(config)
        await self.apply(config.all_targets(), source=self.config_source)
        if old.prefix != config.prefix or old.limits.max_uri_bytes != config.limits.max_uri_bytes:
            self._catalog_changed(None)
        if getattr(old, "discovery", None) != getattr(config, "discovery", None):
            self._start_discovery()

    def add_source(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a discovery source for the gateway's life (cancelled on close or replace)."""
        old = self._sources.pop(name, None)
        if old is not None:
            old.cancel()
        self._sources[name] = self._tasks.spawn(run(), f"source-{name}")

    def _start_discovery(self) -> None:
        discovery = getattr(self.config, "discovery", None)
        kube = getattr(discovery, "kubernetes", None) if discovery is not None else None
        if kube is None:
            self.source_status.pop("kubernetes", None)
            old = self._sources.pop("kubernetes", None)
            if old is not None:
                old.cancel()
                self._tasks.spawn(self.apply([], source="kubernetes"), "source-kubernetes-off")
            return
        from .discovery.kubernetes import KubernetesSource

        async def on_targets(targets: list[TargetConfig]) -> None:
            await self.apply(targets, source="kubernetes")

        source = KubernetesSource(kube, on_targets)
        self.source_status["kubernetes"] = source.status
        self.add_source("kubernetes", source.run)

    async def wait_ready(self, grace: float | None = None) -> None:
        """Wait for targets still on their first try, each at most its timeout and at most
        ``grace`` seconds (clients: ``limits.ready_grace``). A target that hangs must not
        hold every client for its whole timeout: clients get what is ready, and
        ``list_changed`` when the rest arrives."""
        waiting = [t for t in self.targets.values() if not t.first_attempt.is_set()]
        if not waiting:
            return
        await asyncio.gather(
            *(asyncio.wait_for(t.first_attempt.wait(),
                               t.config.timeout if grace is None else min(grace, t.config.timeout))
              for t in waiting),
            return_exceptions=True,
        )

    # -- the merged view -------------------------------------------------
    def _catalog_changed(self, _target: Target | None, announced: set[Kind] | None = None) -> None:
        """Rebuild the view; tell clients what changed (and what a target announced)."""
        ready = [(t.name, t.catalog) for t in self.targets.values() if t.ready]
        self._views.clear()
        self._generation += 1
        old = self.view
        self.view = build_view(ready, self.config.prefix, len(self.targets), self.config.limits.max_uri_bytes,
                               {t.name: t.config.tools for t in self.targets.values()})
        changed = {CHANGED[k] for k in KINDS if old.digests.get(k, b"[]") != self.view.digests[k]}
        changed |= {CHANGED[k] for k in announced or ()}
        for method in sorted(changed):
            self.on_list_changed(method)

    def admits(self, key: str) -> bool:
        """Does this capability set get sessions of its own (see variants.py)?"""
        if key in self._sets:
            return True
        if len(self._sets) >= MAX_SETS:
            log.warning("client capability set %s: over %d sets; served the catalog sessions' lists", key, MAX_SETS)
            return False
        self._sets.add(key)
        return True

    async def view_for(self, capabilities: dict[str, Any]) -> View:
        """The merged view as a client with ``capabilities`` would see each server: built
        from each target's session of its capability set (opened on first use)."""
        key = capability_key(capabilities)
        if key == FULL_SET or not self.admits(key):
            return self.view
        view = self._views.get(key)
        if view is not None:
            return view
        generation = self._generation
        ready = [t for t in self.targets.values() if t.ready]
        catalogs = await asyncio.gather(*(self._catalog_for(t, key, capabilities) for t in ready))
        view = build_view(list(zip([t.name for t in ready], catalogs, strict=True)), self.config.prefix,
                          len(self.targets), self.config.limits.max_uri_bytes,
                          {t.name: t.config.tools for t in self.targets.values()})
        if generation == self._generation:
            self._views[key] = view
        return view

    async def _catalog_for(self, target: Target, key: str, capabilities: dict[str, Any]) -> Any:
        if target.modern:
            return target.catalog  # 2026: capabilities travel with each request
        try:
            variant = await asyncio.wait_for(target.variants.get(key, capabilities), target.config.timeout)
        except (UpstreamError, TimeoutError) as exc:
            log.warning("target '%s': no session for capabilities %s (%s); listing its catalog session's items",
                        target.name, key, getattr(exc, "reason", "timed out"))
            return target.catalog
        return variant.catalog

    def _uris_of(self, name: str) -> Callable[[str], list[str]]:
        return lambda scope: self.subscriptions.uris(name, scope)

    async def _target_message(self, target: Target, msg: Message, upstream: UpstreamSession) -> None:
        if self.on_target_message is not None:
            await self.on_target_message(target, msg, upstream)

    def cache_hint(self, kind: Kind) -> tuple[int, str]:
        """2026 caching fields for a merged list: the most conservative of the targets'.
        A target that gave none (handshake era) counts as ``ttlMs: 0``, ``private``."""
        ttl, scope = None, "public"
        for t in self.targets.values():
            if not t.ready:
                continue
            t_ttl, t_scope = t.catalog.cache.get(kind, (0, "private"))
            ttl = t_ttl if ttl is None else min(ttl, t_ttl)
            if t_scope != "public":
                scope = "private"
        return (ttl or 0), (scope if ttl is not None else "private")

    def discover(self) -> dict[str, Any]:
        """``server/discover``: the gateway as one modern server."""
        caps = self.capabilities()
        # 2026 has no `tasks` capability (SEP-2663 moved tasks to an extension), and the
        # 2025 tasks methods are not served to 2026 requests: not offered either.
        caps.pop("tasks", None)
        res: dict[str, Any] = {
            "resultType": "complete",
            "supportedVersions": list(era.ALL_VERSIONS),
            "capabilities": caps,
            "_meta": {era.K_SERVER_INFO: self.server_info()},
            "ttlMs": 0,
            "cacheScope": "private",
        }
        instructions = self.instructions()
        if instructions:
            res["instructions"] = instructions
        if self.transparent:
            self._as_the_target(res)
            res["_meta"] = {era.K_SERVER_INFO: res.pop("serverInfo", self.server_info())}
        return res

    def server_info(self) -> dict[str, Any]:
        return {"name": "mcpmux", "title": "mcpmux gateway", "version": __version__}

    def instructions(self) -> str | None:
        parts = [
            f"[{t.name}] {t.catalog.instructions}"
            for t in self.targets.values()
            if t.ready and isinstance(t.catalog.instructions, str) and t.catalog.instructions
        ]
        return "\n\n".join(parts) or None

    def unlisted_route(self, name: str, kind: Kind) -> Route | None:
        """The owner of a name no target lists: the target its prefix names, else
        :meth:`_unlisted_owner`. The target is the authority on its own names (the
        catalog is a copy that can lag a change, and some servers answer names they do
        not list): it gets the call and answers it as it would directly. A tool name the
        target's curation hides or renames stays unknown."""
        t: Target | None
        target, sep, after = name.partition("_")
        if self.view.prefixed and sep and target in self.targets:
            t, rest = self.targets[target], after
        else:
            t, rest = self._unlisted_owner(), name
        if t is None or not t.ready or (kind == "tools" and not admits(rest, t.config.tools)):
            return None
        return Route(t.name, rest)

    def unlisted_uri_route(self, uri: str) -> Route | None:
        """The owner of a resource URI no target lists or describes by a template (a
        prefixed URI was already routed by its prefix). Servers accept URIs they do not
        list: resources made on demand, subscriptions to what does not exist yet."""
        t = self._unlisted_owner()
        return Route(t.name, uri) if t is not None and t.ready else None

    def _unlisted_owner(self) -> Target | None:
        """Where what nobody lists goes when nothing in it names a target: the only
        target of an unprefixed view, else ``fallback_target``; in a merged namespace
        without one it has no owner."""
        if not self.view.prefixed and len(self.targets) == 1:
            return next(iter(self.targets.values()))
        fallback = self.config.fallback_target
        return self.targets.get(fallback) if fallback is not None else None

    def unavailable_route(self, name: str, what: str) -> Route:
        """A name not in the view: a known target that is down, or an error."""
        target, sep, rest = name.partition("_")
        if sep and target in self.targets and not self.targets[target].ready:
            return Route(target, rest)
        # Unprefixed names (prefix: never, bridge mode): a target that is down and offered
        # this name when it was last up; in bridge mode, the one target whatever the name.
        # Either way the caller gets "target X is unavailable", not "unknown tool".
        kind: Kind = "tools" if what == "tool" else "prompts"
        for t in self.targets.values():
            if not t.ready and (
                (self.transparent and len(self.targets) == 1)
                or (not self.view.prefixed
                    and any(i.get("name") == name for i in t.catalog.items.get(kind, ())))
            ):
                return Route(t.name, name)
        raise RPCError(INVALID_PARAMS, f"unknown {what}: {name}")

    def sole_route(self) -> Route | None:
        """Bridge mode: where a request the gateway does not handle itself goes."""
        if not self.transparent or len(self.targets) != 1:
            return None
        return Route(next(iter(self.targets)), "")

    def capabilities(self) -> dict[str, Any]:
        """The union of what ready targets offer; list_changed always (targets come and go)."""
        caps: dict[str, Any] = {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"listChanged": True},
        }
        for t in self.targets.values():
            if not t.ready:
                continue
            tc = t.catalog.capabilities
            if isinstance(tc.get("resources"), dict) and tc["resources"].get("subscribe"):
                caps["resources"]["subscribe"] = True
            for key in ("logging", "completions"):
                if key in tc:
                    caps[key] = {}
            if isinstance(tc.get("experimental"), dict):
                caps.setdefault("experimental", {}).update(tc["experimental"])
            if isinstance(tc.get("tasks"), dict):
                # Carried from the targets (the gateway routes tasks, it runs none).
                merge_capability(caps.setdefault("tasks", {}), tc["tasks"])
            ext = tasks_extension(tc)
            if ext is not None:  # the 2026 tasks extension: carried the same way
                merge_capability(caps.setdefault("extensions", {}).setdefault(TASKS_EXTENSION, {}), ext)
        return caps

    def initialize_result(self, version: str) -> dict[str, Any]:
        """The gateway's answer to ``initialize`` (in bridge mode, the target's)."""
        res: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
        }
        instructions = self.instructions()
        if instructions:
            res["instructions"] = instructions
        if self.transparent:
            self._as_the_target(res)
        return res

    def _as_the_target(self, res: dict[str, Any]) -> None:
        """Bridge mode: the initialize result of the one target, as it was last seen
        (capabilities untouched, plus listChanged since the gateway sends it)."""
        target = next(iter(self.targets.values()), None) if len(self.targets) == 1 else None
        if target is None or not target.catalog.server_info:
            return  # never connected yet: the gateway's own answer is all there is
        catalog = target.catalog
        caps = copy.deepcopy(catalog.capabilities)
        for key in ("tools", "prompts", "resources"):
            if isinstance(caps.get(key), dict):
                caps[key]["listChanged"] = True
        res["capabilities"] = caps
        res["serverInfo"] = catalog.server_info
        res.pop("instructions", None)
        if isinstance(catalog.instructions, str) and catalog.instructions:
            res["instructions"] = catalog.instructions

    # -- admin -----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "targets": [self.target_status(t) for t in self.targets.values()],
            "conflicts": self.view.conflicts,
        }

    def target_status(self, target: Target) -> dict[str, Any]:
        """A target's state, with what its curation hid, renamed or overrode (and why)."""
        out = target.status()
        out["curation"] = self.view.curation.get(target.name)
        return out

    def ready(self) -> bool:
        return all(t.first_attempt.is_set() for t in self.targets.values())



def _only_curation(new: TargetConfig, old: TargetConfig) -> bool:
    """Do two configs of a target differ only in its ``tools:`` curation?"""
    return new.model_copy(update={"tools": old.tools}) == old


def _ignore(_method: str) -> None:
    pass
