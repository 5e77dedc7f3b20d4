"""Demo MCP servers bundled with mcpmux so ``mcpmux run`` works with no config at all.

The servers are launched as ``python -m mcpmux.demo.<name>`` with the gateway's own
interpreter, so the demo needs nothing beyond the installed package.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["demo_config"]


def _stdio_target(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "stdio": {"command": sys.executable, "args": ["-m", f"mcpmux.demo.{name}"]},
    }


def demo_config() -> dict[str, Any]:
    """Config used when none is given: a gateway federating the clock and notes demos."""
    return {
        "listen": {"host": "127.0.0.1", "port": 8080},
        "admin": {"host": "127.0.0.1", "port": 19000},
        "prefix": "conditional",
        "targets": [_stdio_target("clock"), _stdio_target("notes")],
    }
