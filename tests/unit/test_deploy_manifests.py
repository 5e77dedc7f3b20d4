"""deploy/kubernetes/: every manifest checked against Kubernetes' own schemas, offline.

Schemas: the ``kubernetes-validate`` package (PyPI) ships the JSON schemas generated
from Kubernetes' OpenAPI for every minor release, in "strict" variants that also
reject unknown fields, so a typo such as ``contianers:`` fails here rather than at
``kubectl apply``. No cluster and no network are needed.

Schemas cannot see how manifests refer to each other (a probe naming a port, a
binding naming a ServiceAccount) or what is inside the ConfigMap, so those are
checked below too, the ConfigMap's config with mcpmux's own parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mcpmux.config import parse_config
from mcpmux.discovery.kubernetes import targets_from

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The oldest minor still commonly run, and the newest the package knows.
VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in manifest_files():
        with open(path, encoding="utf-8") as fh:
            docs.extend(d for d in yaml.safe_load_all(fh) if d)
    return docs


def one(kind: str, name: str = "mcpmux") -> dict[str, Any]:
    [doc] = [d for d in documents() if d["kind"] == kind and (d["metadata"]["name"] == name or kind in SINGLE)]
    return doc


#: Kinds there is one of (whatever its name).
SINGLE = ("ClusterRole", "ClusterRoleBinding", "ConfigMap", "Namespace", "ServiceAccount")


def test_the_expected_resources_are_there() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in documents())
    assert kinds == [
        ("ClusterRole", "mcpmux-discovery"),
        ("ClusterRoleBinding", "mcpmux-discovery"),
        ("ConfigMap", "mcpmux-config"),
        ("Deployment", "mcpmux"),
        ("Deployment", "mcpmux-redis"),
        ("Namespace", "mcpmux"),
        ("Service", "mcpmux"),
        ("Service", "mcpmux-redis"),
        ("ServiceAccount", "mcpmux"),
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_matches_the_kubernetes_schema(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_does_catch_mistakes() -> None:
    bad = yaml.safe_load(yaml.safe_dump(one("Deployment")))
    spec = bad["spec"]["template"]["spec"]
    spec["contianers"] = spec.pop("containers")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)
    bad = yaml.safe_load(yaml.safe_dump(one("Service")))
    bad["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]


def test_namespaced_resources_live_in_the_mcpmux_namespace() -> None:
    for doc in documents():
        if doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == one("Namespace")["metadata"]["name"], doc["kind"]


def test_rbac_is_read_only_services_and_namespaces() -> None:
    role = one("ClusterRole")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["services", "namespaces"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one("ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"],
        }
    ]


def test_deployment_wiring() -> None:
    deploy = one("Deployment")
    pod = deploy["spec"]["template"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    spec = pod["spec"]
    assert spec["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    [container] = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"mcp": 8080, "admin": 19000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # The config file the container is told to read is the ConfigMap's key, mounted
    # as a directory (a subPath mount would never see edits).
    assert container["args"] == ["run", "-c", "/etc/mcpmux/mcpmux.yaml"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/mcpmux"]
    assert "subPath" not in mount
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    configmap = one("ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert "mcpmux.yaml" in configmap["data"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_service_reaches_the_pods_and_is_not_a_target_itself() -> None:
    service = one("Service")
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("mcp", 8080, "mcp"),
        ("admin", 19000, "admin"),
    }
    # An MCP appProtocol here would make mcpmux discover (and proxy) itself.
    config = parse_config(one("ConfigMap")["data"]["mcpmux.yaml"], env={}).discovery.kubernetes
    assert config is not None
    assert targets_from([service], [one("Namespace")], config, own="mcpmux") == []


def test_configmap_holds_a_valid_config_with_kubernetes_discovery() -> None:
    text = one("ConfigMap")["data"]["mcpmux.yaml"]
    config = parse_config(text, "configmap.yaml", env={})
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8080)
    assert (config.admin.host, config.admin.port) == ("0.0.0.0", 19000)
    kube = config.discovery.kubernetes
    assert kube is not None
    assert kube.kubeconfig is None  # the pod's service account
    assert kube.namespaces.from_ == "All"
    assert kube.address == "dns"


def test_replicas_share_sessions_through_the_redis_service() -> None:
    assert one("Deployment")["spec"]["replicas"] == 2
    config = parse_config(one("ConfigMap")["data"]["mcpmux.yaml"], "configmap.yaml", env={})
    assert config.state is not None
    redis = one("Service", "mcpmux-redis")
    namespace = redis["metadata"]["namespace"]
    port = redis["spec"]["ports"][0]["port"]
    assert config.state.redis_url == f"redis://{redis['metadata']['name']}.{namespace}.svc.cluster.local:{port}/0"
    pods = one("Deployment", "mcpmux-redis")["spec"]["template"]["metadata"]["labels"]
    assert redis["spec"]["selector"].items() <= pods.items()
    # The gateway's Service must not select Redis pods (nor Redis's the gateway's).
    assert not one("Service")["spec"]["selector"].items() <= pods.items()
