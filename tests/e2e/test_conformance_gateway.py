"""The official conformance suite through mcpmux, compared check by check with the
same suite run directly against the backend in the same session.

Every check that passes directly must pass through the gateway: with the backend as
the only target, and multiplexed beside server-everything with ``prefix: never`` (so
the suite sees the backend's own names while the gateway merges two servers). With
``--requirements 2026-07-28`` the suite is a modern client, so the multiplexed run also
mixes eras: a 2026 client in front of a dual-era and a handshake-only (stdio) target.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.conformance import (
    ConformanceRun,
    conformance_backend,
    run_conformance_full,
    server_everything_cmd,
)
from tests.support.gateway import run_gateway

SUITES = [
    pytest.param(False, None, id="0.1.16"),
    pytest.param(True, "2025-11-25", id="0.2.0-alpha-2025-11-25"),
    # The stateless protocol (issue 7). The backend is dual-era, so the gateway reaches
    # it with 2026 requests: envelopes, Mcp-* headers regenerated, InputRequiredResult
    # with the backend's requestState sealed inside the gateway's, listen streams.
    # (The suite's tasks-* scenarios fail directly too: the backend has no tasks
    # extension; what fails directly is not compared.)
    pytest.param(True, "2026-07-28", id="0.2.0-alpha-2026-07-28"),
]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("conformance-gw") / "backend.log"
    with log.open("w") as stderr, conformance_backend(stderr=stderr) as url:
        yield url


@pytest.fixture(scope="module")
def direct(backend: str) -> dict[tuple[bool, str | None], ConformanceRun]:
    """Direct baselines, computed once per suite and shared by the gateway variants."""
    return {}


def _baseline(direct: dict, backend: str, alpha: bool, req: str | None) -> ConformanceRun:
    if (alpha, req) not in direct:
        direct[(alpha, req)] = run_conformance_full(backend, alpha=alpha, requirements=req)
    return direct[(alpha, req)]


def _compare(base: ConformanceRun, via: ConformanceRun, log: str) -> None:
    passed = base.with_status("SUCCESS")
    assert len(passed) > 30, f"baseline too small to mean anything:\n{base.failure_report()}"
    lost = [k for k in passed if via.statuses.get(k) != "SUCCESS"]
    details = "\n".join(
        f"  {k}: {via.statuses.get(k)} {next((c.error for c in via.checks if f'{c.scenario}/{c.id}' == k), '') or ''}"
        for k in lost
    )
    assert not lost, f"{len(lost)} checks pass directly but not through mcpmux:\n{details}\n--- gateway log tail:\n{log[-4000:]}"


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_single_target(backend: str, direct: dict, alpha: bool, req: str | None, tmp_path: Path) -> None:
    base = _baseline(direct, backend, alpha, req)
    with run_gateway({"targets": [{"name": "conformance", "http": {"url": backend}}]}, tmp_path) as gw:
        via = run_conformance_full(gw.mcp_url, alpha=alpha, requirements=req)
        _compare(base, via, gw.log())


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_multiplexed_beside_server_everything(
    backend: str, direct: dict, alpha: bool, req: str | None, tmp_path: Path
) -> None:
    base = _baseline(direct, backend, alpha, req)
    cmd = server_everything_cmd("stdio")
    config = {
        "prefix": "never",
        "targets": [
            {"name": "conformance", "http": {"url": backend}},
            {"name": "everything", "stdio": {"command": cmd[0], "args": cmd[1:]}},
        ],
    }
    with run_gateway(config, tmp_path) as gw:
        via = run_conformance_full(gw.mcp_url, alpha=alpha, requirements=req)
        _compare(base, via, gw.log())
