"""The pure Kubernetes discovery rules: Services and Namespaces in, targets out.

Objects are built by the fake API server's store (``FakeKube.create_service``), so
they carry what the real API server adds (uid, resourceVersion, ClusterIP, port
defaults); no server is started here.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_kube import ARTICLE_SERVICES, FakeKube, load_manifests

from mcpmux.config import KubernetesDiscoveryConfig, LabelSelector
from mcpmux.discovery import kubernetes as kube_mod
from mcpmux.discovery.kubernetes import (
    namespace_allowed,
    own_namespace,
    selector_matches,
    targets_from,
)

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def cfg(**fields: Any) -> KubernetesDiscoveryConfig:
    return KubernetesDiscoveryConfig.model_validate(fields)


def svc(
    name: str,
    ns: str = "default",
    *,
    ports: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    cluster_ip: str | None = None,
    type_: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ports": ports or [{"appProtocol": "kgateway.dev/mcp", "port": 8080, "protocol": "TCP"}]
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    if type_:
        spec["type"] = type_
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def store(
    *services: dict[str, Any], namespaces: dict[str, dict[str, str]] | None = None
) -> FakeKube:
    kube = FakeKube()
    for name, labels in (namespaces or {}).items():
        if name in ("default", "kube-system"):
            kube.relabel_namespace(name, labels)
        else:
            kube.create_namespace(name, labels)
    for s in services:
        ns = s["metadata"]["namespace"]
        if ns not in {n["metadata"]["name"] for n in namespaces_of(kube)}:
            kube.create_namespace(ns)
        kube.create_service(s)
    return kube


def namespaces_of(kube: FakeKube) -> list[dict[str, Any]]:
    return [dict(o) for o in kube._objects["namespaces"].values()]


def discover(
    kube: FakeKube, config: KubernetesDiscoveryConfig, own: str = "default"
) -> dict[str, str]:
    """name → url of every discovered target (asserting each is a valid label)."""
    targets = targets_from(kube.services(), namespaces_of(kube), config, own=own)
    out = {}
    for t in targets:
        assert len(t.name) <= 63 and LABEL.match(t.name), t.name
        out[t.name] = t.spec.url  # type: ignore[union-attr]
    assert list(out) == sorted(out), "targets come sorted by name"
    return out


# ---------------------------------------------------------------- the article


def test_article_services_are_discovered_exactly_as_written() -> None:
    manifests = load_manifests(ARTICLE_SERVICES)
    assert [m["metadata"]["name"] for m in manifests] == [
        "mcp-server-standard",
        "mcp-server-code",
        "mcp-server-petstore",
    ]
    kube = FakeKube()  # it also holds the cluster's own "kubernetes" Service (no appProtocol)
    for m in manifests:
        kube.create_service(m)
    targets = targets_from(kube.services(), namespaces_of(kube), cfg(), own="default")
    # `kgateway.dev/mcp` with no path annotation: streamable HTTP at /mcp is probed first,
    # then legacy SSE at /sse (the article's everything server runs `start:sse`).
    assert [(t.name, t.kind, t.spec.url, t.sse_url) for t in targets] == [  # type: ignore[union-attr]
        (
            f"mcp-server-{n}",
            "url",
            f"http://mcp-server-{n}.default.svc.cluster.local:8080/mcp",
            f"http://mcp-server-{n}.default.svc.cluster.local:8080/sse",
        )
        for n in ("code", "petstore", "standard")
    ]
    # The Service port, not the targetPort (3001): traffic goes through the Service.
    ips = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in kube.services()}
    by_ip = discover(kube, cfg(address="clusterIP"))
    assert by_ip == {
        name: f"http://{ips[name]}:8080/mcp"
        for name in ("mcp-server-code", "mcp-server-petstore", "mcp-server-standard")
    }


def test_article_services_with_the_articles_selectors() -> None:
    manifests = load_manifests(ARTICLE_SERVICES)
    kube = FakeKube()
    for m in manifests:
        kube.create_service(m)
    by_name = cfg(
        namespaces={
            "from": "Selector",
            "selector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["default"]}
                ]
            },
        }
    )
    assert len(discover(kube, by_name)) == 3
    by_label = cfg(
        namespaces={
            "from": "Selector",
            "selector": {"matchLabels": {"shared-agent-gateway-access": "true"}},
        }
    )
    assert discover(kube, by_label) == {}
    kube.relabel_namespace("default", {"shared-agent-gateway-access": "true"})
    assert len(discover(kube, by_label)) == 3


# ------------------------------------------------------------ kinds and paths


@pytest.mark.parametrize(
    ("protocol", "kind", "path"),
    [
        ("kgateway.dev/mcp", "url", "/mcp"),
        ("agentgateway.dev/mcp", "url", "/mcp"),
        ("kgateway.dev/mcp-sse", "sse", "/sse"),
        ("agentgateway.dev/mcp-sse", "sse", "/sse"),
        ("kgateway.dev/a2a", "a2a", ""),
        ("agentgateway.dev/a2a", "a2a", ""),
    ],
)
def test_app_protocols(protocol: str, kind: str, path: str) -> None:
    kube = store(svc("s", ports=[{"appProtocol": protocol, "port": 9000}]))
    [target] = targets_from(kube.services(), [], cfg(), own="default")
    assert target.kind == kind
    assert target.spec.url == f"http://s.default.svc.cluster.local:9000{path}"  # type: ignore[union-attr]


def test_ports_without_an_mcp_app_protocol_are_ignored() -> None:
    kube = store(
        svc("plain", ports=[{"port": 80}]),
        svc("grpc", ports=[{"appProtocol": "kubernetes.io/h2c", "port": 80}]),
        svc("upper", ports=[{"appProtocol": "KGATEWAY.DEV/MCP", "port": 80}]),
    )
    assert discover(kube, cfg()) == {}


def test_a2a_services_are_agents() -> None:
    kube = store(
        svc("agent", ports=[{"appProtocol": "kgateway.dev/a2a", "port": 9090}],
            annotations={"kgateway.dev/a2a-path": "base", "kgateway.dev/mcp-path": "/not-for-agents"}),
        svc("both", ports=[{"name": "mcp", "appProtocol": "kgateway.dev/mcp", "port": 80},
                           {"name": "a2a", "appProtocol": "agentgateway.dev/a2a", "port": 9090}]),
    )
    targets = {t.name: t for t in targets_from(kube.services(), [], cfg(), own="default")}
    assert sorted(targets) == ["agent", "both-a2a", "both-mcp"]
    agent = targets["agent"]
    assert agent.kind == "a2a" and agent.a2a is not None
    assert (agent.a2a.name, agent.a2a.url) == ("agent", "http://agent.default.svc.cluster.local:9090/base")
    assert targets["both-a2a"].kind == "a2a" and targets["both-mcp"].kind == "url"


def test_path_annotations() -> None:
    kube = store(
        svc("a", annotations={"agentgateway.dev/mcp-path": "/v1/mcp"}),
        svc("k", annotations={"kgateway.dev/mcp-path": "/custom"}),
        svc(
            "both",
            annotations={"agentgateway.dev/mcp-path": "/ag", "kgateway.dev/mcp-path": "/kg"},
        ),
        svc("rel", annotations={"kgateway.dev/mcp-path": "no-slash"}),
        svc("empty", annotations={"agentgateway.dev/mcp-path": ""}),
        svc(
            "sse",
            ports=[{"appProtocol": "agentgateway.dev/mcp-sse", "port": 8080}],
            annotations={"kgateway.dev/mcp-path": "/events"},
        ),
    )
    urls = discover(kube, cfg())
    assert urls == {
        "a": "http://a.default.svc.cluster.local:8080/v1/mcp",
        "both": "http://both.default.svc.cluster.local:8080/ag",  # agentgateway.dev wins
        "empty": "http://empty.default.svc.cluster.local:8080/mcp",  # empty = default
        "k": "http://k.default.svc.cluster.local:8080/custom",
        "rel": "http://rel.default.svc.cluster.local:8080/no-slash",
        "sse": "http://sse.default.svc.cluster.local:8080/events",
    }


def test_target_name_annotation() -> None:
    kube = store(
        svc("mcp-server-standard", annotations={"agentgateway.dev/mcp-target-name": "everything"}),
        svc("bad", annotations={"agentgateway.dev/mcp-target-name": "Not_A_Label"}),
    )
    urls = discover(kube, cfg())
    # The URL still uses the Service name; only the target (tool prefix) is renamed.
    assert urls == {"everything": "http://mcp-server-standard.default.svc.cluster.local:8080/mcp"}


def test_several_mcp_ports_give_one_target_per_port() -> None:
    kube = store(
        svc(
            "multi",
            ports=[
                {"name": "web", "port": 80},
                {"name": "stream", "appProtocol": "kgateway.dev/mcp", "port": 8080},
                {"name": "legacy", "appProtocol": "kgateway.dev/mcp-sse", "port": 8081},
            ],
        ),
        svc(
            "single",  # one MCP port among others: no suffix
            ports=[
                {"name": "metrics", "port": 9090},
                {"name": "mcp", "appProtocol": "agentgateway.dev/mcp", "port": 8080},
            ],
        ),
    )
    urls = discover(kube, cfg())
    assert urls == {
        "multi-legacy": "http://multi.default.svc.cluster.local:8081/sse",
        "multi-stream": "http://multi.default.svc.cluster.local:8080/mcp",
        "single": "http://single.default.svc.cluster.local:8080/mcp",
    }


def test_deleting_services_are_skipped() -> None:
    s = svc("going")
    s["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert targets_from([s], [], cfg(), own="default") == []


# -------------------------------------------------------------------- address


def test_cluster_ip_and_dns_addresses() -> None:
    kube = store(
        svc("v4", cluster_ip="10.96.7.7", ports=[{"appProtocol": "kgateway.dev/mcp", "port": 81}]),
        svc("v6", cluster_ip="fd00::1234", ports=[{"appProtocol": "kgateway.dev/mcp", "port": 82}]),
        svc("headless", cluster_ip="None"),
    )
    assert discover(kube, cfg(address="clusterIP")) == {
        "v4": "http://10.96.7.7:81/mcp",
        "v6": "http://[fd00::1234]:82/mcp",
    }
    assert discover(kube, cfg(cluster_domain="example.internal")) == {
        "v4": "http://v4.default.svc.example.internal:81/mcp",
        "v6": "http://v6.default.svc.example.internal:82/mcp",
    }


def test_external_name_services_need_dns_mode() -> None:
    kube = store(svc("ext", type_="ExternalName"))
    assert "clusterIP" not in kube.services()[-1]["spec"]
    assert discover(kube, cfg(address="clusterIP")) == {}
    assert discover(kube, cfg()) == {"ext": "http://ext.default.svc.cluster.local:8080/mcp"}


# ----------------------------------------------------------------- name clashes


def test_same_name_in_two_namespaces_own_namespace_keeps_it() -> None:
    kube = store(svc("tools", "alpha"), svc("tools", "default"), svc("tools", "zeta"))
    assert discover(kube, cfg(), own="default") == {
        "tools": "http://tools.default.svc.cluster.local:8080/mcp",
        "tools-alpha": "http://tools.alpha.svc.cluster.local:8080/mcp",
        "tools-zeta": "http://tools.zeta.svc.cluster.local:8080/mcp",
    }


def test_same_name_elsewhere_alphabetically_first_namespace_keeps_it() -> None:
    kube = store(svc("tools", "zeta"), svc("tools", "alpha"), svc("tools", "beta"))
    assert discover(kube, cfg(), own="mcpmux") == {
        "tools": "http://tools.alpha.svc.cluster.local:8080/mcp",
        "tools-beta": "http://tools.beta.svc.cluster.local:8080/mcp",
        "tools-zeta": "http://tools.zeta.svc.cluster.local:8080/mcp",
    }


def test_clash_names_are_independent_of_arrival_order() -> None:
    services = [svc("tools", ns) for ns in ("default", "alpha", "beta")] + [
        svc("x", "beta", annotations={"agentgateway.dev/mcp-target-name": "tools"})
    ]
    kube = store(*services)
    objs = kube.services()
    results = {
        tuple(t.model_dump_json() for t in targets_from(list(p), [], cfg(), own="default"))
        for p in itertools.permutations(objs)
    }
    assert len(results) == 1


def test_long_clash_names_are_shortened_with_a_hash() -> None:
    name = "a-really-long-service-name-for-an-mcp-server-that-is-54"
    ns = "a-namespace-with-a-long-name-too"
    kube = store(svc(name, "default"), svc(name, ns))
    urls = discover(kube, cfg())
    assert name in urls
    [other] = [n for n in urls if n != name]
    assert len(other) == 63
    assert re.fullmatch(r"[-a-z0-9]{54}-[0-9a-f]{8}", other), other
    assert other.startswith(f"{name}-a-namespace"[:54])
    assert urls[other] == f"http://{name}.{ns}.svc.cluster.local:8080/mcp"


def test_a_derived_name_that_is_taken_gets_a_hash() -> None:
    # "tools" in ns "x" would become "tools-x", but a Service is already called that.
    kube = store(svc("tools"), svc("tools", "x"), svc("tools-x"))
    urls = discover(kube, cfg())
    assert urls["tools"].startswith("http://tools.default.")
    assert urls["tools-x"].startswith("http://tools-x.default.")
    [hashed] = [n for n in urls if n not in ("tools", "tools-x")]
    assert re.fullmatch(r"tools-x-[0-9a-f]{8}", hashed)
    assert urls[hashed].startswith("http://tools.x.")


def test_same_name_twice_in_one_namespace() -> None:
    ann = {"agentgateway.dev/mcp-target-name": "shared"}
    kube = store(
        svc("c-svc", annotations=ann), svc("b-svc", annotations=ann), svc("a-svc", annotations=ann)
    )
    urls = discover(kube, cfg())
    assert urls["shared"].startswith("http://a-svc.")  # Service name breaks the tie
    assert urls["shared-default"].startswith("http://b-svc.")
    [third] = [n for n in urls if n not in ("shared", "shared-default")]
    assert re.fullmatch(r"shared-default-[0-9a-f]{8}", third)
    assert urls[third].startswith("http://c-svc.")


def test_port_suffix_that_overflows_is_hashed() -> None:
    name = "s" * 60
    kube = store(
        svc(
            name,
            ports=[
                {"name": "first", "appProtocol": "kgateway.dev/mcp", "port": 1},
                {"name": "second", "appProtocol": "kgateway.dev/mcp", "port": 2},
            ],
        )
    )
    names = list(discover(kube, cfg()))
    assert len(names) == 2 and all(len(n) == 63 for n in names) and names[0] != names[1]


# --------------------------------------------------------------- namespaces


def ns_obj(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {**(labels or {}), "kubernetes.io/metadata.name": name},
        }
    }


def sel(**fields: Any) -> LabelSelector:
    return LabelSelector.model_validate(fields)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),  # an empty selector matches everything
        ({"matchLabels": {"team": "a"}}, {"team": "a"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        ({"matchLabels": {"team": "a", "env": "prod"}}, {"team": "a"}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
            {"team": "b"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]},
            {"team": "c"},
            False,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]},
            {"team": "b"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]},
            {"team": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"team": "a"}, False),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [
                    {"key": "team", "operator": "Exists"},
                    {"key": "tier", "operator": "NotIn", "values": ["legacy"]},
                ],
            },
            {"env": "prod", "team": "x", "tier": "new"},
            True,
        ),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [
                    {"key": "team", "operator": "Exists"},
                    {"key": "tier", "operator": "NotIn", "values": ["legacy"]},
                ],
            },
            {"env": "prod", "team": "x", "tier": "legacy"},
            False,
        ),
    ],
)
def test_selector_operators(
    selector: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    assert selector_matches(sel(**selector), labels) is expected


def test_namespace_modes() -> None:
    index = {"default": ns_obj("default"), "team-a": ns_obj("team-a", {"mcp": "on"})}
    all_ = cfg()
    same = cfg(namespaces={"from": "Same"})
    by_label = cfg(namespaces={"from": "Selector", "selector": {"matchLabels": {"mcp": "on"}}})
    assert namespace_allowed("anything", {}, all_, "default")
    assert namespace_allowed("default", index, same, "default")
    assert not namespace_allowed("team-a", index, same, "default")
    assert namespace_allowed("team-a", index, same, "team-a")
    assert namespace_allowed("team-a", index, by_label, "default")
    assert not namespace_allowed("default", index, by_label, "default")
    assert not namespace_allowed("unknown", index, by_label, "default")  # labels unknown yet


def test_selector_filters_services_by_namespace_labels() -> None:
    kube = store(
        svc("one", "team-a"),
        svc("two", "team-b"),
        svc("three", "default"),
        namespaces={"team-a": {"mcp": "on", "tier": "gold"}, "team-b": {"mcp": "on"}},
    )
    config = cfg(
        namespaces={
            "from": "Selector",
            "selector": {
                "matchLabels": {"mcp": "on"},
                "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}],
            },
        }
    )
    assert list(discover(kube, config)) == ["two"]
    kube.relabel_namespace("team-b", {"mcp": "on", "tier": "silver"})
    assert list(discover(kube, config)) == []
    kube.relabel_namespace("team-a", {"mcp": "on"})
    assert list(discover(kube, config)) == ["one"]


def test_same_namespace_mode() -> None:
    kube = store(svc("here", "mcp"), svc("there", "default"))
    assert list(discover(kube, cfg(namespaces={"from": "Same"}), own="mcp")) == ["here"]


# ------------------------------------------------------------ own namespace


def test_own_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_mod, "SERVICE_ACCOUNT_DIR", tmp_path)
    assert own_namespace(cfg()) == "default"  # no service account file
    (tmp_path / "namespace").write_text("mcp-system\n")
    assert own_namespace(cfg()) == "mcp-system"
    assert own_namespace(cfg(namespace="explicit")) == "explicit"
