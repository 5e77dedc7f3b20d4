"""The conformance suites against server-everything, directly and through mcpmux,
compared check by check.

server-everything is not a conformance backend (it lacks the suite's ``test_*`` tools,
so most checks fail directly); what it does pass (the handshake, lists, pagination,
ping, its own tools and resources where the suite's names match, the 2026 probes it
answers) must pass through the gateway too: with it as the only target, and
multiplexed beside the project's own backend (``prefix: never``, server-everything as
``fallback_target`` for the names and URIs the suite uses that no target lists, such
as its subscription to ``test://watched-resource``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import HttpPeer
from tests.support.conformance import (
    SUITES,
    assert_nothing_lost,
    baseline,
    conformance_backend,
    run_conformance_full,
)
from tests.support.gateway import run_gateway


@pytest.fixture(scope="module")
def direct() -> dict:
    return {}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("conformance-everything") / "backend.log"
    with log.open("w") as stderr, conformance_backend(stderr=stderr) as url:
        yield url


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_single_target(everything_http: HttpPeer, direct: dict, alpha: bool, req: str | None,
                       tmp_path: Path) -> None:
    base = baseline(direct, everything_http.url, alpha, req)
    with run_gateway({"targets": [{"name": "everything", "http": {"url": everything_http.url}}]}, tmp_path) as gw:
        via = run_conformance_full(gw.mcp_url, alpha=alpha, requirements=req)
        assert_nothing_lost(base, via, gw.log(), floor=5)


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_multiplexed_beside_the_own_backend(everything_http: HttpPeer, backend: str, direct: dict,
                                            alpha: bool, req: str | None, tmp_path: Path) -> None:
    base = baseline(direct, everything_http.url, alpha, req)
    config = {
        "prefix": "never",
        "fallback_target": "everything",
        "targets": [
            {"name": "everything", "http": {"url": everything_http.url}},
            {"name": "conformance", "http": {"url": backend}},
        ],
    }
    with run_gateway(config, tmp_path) as gw:
        via = run_conformance_full(gw.mcp_url, alpha=alpha, requirements=req)
        assert_nothing_lost(base, via, gw.log(), floor=5)
