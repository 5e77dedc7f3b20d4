"""Kubernetes Services as targets, the way Agent Gateway users already mark them.

A Service port whose ``appProtocol`` is ``kgateway.dev/mcp`` or
``agentgateway.dev/mcp`` is a streamable-HTTP target; ``…/mcp-sse`` an SSE one;
``…/a2a`` an A2A agent (a target of kind ``a2a``, and a path on the A2A listener).
Two halves:

* :func:`targets_from` is pure: Service and Namespace objects (plain dicts, as the
  API server returns them) plus the config in, ``TargetConfig`` list out. Every
  naming and filtering rule lives there, so it is tested without any server.
* :class:`KubernetesSource` keeps those objects current with list + watch
  (resourceVersion, bookmarks, relist on 410 Gone, reconnect with backoff) and
  calls ``on_targets`` whenever the computed list changes. A connection error never
  empties the list: while the API server is unreachable the last targets stay.

The client is ``kubernetes_asyncio`` (asyncio on aiohttp, generated from the
Kubernetes OpenAPI, kubeconfig and in-cluster loading). Its ``Watch`` helper is not
used: on 410 it retries with the same, expired resourceVersion instead of
relisting, so the reflector below drives list and watch itself and reads the raw
event stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson

from ..config import (
    A2aAgentConfig,
    HttpSpec,
    KubernetesDiscoveryConfig,
    LabelSelector,
    SseSpec,
    TargetConfig,
)

log = logging.getLogger("mcpmux.discovery.kubernetes")

__all__ = [
    "APP_PROTOCOLS",
    "KubernetesSource",
    "namespace_allowed",
    "own_namespace",
    "selector_matches",
    "targets_from",
]

Kind = Literal["http", "sse", "a2a"]

#: appProtocol → target kind. Both vendors' spellings, as Agent Gateway accepts them;
#: ``a2a`` ports are A2A agents (docs/a2a.md), also served on the A2A listener.
APP_PROTOCOLS: dict[str, Kind] = {
    "kgateway.dev/mcp": "http",
    "agentgateway.dev/mcp": "http",
    "kgateway.dev/mcp-sse": "sse",
    "agentgateway.dev/mcp-sse": "sse",
    "kgateway.dev/a2a": "a2a",
    "agentgateway.dev/a2a": "a2a",
}
PATH_ANNOTATIONS = ("agentgateway.dev/mcp-path", "kgateway.dev/mcp-path")
#: An agent's base path (its card is at {path}/.well-known/agent-card.json).
A2A_PATH_ANNOTATIONS = ("agentgateway.dev/a2a-path", "kgateway.dev/a2a-path")
NAME_ANNOTATION = "agentgateway.dev/mcp-target-name"
DEFAULT_PATHS: dict[Kind, str] = {"http": "/mcp", "sse": "/sse", "a2a": ""}

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_LABEL = 63
_HASH_LEN = 8


# ----------------------------------------------------------------- the pure rules


def own_namespace(config: KubernetesDiscoveryConfig) -> str:
    """The gateway's own namespace: the config's, else the pod's service account's, else "default"."""
    if config.namespace:
        return config.namespace
    try:
        ns = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
    except OSError:
        ns = ""
    return ns or "default"


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: all of matchLabels and matchExpressions hold.

    An empty selector matches everything; ``NotIn`` and ``DoesNotExist`` match
    objects that lack the key, as in Kubernetes.
    """
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        value = labels.get(req.key)
        if req.operator == "In":
            ok = present and value in req.values
        elif req.operator == "NotIn":
            ok = not present or value not in req.values
        elif req.operator == "Exists":
            ok = present
        else:  # DoesNotExist
            ok = not present
        if not ok:
            return False
    return True


def namespace_allowed(
    name: str,
    namespaces: Mapping[str, Mapping[str, Any]],
    config: KubernetesDiscoveryConfig,
    own: str,
) -> bool:
    """Whether Services in namespace ``name`` may become targets.

    With ``from: Selector`` a namespace must be known (seen in the namespace list)
    for its labels to be matched; one that is not known yet is not allowed.
    """
    mode = config.namespaces.from_
    if mode == "All":
        return True
    if mode == "Same":
        return name == own
    ns = namespaces.get(name)
    if ns is None or config.namespaces.selector is None:
        return False
    labels = (ns.get("metadata") or {}).get("labels") or {}
    return selector_matches(config.namespaces.selector, labels)


@dataclass(frozen=True)
class _Candidate:
    """One MCP port of one Service, before its target name is settled."""

    base: str  # the name it asks for (annotation or Service name, plus port suffix)
    namespace: str
    service: str
    port: int
    kind: Kind
    url: str
    #: For `…/mcp` ports with no path annotation: where a legacy SSE server would be.
    sse_url: str | None = None

    def rank(self, own: str) -> tuple[bool, str, str, int]:
        # Who keeps the plain name: the gateway's own namespace, then the
        # alphabetically first namespace, then Service name, then port number.
        return (self.namespace != own, self.namespace, self.service, self.port)


def _hashed(text: str, seed: str) -> str:
    """``text`` cut so that ``-`` and 8 hex digits of sha256(seed) fit in 63 characters."""
    digest = hashlib.sha256(seed.encode()).hexdigest()[:_HASH_LEN]
    head = text[: _MAX_LABEL - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{digest}"


def _fit(text: str, seed: str) -> str:
    """``text`` if it is a valid label, else its hashed, shortened form."""
    if len(text) <= _MAX_LABEL and _LABEL.match(text):
        return text
    return _hashed(text, seed)


def _host(
    service: str, namespace: str, spec: Mapping[str, Any], config: KubernetesDiscoveryConfig
) -> str | None:
    """Where the gateway reaches the Service, or None if it cannot (headless, no IP)."""
    cluster_ip = spec.get("clusterIP")
    if cluster_ip == "None":
        return None  # headless: no virtual IP, DNS gives pod IPs that listen on targetPort
    if config.address == "dns":
        return f"{service}.{namespace}.svc.{config.cluster_domain}"
    if not isinstance(cluster_ip, str) or not cluster_ip:
        return None  # ExternalName, or not allocated yet
    return f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip


def _candidates(service: Mapping[str, Any], config: KubernetesDiscoveryConfig) -> list[_Candidate]:
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str) or meta.get("deletionTimestamp"):
        return []
    ports = [
        p
        for p in spec.get("ports") or []
        if isinstance(p, dict)
        and p.get("appProtocol") in APP_PROTOCOLS
        and isinstance(p.get("port"), int)
    ]
    if not ports:
        return []
    host = _host(name, namespace, spec, config)
    if host is None:
        log.debug("service %s/%s: no address for %s; skipped", namespace, name, config.address)
        return []
    annotations = meta.get("annotations") or {}
    base = annotations.get(NAME_ANNOTATION) or name
    if not isinstance(base, str) or len(base) > _MAX_LABEL or not _LABEL.match(base):
        log.warning(
            "service %s/%s: annotation %s=%r is not a DNS-1123 label; skipped",
            namespace,
            name,
            NAME_ANNOTATION,
            base,
        )
        return []
    custom_path = next((annotations[a] for a in PATH_ANNOTATIONS if annotations.get(a)), None)
    agent_path = next((annotations[a] for a in A2A_PATH_ANNOTATIONS if annotations.get(a)), None)
    out = []
    for p in ports:
        kind = APP_PROTOCOLS[p["appProtocol"]]
        given = agent_path if kind == "a2a" else custom_path
        path = given if isinstance(given, str) else DEFAULT_PATHS[kind]
        if path and not path.startswith("/"):
            path = "/" + path
        wanted = base
        if len(ports) > 1:
            # Several MCP ports: one target each, named after the port (names are
            # required by Kubernetes once a Service has more than one port).
            wanted = _fit(f"{base}-{p.get('name') or p['port']}", f"{namespace}/{name}/{p['port']}")
        url = f"http://{host}:{p['port']}{path}"
        # The article's `kgateway.dev/mcp` Service fronts an SSE-only server at /sse: with
        # no path annotation, probe streamable HTTP at /mcp, then legacy SSE at /sse.
        sse_url = f"http://{host}:{p['port']}{DEFAULT_PATHS['sse']}" if kind == "http" and custom_path is None else None
        out.append(_Candidate(wanted, namespace, name, p["port"], kind, url, sse_url))
    return out


def targets_from(
    services: Iterable[Mapping[str, Any]],
    namespaces: Iterable[Mapping[str, Any]],
    config: KubernetesDiscoveryConfig,
    *,
    own: str | None = None,
) -> list[TargetConfig]:
    """The targets that ``services`` (in the allowed ``namespaces``) describe, sorted by name.

    Names: ``agentgateway.dev/mcp-target-name``, else the Service name; a Service
    with several MCP ports gives ``{name}-{port name}`` per port. When two
    candidates want the same name, the one in the gateway's own namespace keeps
    it, else the one in the alphabetically first namespace (then Service name,
    then port). Each other one becomes ``{name}-{namespace}``; if that is longer
    than 63 characters or already taken, it is cut to 54 characters plus ``-`` and
    8 hex digits of sha256("{namespace}/{service}/{port}"). Names never depend on
    the order objects arrive in, so a relist yields the same names.
    """
    own = own if own is not None else own_namespace(config)
    ns_index = {
        n["metadata"]["name"]: n
        for n in namespaces
        if isinstance((n.get("metadata") or {}).get("name"), str)
    }
    groups: dict[str, list[_Candidate]] = {}
    for svc in services:
        ns = (svc.get("metadata") or {}).get("namespace")
        if not isinstance(ns, str) or not namespace_allowed(ns, ns_index, config, own):
            continue
        for cand in _candidates(svc, config):
            groups.setdefault(cand.base, []).append(cand)

    named: dict[str, _Candidate] = {}
    losers: list[_Candidate] = []
    for base, cands in groups.items():
        cands.sort(key=lambda c: c.rank(own))
        named[base] = cands[0]
        losers.extend(cands[1:])
    for cand in sorted(losers, key=lambda c: (c.base, c.rank(own))):
        seed = f"{cand.namespace}/{cand.service}/{cand.port}"
        name = _fit(f"{cand.base}-{cand.namespace}", seed)
        if name in named:
            name = _hashed(f"{cand.base}-{cand.namespace}", seed)
        if name in named:  # a sha256 prefix collision: report rather than guess
            log.error(
                "service %s/%s: no free target name for %s; skipped",
                cand.namespace,
                cand.service,
                cand.base,
            )
            continue
        first = named[cand.base]
        log.info(
            "target name %r is taken by service %s/%s; service %s/%s becomes %r",
            cand.base,
            first.namespace,
            first.service,
            cand.namespace,
            cand.service,
            name,
        )
        named[name] = cand

    targets = []
    for name in sorted(named):
        c = named[name]
        if c.kind == "a2a":
            targets.append(TargetConfig(name=name, a2a=A2aAgentConfig(name=name, url=c.url)))
        elif c.kind == "sse":
            targets.append(TargetConfig(name=name, sse=SseSpec(url=c.url)))
        elif c.sse_url is not None:
            targets.append(TargetConfig(name=name, url=c.url, sse_url=c.sse_url))
        else:
            targets.append(TargetConfig(name=name, http=HttpSpec(url=c.url)))
    return targets


# --------------------------------------------------------------- list and watch


class _Gone(Exception):
    """The resourceVersion we hold is too old (410): relist."""


class _ApiStatus(Exception):
    """The API server answered with a failure Status (or a non-2xx response)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _status_error(code: int, body: bytes) -> Exception:
    message = body[:300].decode(errors="replace")
    try:
        status = orjson.loads(body)
        if isinstance(status, dict):
            message = f"{status.get('reason', '')}: {status.get('message', '')}".strip(": ")
    except orjson.JSONDecodeError:
        pass
    return _Gone(message) if code == 410 else _ApiStatus(code, message)


class _Backoff:
    """0.5 s doubling to 30 s with ±20% jitter, like target reconnects."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)


ListCall = Callable[..., Awaitable[Any]]


@dataclass
class _Reflector:
    """A local copy of one kind of object, kept current by list + watch."""

    kind: str  # "services" / "namespaces", for logs and status
    call: ListCall  # a generated CoreV1Api list method (bound, with any namespace)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_version: str | None = None
    synced: bool = False
    connected: bool = False
    lists: int = 0
    watches: int = 0

    @staticmethod
    def key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class KubernetesSource:
    """Turns Services (and, for ``from: Selector``, Namespaces) into targets, live.

    ``run()`` works until cancelled. ``on_targets`` is awaited with the full list of
    targets after the first complete sync and after every change to that list, never
    concurrently with itself, and never because of a connection error.
    """

    def __init__(
        self,
        config: KubernetesDiscoveryConfig,
        on_targets: Callable[[list[TargetConfig]], Awaitable[None]],
        *,
        backoff: tuple[float, float] = (0.5, 30.0),
        watch_timeout: tuple[int, int] = (300, 600),
        page_size: int = 500,
    ) -> None:
        self.config = config
        self.on_targets = on_targets
        self.namespace = own_namespace(config)
        self._backoff = backoff
        self._watch_timeout = watch_timeout
        self._page_size = page_size
        self._reflectors: list[_Reflector] = []
        self._dirty = asyncio.Event()
        self._last: list[TargetConfig] | None = None
        self.state = "starting"
        self.last_error: str | None = None

    # -- public ----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For the admin API: whether we see the cluster, and what we last saw."""
        return {
            "state": self.state,
            "lastError": self.last_error,
            "namespace": self.namespace,
            "targets": None if self._last is None else [t.name for t in self._last],
            "watches": {
                r.kind: {
                    "synced": r.synced,
                    "connected": r.connected,
                    "resourceVersion": r.resource_version,
                    "objects": len(r.items),
                    "lists": r.lists,
                    "watches": r.watches,
                }
                for r in self._reflectors
            },
        }

    async def run(self) -> None:
        # Imported here: the generated client takes most of a second to import, a
        # cost a gateway without Kubernetes discovery should not pay at start-up.
        from kubernetes_asyncio import client

        backoff = _Backoff(*self._backoff)
        while True:
            try:
                configuration = await self._load_configuration()
                break
            except Exception as exc:  # a missing or broken kubeconfig: say so, keep trying
                self._set_error(f"cannot load Kubernetes credentials: {exc}")
                await asyncio.sleep(backoff.next())
        async with client.ApiClient(configuration) as api_client:
            api = client.CoreV1Api(api_client)
            if self.config.namespaces.from_ == "Same":
                # One namespace: a namespaced list/watch, which a Role can grant.
                services = _Reflector(
                    "services", _bind(api.list_namespaced_service, self.namespace)
                )
            else:
                services = _Reflector("services", api.list_service_for_all_namespaces)
            self._reflectors = [services]
            if self.config.namespaces.from_ == "Selector":
                self._reflectors.append(_Reflector("namespaces", api.list_namespace))
            async with asyncio.TaskGroup() as tg:
                for r in self._reflectors:
                    tg.create_task(self._reflect(r, configuration), name=f"kube-{r.kind}")
                tg.create_task(self._emit(), name="kube-emit")

    # -- credentials -----------------------------------------------------
    async def _load_configuration(self) -> Any:
        from kubernetes_asyncio import client

        configuration = client.Configuration()
        await self._fill_configuration(configuration)
        return configuration

    async def _fill_configuration(self, configuration: Any) -> None:
        """kubeconfig given: that file. Else in a pod: the service account. Else
        $KUBECONFIG (read now, not at import), else ~/.kube/config."""
        from kubernetes_asyncio import config

        path = self.kubeconfig_path()
        if path is None:
            config.load_incluster_config(client_configuration=configuration)
            return
        await config.load_kube_config(
            config_file=path, client_configuration=configuration, persist_config=False
        )

    def kubeconfig_path(self) -> str | None:
        """The kubeconfig file to read, or None for the in-cluster service account."""
        path = self.config.kubeconfig
        if path is None:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                return None
            # KUBECONFIG may list several files (':'-separated); the loader merges them.
            path = os.environ.get("KUBECONFIG") or "~/.kube/config"
        return ":".join(os.path.expanduser(p) for p in path.split(":"))

    # -- the reflector ---------------------------------------------------
    async def _reflect(self, r: _Reflector, configuration: Any) -> None:
        backoff = _Backoff(*self._backoff)
        gone_in_a_row = 0
        while True:
            try:
                if r.resource_version is None:
                    await self._list(r)
                    backoff.reset()
                events = await self._watch(r)
                gone_in_a_row = 0
                if not events:
                    # Ended with nothing in it (a proxy cutting streams at once?):
                    # pause before the next one rather than spin.
                    await asyncio.sleep(backoff.next())
                else:
                    backoff.reset()
            except _Gone as exc:
                # Our resourceVersion was compacted away: only a fresh list is
                # consistent. Relist at once; back off only if it keeps happening.
                log.info(
                    "%s: resourceVersion %s expired (%s); relisting",
                    r.kind,
                    r.resource_version,
                    exc,
                )
                r.resource_version = None
                r.connected = False
                gone_in_a_row += 1
                if gone_in_a_row > 1:
                    await asyncio.sleep(backoff.next())
            except _ApiStatus as exc:
                r.connected = False
                self._set_error(f"{r.kind}: API server answered {exc}")
                if exc.code == 401:
                    # Rotated token (service account, exec plugin): load it afresh.
                    try:
                        await self._fill_configuration(configuration)
                    except Exception as reload_exc:
                        log.warning("reloading Kubernetes credentials failed: %s", reload_exc)
                await asyncio.sleep(backoff.next())
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # Unreachable or cut off: keep the cache (and so the targets) as they
                # are, resume the watch from our resourceVersion when it is back.
                r.connected = False
                self._set_error(f"{r.kind}: API server unreachable: {exc or type(exc).__name__}")
                await asyncio.sleep(backoff.next())
            except Exception as exc:  # a malformed answer: log it and start over
                r.connected = False
                r.resource_version = None
                self._set_error(f"{r.kind}: {type(exc).__name__}: {exc}")
                log.exception("%s: unexpected error; relisting after a pause", r.kind)
                await asyncio.sleep(backoff.next())

    async def _list(self, r: _Reflector) -> None:
        """A full, paged list; replaces the cache in one step (deletions included)."""
        items: dict[str, dict[str, Any]] = {}
        cont: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": self._page_size}
            if cont:
                kwargs["_continue"] = cont
            resp = await r.call(
                **kwargs,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=60, sock_connect=10),
            )
            async with resp:
                body = await resp.read()
                if not 200 <= resp.status < 300:
                    raise _status_error(resp.status, body)
            data = orjson.loads(body)
            for obj in data.get("items") or []:
                items[r.key(obj)] = obj
            meta = data.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        r.items = items
        r.resource_version = str(meta.get("resourceVersion") or "") or None
        r.synced = True
        r.lists += 1
        log.debug("%s: listed %d at resourceVersion %s", r.kind, len(items), r.resource_version)
        self._dirty.set()

    async def _watch(self, r: _Reflector) -> int:
        """Follow changes from ``r.resource_version`` until the server ends the watch;
        return how many events (bookmarks included) it carried."""
        timeout = random.randint(*self._watch_timeout)
        resp = await r.call(
            watch=True,
            resource_version=r.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _preload_content=False,
            # The server closes the watch after timeout_seconds; a read silent for
            # longer than that (plus slack) means a dead connection.
            _request_timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=timeout + 30
            ),
        )
        async with resp:
            if not 200 <= resp.status < 300:
                raise _status_error(resp.status, await resp.read())
            r.watches += 1
            if not r.connected:
                r.connected = True
                self._set_ok()
            events = 0
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._event(r, orjson.loads(line))
                        events += 1
            return events

    def _event(self, r: _Reflector, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if not isinstance(code, int):
                code = 500
            message = f"{obj.get('reason', '')}: {obj.get('message', '')}"
            raise _Gone(message) if code == 410 else _ApiStatus(code, message)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            r.items[r.key(obj)] = obj
            self._dirty.set()
        elif kind == "DELETED":
            r.items.pop(r.key(obj), None)
            self._dirty.set()
        elif kind != "BOOKMARK":
            raise ValueError(f"not a watch event: {str(event)[:200]}")
        if rv:
            r.resource_version = str(rv)

    # -- telling the gateway ---------------------------------------------
    async def _emit(self) -> None:
        """Recompute the targets after changes and hand them on when they differ.

        One task does it, so ``on_targets`` never overlaps itself, and a burst of
        events (a relist, a namespace relabel) becomes one call.
        """
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not all(r.synced for r in self._reflectors):
                continue  # half a picture (services without namespaces) is not the truth
            services = next(r for r in self._reflectors if r.kind == "services")
            namespaces = next((r for r in self._reflectors if r.kind == "namespaces"), None)
            targets = targets_from(
                services.items.values(),
                namespaces.items.values() if namespaces else (),
                self.config,
                own=self.namespace,
            )
            if targets == self._last:
                continue
            try:
                await self.on_targets(targets)
            except Exception:
                log.exception("applying %d discovered targets failed", len(targets))
                continue
            log.info(
                "kubernetes: %d target(s): %s",
                len(targets),
                ", ".join(t.name for t in targets) or "-",
            )
            self._last = targets

    # -- state -----------------------------------------------------------
    def _set_error(self, message: str) -> None:
        first = self.state != "error" or self.last_error != message
        self.state = "error"
        self.last_error = message
        if first:
            kept = "" if self._last is None else f"; keeping the last {len(self._last)} target(s)"
            log.warning("kubernetes discovery: %s%s", message, kept)

    def _set_ok(self) -> None:
        if all(r.connected for r in self._reflectors):
            if self.state == "error":
                log.info("kubernetes discovery: connected again")
            self.state = "watching"


def _bind(call: ListCall, namespace: str) -> ListCall:
    async def bound(**kwargs: Any) -> Any:
        return await call(namespace, **kwargs)

    return bound
