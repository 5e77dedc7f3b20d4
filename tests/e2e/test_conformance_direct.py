"""Baseline: the conformance suite run directly against the SDK-built backend.

This pins what the backend alone achieves, so a gateway run of the same suite can be
compared check by check, and catches regressions in the backend or the pinned suites.
Observed (mcp 2.3.0): 0.1.16 active suite 40/40 SUCCESS; alpha.12 with
``--requirements 2025-11-25`` 84/84 SUCCESS. Floors leave a small margin for checks the
suite may add or flake on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.conformance import conformance_backend, run_conformance_full


@pytest.fixture(scope="module")
def backend_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("conformance") / "backend.log"
    with log.open("w") as stderr, conformance_backend(stderr=stderr) as url:
        yield url


@pytest.mark.parametrize(
    ("alpha", "requirements", "floor"),
    [
        pytest.param(False, None, 36, id="0.1.16"),
        pytest.param(True, "2025-11-25", 76, id="0.2.0-alpha.12-2025-11-25"),
    ],
)
def test_conformance_direct(
    backend_url: str, alpha: bool, requirements: str | None, floor: int
) -> None:
    run = run_conformance_full(backend_url, alpha=alpha, requirements=requirements, timeout=600)
    passed = run.with_status("SUCCESS")
    failed = run.with_status("FAILURE")
    assert len(passed) >= floor, (
        f"{len(passed)} checks passed (floor {floor}), {len(failed)} failed:\n"
        f"{run.failure_report()}"
    )
