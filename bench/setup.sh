#!/usr/bin/env bash
# Prepare this checkout for bench/run.py. Idempotent: each step is skipped when done.
#
#   bench/setup.sh             wrk, nginx and valgrind (Debian packages), matplotlib + py-spy into .venv
#   bench/setup.sh --fastmcp   also FastMCP in bench/.venv-fastmcp (the comparison gateway)
#
# It needs scripts/setup.sh first (the .venv with mcpmux, and the npm peers in tests/peers,
# which give server-everything and Node 22). Nothing here is a dependency of mcpmux:
# pyproject.toml does not list it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
FASTMCP_VENV=bench/.venv-fastmcp

if [ ! -x "$VENV/bin/python" ]; then
    echo "bench/setup: $VENV is missing; running scripts/setup.sh first"
    scripts/setup.sh
fi

# debian PACKAGE required|optional WHY: present, or installed with apt-get as root, or
# a message saying why it matters (and a stop when the package is required).
debian() {
    local pkg=$1 need=$2 why=$3
    if command -v "$pkg" >/dev/null 2>&1 || [ -x "/usr/sbin/$pkg" ]; then
        echo "bench/setup: $pkg present"
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bench/setup: apt-get install $pkg"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    else
        echo "bench/setup: $pkg is missing ($why); as root: apt-get install -y $pkg" >&2
        if [ "$need" = required ]; then exit 1; fi
    fi
}

debian wrk required "it drives every scenario"
# nginx: the bare reverse proxy scenario 1 measures mcpmux against (never started as a service).
debian nginx optional "scenario 1 then has no nginx path"
debian valgrind optional "bench/instr.py counts instructions per call with its callgrind tool"

if "$VENV/bin/python" -c "import matplotlib" 2>/dev/null && [ -x "$VENV/bin/py-spy" ]; then
    echo "bench/setup: matplotlib and py-spy present in $VENV"
else
    echo "bench/setup: pip install matplotlib py-spy into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check matplotlib py-spy
fi

if [ "${1:-}" = "--fastmcp" ]; then
    if [ -x "$FASTMCP_VENV/bin/python" ] && "$FASTMCP_VENV/bin/python" -c "import fastmcp" 2>/dev/null; then
        echo "bench/setup: FastMCP present in $FASTMCP_VENV"
    else
        echo "bench/setup: FastMCP into $FASTMCP_VENV"
        python3 -m venv "$FASTMCP_VENV"
        "$FASTMCP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check fastmcp
    fi
fi
echo "bench/setup: done; run .venv/bin/python bench/run.py [--quick]"
