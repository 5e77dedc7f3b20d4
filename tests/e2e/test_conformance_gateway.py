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
    SUITES,
    assert_nothing_lost,
    baseline,
    conformance_backend,
    run_conformance_full,
    server_everything_cmd,
)
from tests.support.gateway import run_gateway


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("conformance-gw") / "backend.log"
    with log.open("w") as stderr, conformance_backend(stderr=stderr) as url:
        yield url


@pytest.fixture(scope="module")
def direct(backend: str) -> dict:
    """Direct baselines, computed once per suite and shared by the gateway variants."""
    return {}


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_single_target(backend: str, direct: dict, alpha: bool, req: str | None, tmp_path: Path) -> None:
    base = baseline(direct, backend, alpha, req)
    with run_gateway({"targets": [{"name": "conformance", "http": {"url": backend}}]}, tmp_path) as gw:
        via = run_conformance_full(gw.mcp_url, alpha=alpha, requirements=req)
        assert_nothing_lost(base, via, gw.log(), floor=31)


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_multiplexed_beside_server_everything(
    backend: str, direct: dict, alpha: bool, req: str | None, tmp_path: Path
) -> None:
    base = baseline(direct, backend, alpha, req)
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
        assert_nothing_lost(base, via, gw.log(), floor=31)
