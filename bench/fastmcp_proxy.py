"""FastMCP's ``create_proxy`` in front of one streamable-HTTP server, for comparison.

Runs in its own venv (``bench/.venv-fastmcp``, made by ``bench/setup.sh --fastmcp``),
never in mcpmux's. Default settings, as a user would run it::

    bench/.venv-fastmcp/bin/python bench/fastmcp_proxy.py BACKEND_URL PORT
"""

from __future__ import annotations

import asyncio
import sys

from fastmcp.server import create_proxy  # type: ignore[import-not-found]


def main() -> None:
    url, port = sys.argv[1], int(sys.argv[2])
    proxy = create_proxy(url, name="fastmcp-proxy")
    asyncio.run(
        proxy.run_http_async(
            show_banner=False, transport="http", host="127.0.0.1", port=port,
            log_level="warning", path="/mcp",
        )
    )


if __name__ == "__main__":
    main()
