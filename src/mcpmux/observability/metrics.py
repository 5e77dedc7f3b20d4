"""Prometheus metrics, one registry per gateway (never the process-global one).

Label values come from the config and a fixed table, never from client input:
``target`` is a configured (or discovered) target name, or ``-`` when the request
named no target (lists, ping) or an unknown one; ``method`` is one of
:data:`METHODS` or ``other``; ``outcome`` one of :data:`OUTCOMES`. Label children
are created once per (target, method) and cached, so a request costs two dict
lookups and two ``inc``/``observe`` calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Methods with a label of their own; anything else a client sends counts as "other".
METHODS = frozenset({
    "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get",
    "resources/list", "resources/read", "resources/templates/list", "resources/subscribe",
    "resources/unsubscribe", "completion/complete", "logging/setLevel", "server/discover",
    "subscriptions/listen",
})
OUTCOMES = ("ok", "tool_error", "error", "unavailable", "rate_limited", "cancelled", "exception")
#: The ``target`` label of requests that reached no target.
NO_TARGET = "-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: from sub-millisecond list answers to long tool calls.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class _StateCollector(Collector):
    """Target state, restarts and sessions, read from the gateway at scrape time."""

    def __init__(self, targets: Callable[[], Iterable[Any]], sessions: Callable[[], int]) -> None:
        self._targets = targets
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mcpmux_target_up", "1 when the target is ready, else 0", labels=["target"])
        state = GaugeMetricFamily("mcpmux_target_state", "1 for the target's current state",
                                  labels=["target", "state"])
        restarts = CounterMetricFamily("mcpmux_upstream_restarts", "Reconnects or restarts of a target "
                                       "after it failed", labels=["target"])
        inflight = GaugeMetricFamily("mcpmux_target_inflight", "Calls in flight to the target", labels=["target"])
        for t in self._targets():
            up.add_metric([t.name], 1.0 if t.ready else 0.0)
            state.add_metric([t.name, t.state], 1.0)
            restarts.add_metric([t.name], float(t.restarts))
            inflight.add_metric([t.name], float(t.inflight))
        sessions = GaugeMetricFamily("mcpmux_sessions", "Client sessions open in this process",
                                     value=float(self._sessions()))
        yield from (up, state, restarts, inflight, sessions)


class GatewayMetrics:
    def __init__(self, targets: Callable[[], Iterable[Any]], sessions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("mcpmux_requests", "Client requests answered",
                                ["target", "method", "outcome"], registry=self.registry)
        self.duration = Histogram("mcpmux_request_duration_seconds", "Time to answer a client request",
                                  ["target", "method"], buckets=BUCKETS, registry=self.registry)
        self.list_changed = Counter("mcpmux_list_changed", "list_changed notifications sent to clients",
                                    ["kind"], registry=self.registry)
        self.discovery = Counter("mcpmux_discovery_updates", "Desired target sets applied, per source",
                                 ["source"], registry=self.registry)
        self.registry.register(_StateCollector(targets, sessions))
        #: (target, method) -> ({outcome: counter child}, histogram child)
        self._children: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}

    def children(self, target: str, method: str) -> tuple[dict[str, Any], Any]:
        """The label children of one (target, method); made once, then a dict lookup."""
        key = (target, method)
        got = self._children.get(key)
        if got is None:
            got = ({o: self.requests.labels(target, method, o) for o in OUTCOMES},
                   self.duration.labels(target, method))
            self._children[key] = got
        return got

    def prepare(self, targets: Iterable[str]) -> None:
        """Create each target's ``tools/call`` children up front (at zero, so a dashboard
        has a series before the first call); other pairs are made once, on first use."""
        for t in targets:
            self.children(t, "tools/call")

    def forget(self, target: str) -> None:
        """A removed target's series go with it (discovery may churn names)."""
        for key in [k for k in self._children if k[0] == target]:
            del self._children[key]
            for o in OUTCOMES:
                self.requests.remove(target, key[1], o)
            self.duration.remove(target, key[1])

    def render(self) -> bytes:
        return generate_latest(self.registry)
