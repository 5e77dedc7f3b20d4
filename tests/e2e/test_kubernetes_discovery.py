"""Kubernetes discovery end to end: the real client library against an API server.

No real API server can run on these machines, so ``tests/support/fake_kube.py``
stands in for one: it speaks kube-apiserver's list/watch wire format (chunked
watch events, resourceVersion, BOOKMARK, ERROR 410 Expired, dropped connections).
``kubernetes_asyncio`` reaches it through a kubeconfig file, exactly as it reaches a
cluster.

The first group drives ``KubernetesSource`` alone and records what it hands the
reconciler. The last test runs the whole gateway (``mcpmux run``) on the article's
scenario: Services backed by real MCP servers on loopback (``address: clusterIP``
with ClusterIP 127.0.0.1), an SDK client seeing their tools come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from tests.e2e.conftest import start_everything_http, stop_peer
from tests.support.conformance import conformance_backend
from tests.support.fake_kube import ARTICLE_SERVICES, FakeKube, ThreadedFakeKube, load_manifests
from tests.support.gateway import Gateway, run_gateway

from mcpmux.config import KubernetesDiscoveryConfig, TargetConfig
from mcpmux.discovery.kubernetes import KubernetesSource

FAST = {"backoff": (0.05, 0.2)}


class Recorder:
    """The reconciler's side: every list of targets the source hands over."""

    def __init__(self) -> None:
        self.calls: list[list[TargetConfig]] = []
        self._changed = asyncio.Event()

    async def __call__(self, targets: list[TargetConfig]) -> None:
        self.calls.append(targets)
        self._changed.set()

    @property
    def names(self) -> list[str] | None:
        return [t.name for t in self.calls[-1]] if self.calls else None

    async def until(self, check: Callable[[list[str]], bool], within: float = 10) -> list[str]:
        with anyio.fail_after(within):
            while True:
                names = self.names
                if names is not None and check(names):
                    return names
                self._changed.clear()
                await self._changed.wait()


async def eventually(check: Callable[[], bool], within: float = 10) -> None:
    with anyio.fail_after(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(source: KubernetesSource) -> AsyncIterator[KubernetesSource]:
    task = asyncio.create_task(source.run())
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as server:
        yield server


def service(name: str, ns: str = "default", port: int = 8080, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": {"ports": [{"appProtocol": "kgateway.dev/mcp", "port": port}]},
    }


def source_for(kube: FakeKube, tmp_path: Path, rec: Recorder, **config: Any) -> KubernetesSource:
    path = kube.kubeconfig(tmp_path / "kubeconfig")
    cfg = KubernetesDiscoveryConfig.model_validate({"kubeconfig": str(path), **config})
    return KubernetesSource(cfg, rec, **FAST)  # type: ignore[arg-type]


def lists(kube: FakeKube, path: str = "/api/v1/services") -> list[dict[str, str]]:
    return [q for p, q in kube.requests if p == path and q.get("watch") is None]


def watches(kube: FakeKube, path: str = "/api/v1/services") -> list[dict[str, str]]:
    return [q for p, q in kube.requests if p == path and q.get("watch") is not None]


# ------------------------------------------------------------ the source alone


async def test_targets_follow_created_and_deleted_services(kube: FakeKube, tmp_path: Path) -> None:
    rec = Recorder()
    async with running(source_for(kube, tmp_path, rec)) as src:
        # A cluster with only its own "kubernetes" Service: a real, empty answer.
        assert await rec.until(lambda n: True) == []
        for manifest in load_manifests(ARTICLE_SERVICES):
            kube.create_service(manifest)
        names = await rec.until(lambda n: len(n) == 3)
        assert names == ["mcp-server-code", "mcp-server-petstore", "mcp-server-standard"]
        assert {t.spec.url for t in rec.calls[-1]} == {  # type: ignore[union-attr]
            f"http://{n}.default.svc.cluster.local:8080/mcp" for n in names
        }

        kube.delete_service("mcp-server-standard")
        assert await rec.until(lambda n: len(n) == 2) == ["mcp-server-code", "mcp-server-petstore"]

        # A change that does not change any target (a label) is not handed on.
        before = len(rec.calls)
        kube.update_service("mcp-server-code", labels={"tier": "gold"})
        kube.update_service("mcp-server-code", annotations={"kgateway.dev/mcp-path": "/v2"})
        await rec.until(lambda n: rec.calls[-1][0].spec.url.endswith("/v2"))  # type: ignore[union-attr]
        assert len(rec.calls) == before + 1
        assert src.status()["state"] == "watching"

    # One list, then a watch from exactly its resourceVersion, asking for bookmarks.
    [first_list] = lists(kube)
    assert first_list["limit"] == "500"
    first_watch = watches(kube)[0]
    assert first_watch["allowWatchBookmarks"] in ("true", "True")
    assert int(first_watch["resourceVersion"]) > 100
    assert "timeoutSeconds" in first_watch
    assert not watches(kube, "/api/v1/namespaces")  # from: All needs no namespace labels


async def test_a_relabelled_namespace_is_added_and_removed(kube: FakeKube, tmp_path: Path) -> None:
    kube.create_namespace("team-a")
    kube.create_service(service("alpha", "team-a"))
    kube.create_service(service("beta", "default"))
    rec = Recorder()
    selector = {"matchLabels": {"shared-agent-gateway-access": "true"}}
    src = source_for(kube, tmp_path, rec, namespaces={"from": "Selector", "selector": selector})
    async with running(src):
        assert await rec.until(lambda n: True) == []
        kube.relabel_namespace("team-a", {"shared-agent-gateway-access": "true"})
        assert await rec.until(lambda n: n == ["alpha"]) == ["alpha"]
        kube.relabel_namespace("default", {"shared-agent-gateway-access": "true"})
        assert await rec.until(lambda n: len(n) == 2) == ["alpha", "beta"]
        kube.relabel_namespace("team-a", {})
        assert await rec.until(lambda n: n == ["beta"]) == ["beta"]
        # A new namespace that matches from birth, and a Service created in it.
        kube.create_namespace("team-c", {"shared-agent-gateway-access": "true"})
        kube.create_service(service("gamma", "team-c"))
        assert await rec.until(lambda n: "gamma" in n) == ["beta", "gamma"]
        kube.delete_namespace("team-c")
        assert await rec.until(lambda n: n == ["beta"]) == ["beta"]
    assert watches(kube, "/api/v1/namespaces"), "namespaces are watched for their labels"


async def test_same_namespace_uses_a_namespaced_watch(kube: FakeKube, tmp_path: Path) -> None:
    kube.create_namespace("mcp")
    kube.create_service(service("inside", "mcp"))
    kube.create_service(service("outside", "default"))
    rec = Recorder()
    src = source_for(kube, tmp_path, rec, namespace="mcp", namespaces={"from": "Same"})
    async with running(src):
        assert await rec.until(lambda n: True) == ["inside"]
        await eventually(lambda: kube.watch_count("services") == 1)
    assert lists(kube, "/api/v1/namespaces/mcp/services")
    assert watches(kube, "/api/v1/namespaces/mcp/services")
    assert not lists(kube) and not watches(kube)  # nothing cluster-wide: a Role suffices


async def test_dropped_watches_resume_from_the_last_resource_version(
    kube: FakeKube, tmp_path: Path
) -> None:
    rec = Recorder()
    async with running(source_for(kube, tmp_path, rec)):
        await rec.until(lambda n: True)
        for round_ in range(3):
            await eventually(lambda: kube.watch_count("services") == 1)
            rv = kube.resource_version
            await kube.drop_watches()
            name = f"after-drop-{round_}"
            kube.create_service(service(name))  # while the watch is down
            await rec.until(lambda n: name in n)  # noqa: B023 - awaited in this iteration
            resumed = watches(kube)[-1]
            assert resumed["resourceVersion"] == rv, "the watch resumes; nothing is relisted"
        assert len(lists(kube)) == 1


async def test_410_gone_relists(kube: FakeKube, tmp_path: Path) -> None:
    kube.create_service(service("old"))
    rec = Recorder()
    async with running(source_for(kube, tmp_path, rec)):
        assert await rec.until(lambda n: True) == ["old"]
        await eventually(lambda: kube.watch_count("services") == 1)

        # 1. Compaction while watching: the open watch gets ERROR 410 and ends.
        kube.expire_history()
        await eventually(lambda: len(lists(kube)) == 2)
        kube.create_service(service("new"))
        assert await rec.until(lambda n: "new" in n) == ["new", "old"]

        # 2. Compaction while away: resuming gets 410; only the relist can show a
        # deletion that happened meanwhile.
        await kube.stop()
        kube.delete_service("old")
        kube.expire_history()
        await kube.start()
        assert await rec.until(lambda n: "old" not in n) == ["new"]
        assert len(lists(kube)) == 3


async def test_bookmarks_move_the_resume_point(kube: FakeKube, tmp_path: Path) -> None:
    kube.create_namespace("mcp")
    rec = Recorder()
    src = source_for(kube, tmp_path, rec, namespace="mcp", namespaces={"from": "Same"})
    async with running(src):
        await rec.until(lambda n: True)
        await eventually(lambda: kube.watch_count("services") == 1)
        watched_from = int(watches(kube, "/api/v1/namespaces/mcp/services")[-1]["resourceVersion"])
        for i in range(5):  # writes elsewhere move the cluster's resourceVersion
            kube.create_service(service(f"elsewhere-{i}", "default"))
        kube.bookmark()
        await eventually(
            lambda: src.status()["watches"]["services"]["resourceVersion"] == kube.resource_version
        )
        assert int(kube.resource_version) > watched_from
        await kube.drop_watches()
        await eventually(lambda: len(watches(kube, "/api/v1/namespaces/mcp/services")) == 2)
        assert (
            watches(kube, "/api/v1/namespaces/mcp/services")[-1]["resourceVersion"]
            == kube.resource_version
        )


async def test_unreachable_server_keeps_the_last_targets(kube: FakeKube, tmp_path: Path) -> None:
    kube.create_service(service("keep-me"))
    rec = Recorder()
    async with running(source_for(kube, tmp_path, rec)) as src:
        assert await rec.until(lambda n: True) == ["keep-me"]
        calls = len(rec.calls)
        await kube.stop()
        await eventually(lambda: src.status()["state"] == "error")
        assert "unreachable" in (src.status()["lastError"] or "")
        await asyncio.sleep(1.0)  # many reconnect attempts (backoff 0.05..0.2 s)
        assert len(rec.calls) == calls, "nothing is handed on while the server is away"
        assert src.status()["targets"] == ["keep-me"]

        kube.create_service(service("while-away"))  # seen once it is back
        await kube.start()
        assert await rec.until(lambda n: "while-away" in n) == ["keep-me", "while-away"]
        await eventually(lambda: src.status()["state"] == "watching")
        assert all(call for call in rec.calls), "never an empty list because of an outage"


async def test_unreachable_from_the_start_hands_on_nothing(tmp_path: Path) -> None:
    kube = FakeKube()  # never started: its port refuses connections
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        kube.port = sock.getsockname()[1]
    rec = Recorder()
    async with running(source_for(kube, tmp_path, rec)) as src:
        await eventually(lambda: src.status()["state"] == "error")
        await asyncio.sleep(0.5)
        assert rec.calls == []


async def test_a_wrong_token_is_reported(kube: FakeKube, tmp_path: Path) -> None:
    rec = Recorder()
    path = kube.kubeconfig(tmp_path / "kubeconfig")
    path.write_text(path.read_text().replace(kube.token, "wrong-token"))
    cfg = KubernetesDiscoveryConfig(kubeconfig=str(path))
    async with running(KubernetesSource(cfg, rec, **FAST)) as src:  # type: ignore[arg-type]
        await eventually(lambda: "401" in (src.status()["lastError"] or ""))
        assert rec.calls == []
        # The token is rotated in the file (as kubelet does for service accounts):
        # the source reloads its credentials after a 401 and carries on.
        path.write_text(path.read_text().replace("wrong-token", kube.token))
        assert await rec.until(lambda n: True) == []


async def test_large_lists_are_paged(kube: FakeKube, tmp_path: Path) -> None:
    for i in range(7):
        kube.create_service(service(f"svc-{i}"))
    rec = Recorder()
    path = kube.kubeconfig(tmp_path / "kubeconfig")
    cfg = KubernetesDiscoveryConfig(kubeconfig=str(path))
    async with running(KubernetesSource(cfg, rec, page_size=3, **FAST)):  # type: ignore[arg-type]
        assert len(await rec.until(lambda n: True)) == 7
    pages = lists(kube)
    assert len(pages) == 3 and "continue" in pages[1] and "continue" in pages[2]


async def test_kubeconfig_env_is_honoured(
    kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.create_service(service("via-env"))
    path = kube.kubeconfig(tmp_path / "from-env")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")  # a list, as kubectl takes
    rec = Recorder()
    async with running(KubernetesSource(KubernetesDiscoveryConfig(), rec, **FAST)) as src:  # type: ignore[arg-type]
        assert src.kubeconfig_path() == f"{tmp_path / 'missing'}:{path}"
        assert await rec.until(lambda n: True) == ["via-env"]


def test_in_cluster_is_chosen_inside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ignore(_: list[TargetConfig]) -> None:
        pass

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBECONFIG", "/somewhere/else")
    assert KubernetesSource(KubernetesDiscoveryConfig(), ignore).kubeconfig_path() is None
    explicit = KubernetesDiscoveryConfig(kubeconfig="~/k.yaml")
    assert KubernetesSource(explicit, ignore).kubeconfig_path() == os.path.expanduser("~/k.yaml")


# -------------------------------------------------- the article, through mcpmux


@contextlib.contextmanager
def everything_on_free_port(log: Path) -> Any:
    peer = start_everything_http(log)
    try:
        yield peer.url
    finally:
        stop_peer(peer)


def on_loopback(manifest: dict[str, Any], url: str) -> dict[str, Any]:
    """The article's manifest, its port moved to a loopback server's, ClusterIP 127.0.0.1."""
    m = copy.deepcopy(manifest)
    m["spec"]["clusterIP"] = "127.0.0.1"
    m["spec"]["ports"][0]["port"] = urlsplit(url).port
    return m


async def test_article_scenario_through_the_gateway(tmp_path: Path) -> None:
    manifests = {m["metadata"]["name"]: m for m in load_manifests(ARTICLE_SERVICES)}
    with (
        ThreadedFakeKube() as tk,
        everything_on_free_port(tmp_path / "everything.log") as standard_url,
        conformance_backend() as code_url,
        conformance_backend() as petstore_url,
    ):
        kubeconfig = tk.kube.kubeconfig(tmp_path / "kubeconfig")
        selector = {"matchLabels": {"shared-agent-gateway-access": "true"}}
        tk.call(tk.kube.relabel_namespace, "default", {"shared-agent-gateway-access": "true"})
        config = {
            "prefix": "always",
            "discovery": {
                "kubernetes": {
                    "kubeconfig": str(kubeconfig),
                    "address": "clusterIP",
                    "namespaces": {"from": "Selector", "selector": selector},
                }
            },
        }
        with run_gateway(config, tmp_path) as gw:
            async with httpx.AsyncClient(timeout=5) as admin:
                await scenario(gw, admin, tk, manifests, (standard_url, code_url, petstore_url))


async def scenario(
    gw: Gateway,
    admin: httpx.AsyncClient,
    tk: ThreadedFakeKube,
    manifests: dict[str, dict[str, Any]],
    urls: tuple[str, str, str],
) -> None:
    standard_url, code_url, petstore_url = urls

    async def targets() -> dict[str, dict[str, Any]]:
        data = (await admin.get(f"{gw.admin_url}/api/targets")).json()
        return {t["name"]: t for t in data["targets"]}

    async def wait_targets(
        check: Callable[[dict[str, dict[str, Any]]], bool],
    ) -> dict[str, Any]:
        with anyio.fail_after(30):
            while True:
                found = await targets()
                if check(found):
                    return found
                await asyncio.sleep(0.05)

    changed = anyio.Event()

    async def on_message(message: object) -> None:
        method = getattr(getattr(message, "root", message), "method", None)
        if method == "notifications/tools/list_changed":
            changed.set()

    async with (
        streamable_http_client(gw.mcp_url) as (read, write),
        ClientSession(read, write, message_handler=on_message) as s,
    ):
        await s.initialize()
        assert (await s.list_tools()).tools == []
        await asyncio.sleep(0.3)  # let the client's GET stream open

        # 1. kubectl apply the article's three Services: their tools appear.
        for name, url in (
            ("mcp-server-standard", standard_url),
            ("mcp-server-code", code_url),
            ("mcp-server-petstore", petstore_url),
        ):
            tk.call(tk.kube.create_service, on_loopback(manifests[name], url))
        found = await wait_targets(
            lambda t: len(t) == 3 and all(x["state"] == "ready" for x in t.values())
        )
        assert {t.get("source") for t in found.values()} == {"kubernetes"}
        kube = (await admin.get(f"{gw.admin_url}/api/discovery")).json()["kubernetes"]
        assert kube["state"] == "watching", kube
        assert sorted(kube["targets"]) == sorted(found), kube
        with anyio.fail_after(10):
            await changed.wait()
        names = {t.name for t in (await s.list_tools()).tools}
        assert {
            "mcp-server-standard_echo",
            "mcp-server-code_test_simple_text",
            "mcp-server-petstore_test_simple_text",
        } <= names
        echo = await s.call_tool("mcp-server-standard_echo", {"message": "hi"})
        assert echo.content[0].text == "Echo: hi"  # type: ignore[union-attr]

        # 2. kubectl delete the everything Service: clients are told, tools go.
        changed = anyio.Event()
        tk.call(tk.kube.delete_service, "mcp-server-standard", "default")
        with anyio.fail_after(10):
            await changed.wait()
        await wait_targets(lambda t: "mcp-server-standard" not in t)
        names = {t.name for t in (await s.list_tools()).tools}
        assert not any(n.startswith("mcp-server-standard_") for n in names)
        assert "mcp-server-code_test_simple_text" in names

        # 3. A namespace gains the label: its Service joins; loses it: leaves.
        tk.call(tk.kube.create_namespace, "team-b")
        extra = on_loopback(manifests["mcp-server-standard"], standard_url)
        extra["metadata"].update(name="extra", namespace="team-b")
        tk.call(tk.kube.create_service, extra)
        await asyncio.sleep(0.5)
        assert "extra" not in await targets()
        changed = anyio.Event()
        tk.call(tk.kube.relabel_namespace, "team-b", {"shared-agent-gateway-access": "true"})
        await wait_targets(lambda t: t.get("extra", {}).get("state") == "ready")
        with anyio.fail_after(10):
            await changed.wait()
        assert "extra_echo" in {t.name for t in (await s.list_tools()).tools}
        changed = anyio.Event()
        tk.call(tk.kube.relabel_namespace, "team-b", {})
        await wait_targets(lambda t: "extra" not in t)
        with anyio.fail_after(10):
            await changed.wait()
        assert not any(t.name.startswith("extra_") for t in (await s.list_tools()).tools)

        # 4. The API server goes away: everything keeps serving.
        tk.run(tk.kube.stop())
        await asyncio.sleep(1.0)
        assert set(await targets()) == {"mcp-server-code", "mcp-server-petstore"}
        res = await s.call_tool("mcp-server-code_test_simple_text", {})
        assert not res.is_error
