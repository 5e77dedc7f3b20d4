#!/usr/bin/env bash
# Prepare a checkout for development and tests: the Python venv (mcpmux + test extras)
# and the pinned Node peers in tests/peers (conformance suites, server-everything,
# inspector, and a Node 22 binary for them). Idempotent and fast when nothing changed:
# each step is skipped while its marker is newer than the file it was built from.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
PIP_STAMP="$VENV/.mcpmux-pip-stamp"
PEERS=tests/peers
# npm writes this hidden lockfile last, so it only exists after a complete install.
NPM_STAMP="$PEERS/node_modules/.package-lock.json"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

if [ "$PIP_STAMP" -nt pyproject.toml ]; then
    echo "setup: python deps up to date"
else
    echo "setup: pip install -e '.[test]'"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
    touch "$PIP_STAMP"
fi

# The compiled build of the per-call path (src/mcpmux/native.py; docs/architecture.md),
# what `pip install .` gives users and what scripts/test.sh tests. A copy of the package
# in $NATIVE, rebuilt (about 1.5 min) when a source changed. The venv's editable install
# stays pure Python, so that edits take effect at once. MCPMUX_PURE_PYTHON=1 skips it.
NATIVE=build/native
NATIVE_STAMP="$NATIVE/.mcpmux-native-stamp"
if [ -n "${MCPMUX_PURE_PYTHON:-}" ]; then
    echo "setup: MCPMUX_PURE_PYTHON is set: no compiled build"
elif [ -f "$NATIVE_STAMP" ] && [ -z "$(find src setup.py pyproject.toml -type f -newer "$NATIVE_STAMP" \
        ! -path '*/__pycache__/*' -print -quit)" ]; then
    echo "setup: compiled build up to date"
else
    echo "setup: compiling the per-call path with mypyc into $NATIVE"
    rm -rf "$NATIVE"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
        --target "$NATIVE" .
    touch "$NATIVE_STAMP"
fi

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing nodejs and npm from Debian"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "setup: npm not found; install Node.js >= 20 to get the test peers" >&2
        exit 1
    fi
fi

# Services the replica tests start on free loopback ports (Redis for shared state,
# nginx as the load balancer in front of two replicas).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${missing[*]} from Debian"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: ${missing[*]} not found; install them (Debian: apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

if [ "$NPM_STAMP" -nt "$PEERS/package-lock.json" ] && [ -x "$PEERS/node_modules/node/bin/node" ]; then
    echo "setup: node peers up to date"
else
    echo "setup: npm ci in $PEERS"
    (cd "$PEERS" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$NPM_STAMP"
fi

# The admin UI tests drive Debian's chromium (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing chromium from Debian (admin UI tests)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "setup: chromium not found; the admin UI tests will be skipped (apt-get install chromium)" >&2
    fi
fi

echo "setup: done (node22: $("$PEERS/node_modules/node/bin/node" --version))"
