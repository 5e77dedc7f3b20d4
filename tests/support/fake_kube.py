"""An in-process Kubernetes API server for Services and Namespaces, on a loopback port.

No real API server can run on these machines, so discovery tests point the real
client library (``kubernetes_asyncio``, through a kubeconfig) at this one. It
speaks the wire format a real kube-apiserver speaks for the few endpoints used:

* ``GET /api/v1/services``, ``/api/v1/namespaces/{ns}/services``, ``/api/v1/namespaces``:
  a ``ServiceList``/``NamespaceList`` whose ``metadata.resourceVersion`` is the
  store's current one; items without ``kind``/``apiVersion``, as the real server
  sends them; ``limit``/``continue`` paging over one snapshot.
* the same with ``watch=1``: a chunked ``application/json`` stream of one JSON event
  per line (``ADDED``/``MODIFIED``/``DELETED``/``BOOKMARK``/``ERROR``). A watch from
  ``resourceVersion=N`` replays the changes after N; without one (or ``0``) it
  starts with synthetic ``ADDED`` events for every object. A resourceVersion older
  than the retained history gets HTTP 200 and then an ``ERROR`` event holding a
  ``Status`` with code 410 (reason ``Expired``), which is what kube-apiserver does.
  ``allowWatchBookmarks=true`` enables ``BOOKMARK`` events (``bookmark()`` or every
  ``bookmark_interval`` seconds); ``timeoutSeconds`` ends the watch cleanly.
* bearer-token auth: anything else gets a 401 ``Status``.

Resource versions are one counter for the whole store, as in etcd: any write
advances it. Test-facing methods change objects, force 410s, cut watches and take
the whole server down and back up on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

__all__ = ["ARTICLE_SERVICES", "FakeKube", "ThreadedFakeKube", "load_manifests"]

#: The article's three Service manifests, verbatim.
ARTICLE_SERVICES = (
    Path(__file__).resolve().parents[1] / "fixtures" / "kubernetes" / "article-services.yaml"
)

Obj = dict[str, Any]

_DROP = object()  # queued to a watch: close it at once


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_manifests(path: str | Path) -> list[Obj]:
    """The documents of a multi-document YAML file (``kubectl apply -f`` input)."""
    with open(path, encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def _go_bool(text: str | None) -> bool:
    """Query booleans as kube-apiserver parses them (Go's strconv.ParseBool)."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def _status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class _Change:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    resource: str  # services / namespaces
    obj: Obj


@dataclass(eq=False)
class _Watch:
    resource: str
    namespace: str | None
    bookmarks: bool
    request: web.Request
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def wants(self, change: _Change) -> bool:
        if change.resource != self.resource:
            return False
        return self.namespace is None or change.obj["metadata"].get("namespace") == self.namespace


class FakeKube:
    """The fake API server. ``await start()``, use, ``await close()``."""

    def __init__(self, token: str = "fake-token", bookmark_interval: float | None = None) -> None:
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.port = 0
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, query) of each API call
        self._rv = 100
        self._oldest_rv = 100  # watches from before this get 410
        self._history: list[_Change] = []
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {"services": {}, "namespaces": {}}
        self._watches: set[_Watch] = set()
        self._snapshots: dict[str, list[Obj]] = {}
        self._ips = itertools.count(10)
        self._runner: web.AppRunner | None = None
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create_namespace(ns)
        self.create_service(
            {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "clusterIP": "10.96.0.1",
                    "ports": [
                        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}
                    ],
                },
            }
        )

    # ---------------------------------------------------------------- serving
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen (again) on the same loopback port; the first start picks a free one."""
        if self._runner is not None:
            return
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
        app = web.Application()
        app.router.add_get("/api/v1/services", self._list_or_watch)
        app.router.add_get("/api/v1/namespaces", self._list_or_watch)
        app.router.add_get("/api/v1/namespaces/{namespace}/services", self._list_or_watch)
        app.router.add_get("/version", self._version)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        """Go away: the port refuses connections and every open watch is cut."""
        await self.drop_watches()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def close(self) -> None:
        await self.stop()

    async def __aenter__(self) -> FakeKube:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """Write a kubeconfig (plain http, bearer token) that points at this server."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    # --------------------------------------------------------- test controls
    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> Obj:
        key = ("", name)
        if key in self._objects["namespaces"]:
            raise ValueError(f'namespaces "{name}" already exists')
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                # kube-apiserver sets this label on every namespace (since 1.21).
                "labels": {**(labels or {}), "kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        return self._write("ADDED", "namespaces", key, obj)

    def relabel_namespace(self, name: str, labels: dict[str, str]) -> Obj:
        """Replace a namespace's labels (the automatic name label stays)."""
        obj = copy.deepcopy(self._get("namespaces", "", name))
        obj["metadata"]["labels"] = {**labels, "kubernetes.io/metadata.name": name}
        return self._write("MODIFIED", "namespaces", ("", name), obj)

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace and, as the namespace controller does, its Services first."""
        for ns, svc in list(self._objects["services"]):
            if ns == name:
                self.delete_service(svc, ns)
        obj = copy.deepcopy(self._get("namespaces", "", name))
        self._write("DELETED", "namespaces", ("", name), obj)

    def create_service(self, manifest: Obj, namespace: str | None = None) -> Obj:
        """Create a Service from a manifest as a user would ``kubectl apply`` it.

        Fills in what the API server does: uid, resourceVersion, creationTimestamp,
        a ClusterIP (unless given, or ``None`` for headless), port protocol and
        targetPort defaults, type, sessionAffinity, ipFamilies.
        """
        m = copy.deepcopy(manifest)
        meta = m.setdefault("metadata", {})
        ns = namespace or meta.get("namespace") or "default"
        name = meta["name"]
        if ("", ns) not in self._objects["namespaces"]:
            raise ValueError(f'namespaces "{ns}" not found')
        if (ns, name) in self._objects["services"]:
            raise ValueError(f'services "{name}" already exists')
        spec = m.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName":
            n = next(self._ips)
            ip = spec.get("clusterIP") or f"10.96.{n // 250}.{n % 250 + 1}"
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                **meta,
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
            },
            "spec": spec,
            "status": {"loadBalancer": {}},
        }
        return self._write("ADDED", "services", (ns, name), obj)

    def update_service(self, name: str, namespace: str = "default", **changes: Any) -> Obj:
        """Change a Service: ``annotations=``, ``labels=`` (replace) and ``ports=`` (replace)."""
        obj = copy.deepcopy(self._get("services", namespace, name))
        for key in ("annotations", "labels"):
            if key in changes:
                obj["metadata"][key] = changes.pop(key)
        if "ports" in changes:
            ports = copy.deepcopy(changes.pop("ports"))
            for port in ports:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port["port"])
            obj["spec"]["ports"] = ports
        if changes:
            raise TypeError(f"unsupported changes: {sorted(changes)}")
        return self._write("MODIFIED", "services", (namespace, name), obj)

    def delete_service(self, name: str, namespace: str = "default") -> None:
        obj = copy.deepcopy(self._get("services", namespace, name))
        self._write("DELETED", "services", (namespace, name), obj)

    def services(self) -> list[Obj]:
        return [copy.deepcopy(o) for o in self._objects["services"].values()]

    def expire_history(self) -> None:
        """Compact: forget every change so far, as etcd compaction does.

        The resourceVersion advances (other writes in a real cluster), so any
        client's last resourceVersion is now too old: open watches get the ERROR
        410 event and are closed, and a watch resumed from an old resourceVersion
        gets the same. Only a fresh list helps.
        """
        self._rv += 1
        self._oldest_rv = self._rv
        self._history.clear()
        self._snapshots.clear()
        for w in list(self._watches):
            w.queue.put_nowait(
                _status(410, "Expired", "The resourceVersion for the provided watch is too old.")
            )
            w.queue.put_nowait(_DROP)

    async def drop_watches(self) -> None:
        """Cut every open watch connection (a TCP abort, not a clean end of stream)."""
        for w in list(self._watches):
            transport = w.request.transport
            if transport is not None:
                transport.abort()
            w.queue.put_nowait(_DROP)
        for _ in range(100):
            if not self._watches:
                break
            await asyncio.sleep(0.01)

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to watches that asked for them."""
        for w in list(self._watches):
            if w.bookmarks:
                w.queue.put_nowait(self._bookmark_event(w.resource))

    def watch_count(self, resource: str | None = None) -> int:
        return sum(1 for w in self._watches if resource in (None, w.resource))

    # --------------------------------------------------------------- store
    def _get(self, resource: str, namespace: str, name: str) -> Obj:
        try:
            return self._objects[resource][(namespace, name)]
        except KeyError:
            raise KeyError(f'{resource} "{name}" not found in "{namespace}"') from None

    def _write(self, kind: str, resource: str, key: tuple[str, str], obj: Obj) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            self._objects[resource].pop(key, None)
        else:
            self._objects[resource][key] = obj
        change = _Change(self._rv, kind, resource, copy.deepcopy(obj))
        self._history.append(change)
        for w in list(self._watches):
            if w.wants(change):
                w.queue.put_nowait({"type": change.type, "object": change.obj})
        return copy.deepcopy(obj)

    def _bookmark_event(self, resource: str) -> Obj:
        kind = "Service" if resource == "services" else "Namespace"
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._rv)},
            },
        }

    # ------------------------------------------------------------- handlers
    async def _version(self, _request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"})

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _list_or_watch(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.path, query))
        if not self._authorized(request):
            return web.json_response(_status(401, "Unauthorized", "Unauthorized"), status=401)
        namespace = request.match_info.get("namespace")
        resource = "namespaces" if request.path == "/api/v1/namespaces" else "services"
        if _go_bool(query.get("watch")):
            return await self._watch(request, resource, namespace, query)
        return self._list(resource, namespace, query)

    def _current(self, resource: str, namespace: str | None) -> list[Obj]:
        objs = sorted(self._objects[resource].items())
        return [copy.deepcopy(o) for (ns, _), o in objs if namespace is None or ns == namespace]

    def _list(self, resource: str, namespace: str | None, query: dict[str, str]) -> web.Response:
        kind = "ServiceList" if resource == "services" else "NamespaceList"
        token = query.get("continue")
        if token:
            snapshot = self._snapshots.get(token)
            if snapshot is None:
                body = _status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                )
                return web.json_response(body, status=410)
            rv = token.split(":")[0]
        else:
            snapshot = self._current(resource, namespace)
            rv = str(self._rv)
        limit = int(query.get("limit") or 0)
        page, rest = (snapshot[:limit], snapshot[limit:]) if limit > 0 else (snapshot, [])
        meta: Obj = {"resourceVersion": rv}
        if rest:
            next_token = f"{rv}:{uuid.uuid4().hex}"
            self._snapshots[next_token] = rest
            meta["continue"] = next_token
            meta["remainingItemCount"] = len(rest)
        items = []
        for obj in page:  # list items carry no kind/apiVersion on the wire
            obj = dict(obj)
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
            items.append(obj)
        return web.json_response(
            {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": items}
        )

    async def _watch(
        self, request: web.Request, resource: str, namespace: str | None, query: dict[str, str]
    ) -> web.StreamResponse:
        w = _Watch(resource, namespace, _go_bool(query.get("allowWatchBookmarks")), request)
        rv_text = query.get("resourceVersion") or "0"
        try:
            since = int(rv_text)
        except ValueError:
            body = _status(400, "BadRequest", f'invalid resource version "{rv_text}"')
            return web.json_response(body, status=400)
        # Queue what the client missed (or the initial state) before going live,
        # with nothing awaited in between, so no change can slip past.
        if since == 0:
            for obj in self._current(resource, namespace):
                w.queue.put_nowait({"type": "ADDED", "object": obj})
        elif since < self._oldest_rv:
            msg = f"too old resource version: {since} ({self._oldest_rv})"
            w.queue.put_nowait({"type": "ERROR", "object": _status(410, "Expired", msg)})
            w.queue.put_nowait(_DROP)
        else:
            for change in self._history:
                if change.rv > since and w.wants(change):
                    w.queue.put_nowait({"type": change.type, "object": copy.deepcopy(change.obj)})
        self._watches.add(w)
        try:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + float(query.get("timeoutSeconds") or 1800)
            while True:
                wait = deadline - loop.time()
                if self.bookmark_interval and w.bookmarks:
                    wait = min(wait, self.bookmark_interval)
                if wait <= 0:
                    break  # timeoutSeconds: the server ends the watch cleanly
                try:
                    item = await asyncio.wait_for(w.queue.get(), wait)
                except TimeoutError:
                    if loop.time() >= deadline:
                        break
                    item = self._bookmark_event(resource)
                if item is _DROP:
                    break
                if item.get("kind") == "Status":
                    item = {"type": "ERROR", "object": item}
                await resp.write(json.dumps(item).encode() + b"\n")
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write_eof()
            return resp
        except (ConnectionError, asyncio.CancelledError):
            raise
        finally:
            self._watches.discard(w)


class ThreadedFakeKube:
    """A :class:`FakeKube` on its own event loop in a background thread.

    For tests that block their own loop (the subprocess gateway helpers poll with
    ``time.sleep``): the API server keeps answering meanwhile. Change objects with
    ``call(kube.create_service, manifest)`` so every change happens on its loop.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kube = FakeKube(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-kube", daemon=True
        )

    def __enter__(self) -> ThreadedFakeKube:
        self._thread.start()
        self.run(self.kube.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.kube.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a (synchronous) FakeKube method on the server's loop."""

        async def call() -> Any:
            return fn(*args, **kwargs)

        return self.run(call())
