"""The ``discovery:`` section of the config: defaults, the issue's example, and errors."""

from __future__ import annotations

import pytest

from mcpmux.config import (
    ConfigError,
    GatewayConfig,
    KubernetesDiscoveryConfig,
    LabelSelector,
    NamespacesConfig,
    parse_config,
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", {})
    return info.value.errors


def only_error(text: str) -> str:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


def test_discovery_is_off_by_default() -> None:
    assert GatewayConfig().discovery.kubernetes is None
    assert parse_config("discovery: {}", env={}).discovery.kubernetes is None
    # An empty value means "use the default", as everywhere in the file: still off.
    assert parse_config("discovery:\n  kubernetes:\n", env={}).discovery.kubernetes is None


def test_an_empty_kubernetes_mapping_enables_it_with_defaults() -> None:
    kube = parse_config("discovery: {kubernetes: {}}", env={}).discovery.kubernetes
    assert kube == KubernetesDiscoveryConfig()
    assert kube.kubeconfig is None
    assert kube.namespace is None
    assert kube.namespaces.from_ == "All"
    assert kube.namespaces.selector is None
    assert kube.address == "dns"
    assert kube.cluster_domain == "cluster.local"


def test_the_issue_example_parses() -> None:
    text = """\
discovery:
  kubernetes:
    kubeconfig: null            # null = in-cluster service account, else a kubeconfig path
    namespaces:                 # which namespaces' Services may become targets
      from: All                 # All | Same | Selector
      selector:
        matchLabels: {shared-agent-gateway-access: "true"}
        matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [default]}]
    address: dns                # dns ({svc}.{ns}.svc.cluster.local) | clusterIP
"""
    kube = parse_config(text, env={}).discovery.kubernetes
    assert kube is not None
    assert kube.kubeconfig is None
    assert kube.namespaces.from_ == "All"  # the selector is kept but only used with Selector
    selector = kube.namespaces.selector
    assert selector is not None
    assert selector.match_labels == {"shared-agent-gateway-access": "true"}
    [req] = selector.match_expressions
    assert (req.key, req.operator, req.values) == ("kubernetes.io/metadata.name", "In", ["default"])
    assert kube.address == "dns"


def test_every_field_set() -> None:
    text = """\
discovery:
  kubernetes:
    kubeconfig: /etc/mcpmux/kubeconfig
    namespace: mcp-system
    namespaces:
      from: Selector
      selector:
        matchExpressions:
          - {key: team, operator: NotIn, values: [legacy]}
          - {key: mcp, operator: Exists}
          - {key: blocked, operator: DoesNotExist}
    address: clusterIP
    cluster_domain: corp.internal
"""
    kube = parse_config(text, env={}).discovery.kubernetes
    assert kube is not None
    assert kube.kubeconfig == "/etc/mcpmux/kubeconfig"
    assert kube.namespace == "mcp-system"
    assert kube.namespaces.from_ == "Selector"
    assert kube.namespaces.selector is not None
    assert [r.operator for r in kube.namespaces.selector.match_expressions] == [
        "NotIn",
        "Exists",
        "DoesNotExist",
    ]
    assert kube.address == "clusterIP"
    assert kube.cluster_domain == "corp.internal"


def test_env_interpolation_works_in_discovery() -> None:
    text = "discovery:\n  kubernetes:\n    kubeconfig: ${KCFG}\n    namespace: ${NS:-default}\n"
    kube = parse_config(text, env={"KCFG": "/k/config"}).discovery.kubernetes
    assert kube is not None
    assert (kube.kubeconfig, kube.namespace) == ("/k/config", "default")


def test_python_construction_by_field_name() -> None:
    ns = NamespacesConfig(from_="Selector", selector=LabelSelector(match_labels={"a": "b"}))
    assert ns.from_ == "Selector"
    assert NamespacesConfig.model_validate({"from": "Same"}).from_ == "Same"
    dumped = ns.model_dump(by_alias=True)
    assert dumped["from"] == "Selector"
    assert dumped["selector"]["matchLabels"] == {"a": "b"}


def test_numbers_in_label_values_become_strings() -> None:
    text = """\
discovery:
  kubernetes:
    namespaces:
      from: Selector
      selector:
        matchLabels: {version: 2}
        matchExpressions: [{key: tier, operator: In, values: [1, 2]}]
"""
    kube = parse_config(text, env={}).discovery.kubernetes
    assert kube is not None and kube.namespaces.selector is not None
    assert kube.namespaces.selector.match_labels == {"version": "2"}
    assert kube.namespaces.selector.match_expressions[0].values == ["1", "2"]


# ------------------------------------------------------------------- errors


def test_selector_mode_needs_a_selector() -> None:
    text = "discovery:\n  kubernetes:\n    namespaces:\n      from: Selector\n"
    assert only_error(text) == (
        "discovery.kubernetes.namespaces: 'from: Selector' needs a 'selector' "
        "(matchLabels and/or matchExpressions) (line 3)"
    )


def test_unknown_keys_get_suggestions_using_the_file_spelling() -> None:
    assert only_error("discovery:\n  kubernets: {}\n") == (
        "discovery.kubernets: unknown field (did you mean 'kubernetes'?) (line 2)"
    )
    assert only_error("discovery:\n  kubernetes:\n    namespaces: {form: All}\n") == (
        "discovery.kubernetes.namespaces.form: unknown field (did you mean 'from'?) (line 3)"
    )
    text = "discovery:\n  kubernetes:\n    namespaces:\n      from: Selector\n      selector:\n        matchLabel: {a: b}\n"
    assert only_error(text) == (
        "discovery.kubernetes.namespaces.selector.matchLabel: unknown field "
        "(did you mean 'matchLabels'?) (line 6)"
    )
    assert only_error("discovery:\n  kubernetes:\n    clusterDomain: x\n") == (
        "discovery.kubernetes.clusterDomain: unknown field (did you mean 'cluster_domain'?) (line 3)"
    )


def test_bad_values() -> None:
    text = """\
discovery:
  kubernetes:
    namespace: Team_A
    address: ip
    cluster_domain: "a..b"
    namespaces:
      from: Elsewhere
"""
    assert errors_of(text) == [
        "discovery.kubernetes.namespace: must be a DNS-1123 label (a Kubernetes namespace name), "
        "got 'Team_A' (line 3)",
        "discovery.kubernetes.address: must be one of 'dns' or 'clusterIP', got 'ip' (line 4)",
        "discovery.kubernetes.cluster_domain: must be a DNS name such as 'cluster.local', "
        "got 'a..b' (line 5)",
        "discovery.kubernetes.namespaces.from: must be one of 'All', 'Same' or 'Selector', "
        "got 'Elsewhere' (line 7)",
    ]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("{key: a, operator: In}", "operator In needs a non-empty 'values' list"),
        ("{key: a, operator: NotIn, values: []}", "operator NotIn needs a non-empty 'values' list"),
        ("{key: a, operator: Exists, values: [x]}", "operator Exists takes no 'values'"),
        (
            "{key: a, operator: DoesNotExist, values: [x]}",
            "operator DoesNotExist takes no 'values'",
        ),
        (
            "{key: a, operator: Equals, values: [x]}",
            "must be one of 'In', 'NotIn', 'Exists' or 'DoesNotExist', got 'Equals'",
        ),
        ("{key: '', operator: Exists}", "must not be empty"),
        ("{operator: Exists}", "required field is missing"),
    ],
)
def test_bad_match_expressions(expr: str, message: str) -> None:
    text = (
        "discovery:\n  kubernetes:\n    namespaces:\n      from: Selector\n      selector:\n"
        f"        matchExpressions: [{expr}]\n"
    )
    error = only_error(text)
    assert error.startswith("discovery.kubernetes.namespaces.selector.matchExpressions[0]"), error
    assert message in error
    assert error.endswith("(line 6)")


def test_label_values_must_be_strings() -> None:
    text = (
        "discovery:\n  kubernetes:\n    namespaces:\n      from: Selector\n"
        "      selector: {matchLabels: {shared-agent-gateway-access: true}}\n"
    )
    assert only_error(text) == (
        "discovery.kubernetes.namespaces.selector.matchLabels.shared-agent-gateway-access: "
        "expected a string, got True (quote it) (line 5)"
    )


def test_empty_kubeconfig_is_an_error() -> None:
    assert only_error('discovery:\n  kubernetes:\n    kubeconfig: ""\n') == (
        "discovery.kubernetes.kubeconfig: must not be empty (line 3)"
    )
