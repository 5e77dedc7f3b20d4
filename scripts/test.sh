#!/usr/bin/env bash
# Set up everything the tests need (idempotent), lint, type-check, run the suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -k cursor
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check src tests
echo "== mypy"
.venv/bin/mypy
if [ -n "${MCPMUX_PURE_PYTHON:-}" ]; then
    echo "== pytest (pure Python)"
    exec .venv/bin/pytest -q -p no:cacheprovider "$@"
fi
if [ "$#" -eq 0 ]; then
    # The fallback users get without a compiler: the unit tests, pure Python.
    echo "== pytest tests/unit (pure Python)"
    MCPMUX_EXPECT_COMPILED=0 .venv/bin/pytest -q -p no:cacheprovider tests/unit
fi
# Everything against the compiled build (scripts/setup.sh made it); test_native.py
# fails if any module of src/mcpmux/native.py was not compiled.
echo "== pytest (compiled: build/native)"
PYTHONPATH="$PWD/build/native" MCPMUX_EXPECT_COMPILED=1 exec .venv/bin/pytest -q -p no:cacheprovider "$@"
