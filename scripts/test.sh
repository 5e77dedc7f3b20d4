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
echo "== pytest"
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
