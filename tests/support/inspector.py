"""The MCP Inspector CLI (``npx @modelcontextprotocol/inspector --cli``) from the pinned package."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from tests.support.conformance import node22_path, peers_dir


def inspector(url: str, *args: str) -> Any:
    """``--cli URL --transport http ARGS``; its JSON output. Its ``cli.js`` re-spawns
    ``node`` from PATH, so Node 22 goes first on PATH."""
    node = node22_path()
    entry = peers_dir() / "node_modules/@modelcontextprotocol/inspector/cli/build/cli.js"
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(node), str(entry), "--cli", url, "--transport", "http", *args],
                          capture_output=True, text=True, timeout=90, env=env, check=False)
    assert proc.returncode == 0, f"inspector {args}: {proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)
