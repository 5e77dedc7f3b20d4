"""Which build of the per-call path runs (src/mcpmux/native.py).

scripts/test.sh runs the suite twice: the unit tests on the pure-Python sources
(``MCPMUX_EXPECT_COMPILED=0``), then everything on the compiled copy that
scripts/setup.sh built (``=1``). These fail if a run is not the build it claims, for
example if the compile fell back to pure Python without anyone noticing."""

from __future__ import annotations

import os

import pytest

from mcpmux import native


def test_describe_matches_what_was_imported() -> None:
    done = native.compiled()
    assert set(done) <= set(native.MODULES)
    if not done:
        assert native.describe() == "pure Python"
    elif len(done) == len(native.MODULES):
        assert native.describe().startswith(f"compiled ({len(native.MODULES)} modules")
    else:
        assert "partly" in native.describe()


@pytest.mark.skipif("MCPMUX_EXPECT_COMPILED" not in os.environ, reason="no build expected")
def test_the_build_this_run_expects() -> None:
    expected = list(native.MODULES) if os.environ["MCPMUX_EXPECT_COMPILED"] == "1" else []
    assert native.compiled() == expected
