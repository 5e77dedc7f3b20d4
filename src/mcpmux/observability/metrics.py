"""Prometheus metrics, one registry per gateway (never the process-global one).

Label values come from the config and a fixed table, never from client input:
``target`` is a configured (or discovered) target name, or ``-`` when the request
named no target (lists, ping) or an unknown one; ``method`` is one of
:data:`METHODS` or ``other``; ``outcome`` one of :data:`OUTCOMES`. Request counts
are plain numbers per (target, method), made once and cached, rendered by a
collector when scraped: a request costs a dict lookup, a bucket scan and four additions
(prometheus-client's own Counter and Histogram take a lock per update, ~1.5 µs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .workers import WorkerMetrics

#: Methods with a label of their own; anything else a client sends counts as "other".
METHODS: Final = frozenset({
    "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get",
    "resources/list", "resources/read", "resources/templates/list", "resources/subscribe",
    "resources/unsubscribe", "completion/complete", "logging/setLevel", "server/discover",
    "subscriptions/listen",
})
OUTCOMES: Final[tuple[str, ...]] = ("ok", "tool_error", "error", "unavailable", "rate_limited", "cancelled", "exception")
#: The ``target`` label of requests that reached no target.
NO_TARGET: Final = "-"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: from sub-millisecond list answers to long tool calls.
BUCKETS: Final[tuple[float, ...]] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


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


class RequestStats:
    """Counts and durations of one (target, method): plain numbers, no locks (the
    gateway is one event loop; ``/metrics`` is read on the same loop)."""

    __slots__ = ("buckets", "count", "outcomes", "sum")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * len(BUCKETS)  # per bucket, not cumulative (summed when scraped)
        self.count = 0
        self.sum = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] += 1
        self.count += 1
        self.sum += seconds
        # The first bound >= seconds, from the smallest: most calls end in the first
        # few buckets, and compiled comparisons cost less than a call to bisect.
        i = 0
        n = len(BUCKETS)
        while i < n and BUCKETS[i] < seconds:
            i += 1
        if i < n:
            self.buckets[i] += 1


class _RequestCollector(Collector):
    def __init__(self, stats: dict[tuple[str, str], RequestStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("mcpmux_requests", "Client requests answered",
                                       labels=["target", "method", "outcome"])
        duration = HistogramMetricFamily("mcpmux_request_duration_seconds", "Time to answer a client request",
                                         labels=["target", "method"])
        for (target, method), st in list(self._stats.items()):
            for outcome, n in st.outcomes.items():
                if n or outcome == "ok":
                    requests.add_metric([target, method, outcome], float(n))
            running, buckets = 0, []
            for bound, n in zip(BUCKETS, st.buckets, strict=True):
                running += n
                buckets.append((_bound(bound), float(running)))
            buckets.append(("+Inf", float(st.count)))
            duration.add_metric([target, method], buckets, st.sum)
        yield requests
        yield duration


def _bound(value: float) -> str:
    return repr(float(value))


class GatewayMetrics:
    def __init__(self, targets: Callable[[], Iterable[Any]], sessions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        #: (target, method) -> its counts; made once per pair, then one dict lookup.
        self.requests: dict[tuple[str, str], RequestStats] = {}
        self.list_changed = Counter("mcpmux_list_changed", "list_changed notifications sent to clients",
                                    ["kind"], registry=self.registry)
        self.discovery = Counter("mcpmux_discovery_updates", "Desired target sets applied, per source",
                                 ["source"], registry=self.registry)
        self.registry.register(_RequestCollector(self.requests))
        self.registry.register(_StateCollector(targets, sessions))
        #: Under ``run --workers N``: the sibling workers whose numbers a scrape adds.
        self.peers: WorkerMetrics | None = None

    def stats(self, target: str, method: str) -> RequestStats:
        key = (target, method)
        got = self.requests.get(key)
        if got is None:
            got = self.requests[key] = RequestStats()
        return got

    def prepare(self, targets: Iterable[str]) -> None:
        """Each target's ``tools/call`` series up front (at zero, so a dashboard has a
        series before the first call); other pairs are made on first use."""
        for t in targets:
            self.stats(t, "tools/call")

    def forget(self, target: str) -> None:
        """A removed target's series go with it (discovery may churn names)."""
        for key in [k for k in self.requests if k[0] == target]:
            del self.requests[key]

    def render(self) -> bytes:
        return generate_latest(self.registry)
