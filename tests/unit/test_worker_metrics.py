"""``/metrics`` under ``run --workers N``: a scrape adds up every worker's numbers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from mcpmux.observability.metrics import GatewayMetrics
from mcpmux.observability.workers import WorkerMetrics, merge


def worker(calls: int, up: bool, sessions: int) -> GatewayMetrics:
    target = SimpleNamespace(name="b", ready=up, state="ready" if up else "failed", restarts=0, inflight=0)
    m = GatewayMetrics(lambda: [target], lambda: sessions)
    for _ in range(calls):
        m.stats("b", "tools/call").record("ok", 0.002)
    m.list_changed.labels("tools").inc()
    return m


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text.decode()) for s in fam.samples}


def test_counters_and_histograms_add_up_and_gauges_follow_their_rule() -> None:
    one, two = worker(3, True, 2), worker(4, False, 5)
    got = samples(merge([one.render(), two.render()]))
    call = (("method", "tools/call"), ("outcome", "ok"), ("target", "b"))
    assert got[("mcpmux_requests_total", call)] == 7
    assert got[("mcpmux_request_duration_seconds_count", (("method", "tools/call"), ("target", "b")))] == 7
    assert got[("mcpmux_request_duration_seconds_bucket",
                (("le", "0.0025"), ("method", "tools/call"), ("target", "b")))] == 7
    assert got[("mcpmux_list_changed_total", (("kind", "tools"),))] == 2
    assert got[("mcpmux_sessions", ())] == 7  # summed
    assert got[("mcpmux_target_up", (("target", "b"),))] == 0  # up only where every worker reaches it
    assert got[("mcpmux_target_state", (("state", "failed"), ("target", "b")))] == 1
    assert got[("mcpmux_target_state", (("state", "ready"), ("target", "b")))] == 1
    assert got[("mcpmux_workers", ())] == 2
    created = [v for (name, _), v in samples(one.render()).items() if name == "mcpmux_list_changed_created"]
    assert got[("mcpmux_list_changed_created", (("kind", "tools"),))] == min(created)


async def test_a_scrape_reads_live_siblings_and_skips_a_dead_one(tmp_path: Path) -> None:
    one, two = worker(1, True, 0), worker(10, True, 0)
    a = WorkerMetrics(tmp_path, one.render, name="a")
    b = WorkerMetrics(tmp_path, two.render, name="b")
    await a.start()
    await b.start()
    (tmp_path / "gone.sock").touch()  # a worker that died and left its socket file
    try:
        call = ("mcpmux_requests_total", (("method", "tools/call"), ("outcome", "ok"), ("target", "b")))
        for side in (a, b):  # whichever worker the scrape reaches
            got = samples(await side.render_all())
            assert got[call] == 11 and got[("mcpmux_workers", ())] == 2
        assert oct((tmp_path / "a.sock").stat().st_mode & 0o777) == "0o600"
    finally:
        await asyncio.gather(a.aclose(), b.aclose())
    assert not (tmp_path / "a.sock").exists() and not (tmp_path / "b.sock").exists()
